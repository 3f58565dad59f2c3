"""The executor: runs a plan against a live cloud, wave by wave, closed-loop and resumable.

It uses the OpenStack adapter and the core, never the solver or the simulator: planning and the
ETA go through the ports in `ports` (`planner.app.execute` implements them with the engines).
- `run`: the orchestrator (`Executor`): the journal's opening, the waves, the poll loop, the end;
- `drift`: resume's reconciliation, each wave's re-check against the live cloud, re-planning;
- `migrations`: the VM runs: scheduling, starting, polling, retries, other destinations, aborts;
- `hosts`: the host runs: disable, drain check, stops, upgrade and rollback commands, the
  service's return, enable, starts;
- `canary`: picks, soak, health checks, the rollback of the canary hosts;
- `context`: what the rooms share (`RunContext`: options, cloud, journal, run state, progress);
- `states`: the journal's events and ops, VM and host run states (enums);
- `journal`: the append-only journal (JSON lines, fsync'd) and the run state it replays into;
- `cloud`: the calls the executor makes (a live cloud, or the dry run's model of it);
- `view`: the live state as the planner sees it, the remaining plan, drift;
- `headroom`: headroom sampled during a wave; `eta`: the ETA; `options`: the options;
- `hooks`: upgrade / rollback / health commands and notifications;
- `ui`: progress bars, per-VM lines and the summary.
"""
