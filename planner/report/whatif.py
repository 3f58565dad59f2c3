"""What-if sweeps: plan (and simulate) a cloud under every combination of policy changes, to
compare waves, makespan and risk side by side (`rollwave whatif`).

A sweep varies policy keys (`max_hosts_per_wave=2,4,8`, `headroom.failures=0,1,2`, any key
`Policy.with_changes` takes) and `spare_hosts`: N empty compute hosts added like the largest
existing one (`add_spare_hosts`). Every combination is solved with the planner, re-checked by the
checker, and put in time; combinations run in parallel processes. A combination without a plan is
a row with the reason, never a crash, and says which kind of "no plan" it is (`Outcome.verdict`):
*impossible* (proven: a pre-check or the exact model, with the rule families to blame and the
smallest relaxation that gives a plan when one is known) or *not found* (the planners gave up: a
time limit, a cloud too large to decide, `--planner greedy` alone; a plan may exist).

This module holds the sweep's words: the combinations (`--vary` parsed, applied to a policy, a
model and an inventory) and its rows (`Outcome`, drawn by `tradeoff`). Running a sweep is a use
case: `planner.app.whatif` (`evaluate`, `sweep`, the process pool).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from planner import rules
from planner.errors import InputError, UsageError
from planner.formats import policy_from_dict, policy_to_dict
from planner.inventory import Host, Inventory
from planner.policy import Policy
from planner.report import plots
from planner.report.whatif_windows import WINDOW_KEYS, apply_windows
from planner.report.whatif_windows import parse_value as parse_window_value
from sim.model import DEFAULT as DEFAULT_MODEL
from sim.model import SimModel, model_from_dict

SPARE = "spare_hosts"
# Policy keys a sweep may vary, and how to read their values: each rule family's (planner.rules).
POLICY_KEYS: dict[str, str] = rules.policy_keys()
KEYS: dict[str, str] = {**POLICY_KEYS, SPARE: "int"}
MODEL = "model."  # model.SECTION.KEY: any field of the simulation model file, e.g.
# model.failures.migration.probability=0,0.05 or model.network.nic_gbps=10,25
ALIASES = {"extra_spare_hosts": SPARE, "spares": SPARE, "failures": "headroom.failures"}


# ---------------------------------------------------------------------------------------------
# --vary KEY=V1,V2,...
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Vary:
    key: str
    values: tuple[Any, ...]


def _value(kind: str, raw: str, where: str) -> Any:
    text = raw.strip()
    if kind.endswith("?") and text.lower() in ("none", "null", "-"):
        return None
    base = kind.rstrip("?")
    try:
        if base == "int":
            return int(text)
        if base == "float":
            v = float(text)
            if not math.isfinite(v):
                raise ValueError
            return v
    except ValueError:
        raise UsageError(
            f"{where}: {text!r} is not {'an integer' if base == 'int' else 'a number'}"
        ) from None
    if base == "bool":
        low = text.lower()
        if low in ("true", "yes", "on", "1"):
            return True
        if low in ("false", "no", "off", "0"):
            return False
        raise UsageError(f"{where}: {text!r} is not true or false")
    if not text:
        raise UsageError(f"{where}: empty value")
    return text


def parse_vary(text: str) -> Vary:
    """`KEY=V1,V2,...` -> Vary; a clear UsageError names the option and the problem."""
    where = f"--vary {text}"
    key, sep, values = text.partition("=")
    key = ALIASES.get(key.strip(), key.strip())
    if not sep or not key:
        raise UsageError(f"{where}: expected KEY=V1,V2,... (e.g. max_hosts_per_wave=2,4,8)")
    if key.startswith(MODEL):
        return _model_vary(key, values, where)
    if key in WINDOW_KEYS:
        return _windows_vary(key, values, where)
    if key not in KEYS:
        raise UsageError(
            f"{where}: unknown key {key!r}; one of: {', '.join(sorted(KEYS))}, or "
            "model.SECTION.KEY (a field of the simulation model file)"
        )
    parts = [p for p in values.split(",")]
    if not values.strip() or any(not p.strip() for p in parts):
        raise UsageError(f"{where}: empty value in the list")
    vals = tuple(_value(KEYS[key], p, where) for p in parts)
    if key == SPARE and any(v < 0 for v in vals):
        raise UsageError(f"{where}: spare hosts must not be negative")
    if len(set(vals)) != len(vals):
        raise UsageError(f"{where}: a value is listed twice")
    return Vary(key, vals)


def _windows_vary(key: str, values: str, where: str) -> Vary:
    parts = values.split(",")
    if not values.strip() or any(not p.strip() for p in parts):
        raise UsageError(f"{where}: empty value in the list")
    vals = tuple(parse_window_value(key, p, where) for p in parts)
    if len(set(vals)) != len(vals):
        raise UsageError(f"{where}: a value is listed twice")
    return Vary(key, vals)


def _model_vary(key: str, values: str, where: str) -> Vary:
    path = key[len(MODEL) :].split(".")
    if len(path) < 2 or not all(path):
        raise UsageError(f"{where}: expected model.SECTION.KEY, e.g. model.network.nic_gbps")
    parts = values.split(",")
    if not values.strip() or any(not p.strip() for p in parts):
        raise UsageError(f"{where}: empty value in the list")
    vals = tuple(_model_value(p.strip()) for p in parts)
    if len(set(map(repr, vals))) != len(vals):
        raise UsageError(f"{where}: a value is listed twice")
    apply_model(DEFAULT_MODEL, {key: vals[0]})  # the model reader judges the key and the values
    for v in vals[1:]:
        apply_model(DEFAULT_MODEL, {key: v})
    return Vary(key, vals)


def _model_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def apply_model(model: SimModel, combo: Mapping[str, Any]) -> SimModel:
    """The model with the combination's `model.SECTION.KEY` values, re-read (and so validated,
    with the option named) by the model file's reader."""
    changes = {k: v for k, v in combo.items() if k.startswith(MODEL)}
    if not changes:
        return model
    d = model.to_dict()
    for key, value in changes.items():
        *sections, leaf = key[len(MODEL) :].split(".")
        node = d
        for sec in sections:
            nxt = node.get(sec)
            if not isinstance(nxt, dict):
                nxt = node[sec] = {}
            node = nxt
        node[leaf] = value
    label = ", ".join(f"{k}={v}" for k, v in changes.items())
    try:
        return model_from_dict(d, file=f"--vary {label}")
    except InputError as exc:
        raise UsageError("; ".join(f"--vary {p}" for p in exc.problems)) from None


def combinations(varies: Sequence[Vary]) -> list[dict[str, Any]]:
    """Every combination, the first --vary varying slowest (as nested loops read)."""
    keys = [v.key for v in varies]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise UsageError(f"--vary {dup}: given twice; list every value in one --vary")
    return [
        dict(zip(keys, vals, strict=True))
        for vals in itertools.product(*(v.values for v in varies))
    ]


def apply_policy(policy: Policy, combo: Mapping[str, Any]) -> Policy:
    """The policy with the combination's policy keys, validated by the policy reader."""
    changes = {k: v for k, v in combo.items() if k in POLICY_KEYS}
    if not changes:
        return apply_windows(policy, combo)
    d = policy_to_dict(policy)
    for key, value in changes.items():
        if key.startswith("headroom."):
            d["headroom"][key.split(".", 1)[1]] = value
        else:
            d[key] = value
    label = ", ".join(f"{k}={v}" for k, v in changes.items())
    try:
        return apply_windows(policy_from_dict(d, file=f"--vary {label}"), combo)
    except InputError as exc:
        raise UsageError("; ".join(f"--vary {p}" for p in exc.problems)) from None


# ---------------------------------------------------------------------------------------------
# Spare hosts: a pure inventory transform
# ---------------------------------------------------------------------------------------------
def largest_compute_host(inv: Inventory) -> Host:
    """The compute host with the most effective memory, then vCPU, then disk (then by name)."""
    computes = [h for h in inv.compute_hosts if h.available] or list(inv.compute_hosts)
    if not computes:
        raise UsageError("spare_hosts: the inventory has no compute host to copy")
    return max(
        computes,
        key=lambda h: (
            h.effective("MEMORY_MB"),
            h.effective("VCPU"),
            h.effective("DISK_GB"),
            [-ord(c) for c in h.name],
        ),
    )


def add_spare_hosts(inv: Inventory, n: int, version: str | None = None) -> Inventory:
    """`inv` with `n` empty, enabled compute hosts built like the largest existing one, spread
    round-robin over the AZs (sorted), named `spare-01`, ... New hosts are installed with
    `version` (the target release: they need no upgrade and take evacuees from the first wave).
    """
    if n <= 0:
        return inv
    model = largest_compute_host(inv)
    azs: list[str | None] = list(inv.azs) or [model.az]
    names = {h.name for h in inv.hosts}
    width = max(2, len(str(n)))
    spares: list[Host] = []
    i = 0
    while len(spares) < n:
        i += 1
        name = f"spare-{i:0{width}d}"
        if name in names:
            continue
        az = azs[len(spares) % len(azs)]
        spares.append(
            replace(
                model,
                name=name,
                az=az,
                rack=f"{az}-spare" if az else "spare",
                version=version or model.version,
                enabled=True,
                up=True,
                disabled_reason=None,
            )
        )
    return Inventory(
        cloud=inv.cloud,
        taken_at=inv.taken_at,
        hosts=(*inv.hosts, *spares),
        vms=inv.vms,
        server_groups=inv.server_groups,
        ha_groups=inv.ha_groups,
        digest=None,  # not a file: plans made for it record no digest
        source=None,
    )


def apply(inv: Inventory, policy: Policy, combo: Mapping[str, Any]) -> tuple[Inventory, Policy]:
    p = apply_policy(policy, combo)
    return add_spare_hosts(inv, int(combo.get(SPARE, 0)), p.target_version), p


# ---------------------------------------------------------------------------------------------
# One combination
# ---------------------------------------------------------------------------------------------
VERDICTS: dict[str, str] = {
    "ok": "a plan the checker accepts",
    "impossible": "no plan exists: proven (a pre-check, or the exact model on a small cloud)",
    "not_found": "no plan found, not proven impossible: a plan may exist (the planners stopped "
    "at a time limit, or the cloud is too large to decide, or the greedy planner alone gave up)",
    "invalid": "the checker rejected the planner's plan (a bug)",
    "error": "the combination could not be planned (e.g. a value the policy rejects)",
}


@dataclass(frozen=True)
class Outcome:
    """One row of a sweep. Metrics are None when there is no plan (see `reason`)."""

    combo: dict[str, Any]
    status: str  # "ok", "infeasible", "invalid" (the checker rejected the plan) or "error"
    reason: str | None = None
    # status "infeasible" only: True when proven impossible, False when merely not found
    proven: bool | None = None
    # a proof's rule families (InfeasibleError.blame): key, rule, relax, relaxing_alone, ...
    blame: tuple[dict[str, Any], ...] = ()
    waves: int | None = None
    waves_lower_bound: int | None = None
    migrations: int | None = None
    migrations_per_vm: float | None = None
    vms_moved_twice: int | None = None
    min_headroom_ratio: float | None = None
    tightest: str | None = None
    failures_absorbed: int | None = None  # at the worst wave: largest hosts it could lose
    makespan_s: float | None = None  # the estimate (deterministic, no failures)
    makespan_p50_s: float | None = None
    makespan_p95_s: float | None = None
    breach_probability: float | None = None  # headroom below the policy's requirement
    any_breach_probability: float | None = None  # any invariant the simulator checks
    stall_probability: float | None = None
    failures_modelled: bool | None = None  # the model injects failures (None: not simulated)
    runs: int = 0
    solve_s: float = 0.0
    simulate_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    # the plan's predictions (its summary): makespan as the policy runs it (pipelined or
    # lock-step), every guest's downtime summed, VMs per remedy
    predicted_makespan_s: float | None = None
    downtime_s: float | None = None
    remedies: dict[str, int] = field(default_factory=dict)
    # In the calendar (with a start): the plan's schedule (windows, last host done), and with
    # runs the simulated windows used (P50, max), P(more than planned), last host done P50/P95.
    windows_planned: int | None = None
    last_done: str | None = None
    windows_used_p50: float | None = None
    windows_used_max: float | None = None
    p_more_windows: float | None = None
    finish_p50: str | None = None
    finish_p95: str | None = None
    # how the predicted makespan runs: the policy's execution (pipelined or lockstep)
    predicted_execution: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def verdict(self) -> str:
        """One of `VERDICTS`: "infeasible" split into "impossible" (proven) and "not_found"."""
        if self.status == "infeasible":
            return "impossible" if self.proven else "not_found"
        return self.status

    def relaxations(self) -> list[str]:
        """What the proof says gives a plan, smallest first: one-step relaxations that are
        enough (e.g. "max_hosts_per_wave 3 is enough"), then families whose relaxing alone
        gives a plan (their ways to relax). Empty when the proof names none (or no proof)."""
        if self.verdict != "impossible":
            return []
        # a step may be enough where dropping its family alone is not (N+k-1 is every group's)
        steps = [
            str(b["one_step"])
            for b in self.blame
            if str(b.get("one_step") or "").endswith(" is enough")
        ]
        stepped = {b.get("key") for b in self.blame if str(b.get("one_step") or "") in steps}
        alone = [
            f"relax {b['rule']}: {b['relax']}"
            for b in self.blame
            if b.get("relaxing_alone") and b.get("key") not in stepped
        ]
        return list(dict.fromkeys(steps + alone))

    def blamed(self) -> str:
        """A proof's rule families ("a + b + c"); without families (a proof that rests on no
        policy rule: the VMs do not fit), its first reason."""
        if self.blame:
            return " + ".join(str(b["rule"]) for b in self.blame)
        first = (self.reason or "").split("; ")[0]
        return re.sub(r"^proven impossible \([^)]*\): ", "", first)

    def summary(self) -> str:
        """The row's outcome in a line: "ok", "impossible: <families>; <relaxation>",
        "not found (not proven impossible): <first reason>", or the status and reason."""
        v = self.verdict
        first = (self.reason or "").split("; ")[0]
        if v == "ok":
            return "ok"
        if v == "impossible":
            fix = self.relaxations()
            return f"impossible: {self.blamed()}" + (f"; {fix[0]}" if fix else "")
        if v == "not_found":
            return f"not found (not proven impossible): {first}"
        return f"{v}: {first}"

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.combo.items())

    def to_dict(self) -> dict[str, Any]:
        d = {
            **self.combo,
            "status": self.status,
            "reason": self.reason,
            "waves": self.waves,
            "waves_lower_bound": self.waves_lower_bound,
            "migrations": self.migrations,
            "migrations_per_vm": self.migrations_per_vm,
            "vms_moved_twice": self.vms_moved_twice,
            "min_headroom_ratio": self.min_headroom_ratio,
            "tightest": self.tightest,
            "failures_absorbed": self.failures_absorbed,
            "makespan_estimate_s": _round(self.makespan_s),
            "makespan_p50_s": _round(self.makespan_p50_s),
            "makespan_p95_s": _round(self.makespan_p95_s),
            "breach_probability": self.breach_probability,
            "any_breach_probability": self.any_breach_probability,
            "stall_probability": self.stall_probability,
            "runs": self.runs,
            "solve_s": round(self.solve_s, 3),
            "simulate_s": round(self.simulate_s, 3),
            # added after every older field: CSV columns keep their places
            "outcome": self.verdict,
            "proven": self.proven,
            "blame": [dict(b) for b in self.blame],
            "relaxations": self.relaxations(),
            "predicted_makespan_s": _round(self.predicted_makespan_s),
            "predicted_downtime_s": _round(self.downtime_s),
            "remedies": dict(self.remedies),
            "failures_modelled": self.failures_modelled,
        }
        if self.windows_planned is not None:  # a sweep in the calendar (--start)
            d |= self._calendar()
        return d

    def _calendar(self) -> dict[str, Any]:
        return {
            "windows_planned": self.windows_planned,
            "last_done_planned": self.last_done,
            "windows_used_p50": self.windows_used_p50,
            "windows_used_max": self.windows_used_max,
            "p_more_windows_than_planned": self.p_more_windows,
            "finish_p50": self.finish_p50,
            "finish_p95": self.finish_p95,
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def tradeoff(results: Sequence[Outcome], varies: Sequence[Vary]) -> Any:
    """The sweep's trade-off plot (`rollwave whatif --plot`): every row with a plan, labelled by
    its values in the order of `varies`; rows without one listed under it."""

    def short(r: Outcome) -> str:
        return " / ".join(str(r.combo[v.key]) for v in varies)

    points = [
        plots.TradeoffPoint(
            short(r),
            r.makespan_p50_s if r.makespan_p50_s is not None else (r.makespan_s or 0.0),
            r.makespan_p95_s,
            r.breach_probability,
            r.failures_absorbed,
            r.predicted_makespan_s,
            r.downtime_s,
            r.predicted_execution,
        )
        for r in results
        if r.ok and r.makespan_s is not None
    ]
    infeasible = [(r.label(), r.summary()) for r in results if not r.ok]
    return plots.tradeoff_figure(points, infeasible, key_order=" / ".join(v.key for v in varies))
