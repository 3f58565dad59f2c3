"""The published JSON Schemas agree with the reader: what rollwave writes validates, and every
structural bad-input case the reader rejects, the schema rejects too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.formats import (
    KINDS,
    inventory_to_dict,
    load_inventory,
    parse_bytes,
    plan_to_dict,
    policy_to_dict,
    save_inventory,
    save_plan,
    schema,
    schema_text,
)
from planner.generate import GenerateSpec, default_policy, generate
from planner.inventory import Inventory
from planner.policy import Policy, selector_problem
from solver.greedy import greedy_plan
from tests.clouds import NAMED
from tests.strategies import clouds_and_policies
from tests.test_formats import (
    _DELETE,
    INVENTORY_CASES,
    PLAN_CASES,
    POLICY_CASES,
    at,
    inventory_doc,
    plan_doc,
    policy_doc,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "planner" / "examples"

# Problems only the reader can see: uniqueness and references between records, and comparisons
# between two fields. Every other bad-input case must fail the schema as well.
SEMANTIC = (
    "unknown host",
    "unknown server group",
    "duplicate",
    "controllers host no VMs",
    "is more",
    "listed twice",
    # comparisons between fields, and what only a reader knows (the zone database); JSON has no
    # NaN or infinity (YAML does), so the schema cannot refuse them
    "must come last",
    "needs allow_stop",
    "never opens",
    "unknown time zone",
    "finite number",
)


def validator(kind: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema(kind))


def errors(kind: str, doc: Any) -> list[str]:
    return [e.message for e in validator(kind).iter_errors(doc)]


@pytest.mark.parametrize("kind", KINDS)
def test_schemas_are_valid_draft_2020_12(kind: str) -> None:
    s = schema(kind)
    jsonschema.Draft202012Validator.check_schema(s)
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert s["properties"]["kind"] == {"const": kind}
    assert json.loads(schema_text(kind)) == s


def test_the_plan_schema_embeds_the_policy_schema() -> None:
    pol, plan = schema("policy")["$defs"], schema("plan")["$defs"]
    for key in ("policy", "selectors", "limit", "format_version", "remedy", "window"):
        assert plan[key] == pol[key], key


def test_bundled_examples_validate() -> None:
    inv = parse_bytes((EXAMPLES / "small.json").read_bytes(), "small.json")
    pol = parse_bytes((EXAMPLES / "small-policy.yaml").read_bytes(), "small-policy.yaml")
    assert errors("inventory", inv) == []
    assert errors("policy", pol) == []


def test_generated_files_validate(tmp_path: Path) -> None:
    spec = GenerateSpec(hosts=16, seed=5, utilisation=0.4, upgraded_hosts=2)
    save_inventory(generate(spec), tmp_path / "inv.json")
    inv = load_inventory(tmp_path / "inv.json")
    policy = default_policy(spec)
    plan = greedy_plan(inv, policy, inventory_sha256=inv.digest or "")
    save_plan(plan, tmp_path / "plan.json")
    assert errors("inventory", json.loads((tmp_path / "inv.json").read_text())) == []
    assert errors("policy", policy_to_dict(policy)) == []
    assert errors("plan", json.loads((tmp_path / "plan.json").read_text())) == []


@pytest.mark.parametrize("name", sorted(NAMED))
def test_fixture_documents_validate(name: str) -> None:
    fx = NAMED[name]()
    assert errors("inventory", inventory_to_dict(fx.inventory)) == []
    assert errors("policy", policy_to_dict(fx.policy)) == []
    assert errors("plan", plan_to_dict(fx.plan)) == []


@settings(max_examples=40)
@given(clouds_and_policies())
def test_random_documents_validate(case: tuple[Inventory, Policy]) -> None:
    inv, policy = case
    assert errors("inventory", json.loads(json.dumps(inventory_to_dict(inv)))) == []
    assert errors("policy", policy_to_dict(policy)) == []


def _cases(table: list[tuple[str, Any, str]]) -> list[Any]:
    return [
        pytest.param(path, value, expected, id=f"{path}={value!r}"[:60])
        for path, value, expected in table
        if not any(s in expected for s in SEMANTIC)
    ]


@pytest.mark.parametrize(("path", "value", "expected"), _cases(INVENTORY_CASES))
def test_structural_inventory_problems_fail_the_schema(
    path: str, value: Any, expected: str
) -> None:
    assert errors("inventory", at(inventory_doc(), path, value)), expected


@pytest.mark.parametrize(("path", "value", "expected"), _cases(POLICY_CASES))
def test_structural_policy_problems_fail_the_schema(path: str, value: Any, expected: str) -> None:
    assert errors("policy", at(policy_doc(), path, value)), expected


@pytest.mark.parametrize(("path", "value", "expected"), _cases(PLAN_CASES))
def test_structural_plan_problems_fail_the_schema(path: str, value: Any, expected: str) -> None:
    assert errors("plan", at(plan_doc(), path, value)), expected


@pytest.mark.parametrize(
    ("change", "ok"),
    [
        ({"kind": "plan"}, False),
        ({"kind": _DELETE}, False),
        ({"format_version": "2.0"}, False),
        ({"format_version": 2}, False),
        ({"format_version": "one"}, False),
        ({"format_version": True}, False),
        ({"format_version": _DELETE}, False),
        ({"format_version": "1.7"}, True),
        ({"format_version": 1}, True),
        ({"format_version": 1.3}, True),
        ({"x_unknown": {"a": 1}}, True),
    ],
)
def test_header_rules_agree(change: dict[str, Any], ok: bool) -> None:
    doc = inventory_doc()
    for k, v in change.items():
        doc = at(doc, k, v) if k in doc or v is not _DELETE else doc
    assert (errors("inventory", doc) == []) is ok


def test_semantic_cases_are_really_left_to_the_reader() -> None:
    """The SEMANTIC exemption is for cases the schema cannot express; make sure each one is
    schema-valid, so the list does not quietly hide a structural gap."""
    semantic = [c for c in INVENTORY_CASES if any(s in c[2] for s in SEMANTIC)]
    assert len(semantic) >= 5
    for path, value, expected in semantic:
        assert errors("inventory", at(inventory_doc(), path, value)) == [], expected


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(["=", " ", "\t", "a", "z", "r", "o", "l", "e", "*", "-"])))
def test_selector_rules_agree(selector: str) -> None:
    reader_ok = bool(selector.strip()) and selector_problem(selector) is None
    doc = {"format_version": "1.0", "kind": "policy", "max_hosts_per_wave": 1, "last": [selector]}
    assert (errors("policy", doc) == []) is reader_ok


@pytest.mark.parametrize(
    ("selector", "ok"),
    [
        ("cmp-00*", True),
        ("role=controller", True),
        (" az = az1 ", True),
        ("aggregate=gpu*", True),
        ("version=2025.1", True),
        ("roel=controller", False),
        ("az=", False),
        ("=az1", False),
        ("  ", False),
    ],
)
def test_selector_examples(selector: str, ok: bool) -> None:
    doc = {"format_version": "1.0", "kind": "policy", "max_hosts_per_wave": 1, "first": [selector]}
    assert (errors("policy", doc) == []) is ok
    assert (bool(selector.strip()) and selector_problem(selector) is None) is ok


def test_plans_and_policies_with_every_optional_field_validate() -> None:
    import datetime as dt
    from dataclasses import replace

    from planner.formats import plan_from_dict, policy_from_dict
    from planner.plan import Predicted, Schedule, ScheduledWindow
    from tests.clouds import mixed_methods

    pol = policy_from_dict(
        {
            "max_hosts_per_wave": 1,
            "allow_stop": True,
            "non_converging": ["force-complete", "cold", "stop", "refuse"],
            "max_migration_s": 3600,
            "max_downtime_s": 30,
            "execution": "lockstep",
            "windows": [
                {"days": "Mon-Fri", "start": "22:00", "end": "06:00", "tz": "Europe/Berlin"},
                {"days": ["sat", "sun"], "start": "0:00", "end": "24:00", "tz": "UTC"},
            ],
        }
    )
    assert errors("policy", policy_to_dict(pol)) == []
    fx = mixed_methods()
    w = fx.plan.waves[1]
    m = replace(
        w.migrations[0],
        force_complete_after_s=600.0,
        remedy="force-complete",
        predicted=Predicted(1.5, 640.0, 8.1e9, "aborted"),
    )
    s = replace(w.stops[0], remedy="stop", predicted=Predicted(1300.0))
    tz = dt.timezone(dt.timedelta(hours=1))
    t0 = dt.datetime(2026, 12, 14, 22, tzinfo=tz)
    sched = Schedule(t0, (ScheduledWindow(1, t0, t0 + dt.timedelta(hours=8), ("cmp-1",)),), t0)
    waves = (
        fx.plan.waves[0],
        replace(w, migrations=(m, *w.migrations[1:]), stops=(s,), predicted_s=900.0),
        fx.plan.waves[2],
    )
    plan = replace(fx.plan, policy=pol, waves=waves, schedule=sched)
    doc = json.loads(json.dumps(plan_to_dict(plan)))
    assert errors("plan", doc) == []
    assert plan_from_dict(doc) == plan
