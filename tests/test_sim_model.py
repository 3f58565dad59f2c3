"""The model file: defaults, selectors, distributions, located errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from planner.errors import InputError
from planner.inventory import Inventory
from sim.crosscloud import CrossCloudSettings
from sim.engine import prepare, simulate
from sim.migration import NovaSettings, QemuSettings
from sim.model import DEFAULT, PARAMS, Distribution, SimModel, doc_table, model_from_dict
from sim.params import Declared
from sim.timeline import result_to_dict
from tests.sim_fixtures import host, plan, policy, vm

HEADER = {"format_version": "1.0", "kind": "sim-model"}


def test_every_key_is_read() -> None:
    m = model_from_dict(
        {
            **HEADER,
            "network": {
                "nic_gbps": 25,
                "efficiency": 0.9,
                "switchover_gbps": 100,
                "hosts": [{"match": "role=compute", "nic_gbps": 40}],
            },
            "nova": {
                "max_concurrent_live_migrations": 3,
                "live_migration_downtime": 1000,
                "live_migration_downtime_steps": 5,
                "live_migration_downtime_delay": 30,
                "live_migration_completion_timeout": 0,
                "live_migration_timeout_action": "force_complete",
                "live_migration_permit_auto_converge": True,
                "live_migration_permit_post_copy": True,
                "live_migration_bandwidth": 500,
            },
            "qemu": {
                "switchover_check": "per-pass",
                "resume_ms": 5,
                "postcopy_switch_ms": 20,
                "throttle_initial": 30,
                "throttle_increment": 5,
                "throttle_max": 90,
                "throttle_trigger_threshold": 60,
            },
            "executor": {
                "max_inbound_migrations": None,
                "orchestration_overhead_s": 3,
                "disable_s": 1,
                "enable_s": 2,
                "retry_delay_s": 4,
            },
            "guests": {"default_dirty_rate_mb_s": 50, "shutdown_s": 10, "boot_s": 20},
            "upgrade": {
                "compute": 600,
                "controller": {"uniform": [100, 200]},
                "hosts": [{"match": "cmp-*", "duration": {"triangular": [1, 2, 3]}}],
            },
            "failures": {
                "migration": {"probability": 0.1, "retries": 1},
                "upgrade": {"probability": 0.2},
                "host_crash": {"probability": 0.3, "window_s": [10, 20]},
            },
        },
        "m.yaml",
    )
    assert (
        m.nic_gbps == 25 and m.switchover_gbps == 100 and m.nic_by_host == (("role=compute", 40.0),)
    )
    assert m.max_concurrent_live_migrations == 3 and m.max_inbound_migrations is None
    n = m.nova
    assert (n.downtime_ms, n.downtime_steps, n.downtime_delay_s, n.completion_timeout_s) == (
        1000,
        5,
        30,
        0,
    )
    assert n.timeout_action == "force_complete" and n.permit_post_copy and n.bandwidth_mib_s == 500
    assert not n.auto_converge  # post-copy permitted wins, as in Nova
    assert m.qemu.check == "per-pass" and m.qemu.resume_s == pytest.approx(0.005)
    assert m.upgrade_compute == Distribution("fixed", 600.0)
    assert m.upgrade_by_host == (("cmp-*", Distribution("triangular", 1.0, 2.0, 3.0)),)
    assert (m.migration_failure_p, m.migration_retries, m.upgrade_failure_p) == (0.1, 1, 0.2)
    assert m.crash_p == 0.3 and m.crash_window_s == (10.0, 20.0)
    assert model_from_dict(m.to_dict()).to_dict() == m.to_dict()


def test_defaults_are_novas_and_10_gbe() -> None:
    assert model_from_dict(HEADER).to_dict() == DEFAULT.to_dict()
    assert DEFAULT.max_concurrent_live_migrations is None  # the plan's policy decides
    assert DEFAULT.bandwidth_cap == float("inf")


@pytest.mark.parametrize(
    ("doc", "where", "what"),
    [
        (
            {"nova": {"live_migration_downtime_steps": 2}},
            "nova.live_migration_downtime_steps",
            "must be at least 3",
        ),
        (
            {"nova": {"live_migration_permit_post_copy": "yes"}},
            "nova.live_migration_permit_post_copy",
            "must be true or false",
        ),
        ({"qemu": {"switchover_check": "sometimes"}}, "qemu.switchover_check", "expected one of"),
        ({"qemu": {"throttle_max": 150}}, "qemu.throttle_max", "at most 100"),
        ({"upgrade": {"compute": {"normal": [1, 2]}}}, "upgrade.compute", "must be seconds or"),
        (
            {"upgrade": {"compute": {"lognormal": {"median": -1}}}},
            "upgrade.compute.lognormal.median",
            "must be > 0",
        ),
        ({"upgrade": {"hosts": [{"match": "x"}]}}, "upgrade.hosts[0].duration", "missing"),
        (
            {"failures": {"migration": {"probability": 1.5}}},
            "failures.migration.probability",
            "must be <= 1",
        ),
        ({"executor": {"retry_delay_s": -1}}, "executor.retry_delay_s", "must be >= 0"),
        ({"guests": {"boot": 1}}, "guests.boot", "unknown key (did you mean 'boot_s'?)"),
        ({"network": []}, "network", "must be an object"),
    ],
)
def test_problems_are_located(doc: dict[str, Any], where: str, what: str) -> None:
    with pytest.raises(InputError) as e:
        model_from_dict({**HEADER, **doc}, "model.yaml")
    text = e.value.render()
    assert f"model.yaml: {where}: " in text and what in text, text


def test_distributions_sample_as_described() -> None:
    rng = np.random.default_rng(1)
    ln = Distribution("lognormal", 1200.0, 0.25).sample(rng, 20000)
    assert np.median(ln) == pytest.approx(1200, rel=0.02)
    u = Distribution("uniform", 10.0, 20.0).sample(rng, 1000)
    assert u.min() >= 10 and u.max() <= 20
    tri = Distribution("triangular", 1.0, 2.0, 4.0)
    assert tri.sample(rng, 20000).mean() == pytest.approx(tri.mean, rel=0.02)
    assert (Distribution("fixed", 5.0).sample(rng, 3) == 5.0).all()


def test_host_selectors_set_nic_and_upgrade_time() -> None:
    inv = Inventory("sel", "t", (host("fast-1"), host("slow-1")), (vm("v", "fast-1"),))
    m = model_from_dict(
        {
            **HEADER,
            "network": {"hosts": [{"match": "fast-*", "nic_gbps": 100}]},
            "upgrade": {"compute": 600, "hosts": [{"match": "slow-*", "duration": 3000}]},
            "executor": {"max_inbound_migrations": 1},
        },
    )
    p = plan(
        policy(),
        (["fast-1"], [("v", "fast-1", "slow-1")]),
        (["slow-1"], [("v", "slow-1", "fast-1")]),
    )
    prep = prepare(inv, p, m, check=False)
    d = result_to_dict(prep, simulate(prep, 0))
    # fast-1 -> slow-1: limited by slow-1's 10 GbE; the hosts' upgrade times follow the rules.
    assert d["vms"][0]["bandwidth_mb_s"] == pytest.approx(10e9 / 8 * 0.92 / 2**20, rel=1e-3)
    times = {h["host"]: h["end_s"] - h["upgrade_start_s"] for h in d["hosts"]}
    assert times == {"fast-1": pytest.approx(600 + 5), "slow-1": pytest.approx(3000 + 5)}


def test_the_documented_example_model_reads() -> None:
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parent.parent / "docs" / "simulation.md").read_text()
    section = text[text.index("## The model file") :]
    block = section[section.index("```yaml") + len("```yaml") : section.index("```\n", 10)]
    m = model_from_dict(yaml.safe_load(block), "docs/simulation.md")
    assert m.nic_gbps == 25 and m.nova.permit_auto_converge and m.crash_p == 0.05


# ---------------------------------------------------------------------------------------------
# The parameters are declared once (sim.params): reading, writing and the docs follow them
# ---------------------------------------------------------------------------------------------
def _other_value(d: Declared) -> Any:
    """A valid value of d's parameter, as the file has it, that is not its default."""
    p = d.param
    if p.kind == "choice":
        return next(c for c in p.choices if c != d.default)
    if p.kind == "flag":
        return not d.default
    if p.kind == "duration":
        return {"fixed": 123.0}
    if p.kind == "nic_rules":
        return [{"match": "cmp-*", "nic_gbps": 40.0}]
    if p.kind == "upgrade_rules":
        return [{"match": "cmp-*", "duration": {"uniform": [1.0, 2.0]}}]
    if p.kind == "window":
        return [10.0, 20.0]
    if p.maximum is not None:
        value = p.maximum if d.default != p.maximum else p.maximum / 2
    elif isinstance(d.default, int | float):
        value = d.default * p.scale + 7
    else:
        value = (p.minimum or 0) * p.scale + 7
    return int(value) if p.kind == "integer" else float(value)


@pytest.mark.parametrize("d", PARAMS, ids=lambda d: d.param.place)
def test_each_declared_parameter_is_read_and_written(d: Declared) -> None:
    *sections, key = d.param.place.split(".")
    value = _other_value(d)
    doc: dict[str, Any] = dict(HEADER)
    node = doc
    for sec in sections:
        node = node.setdefault(sec, {})
    node[key] = value
    m = model_from_dict(doc, "m.yaml")
    got: Any = m
    for attr in d.path:
        got = getattr(got, attr)
    assert got != d.default
    written = m.to_dict()
    for sec in sections:
        written = written[sec]
    if d.param.scale != 1.0:  # ms in the file, s in the model: rounding
        assert written[key] == pytest.approx(value)
    else:
        assert written[key] == value
    assert model_from_dict(m.to_dict()) == dataclasses.replace(m, source="<model>")


def test_every_model_field_is_a_declared_parameter() -> None:
    """A field of the model or its settings without a declaration would be neither read nor
    written nor documented (the settings themselves, the file name and QEMU's internal
    throttle period aside)."""
    paths = {d.path for d in PARAMS}
    for cls, prefix, aside in (
        (SimModel, (), {"nova", "qemu", "source", "crosscloud"}),
        (NovaSettings, ("nova",), set()),
        (CrossCloudSettings, ("crosscloud",), set()),
        (QemuSettings, ("qemu",), {"sync_min_s"}),
    ):
        for f in dataclasses.fields(cls):
            assert f.name in aside or (*prefix, f.name) in paths, f.name
    assert len({d.param.place for d in PARAMS}) == len(PARAMS)


def test_the_docs_table_is_the_declared_one() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "simulation.md").read_text()
    assert doc_table() in text, (
        "docs/simulation.md's model table differs from the declarations; print the table with\n"
        "  python -c 'from sim.model import doc_table; print(doc_table())'\n" + doc_table()
    )


def test_the_docs_table_check_can_fail() -> None:
    """A default, unit or bound changed on one side only is told apart."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "simulation.md").read_text()
    row = "| `network.nic_gbps` | 10 | Gbit/s | > 0 |"
    assert row in doc_table()
    assert doc_table() not in text.replace(row, row.replace("| 10 |", "| 25 |"))
