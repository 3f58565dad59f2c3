"""Monte Carlo runs and what-if sweeps on a Dask cluster (`--cluster`): Dask's distributed
scheduler does the work a local process pool does without it, with the same results.

- `parse_cluster` reads `--cluster`: `local`, `local:N` (a local cluster of N worker processes)
  or a scheduler's address (`tcp://HOST:PORT`); `connect` opens a `Cluster` on it and closes it
  after (a local cluster's processes included).
- `Cluster.map_batched` runs a function over items in batches: the data every task needs is
  scattered to the workers once (`Cluster.scatter`), the first task of each worker thread is one
  item, and later batches are sized from the measured per-task overhead and per-item time so
  that the overhead stays under 5% of the work. Results come back as they finish, in the order
  of the items in the end; a task lost with its worker is run again elsewhere (Dask's own
  rescheduling), so the results are complete and the same as on local processes.
- `run_many` is `sim.montecarlo.run_many` on a cluster; `planner.app.whatif.sweep` uses
  `map_batched` for its combinations.
- Dask's housekeeping is slowed down where rollwave controls it (`LEAN`: a local cluster's
  workers), and the statistical profiler of a running cluster's workers is paused while
  connected (`planner.app.dask_plugin`).

Dask is the optional extra `rollwave[dask]`, imported here only when a cluster is asked for.
Tasks call rollwave's own functions, so every worker needs rollwave installed, same version.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from planner import __version__
from planner.errors import ClusterError, UsageError
from sim.engine import Prepared
from sim.montecarlo import RunSummary, one_run, run_seed

# Dask's client API is only partly typed: its objects are Any here, named for the reader.
Client = Any
Future = Any
LocalCluster = Any

EXTRA = "rollwave[dask]"
ENV_ADDRESS = "DASK_SCHEDULER_ADDRESS"  # read by the CLI's --cluster, as by Dask's own tools
DEFAULT_PORT = 8786  # `dask scheduler`'s
# Batches are sized for 2% overhead: under the 5% promised even when the measured overhead or
# item time is off by a factor of 2.5 (a busy machine, a first run filling its caches).
OVERHEAD_TARGET = 0.02
# A task that raises on a worker (out of memory, say) runs again, elsewhere if there is one. A
# task whose worker dies is rescheduled by the scheduler itself, up to its `allowed-failures`.
RETRIES = 2
IN_FLIGHT_PER_SLOT = 2  # tasks handed to the scheduler per worker thread: one runs, one waits
OVERHEAD_PROBES = 5  # empty tasks timed to measure the per-task overhead (their median)
# Dask's housekeeping, slower, in this process and a local cluster's workers (their nannies pass
# the config on): its event-loop health check every 20 ms, system monitor every 500 ms, memory
# monitor every 100 ms and statistical profiler every 10 ms took about 7% of a core idle, 1.4%
# so. And glibc's default trimming: Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 for its
# workers (to hand big arrays back to the OS), which made a simulated run about 7% slower. Workers
# started with `dask worker` keep their own config.
LEAN = {
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.worker.profile.enabled": False,
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
}

ItemT = TypeVar("ItemT")  # an item of work (a seed, a combination's index)
ResultT = TypeVar("ResultT")  # the result of one item
SharedT = TypeVar("SharedT")  # the data every task shares

_ADDRESS = re.compile(
    r"^(?:(?P<scheme>tcp|tls|ws|wss)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)"
    r"(?::(?P<port>\d{1,5}))?/?$"
)


# ---------------------------------------------------------------------------------------------
# Which cluster
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterSpec:
    """A scheduler's address, or (address None) a local cluster of `workers` processes."""

    address: str | None = None
    workers: int | None = None  # a local cluster's worker processes; None: the CPUs

    def __str__(self) -> str:
        if self.address is not None:
            return self.address
        return "local" if self.workers is None else f"local:{self.workers}"


def parse_cluster(text: str) -> ClusterSpec:
    """`local`, `local:N`, or a Dask scheduler's address (`tcp://HOST:PORT`; the scheme defaults
    to tcp, the port to 8786). A bad value is a UsageError naming what is expected."""
    t = text.strip()
    if t == "local":
        return ClusterSpec()
    if t.startswith("local:"):
        n = t.removeprefix("local:")
        if not n.isdigit() or int(n) < 1:
            raise UsageError(
                f"--cluster {text!r}: the number of local workers must be a positive integer "
                "(local:N)"
            )
        return ClusterSpec(workers=int(n))
    m = _ADDRESS.match(t)
    if not m or (m["port"] and not 0 < int(m["port"]) < 65536):
        raise UsageError(
            f"--cluster {text!r}: not a Dask scheduler address; expected tcp://HOST:PORT "
            f"(e.g. tcp://10.0.0.5:{DEFAULT_PORT}), or local[:N] for a local cluster of N workers"
        )
    return ClusterSpec(address=f"{m['scheme'] or 'tcp'}://{m['host']}:{m['port'] or DEFAULT_PORT}")


def from_options(cluster: str | None, jobs: int | None) -> ClusterSpec | None:
    """The commands' `--cluster` (or DASK_SCHEDULER_ADDRESS) and `--jobs`, checked before any
    work: None without a cluster; a UsageError (exit 2) for a bad address, both options at
    once, or Dask not installed."""
    if not cluster:
        return None
    spec = parse_cluster(cluster)
    if jobs is not None:
        raise UsageError(
            f"--jobs sets local processes, --cluster {spec} (or {ENV_ADDRESS}) a Dask cluster "
            "whose workers do the work: give one of them"
        )
    require_dask()
    return spec


def require_dask() -> Any:
    """The `distributed` module, or a UsageError (exit 2) naming the extra to install."""
    try:
        import distributed
    except ImportError as exc:
        raise UsageError(
            f"running on a Dask cluster needs the optional extra: pip install '{EXTRA}' "
            "(it brings dask[distributed]); without --cluster, the work runs in local processes"
        ) from exc
    return distributed


# ---------------------------------------------------------------------------------------------
# A connected cluster
# ---------------------------------------------------------------------------------------------
@dataclass
class BatchStats:
    """How `map_batched` cut the work, and what it measured."""

    items: int = 0
    tasks: int = 0
    largest_batch: int = 0
    overhead_s: float = 0.0  # round trip of an empty task (median of a few), sizes the batches
    work_s: float = 0.0  # the tasks' own time on the workers, summed
    work_cpu_s: float = 0.0  # the CPU time of the threads that ran them, summed
    wall_s: float = 0.0  # from the first task's submission to the last result
    slots: int = 0  # worker threads at the start

    @property
    def item_s(self) -> float:
        """Work per item on a worker (mean)."""
        return self.work_s / self.items if self.items else 0.0

    @property
    def overhead_share(self) -> float:
        """The engine's cost as a share of the slot time it used: 1 - work / (wall x slots)."""
        used = self.wall_s * self.slots
        return max(0.0, 1.0 - self.work_s / used) if used > 0 else 0.0


def batch_size(overhead_s: float, item_s: float, remaining: int, slots: int) -> int:
    """Items per task: the fewest whose work makes the per-task overhead at most
    OVERHEAD_TARGET of it, but no more than an even share of what remains per worker thread
    (so that every worker has work to the end)."""
    if remaining <= 0:
        return 0
    share = math.ceil(remaining / max(1, slots))
    if item_s <= 0:
        return share
    need = math.ceil(overhead_s / (OVERHEAD_TARGET * item_s))
    return max(1, min(need, share))


class Cluster:
    """A Dask client (and, for `local[:N]`, the local cluster it started). Use `connect`."""

    def __init__(self, client: Client, spec: ClusterSpec, local: LocalCluster | None) -> None:
        self.client = client
        self.spec = spec
        self.local = local
        self._overhead: float | None = None

    @property
    def slots(self) -> int:
        """Worker threads the scheduler knows of now."""
        with self._failures("asking for its workers"):
            return sum(int(n) for n in self.client.nthreads().values())

    def describe(self) -> str:
        with self._failures("asking for its workers"):
            nthreads = self.client.nthreads()
        return (
            f"Dask cluster {self.spec} ({len(nthreads)} worker(s), "
            f"{sum(nthreads.values())} thread(s))"
        )

    def scatter(self, data: object) -> Future:
        """`data` sent to every worker once; tasks given the returned future get it there."""
        with self._failures("sending the data to the workers"):
            # In a list of one: Dask would scatter a tuple's or a dict's items one by one.
            return self.client.scatter([data], broadcast=True, hash=False)[0]

    def overhead(self, probe: Future | None = None) -> float:
        """The per-task overhead: median round trip of an empty task (submitted, run, its result
        back), measured once per connection; with `probe`, the task takes that scattered data."""
        if self._overhead is None:
            trips = []
            with self._failures("timing an empty task"):
                for _ in range(OVERHEAD_PROBES):
                    t0 = time.perf_counter()
                    self.client.submit(_noop, probe, pure=False).result()
                    trips.append(time.perf_counter() - t0)
            self._overhead = statistics.median(trips)
        return self._overhead

    def map_batched(
        self,
        fn: Callable[[SharedT, list[ItemT]], list[ResultT]],
        shared: Future,
        items: Sequence[ItemT],
        *,
        on_batch: Callable[[list[ResultT]], None] | None = None,
    ) -> tuple[list[ResultT], BatchStats]:
        """`fn(shared data, batch)` over `items` in batches on the workers; the results in the
        order of `items`. `on_batch(results)` as each batch comes back."""
        as_completed: Any = require_dask().as_completed

        n = len(items)
        out: list[Any] = [None] * n
        stats = BatchStats(items=0, overhead_s=self.overhead(shared), slots=max(1, self.slots))
        spans: dict[Any, tuple[int, int]] = {}
        next_i = 0

        def submit(size: int) -> Future:
            nonlocal next_i
            start, next_i = next_i, min(n, next_i + size)
            fut = self.client.submit(
                _timed, fn, shared, list(items[start:next_i]), pure=False, retries=RETRIES
            )
            spans[fut.key] = (start, next_i - start)
            stats.tasks += 1
            stats.largest_batch = max(stats.largest_batch, next_i - start)
            return fut

        t0 = time.perf_counter()
        pending: Any = None
        try:
            with self._failures("running the tasks"):
                # First one item per worker thread: it measures an item's time on the workers.
                first = [submit(1) for _ in range(min(stats.slots, n))]
                pending = as_completed(first, loop=self.client.loop)
                for fut in pending:
                    start, size = spans.pop(fut.key)
                    with self._failures(f"the task of items {start}..{start + size - 1}"):
                        results, work, cpu = fut.result()
                    out[start : start + size] = results
                    stats.items += size
                    stats.work_s += work
                    stats.work_cpu_s += cpu
                    if on_batch:
                        on_batch(results)
                    slots = max(1, self.slots)
                    while next_i < n and pending.count() < IN_FLIGHT_PER_SLOT * slots:
                        size = batch_size(stats.overhead_s, stats.item_s, n - next_i, slots)
                        pending.add(submit(size))
        except BaseException:
            if pending is not None:
                with contextlib.suppress(Exception):
                    self.client.cancel([f for f in pending.futures if not f.done()])
            raise
        stats.wall_s = time.perf_counter() - t0
        return out, stats

    @contextmanager
    def _failures(self, doing: str) -> Iterator[None]:
        """The cluster's failures while `doing` as ClusterError (exit 4), one message each."""
        import distributed

        where = f"Dask cluster {self.spec}"
        try:
            yield
        except ClusterError:
            raise
        except distributed.KilledWorker as exc:
            raise ClusterError(
                f"{where}: {doing}: its worker died, and so did every other worker that tried it "
                "(out of memory?); the scheduler gave up (distributed.scheduler.allowed-failures)"
            ) from exc
        except distributed.CancelledError as exc:
            raise ClusterError(
                f"{where}: {doing}: cancelled (the scheduler is gone, restarted, or lost this "
                "client)"
            ) from exc
        except (OSError, distributed.TimeoutError) as exc:  # Dask's CommClosedError included
            raise ClusterError(f"{where}: lost the scheduler while {doing}: {exc}") from exc

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.local is not None:
                self.local.close()


def _noop(shared: Any) -> None:
    return None


def _timed(fn: Callable[[Any, list[Any]], list[Any]], shared: Any, batch: list[Any]) -> Any:
    """A task: the batch's results, the seconds they took on the worker and the CPU seconds of
    the thread that ran them."""
    t0, c0 = time.perf_counter(), time.thread_time()
    results = fn(shared, batch)
    return results, time.perf_counter() - t0, time.thread_time() - c0


def _version() -> str:
    return __version__


@contextmanager
def connect(spec: ClusterSpec | str, *, timeout_s: float | None = None) -> Iterator[Cluster]:
    """A Cluster on `spec` (parsed as `--cluster` if a string), closed after: a local cluster
    of one-thread worker processes, or a client of a running scheduler. `timeout_s` bounds the
    connection and the wait for a first worker (default: Dask's distributed.comm.timeouts.connect,
    30 s unless configured). Failures are ClusterError (exit 4)."""
    spec = parse_cluster(spec) if isinstance(spec, str) else spec
    distributed = require_dask()
    import dask

    timeout = timeout_s
    if timeout is None:
        timeout = dask.utils.parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"))
    with dask.config.set(LEAN):
        yield from _connected(distributed, spec, timeout)


def _connected(distributed: Any, spec: ClusterSpec, timeout: float) -> Iterator[Cluster]:
    local = None
    if spec.address is None:
        n = spec.workers or os.cpu_count() or 1
        try:
            local = distributed.LocalCluster(
                n_workers=n,
                threads_per_worker=1,  # the simulator holds the GIL: parallel work is processes
                processes=True,
                silence_logs=logging.ERROR,
                dashboard_address=None,
                # no dashboard; the scheduler's HTTP endpoint on a free port of localhost
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            )
            client = distributed.Client(local, set_as_default=False)
        except Exception as exc:
            if local is not None:
                local.close()
            raise ClusterError(
                f"could not start a local Dask cluster of {n} workers: {exc}"
            ) from exc
    else:
        try:
            client = distributed.Client(spec.address, timeout=timeout, set_as_default=False)
        except (OSError, distributed.TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {spec.address} ({exc}); is `dask scheduler` "
                f"running there, and is the address (or {ENV_ADDRESS}) right?"
            ) from exc
    cluster = Cluster(client, spec, local)
    try:
        _check_cluster(cluster, timeout)
        with _quiet_dask_logs(), _profiler_paused(cluster):
            yield cluster
    finally:
        with _quiet_dask_logs():
            cluster.close()


@contextmanager
def _profiler_paused(cluster: Cluster) -> Iterator[None]:
    """The workers' statistical profiler paused while connected (`dask_plugin.PauseProfiler`,
    for workers joining later too), resumed after; a local cluster's workers have it off."""
    from planner.app.dask_plugin import PauseProfiler

    name = f"rollwave-pause-profiler-{cluster.client.id}"
    with cluster._failures("pausing the workers' profiler"):
        cluster.client.register_plugin(PauseProfiler(), name=name)
    try:
        yield
    finally:
        # A lost scheduler has nothing to unregister: its workers' plugin goes with it.
        with contextlib.suppress(Exception):
            cluster.client.unregister_worker_plugin(name)


@contextmanager
def _quiet_dask_logs() -> Iterator[None]:
    """Dask's own log lines off in this process (its client logs a lost scheduler with
    tracebacks): what fails is raised as a ClusterError with one message. ROLLWAVE_DEBUG=1
    keeps them."""
    if os.environ.get("ROLLWAVE_DEBUG"):
        yield
        return
    loggers = [logging.getLogger("distributed")] + [
        logging.getLogger(name)
        for name in list(logging.Logger.manager.loggerDict)
        if name.startswith("distributed.")
    ]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


@contextmanager
def using(cluster: Cluster | ClusterSpec | str) -> Iterator[Cluster]:
    """An open Cluster as it is (left open), else one connected for the block."""
    if isinstance(cluster, Cluster):
        yield cluster
    else:
        with connect(cluster) as c:
            yield c


def _check_cluster(cluster: Cluster, timeout: float) -> None:
    """At least one worker, and the scheduler (it unpickles the tasks, which name rollwave's
    functions) and every worker run this version of rollwave."""
    import distributed

    client, where = cluster.client, f"Dask cluster {cluster.spec}"
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (distributed.TimeoutError, TimeoutError) as exc:
        raise ClusterError(
            f"the Dask scheduler at {cluster.spec} has no workers after {timeout:g} s; start "
            f"some with `dask worker {cluster.spec}`"
        ) from exc
    install = f"install rollwave {__version__} (its dask extra) on the scheduler and every worker"
    versions: dict[str, str] = {}
    # A process that cannot import rollwave fails to load the function it is sent.
    for who, ask in (("scheduler", client.run_on_scheduler), ("workers", client.run)):
        try:
            answer = ask(_version)
        except Exception as exc:
            raise ClusterError(
                f"{where}: its {who} cannot run rollwave ({exc}); {install}"
            ) from exc
        versions.update({"the scheduler": answer} if who == "scheduler" else answer)
    wrong = {w: v for w, v in versions.items() if v != __version__}
    if wrong:
        listed = ", ".join(f"{w} has {v}" for w, v in sorted(wrong.items()))
        raise ClusterError(
            f"{where} runs another rollwave than this one ({__version__}): {listed}; {install}"
        )


# ---------------------------------------------------------------------------------------------
# Monte Carlo on a cluster
# ---------------------------------------------------------------------------------------------
def _runs(prep: Prepared, seeds: list[int]) -> list[RunSummary]:
    return [one_run(prep, s) for s in seeds]


def run_many(
    cluster: Cluster,
    prep: Prepared,
    runs: int,
    base_seed: int = 0,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[RunSummary], BatchStats]:
    """`sim.montecarlo.run_many` on a cluster: the same runs, in order of their index. The
    prepared plan (inventory, plan, model) is scattered once; `progress(done, runs)`."""
    seeds = [run_seed(base_seed, i) for i in range(runs)]
    shared = cluster.scatter(prep)
    done = 0

    def on_batch(part: list[RunSummary]) -> None:
        nonlocal done
        done += len(part)
        if progress:
            progress(done, runs)

    try:
        return cluster.map_batched(_runs, shared, seeds, on_batch=on_batch)
    finally:
        shared.release()
