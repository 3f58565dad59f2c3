"""Discrete-event simulation of executing a plan. Depends on planner's core only.

- `sim.migration`: one live or cold migration (the pre-copy closed form, and Nova + QEMU's
  behaviour: downtime steps, completion timeout and its action, auto-converge, post-copy).
- `sim.model`: the model file (network, Nova's settings, executor timings, upgrade durations,
  failure rates) with Nova's defaults on 10 GbE.
- `sim.state`: capacity and headroom kept incrementally (equal to `capacity.headroom`).
- `sim.prepare`: `prepare` a plan once: names, NIC shares, every migration's duration.
- `sim.engine`: `simulate` a run on a heapq event loop (executor semantics, invariants, failures).
- `sim.montecarlo`: many runs in parallel processes, percentiles and risks.
- `sim.timeline`: the JSON report and the timeline file (JSON lines or CSV).
"""
