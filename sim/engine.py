"""The discrete-event simulation of executing a plan, on a heapq event loop of its own.

Executor semantics, wave after wave: disable the wave's hosts; after `disable_s` start their
migrations, in the plan's order per source host, at most k_out at once per source
(`max_concurrent_live_migrations`) and k_in at once per destination (`max_inbound_migrations`),
a destination only while it is enabled and up; stop in place the VMs the plan stops; a host whose
VMs are all gone is upgraded at once (its own duration, drawn per run), then enabled after
`enable_s`; the next wave starts when every host of this one is done.

Bandwidth (`network.sharing`): `dynamic`, the default, splits each host's NIC (each direction)
evenly among the migrations running on it now; at every start and end the running migrations on
the hosts whose counts changed get their new share, keep the fraction of their transfer done and
go on at the new speed (their end event moves; a version token per migration makes the old one
stale). `static`, the fast approximation, splits it among the migrations that can run on it at
once in the wave: a migration gets min(live_migration_bandwidth, NIC_src / c_out(src),
NIC_dst / c_in(dst)), where c_out(src) = min(k_out, what src sends, each destination counting at
most k_in) and c_in(dst) likewise, so its duration, downtime and bytes are fixed before the run
(`prepare`) and shared by every Monte Carlo run; the run itself is only scheduling, failures and
invariants.

Events: every event popped from the heap that changes something (stale ones, e.g. the end of a
migration cancelled by a crash or moved by a new share, or the shutdown end on a host that crashed
meanwhile, are skipped and not counted) plus every migration start. The makespan is the time of
the last such event: in a completed run, the end of the last wave.

Invariants, checked at every event that can change them, with the simulated time of a breach:
capacity on the destination (an in-flight VM counts on both its source and destination), hard
anti-affinity (likewise), HA groups' min_available, and headroom per policy (`sim.state`, equal to
`capacity.headroom`). Ties in time are broken by insertion order: the same seed gives the same run.
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import os
import random
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from sim import loop as _py_loop
from sim.calendar import outcome
from sim.draws import sub_seed
from sim.lowerbound import lower_bound, plan_lower_bound
from sim.prepare import OUTCOME_NAMES, Prepared, prepare
from sim.results import Breach, Failure, SimResult

__all__ = [
    "IMPLEMENTATION",
    "OUTCOME_NAMES",
    "Breach",
    "Failure",
    "Prepared",
    "SimResult",
    "choose_loop",
    "lower_bound",
    "plan_lower_bound",
    "prepare",
    "simulate",
]

RunLoop = Callable[[Prepared, int, bool, "tuple[float, float] | None"], SimResult]
_NOT_BUILT = "python (no compiled loop: rollwave was installed without it)"


# The loop's modules, compiled together at install (setup.py's LOOP_MODULES, in its order).
LOOP_MODULES = ("loop_state", "loop_moves", "loop")


def loop_source() -> bytes:
    """The loop's modules' text as it is now, whose digest the compiled copies carry."""
    here = Path(_py_loop.__file__).parent
    return b"".join((here / f"{m}.py").read_bytes() for m in LOOP_MODULES)


def choose_loop(compiled: ModuleType | None, source: bytes, env: str = "") -> tuple[RunLoop, str]:
    """The loop to run, and what it is: the compiled one (`sim._loop_c`, built by mypyc from
    the loop's modules at install, see setup.py) only while it was built from `source`, their
    text now (`loop_source`); else the Python one. `env` is ROLLWAVE_SIM_ENGINE: `python`
    forces it."""
    if env == "python":
        return _py_loop.run_loop, "python (ROLLWAVE_SIM_ENGINE=python)"
    if compiled is None or not str(compiled.__file__).endswith((".so", ".pyd")):
        return _py_loop.run_loop, _NOT_BUILT
    if getattr(compiled, "SOURCE_DIGEST", None) != hashlib.sha256(source).hexdigest():
        return _py_loop.run_loop, "python (the compiled loop is stale: ./dev setup rebuilds it)"
    run: RunLoop = compiled.run_loop
    return run, "compiled (mypyc)"


def _compiled() -> ModuleType | None:
    try:
        return importlib.import_module("sim._loop_c")
    except ImportError:
        return None


_run_loop, IMPLEMENTATION = choose_loop(
    _compiled(), loop_source(), os.environ.get("ROLLWAVE_SIM_ENGINE", "")
)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
def draw_crash(prep: Prepared, seed: int) -> tuple[float, float] | None:
    """(time fraction or absolute window draw, host draw) for this seed, or None: no crash."""
    m = prep.model
    if m.crash_p <= 0:
        return None
    rng = random.Random(sub_seed(seed, 3))
    if rng.random() >= m.crash_p:
        return None
    return rng.random(), rng.random()


def simulate(prep: Prepared, seed: int = 0, *, record: bool = True) -> SimResult:
    """One run. With a host crash in the model, the crash time is uniform over the run (or the
    model's window): the run is made once without it to learn its length, then again with it;
    both runs are the same until the crash."""
    crash = draw_crash(prep, seed)
    if crash is None:
        return _run(prep, seed, record, None)
    u_time, u_host = crash
    window = prep.model.crash_window_s
    if window is None:
        ref = _run(prep, seed, False, None)
        t = u_time * ref.makespan_s
    else:
        t = window[0] + u_time * (window[1] - window[0])
    return _run(prep, seed, record, (t, u_host))


def _run(prep: Prepared, seed: int, record: bool, crash: tuple[float, float] | None) -> SimResult:
    # The loop allocates millions of small tuples and no reference cycles: the cyclic collector
    # would only rescan the (large, long-lived) inventory and plan again and again.
    enabled = gc.isenabled()
    gc.disable()
    try:
        res = _run_loop(prep, seed, record, crash)
    finally:
        if enabled:
            gc.enable()
    if prep.calendar is not None:
        res.calendar = outcome(prep.calendar, prep.hosts, res.host_status, res.host_times)
    return res
