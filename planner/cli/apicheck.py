"""`rollwave api-check`: does the new cloud serve every API range the old one does?"""

from __future__ import annotations

import click

from planner.cli.common import OutputPath, emit_json, format_option
from planner.errors import ApiIncompatibleError
from planner.openstack.apicheck import ApiVersion, Report, ServiceApi, Verdict, check


@click.command("api-check")
@click.option("--old-cloud", required=True, help="The running cloud: its name in clouds.yaml.")
@click.option("--new-cloud", required=True, help="The new cloud: its name in clouds.yaml.")
@format_option
@click.option(
    "-o",
    "--output",
    type=OutputPath(),
    help="Also write the report (JSON) to this file, whatever the verdict.",
)
def apicheck_cmd(old_cloud: str, new_cloud: str, fmt: str, output: str | None) -> None:
    """Compare both clouds' API versions and microversion ranges (compute, image, block-storage,
    network, placement) as each endpoint's version discovery document says. Exit 0 when a client
    pinned to the old cloud's ranges loses nothing, 7 when it would, 2 when both are one cloud."""
    from planner.documents import write_json

    report = check(old_cloud, new_cloud)
    data = report.to_dict()
    if output:
        write_json(output, data)
    if fmt == "json":
        emit_json(data)
    else:
        click.echo(render(report))
        if output:
            click.echo(f"wrote {output}")
    if not report.compatible:
        raise ApiIncompatibleError(report.summary(), data)


def _served(api: ServiceApi) -> str:
    """Versions in order, runs of one status without microversions shortened (Glance lists
    v2.0 ... v2.17): `v2.0-v2.13, v2.15 (SUPPORTED), v2.17 (CURRENT)`."""
    if api.endpoint is None:
        return "not in the catalog"
    groups: list[tuple[str, list[list[ApiVersion]]]] = []
    for v in api.versions:
        if not groups or groups[-1][0] != v.status:
            groups.append((v.status, []))
        runs = groups[-1][1]
        last = runs[-1][-1] if runs else None
        if (
            last is not None
            and v.max_microversion is None
            and last.max_microversion is None
            and v.version == (last.version[0], last.version[1] + 1)
        ):
            runs[-1].append(v)
        else:
            runs.append([v])
    parts = []
    for status, runs in groups:
        text = ", ".join(r[0].range if len(r) == 1 else f"{r[0].id}-{r[-1].id}" for r in runs)
        parts.append(f"{text} ({status})")
    return ", ".join(parts)


def render(report: Report) -> str:
    """The report for people: one block per service, what is lost and what is only new."""
    lines = [
        f"old cloud {report.old.cloud}: {report.old.auth_url}",
        f"new cloud {report.new.cloud}: {report.new.auth_url}",
        "",
    ]
    for s in report.services:
        if s.verdict is Verdict.ABSENT:
            lines.append(f"{s.service:<14} absent        in neither cloud's catalog")
            continue
        lines.append(f"{s.service:<14} {s.verdict.value:<13} old: {_served(s.old)}")
        lines.append(f"{'':<28} new: {_served(s.new)}")
        lines += [f"{'':<28} lost: {f.message}" for f in s.lost]
        lines += [f"{'':<28} only new: {f.message}" for f in s.gained]
        lines += [f"{'':<28} note: {f.message}" for f in s.notes]
    verdict = "compatible" if report.compatible else "INCOMPATIBLE"
    lines += ["", f"{verdict}: {report.summary()}"]
    return "\n".join(lines)
