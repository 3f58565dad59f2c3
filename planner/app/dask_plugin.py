"""The worker plugin rollwave registers on a Dask cluster it connects to: each worker's
statistical profiler paused while rollwave's client is connected, resumed when it leaves.

Dask's workers sample every thread's stack every 10 ms (distributed.worker.profile), taking
Python's GIL from the task thread each time: 1.5 to 2% of a core per worker, measured, for a
profile of rollwave's runs that nobody reads. A local cluster's workers start without it (their
config); workers started by `dask worker` keep theirs, so the plugin pauses it, the only way
Dask offers to change a running worker. Imported only on a Dask cluster (it needs
`distributed`), and on the workers, which have rollwave installed.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

# The worker's periodic callbacks of its profiler: the sampling and the cycling of its history.
PROFILER_CALLBACKS = ("profile", "profile-cycle")

# Per worker (several rollwave clients may be connected at once, each with its plugin): how many
# plugins pause its profiler, and the callbacks the first one stopped, restarted by the last.
_paused: dict[int, tuple[int, list[Any]]] = {}


def profiler_running(dask_worker: Any) -> bool:
    """Whether the worker's profiler samples now (for `client.run`)."""
    pc = dask_worker.periodic_callbacks.get("profile")
    return bool(pc is not None and pc.is_running())


class PauseProfiler(WorkerPlugin):
    """Pauses the worker's profiler on setup (this plugin registered, or the worker joining
    later), resumes it on teardown (unregistered when rollwave's client closes)."""

    def setup(self, worker: Any) -> None:
        count, stopped = _paused.get(id(worker), (0, []))
        if count == 0:
            stopped = []
            for name in PROFILER_CALLBACKS:
                pc = worker.periodic_callbacks.get(name)
                if pc is not None and pc.is_running():
                    pc.stop()
                    stopped.append(pc)
        _paused[id(worker)] = (count + 1, stopped)

    def teardown(self, worker: Any) -> None:
        count, stopped = _paused.pop(id(worker), (1, []))
        if count > 1:
            _paused[id(worker)] = (count - 1, stopped)
            return
        if worker.status.name in ("running", "paused"):
            for pc in stopped:
                pc.start()
