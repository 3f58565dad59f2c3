"""The executor: runs a plan against a live cloud, wave by wave, closed-loop and resumable.

Application layer: it may use the OpenStack adapter, the solver, the simulator and the core.
- `journal`: the append-only journal (JSON lines, fsync'd) and the run state it replays into;
- `cloud`: the calls the executor makes (a live cloud, or the dry run's model of it);
- `view`: the live state as the planner sees it, the remaining plan, drift, re-planning;
- `hooks`: upgrade / rollback / health commands and notifications;
- `run`: the state machine per wave, per host and per VM;
- `ui`: progress bars, per-VM lines and the summary.
"""
