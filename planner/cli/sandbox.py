"""`rollwave sandbox up|down|status|ctl`: a local Nova + Placement cloud to plan and execute on."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from planner.errors import UsageError
from planner.openstack import clouds_yaml, invio
from planner.openstack.sandbox import caps, manager

F = TypeVar("F", bound=Callable[..., Any])


@click.group("sandbox")
def sandbox() -> None:
    """A local compute cloud built from the real nova and openstack-placement packages."""


def _generated(hosts: int, vms_per_host: float, seed: int) -> dict[str, Any]:
    """The same cloud `rollwave generate --hosts N --vms-per-host M --seed S` writes."""
    from planner import formats
    from planner.generate import GenerateSpec, generate

    spec = GenerateSpec(hosts=hosts, vms_per_host=vms_per_host, seed=seed)
    return formats.inventory_to_dict(generate(spec))


def _name_opt(f: F) -> F:
    return click.option(
        "--name",
        default=manager.CLOUD_NAME,
        show_default=True,
        callback=lambda _ctx, _param, value: manager.check_name(value),
        help="Which sandbox: its clouds.yaml entry; sandboxes of different names run side by side.",
    )(f)


def _cap_opt(key: str, example: str, help_: str) -> Callable[[F], F]:
    return click.option("--" + key.replace("_", "-"), key, metavar=example, help=help_)


@sandbox.command("up")
@_name_opt
@_cap_opt(
    "compute_max",
    "2.N",
    "Cap Nova's maximum microversion, e.g. 2.96 (its version document and negotiation: 406 "
    "above). Patches the installed release's range; it does not run an older release.",
)
@_cap_opt(
    "compute_min",
    "2.N",
    "Raise Nova's minimum microversion, e.g. 2.60 (models removed versions: 406 below).",
)
@_cap_opt("placement_max", "1.N", "Cap Placement's maximum microversion, e.g. 1.36 (406 above).")
@click.option(
    "--inventory",
    "inventory_path",
    type=click.Path(dir_okay=False),
    help="Seed from this inventory (JSON or YAML).",
)
@click.option("--hosts", type=click.IntRange(1), help="Generate an inventory with N hosts.")
@click.option(
    "--vms-per-host",
    type=click.FloatRange(0.5),
    default=4.0,
    show_default=True,
    help="Average VMs per host of the generated cloud.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Port on 127.0.0.1 (default: a free one).",
)
@click.option(
    "--migration-seconds",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    help="How long a fake live migration takes.",
)
@click.option(
    "--migration-link",
    "migration_link",
    type=click.FloatRange(0, min_open=True),
    help="Link mode: live migrations of VMs with a dirty rate follow the pre-copy model over a "
    "link of this many MiB/s (a VM dirtying faster never converges until force-completed).",
)
@click.option(
    "--no-clouds-yaml",
    is_flag=True,
    help="Do not merge the sandbox's entry (its --name) into ~/.config/openstack/clouds.yaml.",
)
@click.option(
    "--with-image",
    is_flag=True,
    help="Run a real Glance beside it (the catalog's image service; snapshots hold bytes).",
)
def up(
    name: str,
    compute_max: str | None,
    compute_min: str | None,
    placement_max: str | None,
    inventory_path: str | None,
    hosts: int | None,
    vms_per_host: float,
    seed: int,
    port: int,
    migration_seconds: float,
    migration_link: float | None,
    no_clouds_yaml: bool,
    with_image: bool,
) -> None:
    """Start the sandbox in the background, seeded from an inventory."""
    if bool(inventory_path) == bool(hosts):
        raise UsageError("give either --inventory FILE or --hosts N")
    api_caps = caps.check(
        {"compute_max": compute_max, "compute_min": compute_min, "placement_max": placement_max}
    )
    inv = (
        invio.read(inventory_path) if inventory_path else _generated(hosts or 0, vms_per_host, seed)
    )
    click.echo(
        f"starting sandbox: {len(inv.get('hosts', []))} hosts, {len(inv.get('vms', []))} VMs ...",
        err=True,
    )
    sb = manager.start(
        inv,
        port=port,
        migration_seconds=migration_seconds,
        migration_link_mib_s=migration_link,
        write_clouds_yaml=not no_clouds_yaml,
        with_image=with_image,
        name=name,
        api_caps=api_caps,
    )
    st = sb.state
    click.echo(
        f"sandbox {name} up in {st['startup_seconds']} s: {st['hosts']} compute hosts, "
        f"{st['controllers']} controllers, {st['vms']} VMs, pid {sb.pid}, {sb.url}"
    )
    if api_caps:
        click.echo("microversions capped: " + _caps_text(api_caps))
    entry = sb.cloud_entry()
    entry["auth"]["password"] = "<see clouds.yaml>"  # never print credentials
    click.echo("\nclouds.yaml entry:\n" + _yaml({"clouds": {name: entry}}))
    if not no_clouds_yaml:
        click.echo(
            f"merged into {clouds_yaml.user_clouds_yaml()}; try:\n"
            f"  OS_CLOUD={name} openstack compute service list\n"
            f"  rollwave snapshot --os-cloud {name} "
            f"--mapping {sb.mapping_file} -o inventory.json"
        )


def _caps_text(api_caps: dict[str, str]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(api_caps.items()))


def _yaml(data: Any) -> str:
    import yaml

    return str(yaml.safe_dump(data, default_flow_style=False, sort_keys=False))


@sandbox.command("down")
@_name_opt
def down(name: str) -> None:
    """Stop the sandbox and remove its temporary files."""
    if manager.stop(name=name):
        click.echo(f"sandbox {name} stopped")
    else:
        click.echo(f"no sandbox {name} was running (stale files removed)")


@sandbox.command("status")
@_name_opt
@click.option("--json", "as_json", is_flag=True, help="Print the control endpoint's status.")
def status(name: str, as_json: bool) -> None:
    """Is a sandbox running, where, and in what state are its hosts."""
    sb = manager.require(name=name)
    st = manager.control(sb, "GET", "status")
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    down_hosts = [h["name"] for h in st["hosts"] if not h["up"]]
    caps_ = dict(sb.state.get("api_caps") or {})
    versions: dict[str, int] = {}
    for h in st["hosts"]:
        versions[h["version"]] = versions.get(h["version"], 0) + 1
    click.echo(
        f"running: pid {sb.pid}, {sb.url} (cloud {sb.name})\n"
        f"hosts: {len(st['hosts'])} ({len(down_hosts)} down"
        f"{': ' + ', '.join(down_hosts) if down_hosts else ''}); versions: "
        + ", ".join(f"{v} x{n}" for v, n in sorted(versions.items()))
        + f"\nVMs seeded: {st['vms']}; migrations: {st['migrations_completed']} done, "
        f"{st['migrations_failed']} failed, {len(st['migrations_running'])} running; "
        f"fake duration {st['migration_seconds']} s\n"
        f"state dir: {sb.dir}" + (f"\nmicroversions capped: {_caps_text(caps_)}" if caps_ else "")
    )


@sandbox.group("ctl")
@_name_opt
def ctl(name: str) -> None:
    """Control the sandbox's fake hypervisors (not an OpenStack API)."""
    click.get_current_context().meta["rollwave.sandbox"] = name


def _sandbox() -> manager.Running:
    """The sandbox `ctl --name` chose."""
    meta = click.get_current_context().meta
    return manager.require(name=meta.get("rollwave.sandbox", manager.CLOUD_NAME))


def _do(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    return manager.control(_sandbox(), method, path, body)


@ctl.command("migration-duration")
@click.argument("seconds", type=click.FloatRange(0))
@click.option("--vm", help="Only this VM (inventory id, name or Nova uuid).")
def migration_duration(seconds: float, vm: str | None) -> None:
    """Set how long fake live migrations take (all, or one VM's)."""
    _do("POST", "migration-duration", {"seconds": seconds, "vm": vm})
    click.echo(f"migration duration {'of ' + vm if vm else ''} set to {seconds} s")


@ctl.command("fail-next-migration")
@click.argument("vm")
@click.option(
    "--times",
    type=click.IntRange(0),
    default=1,
    show_default=True,
    help="How many of its next live migrations fail (0 clears the fault).",
)
def fail_next_migration(vm: str, times: int) -> None:
    """Make VM's next live migration(s) fail (it stays ACTIVE on its source)."""
    out = _do("POST", "fail-next-migration", {"vm": vm, "times": times})
    click.echo(f"next {times} migration(s) of {out['vm']} will fail")


@ctl.command("host-down")
@click.argument("host")
def host_down(host: str) -> None:
    """Stop HOST's nova-compute and mark it forced down."""
    _do("POST", f"hosts/{host}/down")
    click.echo(f"{host}: compute service down")


@ctl.command("host-up")
@click.argument("host")
def host_up(host: str) -> None:
    """Restart HOST's nova-compute (fails if HOST refuses to come back)."""
    _do("POST", f"hosts/{host}/up")
    click.echo(f"{host}: compute service up")


@ctl.command("refuse-up")
@click.argument("host")
@click.option("--allow", is_flag=True, help="Clear the fault: let HOST come back up again.")
def refuse_up(host: str, allow: bool) -> None:
    """Make HOST refuse to come back up (after down or during upgrade)."""
    _do("POST", f"hosts/{host}/refuse-up", {"refuse": not allow})
    click.echo(f"{host}: {'may come back up' if allow else 'will refuse to come back up'}")


@ctl.command("upgrade")
@click.argument("host")
@click.option("--version", "version", required=True, help="The release label it runs after.")
def upgrade(host: str, version: str) -> None:
    """Upgrade HOST: restart its nova-compute running VERSION (guests keep running). A controller
    of the seeded inventory has no nova-compute here: its version in mapping.json is set."""
    if manager.upgrade(_sandbox(), host, version) == "controller":
        click.echo(f"{host}: controller (no compute service); version {version} in mapping.json")
    else:
        click.echo(f"{host}: upgraded to {version}")


@ctl.command("host-add")
@click.argument("host")
@click.option("--vcpus", type=click.IntRange(0), default=32, show_default=True)
@click.option("--ram", "ram_mb", type=click.IntRange(0), default=65536, show_default=True)
@click.option("--disk", "disk_gb", type=click.IntRange(0), default=1000, show_default=True)
@click.option("--version", "version", default="unknown", show_default=True)
@click.option("--aggregate", "aggregates", multiple=True, help="An existing aggregate to join.")
def host_add(
    host: str, vcpus: int, ram_mb: int, disk_gb: int, version: str, aggregates: tuple[str, ...]
) -> None:
    """Start a nova-compute for a new host HOST in the running cloud (a hand-over's arrival)."""
    capacity = {"VCPU": vcpus, "MEMORY_MB": ram_mb, "DISK_GB": disk_gb}
    body = {"capacity": capacity, "version": version, "aggregates": list(aggregates)}
    _do("POST", f"hosts/{host}/add", body)
    click.echo(f"{host}: compute service started ({version})")


@ctl.command("host-remove")
@click.argument("host")
def host_remove(host: str) -> None:
    """Stop HOST's nova-compute and delete its service (refused while it has servers)."""
    _do("POST", f"hosts/{host}/remove")
    click.echo(f"{host}: compute service stopped and deleted")


@ctl.command("create-vm")
@click.option("--host", required=True)
@click.option("--vcpus", type=click.IntRange(0), default=1, show_default=True)
@click.option("--ram", "ram_mb", type=click.IntRange(0), default=512, show_default=True)
@click.option("--disk", "disk_gb", type=click.IntRange(0), default=1, show_default=True)
@click.option("--name")
@click.option("--project", default="rollwave", show_default=True)
@click.option("--server-group", help="Inventory id or Nova uuid of a server group.")
def create_vm(
    host: str,
    vcpus: int,
    ram_mb: int,
    disk_gb: int,
    name: str | None,
    project: str,
    server_group: str | None,
) -> None:
    """Boot a VM on HOST through the real API (e.g. to make drift)."""
    out = _do(
        "POST",
        "vms",
        {
            "host": host,
            "name": name,
            "project": project,
            "server_group": server_group,
            "resources": {"VCPU": vcpus, "MEMORY_MB": ram_mb, "DISK_GB": disk_gb},
        },
    )
    click.echo(f"{out['id']} {out['status']} on {out['host']}")
