"""Release order (issue 18): labels are OpenStack releases, ordered; no move from a newer compute
to an older one at any step, in the checker and in every planner; warnings for labels that are
no release and for computes older than Nova's support envelope."""

from __future__ import annotations

import pytest

from planner import releases
from planner.checker import check_plan
from planner.errors import InfeasibleError
from planner.inventory import Inventory
from planner.rules import version
from solver.solve import SolveOptions, solve
from tests.clouds import Cloud, make_plan, mv, policy, wave


# -- the table ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("a", "b"),
    [("2025.1", "Epoxy"), ("epoxy", "Epoxy"), (" 2023.1 ", "antelope"), ("2027.1", "Indri")],
)
def test_a_release_id_and_its_code_name_are_one_release(a: str, b: str) -> None:
    assert releases.order(a) == releases.order(b) is not None


def test_releases_are_ordered() -> None:
    labels = ["Yoga", "Zed", "2023.1", "2023.2", "Caracal", "2024.2", "2025.1", "Flamingo"]
    labels += ["2026.1", "Hibiscus", "2027.1", "2031.2"]
    got = [releases.order(x) or -1 for x in labels]
    assert -1 not in got and got == sorted(got) and len(set(got)) == len(got)
    assert [releases.name(releases.order(x) or 0) for x in ("Zed", "2024.2", "2031.2")] == [
        "Zed",
        "2024.2 Dalmatian",
        "2031.2",
    ]


@pytest.mark.parametrize("label", ["v1", "2025.3", "2022.1", "27.0.0", "", "2025.1.2"])
def test_other_labels_are_no_release(label: str) -> None:
    assert releases.order(label) is None


@pytest.mark.parametrize(
    ("controllers", "oldest"),
    [
        # nova/objects/service.py OLDEST_SUPPORTED_SERVICE_VERSION on each stable branch
        ("2023.1", "Yoga"),
        ("2024.1", "2023.1"),
        ("2025.1", "2024.1"),
        ("2025.2", "2025.1"),
        ("2026.1", "2025.1"),
        ("2026.2", "2026.1"),  # master, for Hibiscus
        ("Zed", "Yoga"),  # before SLURP: one release
    ],
)
def test_novas_support_envelope(controllers: str, oldest: str) -> None:
    got = releases.oldest_compute(releases.order(controllers) or 0)
    assert got == releases.order(oldest)


# -- the checker: a pass/fail pair ----------------------------------------------------------------
def _mixed() -> Inventory:
    """cmp-new runs 2025.1 with two VMs; cmp-old runs 2024.2, cmp-spare 2025.1, both empty."""
    c = Cloud("mixed-releases")
    c.host("cmp-new", version="2025.1").host("cmp-old", version="2024.2")
    c.host("cmp-spare", version="2025.1")
    c.vm("vm-1", "cmp-new").vm("vm-2", "cmp-new")
    return c.build()


def test_version_order_fails_newer_to_older_before_any_upgrade() -> None:
    """2025.1 -> 2024.2, neither upgraded: the old rule (target only) passed it."""
    inv = _mixed()
    pol = policy(1, failures=0)
    plan = make_plan(
        pol,
        wave(1, ["cmp-new"], [mv("vm-1", "cmp-new", "cmp-old"), mv("vm-2", "cmp-new", "cmp-old")]),
        wave(2, ["cmp-old"], [mv("vm-1", "cmp-old", "cmp-new"), mv("vm-2", "cmp-old", "cmp-new")]),
        wave(3, ["cmp-spare"]),
    )
    report = check_plan(inv, plan)
    bad = [v for v in report.violations if v.rule == "version"]
    assert [(v.wave, v.objects) for v in bad] == [
        (1, ("vm-1", "cmp-new", "cmp-old")),
        (1, ("vm-2", "cmp-new", "cmp-old")),
    ]
    assert "cmp-new runs 2025.1, cmp-old runs 2024.2" in bad[0].message


def test_version_order_passes_older_to_newer_and_equal() -> None:
    inv = _mixed()
    pol = policy(1, failures=0)
    plan = make_plan(
        pol,
        wave(1, ["cmp-old"]),  # empty; upgraded to 2025.2: now the newest
        wave(2, ["cmp-new"], [("vm-1", "cmp-new", "cmp-spare"), ("vm-2", "cmp-new", "cmp-old")]),
        wave(3, ["cmp-spare"], [mv("vm-1", "cmp-spare", "cmp-new")]),
    )  # fmt: skip
    report = check_plan(inv, plan)
    assert report.ok, [str(v) for v in report.violations]


def test_labels_that_are_no_release_keep_the_equality_rule_and_warn_once() -> None:
    c = Cloud("labels")
    c.host("cmp-1", version="blue").host("cmp-2", version="green").host("cmp-3", version="blue")
    c.vm("vm-1", "cmp-1")
    inv = c.build()
    pol = policy(1, failures=0, target_version="red")
    ok = make_plan(
        pol,
        wave(1, ["cmp-1"], [mv("vm-1", "cmp-1", "cmp-2")]),
        wave(2, ["cmp-2"], [mv("vm-1", "cmp-2", "cmp-1")]),
        wave(3, ["cmp-3"]),
    )
    report = check_plan(inv, ok)
    assert report.ok, [str(v) for v in report.violations]
    warned = [w for w in report.warnings if w.rule == "version"]
    assert len(warned) == 1 and "blue, green, red" in warned[0].message
    bad = make_plan(
        pol,
        wave(1, ["cmp-2"]),
        wave(2, ["cmp-1"], [mv("vm-1", "cmp-1", "cmp-2")]),
        wave(3, ["cmp-3"], [mv("vm-1", "cmp-2", "cmp-3")]),  # upgraded -> not upgraded
    )
    assert [v.wave for v in check_plan(inv, bad).violations if v.rule == "version"] == [3]


def test_a_skip_past_novas_envelope_is_warned() -> None:
    c = Cloud("skip").host("cmp-1", version="2024.1").host("cmp-2", version="2025.1")
    inv = c.build()
    assert version.warnings(inv, policy(target_version="2025.1")) == []
    [w] = version.warnings(inv, policy(target_version="2025.2"))
    assert w.startswith("1 computes run 2024.1 (cmp-1): Nova at 2025.2 Flamingo supports ")
    assert "back to 2025.1 Epoxy only" in w
    plan = make_plan(policy(1, failures=0), wave(1, ["cmp-1"]), wave(2, ["cmp-2"]))
    assert [w.rule for w in check_plan(inv, plan).warnings] == ["version"]


# -- every planner keeps it -----------------------------------------------------------------------
def _trap() -> Inventory:
    """cmp-a (2025.1, two VMs) goes first; cmp-b (2024.2) has the most room, cmp-c (2025.1)
    just enough: the VMs may only go to cmp-c."""
    c = Cloud("trap")
    c.host("cmp-a", version="2025.1").host("cmp-b", version="2024.2", vcpu=64, ram_mb=262144)
    c.host("cmp-c", version="2025.1")
    c.vm("vm-1", "cmp-a").vm("vm-2", "cmp-a")
    return c.build()


@pytest.mark.parametrize("planner", ["greedy", "cpsat", "exact"])
def test_no_planner_proposes_a_move_to_an_older_compute(planner: str) -> None:
    inv = _trap()
    assert version.binds(inv, policy())
    pol = policy(1, failures=0, first=("cmp-a",))
    out = solve(inv, pol, SolveOptions(planner=planner, effort=0.3, fallback=False))  # type: ignore[arg-type]
    assert out.check is not None
    assert out.check.ok, [str(v) for v in out.check.violations]
    first = out.plan.waves[0]
    assert first.hosts == ("cmp-a",)
    assert {m.dst for m in first.migrations} == {"cmp-c"}


@pytest.mark.parametrize("planner", ["greedy", "cpsat", "exact"])
def test_with_no_newer_or_equal_destination_no_plan_is_proposed(planner: str) -> None:
    c = Cloud("nowhere").host("cmp-a", version="2025.1").host("cmp-b", version="2024.2")
    inv = c.vm("vm-1", "cmp-a").build()
    pol = policy(1, failures=0, first=("cmp-a",))
    with pytest.raises(InfeasibleError) as e:
        solve(inv, pol, SolveOptions(planner=planner, effort=0.3, fallback=False))  # type: ignore[arg-type]
    assert e.value.proven and "version" in [b["key"] for b in e.value.blame], e.value.render()


def test_one_release_everywhere_leaves_the_models_alone() -> None:
    c = Cloud("plain").host("cmp-1").host("cmp-2")
    assert not version.binds(c.build(), policy())
