"""The API pre-check's comparison, one pass/fail pair per kind of change. The documents here are
what keystoneauth parses from real discovery documents (the sandbox tests read real ones)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.cli.apicheck import _served
from planner.errors import ApiIncompatibleError, ExitCode
from planner.openstack.apicheck import (
    ApiVersion,
    Change,
    CloudApis,
    ServiceApi,
    Verdict,
    _candidates,
    compare,
    same_cloud,
)
from tests.test_cli import rollwave


def nova(lo: str = "2.1", hi: str = "2.104", *, v20: bool = True) -> ServiceApi:
    def v(s: str) -> tuple[int, int]:
        a, b = s.split(".")
        return int(a), int(b)

    versions: tuple[ApiVersion, ...] = (ApiVersion((2, 1), "CURRENT", v(lo), v(hi)),)
    if v20:
        versions = (ApiVersion((2, 0), "DEPRECATED"), *versions)
    return ServiceApi("compute", "http://x/compute/v2.1", "http://x/compute/", versions)


def glance(*ids: tuple[int, int], current: tuple[int, int] = (2, 17)) -> ServiceApi:
    versions = tuple(ApiVersion(i, "CURRENT" if i == current else "SUPPORTED") for i in ids)
    return ServiceApi("image", "http://x/image", "http://x/image/", versions)


def cloud(
    name: str, auth: str = "", region: str | None = "RegionOne", **apis: ServiceApi
) -> CloudApis:
    services = {k.replace("_", "-"): v for k, v in apis.items()}
    return CloudApis(name, auth or f"http://{name}/identity/v3", region, services)


def verdict(old: CloudApis, new: CloudApis, service: str) -> tuple[Verdict, list[Change]]:
    s = next(s for s in compare(old, new).services if s.service == service)
    return s.verdict, [f.change for f in s.findings]


def test_max_lowered_is_lost_and_names_the_range() -> None:
    rep = compare(cloud("a", compute=nova(hi="2.104")), cloud("b", compute=nova(hi="2.96")))
    assert not rep.compatible
    (c,) = rep.incompatible()
    assert [f.message for f in c.lost] == [
        "v2.1 max microversion lowered 2.104 -> 2.96: 2.97-2.104 no longer served"
    ]
    ok = compare(cloud("a", compute=nova(hi="2.96")), cloud("b", compute=nova(hi="2.104")))
    assert ok.compatible and verdict(
        cloud("a", compute=nova(hi="2.96")), cloud("b", compute=nova(hi="2.104")), "compute"
    ) == (Verdict.COMPATIBLE, [Change.MAX_RAISED])


def test_min_raised_is_lost_min_lowered_is_not() -> None:
    rep = compare(cloud("a", compute=nova(lo="2.1")), cloud("b", compute=nova(lo="2.60")))
    (c,) = rep.incompatible()
    assert [f.message for f in c.lost] == [
        "v2.1 min microversion raised 2.1 -> 2.60: 2.1-2.59 no longer served"
    ]
    assert verdict(cloud("a", compute=nova(lo="2.60")), cloud("b", compute=nova()), "compute") == (
        Verdict.COMPATIBLE,
        [Change.MIN_LOWERED],
    )


def test_a_whole_range_gone_names_all_of_it() -> None:
    rep = compare(
        cloud("a", compute=nova("2.90", "2.104")), cloud("b", compute=nova("2.1", "2.60"))
    )
    (c,) = rep.incompatible()
    assert c.lost[0].message.endswith("2.90-2.104 no longer served")


def test_a_removed_version_is_lost_an_added_one_is_not() -> None:
    old, new = glance((2, 16), (2, 17)), glance((2, 17), (2, 18), current=(2, 18))
    v, changes = verdict(cloud("a", image=old), cloud("b", image=new), "image")
    assert v is Verdict.INCOMPATIBLE
    assert changes == [Change.VERSION_REMOVED, Change.STATUS_CHANGED, Change.VERSION_ADDED]
    (img,) = compare(cloud("a", image=old), cloud("b", image=new)).incompatible()
    assert [f.message for f in img.lost] == ["v2.16 removed (SUPPORTED before)"]
    assert [f.message for f in img.notes] == ["v2.17 is SUPPORTED (was CURRENT)"]
    assert [f.message for f in img.gained] == ["v2.18 is new"]
    v, changes = verdict(cloud("a", image=glance((2, 17))), cloud("b", image=new), "image")
    assert v is Verdict.COMPATIBLE and Change.VERSION_REMOVED not in changes
    # compute's deprecated v2.0 counts too: a client may still use it
    v, changes = verdict(cloud("a", compute=nova()), cloud("b", compute=nova(v20=False)), "compute")
    assert v is Verdict.INCOMPATIBLE and changes == [Change.VERSION_REMOVED]


def test_a_service_missing_in_the_new_cloud_is_lost_only_new_is_not() -> None:
    rep = compare(cloud("a", placement=nova()), cloud("b"), ["placement"])
    assert not rep.compatible
    assert rep.services[0].lost[0].change is Change.SERVICE_MISSING
    rep = compare(cloud("a"), cloud("b", image=glance((2, 17))))
    by = {s.service: s for s in rep.services}
    assert rep.compatible and by["image"].gained[0].change is Change.SERVICE_ADDED


def test_a_service_in_neither_cloud_is_absent_not_compatible() -> None:
    rep = compare(cloud("a", compute=nova()), cloud("b", compute=nova()))
    by = {s.service: s.verdict for s in rep.services}
    assert by == {
        "compute": Verdict.COMPATIBLE,
        "image": Verdict.ABSENT,
        "block-storage": Verdict.ABSENT,
        "network": Verdict.ABSENT,
        "placement": Verdict.ABSENT,
    }
    assert rep.compatible and rep.to_dict()["compatible"] is True


def test_same_cloud_by_auth_url_and_region_or_a_shared_endpoint() -> None:
    a = cloud("a", auth="http://k/identity/v3", compute=nova())
    assert same_cloud(a, cloud("b", auth="http://K/identity/v3/"))
    assert same_cloud(a, cloud("b", auth="http://k/identity/v3", region="Two")) is None
    assert "compute endpoint" in (same_cloud(a, cloud("b", compute=nova())) or "")
    assert same_cloud(a, cloud("b")) is None


def test_the_discovery_document_is_looked_for_at_the_root_first() -> None:
    assert _candidates("http://x/compute/v2.1") == ["http://x/compute/", "http://x/compute/v2.1"]
    assert _candidates("http://x:8776/v3/") == ["http://x:8776/", "http://x:8776/v3/"]
    assert _candidates("http://x/placement") == ["http://x/placement"]


def test_the_error_has_its_own_exit_code() -> None:
    rep = compare(cloud("a", compute=nova()), cloud("b", compute=nova(hi="2.96")))
    err = ApiIncompatibleError(rep.summary(), rep.to_dict())
    assert err.exit_code == ExitCode.INCOMPATIBLE and int(err.exit_code) == 7
    assert err.render().startswith("error: API check failed: a client pinned to the old cloud a")
    assert len({int(c) for c in ExitCode}) == len(ExitCode)


@pytest.mark.parametrize("service", ["compute", "placement"])
def test_json_form_lists_lost_and_gained(service: str) -> None:
    old = CloudApis("a", "http://a/identity/v3", None, {service: nova(hi="2.104")})
    new = CloudApis("b", "http://b/identity/v3", None, {service: nova(hi="2.96")})
    d = next(s for s in compare(old, new).to_dict()["services"] if s["service"] == service)
    assert d["verdict"] == "incompatible" and d["lost"][0]["change"] == "max-lowered"
    assert d["old"]["versions"][1] == {
        "id": "v2.1",
        "status": "CURRENT",
        "min_microversion": "2.1",
        "max_microversion": "2.104",
    }


def _dead_clouds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """clouds.yaml with clouds whose Keystone nothing answers (ports 9 and 7 refuse)."""

    def entry(port: int, user: str = "u", slash: str = "") -> dict[str, Any]:
        return {
            "auth": {
                "auth_url": f"http://127.0.0.1:{port}/identity/v3{slash}",
                "username": user,
                "password": "p",
                "project_name": "x",
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "region_name": "RegionOne",
        }

    conf = tmp_path / "clouds.yaml"
    clouds = {"a": entry(9), "b": entry(7), "a-again": entry(9, "v", "/")}
    conf.write_text(yaml.safe_dump({"clouds": clouds}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(conf))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    return conf


def test_the_cli_same_cloud_is_exit_2_before_any_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _dead_clouds(tmp_path, monkeypatch)
    out = tmp_path / "r.json"
    run = rollwave("api-check", "--old-cloud", "a", "--new-cloud", "a-again", "-o", out)
    assert run.code == 2 and "are the same cloud (both authenticate at" in run.err, run
    run = rollwave("api-check", "--old-cloud", "a", "--new-cloud", "a", "-o", out)
    assert run.code == 2 and "both 'a'" in run.err, run
    assert not out.exists()


def test_the_cli_unknown_or_unreachable_cloud_is_exit_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _dead_clouds(tmp_path, monkeypatch)
    out = tmp_path / "r.json"
    run = rollwave("api-check", "--old-cloud", "a", "--new-cloud", "nowhere", "-o", out)
    assert run.code == 4 and "'nowhere'" in run.err, run
    run = rollwave("api-check", "--old-cloud", "a", "--new-cloud", "b", "-o", out)
    assert run.code == 4 and "cloud 'a': cannot reach Keystone" in run.err, run
    assert "Traceback" not in run.err and not out.exists()


def test_the_text_shortens_runs_of_versions() -> None:
    versions = [(2, i) for i in range(14)] + [(2, 15), (2, 17)]
    img = glance(*versions, current=(2, 17))
    assert _served(img) == "v2.0-v2.13, v2.15 (SUPPORTED), v2.17 (CURRENT)"
    assert _served(nova()) == "v2.0 (DEPRECATED), v2.1 2.1-2.104 (CURRENT)"
    assert _served(ServiceApi("network", None)) == "not in the catalog"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 110), min_size=2, max_size=2).map(sorted),
    st.lists(st.integers(1, 110), min_size=2, max_size=2).map(sorted),
)
def test_compatible_exactly_when_the_new_range_covers_the_old(
    old_range: list[int], new_range: list[int]
) -> None:
    (o_lo, o_hi), (n_lo, n_hi) = old_range, new_range
    old = cloud("a", compute=nova(f"2.{o_lo}", f"2.{o_hi}"))
    new = cloud("b", compute=nova(f"2.{n_lo}", f"2.{n_hi}"))
    rep = compare(old, new)
    assert rep.compatible == (n_lo <= o_lo and o_hi <= n_hi)
    assert compare(old, old).compatible and not compare(old, old).services[0].findings
    # the microversions named lost are exactly the old ones the new range does not serve
    lost: set[int] = set()
    for f in rep.services[0].lost:
        lo, hi = f.message.rsplit(": ", 1)[1].removesuffix(" no longer served").split("-")
        lost |= set(range(int(lo.split(".")[1]), int(hi.split(".")[1]) + 1))
    assert lost == {m for m in range(o_lo, o_hi + 1) if not n_lo <= m <= n_hi}
