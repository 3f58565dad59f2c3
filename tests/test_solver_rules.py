"""Every rule family the checker judges is kept by every model of the solver, or the model says
why it need not be (`solver.rules`): a family added to `planner.rules` without its encodings
fails here, instead of being hidden by `solve()`'s fallbacks (a worse plan, or none)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from planner.rules import FAMILIES
from planner.rules.base import Family, Out, State, WaveStep
from solver.rules import ENCODINGS, MODELS, gaps, hooks, relaxed
from solver.rules.base import Builtin, Encodings, Relaxed, WaveHooks
from solver.solve import SolveOptions, solve
from tests import solver_clouds as sc


def test_every_family_is_encoded_or_declared_in_every_model() -> None:
    assert gaps() == []
    assert set(ENCODINGS) == {f.name for f in FAMILIES}


def test_a_family_without_encodings_fails_the_check() -> None:
    def silent(state: State, step: WaveStep, out: Out) -> None:
        return None

    new = Family(name="new_rule", rules={"new_rule": "a new rule"}, wave=silent)
    assert gaps((*FAMILIES, new)) == ["new_rule: no encodings in any model"]
    partly = Encodings(
        "new_rule",
        greedy=Builtin("kept by construction"),
        waves=WaveHooks(),  # hooks, but none set
        placement=Relaxed(""),  # relaxed without a reason
        exact=Relaxed("the checker re-judges"),
    )
    assert gaps((*FAMILIES, new), {**ENCODINGS, "new_rule": partly}) == [
        "new_rule: the waves model has no encoding",
        "new_rule: the placement model gives no reason",
    ]


def test_the_models_call_hooks_in_the_registrys_order() -> None:
    for model in MODELS:
        found = hooks(model)
        expect = [
            ENCODINGS[f.name].of(model)
            for f in FAMILIES
            if not isinstance(ENCODINGS[f.name].of(model), (Builtin, Relaxed))
        ]
        assert found == expect


def test_no_planner_relaxes_a_family_today() -> None:
    cloud = sc.three_plus_spare()
    for planner in ("cpsat", "greedy", "exact"):
        assert relaxed(planner, cloud.inventory, cloud.policy) == []


def test_a_relaxed_family_is_noted_in_the_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = sc.three_plus_spare()
    enc = ENCODINGS["anti_affinity"]
    monkeypatch.setitem(ENCODINGS, "anti_affinity", replace(enc, greedy=Relaxed("a test says so")))
    out = solve(cloud.inventory, cloud.policy, SolveOptions(planner="greedy", effort=0.3))
    assert out.check is not None and out.check.ok
    assert any(
        "the greedy planner does not keep anti_affinity (a test says so)" in n for n in out.notes
    ), out.notes
    plain = solve(cloud.inventory, cloud.policy, SolveOptions(planner="cpsat", effort=0.3))
    assert not any("does not keep" in n for n in plain.notes)
