"""`rollwave snapshot`: collect an inventory from any OpenStack cloud."""

from __future__ import annotations

import click

from planner.openstack import invio


@click.command("snapshot")
@click.option(
    "--os-cloud",
    "cloud",
    envvar="OS_CLOUD",
    help="Cloud name in clouds.yaml (default: $OS_CLOUD, else the OS_* variables).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Inventory file to write (JSON).",
)
@click.option(
    "--mapping",
    "mapping_path",
    type=click.Path(dir_okay=False),
    help="Mapping file: controllers, HA groups, racks, versions, VM overrides.",
)
@click.option("--anonymize", is_flag=True, help="Replace names and ids consistently.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def snapshot(
    cloud: str | None, output: str, mapping_path: str | None, anonymize: bool, quiet: bool
) -> None:
    """Collect an inventory (hosts, capacity, VMs, groups) from an OpenStack cloud."""
    from planner.openstack import connect, mapping, placement
    from planner.openstack import snapshot as snap

    m = mapping.load(mapping_path) if mapping_path else mapping.Mapping()
    api = connect.Api(connect.connect(cloud))

    def progress(msg: str) -> None:
        if not quiet:
            click.echo(f"  {msg}", err=True)

    inv, stats = snap.collect(api, cloud or "default", m, progress)
    if anonymize:
        inv = snap.anonymize(inv)
    invio.write(output, inv)
    click.echo(snap.summary(inv, stats))
    if stats.drift:  # where Placement and Nova disagree: the plan counts Placement's
        click.echo(placement.drift_report(stats.drift))
    for note in stats.filter_notes[:20]:
        click.echo(f"aggregate filters: {note}")
    click.echo(f"wrote {output}")
