"""Nova's functional-test harness set up to serve a long-running sandbox, with the patches that
make it fit (pitfalls from the feasibility run are marked `(pitfall N)`): real Nova and Placement,
one cell, in-memory messaging that wakes listeners instead of polling, pooled SQLite, lazy
allocation reads, bounded notifications and logs.

Imported by the sandbox process only (`server`), which sets Nova's threading mode first; nova
itself is imported inside the functions.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
from pathlib import Path
from typing import Any


def make_harness(extra_filters: list[str] | None = None) -> Any:
    """Nova's functional-test harness, started: databases, messaging, conductor, scheduler,
    Placement and the API (nova-computes are started by the caller), with the patches below.
    `extra_filters`: scheduler filters enabled beside the default ones (the seed's choice)."""
    import importlib
    import warnings

    from nova.tests.functional import integrated_helpers
    from oslo_config import cfg

    class Harness(integrated_helpers.ProviderUsageBaseTestCase):  # type: ignore[misc]
        compute_driver = "rollwave_sandbox.SandboxDriver"

        def runTest(self) -> None:  # unittest wants one; the harness is never "run"
            pass

        def setUp(self) -> None:
            # (pitfall 2) the wheel installs api-paste.ini under <venv>/etc/nova.
            self.flags(
                api_paste_config=os.path.join(sys.prefix, "etc/nova/api-paste.ini"), group="wsgi"
            )
            # Set before the services and the API read them. No heartbeat timer is needed:
            # a host is down only when forced down (`ctl host-down`), as an operator's fencing
            # would mark it; so the heartbeat can be rare and never late.
            self.flags(service_down_time=10**8, report_interval=3600)
            # The harness checks every API response against its JSON schema (a test of Nova,
            # not of its clients), a fifth of the CPU a boot costs; production Nova does not.
            self.flags(response_validation="ignore", group="api")
            # Versioned notifications are built for the harness to collect, never read here.
            self.flags(notification_format="unversioned", group="notifications")
            # (pitfall 5) unlimited quotas; Nova's defaults refuse a cloud of any size.
            for opt in (
                "instances",
                "cores",
                "ram",
                "server_groups",
                "server_group_members",
                "metadata_items",
                "key_pairs",
            ):
                self.flags(**{opt: -1, "group": "quota"})
            if extra_filters:
                enabled = list(cfg.CONF.filter_scheduler.enabled_filters)
                self.flags(
                    enabled_filters=enabled + [f for f in extra_filters if f not in enabled],
                    group="filter_scheduler",
                )
            super().setUp()

    _single_cell_db_routing()
    _event_driven_fake_rpc()
    _pooled_sqlite()
    _lazy_provider_allocations()
    h = Harness()
    h.setUp()
    # The harness makes idle pool threads wake every 10 ms (to end tests fast); with a few
    # hundred threads that burns a core doing nothing. Once a second is plenty here.
    import futurist._thread

    futurist._thread.ThreadWorker.MAX_IDLE_FOR = 1
    # The harness's fake notifiers keep every notification in memory for assertions; a
    # sandbox that runs for hours must not grow with every boot and migration.
    notifications = importlib.import_module("nova.tests.fixtures.notifications")
    for cls in (notifications.FakeNotifier, notifications.FakeVersionedNotifier):
        cls._notify = lambda *args, **kwargs: None
    # (pitfall 3) the harness turns warnings into errors; SQLAlchemy's would become HTTP 500s.
    warnings.resetwarnings()
    warnings.simplefilter("ignore")
    cfg.CONF.set_override("debug", False)
    return h


def _single_cell_db_routing() -> None:
    """Replace the harness's global cell switching with per-context routing.

    Nova's CellDatabases fixture points *untargeted* DB access at the cell last targeted,
    guarded by a process-wide reader/writer lock; with many concurrent requests (parallel boots,
    migrations while polling) that lock deadlocks against the per-DB write lock. Here every
    targeted context carries its own connection and untargeted code (nova-compute) always
    means cell1, the only cell with hosts, so no global switching is needed.
    """
    import contextlib
    import importlib

    # (the package re-exports names, so `from nova.tests.fixtures import nova` is not the module)
    nova_fixtures = importlib.import_module("nova.tests.fixtures.nova")

    @contextlib.contextmanager
    def target_cell(self: Any, context: Any, cell_mapping: Any) -> Any:
        with self._real_target_cell(context, cell_mapping) as cctxt:
            yield cctxt

    def get_context_manager(self: Any, context: Any) -> Any:
        return getattr(context, "db_connection", None) or self._default_ctxt_mgr

    nova_fixtures.CellDatabases._wrap_target_cell = target_cell
    nova_fixtures.CellDatabases._wrap_get_context_manager = get_context_manager


def _event_driven_fake_rpc() -> None:
    """Make oslo.messaging's in-memory transport wake listeners instead of polling them.

    Its listeners poll every queue each 50 ms: with two RPC servers per nova-compute, 100 hosts
    mean thousands of wake-ups a second fighting for the GIL, idle or not. Here each listener
    sleeps on an Event that message delivery sets.
    """
    import importlib
    import time as _time

    base = importlib.import_module("oslo_messaging._drivers.base")
    impl_fake = importlib.import_module("oslo_messaging._drivers.impl_fake")

    lock = threading.Lock()
    waiters: dict[tuple[str, str, str | None], set[threading.Event]] = {}
    orig_init = impl_fake.FakeListener.__init__
    orig_deliver = impl_fake.FakeExchange.deliver_message

    def init(self: Any, exchange_manager: Any, targets: Any, pool: Any = None) -> None:
        orig_init(self, exchange_manager, targets, pool)
        self._rw_wake = threading.Event()
        with lock:
            for t in targets:
                name = exchange_manager.get_exchange(t.exchange).name
                waiters.setdefault((name, t.topic, t.server or None), set()).add(self._rw_wake)

    def deliver(
        self: Any,
        topic: str,
        ctxt: Any,
        message: Any,
        server: Any = None,
        fanout: bool = False,
        reply_q: Any = None,
    ) -> None:
        orig_deliver(self, topic, ctxt, message, server=server, fanout=fanout, reply_q=reply_q)
        with lock:
            if fanout:
                events = [
                    e
                    for k, evs in waiters.items()
                    if k[0] == self.name and k[1] == topic
                    for e in evs
                ]
            else:
                events = list(waiters.get((self.name, topic, server), ()))
        for e in events:
            e.set()

    def poll(self: Any, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else _time.time() + timeout
        while not self._stopped.is_set():
            self._rw_wake.clear()
            for target in self._targets:
                exchange = self._exchange_manager.get_exchange(target.exchange)
                ctxt, message, reply_q, requeue = exchange.poll(target, self._pool)
                if message is not None:
                    return impl_fake.FakeIncomingMessage(ctxt, message, reply_q, requeue)
            wait = 1.0 if deadline is None else min(1.0, deadline - _time.time())
            if wait < 0:
                break
            self._rw_wake.wait(wait)
        return None

    impl_fake.FakeListener.__init__ = init
    impl_fake.FakeExchange.deliver_message = deliver
    impl_fake.FakeListener.poll = base.batch_poll_helper(poll)


def _pooled_sqlite() -> None:
    """Keep SQLite connections open in a pool instead of one new connection per transaction.

    oslo.db gives file-backed SQLite a NullPool; connecting (and its PRAGMAs) then costs more
    than the queries. Each pooled connection is used by one thread at a time.
    """
    import importlib

    from sqlalchemy import pool

    engines = importlib.import_module("oslo_db.sqlalchemy.engines")

    orig = engines._init_connection_args

    def init_args(url: Any, engine_args: dict[str, Any], kw: dict[str, Any]) -> None:
        orig(url, engine_args, kw)
        if url.get_backend_name() == "sqlite" and engine_args.get("poolclass") is pool.NullPool:
            engine_args["poolclass"] = pool.QueuePool
            engine_args["pool_size"] = 8
            engine_args["max_overflow"] = 64
            engine_args["pool_pre_ping"] = False  # a local file does not drop connections
            engine_args.setdefault("connect_args", {})["check_same_thread"] = False

    engines._init_connection_args = init_args  # type: ignore[attr-defined]


def _lazy_provider_allocations() -> None:
    """Fetch a provider tree's allocations only when something reads them.

    The resource tracker asks Placement for every allocation on a host (one GET per instance)
    at each claim, but reads them only to reshape a tree or heal PCI allocations, neither of
    which happens on a fake hypervisor; eagerly, booting M servers on a host costs O(M^2) GETs.
    """
    from collections import UserDict

    from nova.scheduler.client import report

    orig = report.SchedulerReportClient.get_allocations_for_provider_tree

    class Lazy(UserDict[str, Any]):
        def __init__(self, load: Any) -> None:  # no super().__init__: `data` loads on demand
            self._load = load

        def __getattr__(self, name: str) -> Any:
            if name == "data":  # first read of the mapping: fetch it now, once
                self.data = self._load()
                return self.data
            raise AttributeError(name)

    def lazy(self: Any, context: Any, nodename: str) -> Any:
        return Lazy(lambda: orig(self, context, nodename))

    report.SchedulerReportClient.get_allocations_for_provider_tree = lazy


def quiet_logs(log_file: Path) -> None:
    """(pitfall 7) drop the harness's in-memory log capture; keep warnings in a bounded file."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fh = logging.handlers.RotatingFileHandler(log_file, maxBytes=5_000_000, backupCount=1)
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s"))
    root.addHandler(fh)
    root.setLevel(logging.WARNING)


def placement_conf(harness: Any) -> Any:
    # The harness's placement client knows its fixture, which holds Placement's own config.
    return harness.placement.fixture.conf_fixture.conf
