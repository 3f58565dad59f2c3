"""Shared test settings: hypothesis profiles (derandomized in CI, so a red run is reproducible)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# `ci`: the same examples on every run (derandomize), no deadline (shared 2-core machines).
# `dev` (the default outside CI): fresh random examples on every run, to find new bugs.
settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
