"""`rollwave demo`: the main job on the bundled example cloud, end to end."""

from __future__ import annotations

import click

from planner.app.demo import DemoFiles, Planned, Simulated, run_demo
from planner.cli.check import print_metrics
from planner.cli.common import err, kv_table, out
from planner.inventory import Inventory
from planner.policy import Policy


@click.command("demo")
@click.option(
    "--out",
    "out_dir",
    default="rollwave-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory for the demo's files.",
)
def demo_cmd(out_dir: str) -> None:
    """Plan, check, simulate and report on the bundled example cloud (12 hosts, 3 controllers)."""
    run_demo(out_dir, DemoPrinter())


class DemoPrinter:
    """Each step of the demo on the console as it finishes."""

    def __init__(self) -> None:
        self.inv: Inventory | None = None

    def example(self, inv: Inventory, policy: Policy) -> None:
        self.inv = inv
        out.print(
            kv_table(
                f"example cloud {inv.cloud}",
                [
                    ("compute hosts", f"{len(inv.compute_hosts)} in AZs {', '.join(inv.azs)}"),
                    ("controllers", len(inv.hosts) - len(inv.compute_hosts)),
                    ("VMs", len(inv.vms)),
                    ("server groups", len(inv.server_groups)),
                    (
                        "policy",
                        f"N+{policy.headroom.failures} per {policy.headroom.scope}, "
                        f"{policy.max_hosts_per_wave} hosts a wave, "
                        f"upgrade to {policy.target_version}",
                    ),
                ],
            )
        )

    def planned(self, step: Planned) -> None:
        err.print(f"planned in {step.plan_s:.2f} s")
        print_metrics(step.check.metrics)
        for w in step.plan.waves:
            out.print(
                f"  wave {w.index:>2}: {', '.join(w.hosts):<28} "
                f"{len(w.migrations):>3} migrations, {len(w.stops)} stops",
                markup=False,
            )
        self.predictions(step)
        verdict = "[bold green]valid[/]" if step.check.ok else "[bold red]INVALID[/]"
        out.print(f"plan {verdict}")

    def predictions(self, step: Planned) -> None:
        """The plan's predictions: its lock-step makespan against the lower bound, and each
        remedied VM with its remedy and predicted downtime."""
        s = step.plan.summary
        lock = (s.get("predicted_makespan_s") or {}).get("lockstep")
        if lock is None:
            return
        lb = s.get("lockstep_lower_bound_s") or s.get("makespan_lower_bound_s") or 0.0
        ratio = f", {lock / lb:.2f} x" if lb else ""
        out.print(
            f"predicted makespan (lock-step) {_hms(lock)}, lower bound {_hms(lb)}{ratio}",
            markup=False,
        )
        pipe = (s.get("predicted_makespan_s") or {}).get("pipelined")
        if pipe is not None:
            plb = s.get("pipelined_lower_bound_s") or lb
            pratio = f", {pipe / plb:.2f} x" if plb else ""
            out.print(
                f"predicted makespan (pipelined) {_hms(pipe)}, lower bound {_hms(plb)}{pratio}"
                + (f"; {pipe / lock:.2f} x lock-step" if lock else ""),
                markup=False,
            )
        rows = [
            (w.index, m.vm, m.remedy, m.predicted.downtime_s)
            for w in step.plan.waves
            for m in w.migrations
            if m.remedy and m.predicted
        ] + [
            (w.index, x.vm, x.remedy, x.predicted.downtime_s)
            for w in step.plan.waves
            for x in w.stops
            if x.remedy and x.predicted
        ]
        if not rows:
            out.print("no VM needs a remedy: every live migration is predicted to finish")
            return
        out.print(f"{len(rows)} VM(s) predicted not to finish a live migration, remedied:")
        for wave, vm, remedy, down in sorted(rows):
            name = self.inv.vm(vm).name if self.inv and self.inv.has_vm(vm) else vm
            out.print(
                f"  wave {wave:>2}: {name} ({vm[:8]}) {remedy}, predicted downtime {down:.1f} s",
                markup=False,
            )

    def simulated(self, step: Simulated) -> None:
        res, s = step.result, step.summary
        out.print(
            kv_table(
                "simulation (Nova's defaults, 10 GbE)",
                [
                    (
                        "makespan",
                        f"{_hms(res.makespan_s)} (lower bound {_hms(res.lower_bound_s)})",
                    ),
                    (
                        "downtime",
                        f"total {s['downtime_total_s']:,.1f} s, worst migration "
                        f"{s['downtime_max_s']:.3f} s",
                    ),
                    ("non-converging VMs", s["non_converging"]),
                    (
                        "hosts not upgraded",
                        f"{s['hosts_not_upgraded']}"
                        + (
                            " (a VM left behind: see rollwave simulate)"
                            if s["hosts_not_upgraded"]
                            else ""
                        ),
                    ),
                    ("invariant breaches", sum(res.breach_counts.values())),
                ],
            )
        )

    def reported(self, files: DemoFiles) -> None:
        out.print(
            f"files in {files.dir}/: inventory.json, policy.yaml, plan.json, timeline.jsonl, "
            f"report.html (open it in a browser)\n"
            f"next: rollwave check {files.inventory} {files.plan}\n"
            f"      rollwave simulate {files.inventory} {files.plan} --runs 100"
        )


def _hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"
