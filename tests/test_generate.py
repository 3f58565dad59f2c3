"""`rollwave generate`'s shapes of production data: many small VMs, services as anti-affinity
groups, extra resource classes, many hardware models; the older options keep their bytes."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from planner.checker import check_inventory, check_plan
from planner.formats import inventory_to_dict, load_inventory
from planner.generate import (
    SERVICE_SIZES,
    SMALL_FLAVORS,
    ExtraClass,
    GenerateSpec,
    default_policy,
    generate,
    hardware_models,
    parse_extra_classes,
)
from solver.solve import SolveOptions, solve
from tests.test_cli import clean, rollwave

EXTRA = (ExtraClass("CUSTOM_NET_BW", 25_000, 0.6), ExtraClass("CUSTOM_PCI_SLOT", 16, 0.05))


def _sha(spec: GenerateSpec) -> str:
    return hashlib.sha256(
        json.dumps(inventory_to_dict(generate(spec)), sort_keys=True).encode()
    ).hexdigest()


def test_the_default_shape_keeps_its_bytes() -> None:
    """Digests of the clouds main made before the new options: older specs, same clouds."""
    assert _sha(GenerateSpec(hosts=15, seed=7)) == (
        "29cd7ab88a875f7307486203887c91ad1fd73f804502971e9aa8a438f25cfd62"
    )
    assert _sha(GenerateSpec(hosts=60, vms_per_host=20, azs=3, utilisation=0.7, seed=2)) == (
        "e29cd139eae1f371c3842a14b69c18181797d487cef1bb6b8750f3c040a33d1b"
    )


def _real(**kw: object) -> GenerateSpec:
    base: dict[str, object] = {
        "hosts": 40,
        "vms_per_host": 40,
        "azs": 2,
        "utilisation": 0.7,
        "flavor_mix": "small",
        "service_share": 0.3,
        "extra_classes": EXTRA,
        "host_models": 6,
        "seed": 5,
    }
    base.update(kw)
    return GenerateSpec(**base)  # type: ignore[arg-type]


def test_real_shape_is_deterministic_and_differs_by_seed() -> None:
    assert _sha(_real()) == _sha(_real()) != _sha(_real(seed=6))


def test_small_flavor_mix_gives_tens_of_small_vms_a_host() -> None:
    inv = generate(_real(service_share=0.0, extra_classes=()))
    names = {(f.vcpus, f.ram_mb, f.disk_gb) for f in SMALL_FLAVORS}
    assert all(
        (v.resources["VCPU"], v.resources["MEMORY_MB"], v.resources["DISK_GB"]) in names
        for v in inv.vms
    )
    per_host = len(inv.vms) / len(inv.compute_hosts)
    assert 30 <= per_host <= 50, per_host
    assert len({v.resources["MEMORY_MB"] for v in inv.vms}) >= 10  # many sizes


def test_large_flavor_mix_fills_hosts_with_a_few_big_vms() -> None:
    inv = generate(_real(hosts=10, vms_per_host=4, flavor_mix="large", service_share=0.0))
    assert min(v.resources["VCPU"] for v in inv.vms) >= 8
    assert 2 <= len(inv.vms) / len(inv.compute_hosts) <= 6


def test_services_are_hard_anti_affinity_groups_of_2_to_10_on_distinct_hosts() -> None:
    inv = generate(_real())
    services = [g for g in inv.server_groups if g.name.startswith("svc-")]
    assert services and all(g.policy == "anti-affinity" for g in services)
    members: dict[str, list[str]] = {g.id: [] for g in services}
    for v in inv.vms:
        if v.server_group in members:
            members[v.server_group].append(v.host)
    sizes = [len(hosts) for hosts in members.values()]
    assert min(sizes) >= min(SERVICE_SIZES) and max(sizes) <= max(SERVICE_SIZES)
    assert all(len(set(hosts)) == len(hosts) for hosts in members.values())
    share = sum(sizes) / len(inv.vms)
    assert 0.25 <= share <= 0.35, share


def test_extra_classes_are_offered_by_every_compute_host_and_asked_within_capacity() -> None:
    inv = generate(_real())
    for h in inv.compute_hosts:
        assert h.capacity["CUSTOM_NET_BW"] == 25_000 and h.capacity["CUSTOM_PCI_SLOT"] == 16
    asked = Counter(rc for v in inv.vms for rc in v.resources)
    n = len(inv.vms)
    assert 0.5 * n <= asked["CUSTOM_NET_BW"] <= 0.7 * n
    assert 0 < asked["CUSTOM_PCI_SLOT"] <= 0.1 * n
    # no host over its capacity in any class, no rule broken before the upgrade
    assert check_inventory(inv, default_policy(_real())) == []


def test_host_models_span_half_to_twice_the_base_memory() -> None:
    models = hardware_models(12)
    assert len(models) == 12 and models[0].ram_scale == 0.5 and models[-1].ram_scale == 2.0
    assert hardware_models(0)[0].name == "gen1"
    inv = generate(_real())
    assert len({h.capacity["MEMORY_MB"] for h in inv.compute_hosts}) >= 4


def test_a_small_real_shaped_cloud_plans_and_checks() -> None:
    spec = _real(hosts=12, vms_per_host=15, utilisation=0.4, seed=3)
    inv, pol = generate(spec), default_policy(spec)
    plan = solve(inv, pol, SolveOptions(time_limit=30)).plan
    assert check_plan(inv, plan, digest="").ok


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("VCPU:4", "new upper-case name"),
        ("custom_x:4", "new upper-case name"),
        ("CUSTOM_X", "NAME:PER_HOST"),
        ("CUSTOM_X:a", "must be an integer"),
        ("CUSTOM_X:0", "at least 1"),
        ("CUSTOM_X:4:1.5", "within 0..1"),
        ("CUSTOM_X:4,CUSTOM_X:5", "given twice"),
    ],
)
def test_bad_extra_classes_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_extra_classes(text)


def test_parse_extra_classes() -> None:
    assert parse_extra_classes("CUSTOM_NET_BW:25000:0.6, CUSTOM_PCI_SLOT:16") == (
        ExtraClass("CUSTOM_NET_BW", 25_000, 0.6),
        ExtraClass("CUSTOM_PCI_SLOT", 16, 0.5),
    )
    assert parse_extra_classes("") == ()


def test_cli_options_make_the_same_cloud_as_the_spec(tmp_path: Path) -> None:
    out = tmp_path / "inv.json"
    args = ["generate", "--hosts", 40, "--vms-per-host", 40, "--azs", 2, "--utilisation", 0.7]
    args += ["--flavor-mix", "small", "--service-share", 0.3, "--host-models", 6, "--seed", 5]
    args += ["--extra-classes", "CUSTOM_NET_BW:25000:0.6,CUSTOM_PCI_SLOT:16:0.05", "-o", out]
    r = clean(rollwave(*args))
    assert r.code == 0, r
    assert load_inventory(out) == generate(_real())


@pytest.mark.parametrize(
    "bad",
    [
        ["--extra-classes", "VCPU:4"],
        ["--flavor-mix", "tiny"],
        ["--service-share", "1.5"],
        ["--host-models", "-1"],
        ["--vm-sizes", "continuous"],
        ["--extra-classes", "CUSTOM_X:4:0.5:1.5"],
    ],
)
def test_cli_bad_options_exit_2_and_write_nothing(tmp_path: Path, bad: list[str]) -> None:
    out = tmp_path / "inv.json"
    r = clean(rollwave("generate", *bad, "-o", out))
    assert r.code == 2, r
    assert not out.exists()


def _trace(**kw: object) -> GenerateSpec:
    """Closer to the traces: each VM its own size, most VMs in services, SR-IOV VFs on some
    hardware models only, tight memory."""
    base: dict[str, object] = {
        "service_share": 0.8,
        "utilisation": 0.85,
        "vm_sizes": "per-vm",
        "extra_classes": (
            ExtraClass("CUSTOM_NET_BW", 25_000, 0.6),
            ExtraClass("CUSTOM_SRIOV_VF", 64, 0.1, 0.5),
        ),
    }
    base.update(kw)
    return _real(**base)


def test_per_vm_sizes_are_near_continuous_and_near_their_flavor() -> None:
    flavors = {f.name.replace(".", "-"): f for f in SMALL_FLAVORS}
    inv = generate(_trace())
    sizes = {
        (v.resources["VCPU"], v.resources["MEMORY_MB"], v.resources["DISK_GB"]) for v in inv.vms
    }
    assert len(sizes) >= 0.5 * len(inv.vms), (len(sizes), len(inv.vms))  # no few classes
    for v in inv.vms:
        f = flavors[v.name.split("-", 1)[1].rsplit("-", 1)[0]]
        assert 0.6 * f.ram_mb - 64 <= v.resources["MEMORY_MB"] <= 1.4 * f.ram_mb + 64
        assert abs(v.resources["VCPU"] - f.vcpus) <= 1 and v.resources["VCPU"] >= 1
    assert check_inventory(inv, default_policy(_trace())) == []
    assert _sha(_trace()) == _sha(_trace()) != _sha(_trace(seed=6))


def test_a_class_on_some_hardware_models_is_asked_only_where_offered() -> None:
    inv = generate(_trace(hosts=60, azs=3))
    hosts = {h.name: h for h in inv.compute_hosts}
    offering = [h for h in hosts.values() if "CUSTOM_SRIOV_VF" in h.capacity]
    assert 0 < len(offering) < len(hosts)
    by_model: dict[str, set[bool]] = {}
    for h in hosts.values():
        by_model.setdefault(h.aggregates[0], set()).add("CUSTOM_SRIOV_VF" in h.capacity)
    assert all(len(x) == 1 for x in by_model.values())  # a model offers it on every host or none
    asking = [v for v in inv.vms if "CUSTOM_SRIOV_VF" in v.resources]
    assert asking and all("CUSTOM_SRIOV_VF" in hosts[v.host].capacity for v in asking)
    for v in asking:  # a VM pinned to its AZ finds the class on two other hosts there
        if v.az is not None:
            assert sum(1 for h in offering if h.az == v.az and h.enabled) >= 3


def test_parse_extra_classes_with_host_share() -> None:
    assert parse_extra_classes("CUSTOM_SRIOV_VF:64:0.1:0.5") == (
        ExtraClass("CUSTOM_SRIOV_VF", 64, 0.1, 0.5),
    )
    with pytest.raises(ValueError, match="HOST_SHARE above 0"):
        parse_extra_classes("CUSTOM_X:4:0.5:0")
    with pytest.raises(ValueError, match="NAME:PER_HOST"):
        parse_extra_classes("CUSTOM_X:4:0.5:0.5:1")


def test_cli_vm_sizes_and_host_share_make_the_same_cloud_as_the_spec(tmp_path: Path) -> None:
    out = tmp_path / "inv.json"
    args = ["generate", "--hosts", 40, "--vms-per-host", 40, "--azs", 2, "--utilisation", 0.85]
    args += ["--flavor-mix", "small", "--service-share", 0.8, "--host-models", 6, "--seed", 5]
    args += ["--extra-classes", "CUSTOM_NET_BW:25000:0.6,CUSTOM_SRIOV_VF:64:0.1:0.5"]
    args += ["--vm-sizes", "per-vm", "-o", out]
    r = clean(rollwave(*args))
    assert r.code == 0, r
    assert load_inventory(out) == generate(_trace())
