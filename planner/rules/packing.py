"""Bin-packing lower bounds: waves as bins that hold at most a budget of weight and at most
max_hosts_per_wave hosts. The headroom's knapsacks and the cap on a wave's migrations both use
them (`planner.rules.headroom`, `planner.rules.migrations_per_wave`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def packing_waves(weights: Sequence[float], budget: float, per_wave: int) -> int:
    """A lower bound on the bins (waves) needed to pack items of these weights into bins whose
    weights add up to at most `budget` and that hold at most `per_wave` items each; 0 when it
    says nothing (a budget of zero or less, or an item that fits nowhere: other bounds and
    pre-checks speak then)."""
    n = len(weights)
    if n == 0 or per_wave < 1:
        return 0
    M = per_wave
    w = np.sort(np.asarray(weights, dtype=np.float64))[::-1]
    tol = 1e-9 * (abs(budget) + float(np.abs(w).sum()) + 1.0)
    best = math.ceil(n / M)
    if budget <= tol or M == 1:
        return best
    total = float(w.sum())
    best = max(best, math.ceil((total - tol) / budget))
    # Items of negative weight (hosts that stopped VMs fill beyond their share) loosen every
    # bin they join: two heavy items conflict only if even the M - 2 lightest cannot save them.
    neg = float(np.minimum(w, 0.0)[::-1][: max(0, M - 2)].sum())
    room = budget - neg
    if w[0] > room + tol:
        return 0  # an item that fits in no bin: not this bound's business
    big = w > room / 2 + tol
    nb = int(big.sum())
    if nb:
        # Heavy items pairwise conflict: a bin each. Light items join them only where they fit
        # beside one, at most M - 1 a bin; fitting is a threshold, so the heaviest heavy items,
        # which fewest light ones fit beside, take their share first (a greedy that is exact on
        # such nested neighbourhoods, weights of several light items together ignored).
        small = w[~big]
        rising = np.sort(small)
        joined = 0
        for wb in w[big]:  # heaviest first
            fit = int(np.searchsorted(rising, room - wb + tol, side="right"))
            joined += max(0, min(M - 1, fit - joined))
        best = max(best, nb + math.ceil((len(small) - joined) / M))
        lightest_big = float(w[big].min())
        alone = small[small + lightest_big > room + tol]  # fit beside no heavy item
        spare = float((budget - w[big]).sum())  # what heavy items' bins leave for the others
        best = max(best, nb + math.ceil(max(0.0, float(small.sum()) - spare - tol) / budget))
        lone = float(alone.sum()) + float(np.minimum(small, 0.0).sum())
        best = max(best, nb + math.ceil(max(0.0, lone - tol) / budget))
    return best
