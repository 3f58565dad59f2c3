"""A run's random draws, made before its events: each kind from its own stream of the run's seed,
so that runs agree until they diverge (a stream drawn only when its kind is in the model leaves
the runs without it unchanged)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from sim.prepare import Prepared


def sub_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, stream]).generate_state(1)[0])


@dataclass
class Draws:
    up_dur: list[float]  # per host: its upgrade's duration
    up_fail: list[bool]  # per host: it fails its upgrade
    rb_dur: list[float]  # per host: its rollback's duration
    canary_fails: bool  # the canary fails its checks after the soak
    fails: list[int]  # per migration: how many of its attempts fail
    frac_rng: random.Random  # where in its duration a failing attempt fails


def draw(prep: Prepared, seed: int) -> Draws:
    model = prep.model
    H = len(prep.hosts)
    N = len(prep.m_vm)
    rng_up = np.random.Generator(np.random.PCG64(sub_seed(seed, 0)))
    up_dur = np.zeros(H)
    dist_of = np.array(prep.dist_of_host)
    for k, dist in enumerate(prep.dists):
        sel = np.flatnonzero(dist_of == k)
        if sel.size:
            up_dur[sel] = dist.sample(rng_up, sel.size)
    rng_uf = np.random.Generator(np.random.PCG64(sub_seed(seed, 1)))
    up_fail: list[bool] = (rng_uf.random(H) < model.upgrade_failure_p).tolist()
    rb_dur: list[float] = [0.0] * H
    if model.rollback or model.canary_hosts:
        rng_rb = np.random.Generator(np.random.PCG64(sub_seed(seed, 5)))
        rb_dur = np.maximum(model.upgrade_rollback.sample(rng_rb, H), 0.0).tolist()
    canary_fails = (
        model.canary_hosts > 0
        and model.canary_failure_p > 0
        and random.Random(sub_seed(seed, 6)).random() < model.canary_failure_p
    )
    p_mig = model.migration_failure_p
    retries = model.migration_retries
    if p_mig > 0 and N:
        rng_mf = np.random.Generator(np.random.PCG64(sub_seed(seed, 2)))
        geo = rng_mf.geometric(1.0 - p_mig, N) - 1 if p_mig < 1 else np.full(N, retries + 1)
        fails: list[int] = np.minimum(geo, retries + 1).tolist()
        frac_rng = random.Random(sub_seed(seed, 4))
    else:
        fails = [0] * N
        frac_rng = random.Random(0)
    return Draws(
        up_dur=np.maximum(up_dur, 0.0).tolist(),
        up_fail=up_fail,
        rb_dur=rb_dur,
        canary_fails=canary_fails,
        fails=fails,
        frac_rng=frac_rng,
    )
