"""`rollwave generate`: a deterministic example cloud (and a matching policy)."""

from __future__ import annotations

from pathlib import Path

import click

from planner.cli.common import OutputPath, kv_table, out
from planner.errors import InputError
from planner.formats import save_inventory, save_policy
from planner.generate import (
    FLAVOR_MIXES,
    VM_SIZES,
    ExtraClass,
    GenerateSpec,
    default_policy,
    generate,
    parse_extra_classes,
)


def _extra(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[ExtraClass, ...]:
    try:
        return parse_extra_classes(value or "")
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.command("generate")
@click.option(
    "--hosts", type=click.IntRange(1), default=12, show_default=True, help="Compute hosts."
)
@click.option(
    "--vms-per-host",
    type=click.FloatRange(0.5),
    default=10.0,
    show_default=True,
    help="Average VMs per host (reached through the host sizes).",
)
@click.option("--azs", type=click.IntRange(1), default=2, show_default=True)
@click.option("--hosts-per-rack", type=click.IntRange(1), default=16, show_default=True)
@click.option(
    "--utilisation",
    type=click.FloatRange(0.05, 0.95),
    default=0.5,
    show_default=True,
    help="Average MEMORY_MB utilisation of the hosts. Small AZs cannot keep N+1 at high "
    "utilisation (6 hosts an AZ at 0.7 never can); large clouds run at 0.7.",
)
@click.option(
    "--controllers",
    type=click.IntRange(0),
    default=3,
    show_default=True,
    help="Controllers, in one HA group with a majority quorum.",
)
@click.option(
    "--disabled",
    "disabled_hosts",
    type=click.IntRange(0),
    default=1,
    show_default=True,
    help="Compute hosts disabled (e.g. a hardware ticket).",
)
@click.option(
    "--upgraded",
    "upgraded_hosts",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Hosts already running the target version.",
)
@click.option(
    "--version",
    "version",
    default="2025.1",
    show_default=True,
    help="Release label every host runs now.",
)
@click.option("--target-version", default="2025.2", show_default=True)
@click.option(
    "--flavor-mix",
    type=click.Choice(list(FLAVOR_MIXES)),
    default="standard",
    show_default=True,
    help="Flavors the hosts are filled with: standard, small (many small VMs of many sizes, "
    "tens a host, as production traces show) or large (a few big VMs fill a host).",
)
@click.option(
    "--service-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Share of the VMs in services: hard anti-affinity groups of 2-10 members.",
)
@click.option(
    "--extra-classes",
    default=None,
    callback=_extra,
    metavar="NAME:PER_HOST[:SHARE[:HOST_SHARE]],...",
    help="Resource classes beyond VCPU, MEMORY_MB and DISK_GB: a compute host offers PER_HOST "
    "(each host with probability HOST_SHARE, default 1); a VM on such a host asks for it with "
    "probability SHARE (default 0.5), in proportion to its memory. E.g. "
    "CUSTOM_NET_BW:25000:0.6,CUSTOM_PCI_SLOT:16:0.05:0.3.",
)
@click.option(
    "--host-models",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Hardware models from half to twice the base memory (0: three generations).",
)
@click.option(
    "--vm-sizes",
    type=click.Choice(list(VM_SIZES)),
    default="flavors",
    show_default=True,
    help="flavors: a VM is its flavor's size; per-vm: each VM its own size near its flavor's "
    "(memory x0.6-1.4, disk x0.5-1.5, some a vCPU more or less), as production traces show.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--cloud", default=None, help="Cloud name (default: derived from size and seed).")
@click.option(
    "-o",
    "--output",
    required=True,
    type=OutputPath(),
    help="Inventory file to write (JSON).",
)
@click.option(
    "--policy-out",
    type=OutputPath(),
    default=None,
    help="Also write a matching policy (N+1 per AZ, controllers first).",
)
def generate_cmd(output: str, policy_out: str | None, **kw: object) -> None:
    """Generate an example cloud, deterministic by --seed (same options, same bytes)."""
    for target in (output, policy_out):
        parent = Path(target).parent if target else None
        if parent is not None and not parent.is_dir():
            raise InputError(str(target), f"cannot write: directory {str(parent)!r} does not exist")
    spec = GenerateSpec(**kw)  # type: ignore[arg-type]
    inv = generate(spec)
    save_inventory(inv, output)
    if policy_out:
        save_policy(default_policy(spec), policy_out)
    computes = inv.compute_hosts
    out.print(
        kv_table(
            f"wrote {output}",
            [
                ("cloud", inv.cloud),
                ("compute hosts", f"{len(computes)} in {len(inv.azs)} AZ(s)"),
                ("controllers", len(inv.hosts) - len(computes)),
                ("VMs", len(inv.vms)),
                ("server groups", len(inv.server_groups)),
            ]
            + ([("policy", policy_out)] if policy_out else []),
        )
    )
