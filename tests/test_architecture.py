"""The arrows of the house (docs/architecture.md), checked on every import statement:

    planner.cli  ->  planner.app  ->  planner.report, solver, sim  ->  planner core
                                      planner.executor, planner.openstack  ->  planner core

- the core imports nothing above it;
- `solver` and `sim` import only the core, never each other;
- the executor and the OpenStack adapter import neither engine (nor `planner.report` and
  `planner.app`, which import the engines): only the core and each other;
- `planner.app` (the use cases) imports anything but the CLI; `planner.report`, the executor and
  the adapter sit below it and never import it;
- nothing outside `planner/cli` imports the CLI (the benchmarks and the notebooks included; the
  tests drive it on purpose);
- only the sandbox command (and the benchmarks) import the sandbox, a test cloud.

The core is every module under planner/ outside the application packages in `APPLICATION`: a new
core module or package (say planner/rules/) is checked as core without being listed anywhere.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# planner's application layer, one package each; every other module under planner/ is core.
APPLICATION = ("app", "cli", "executor", "openstack", "report")
ENGINES = ("solver", "sim")
PACKAGES = ("planner", *ENGINES)  # the product's source trees
OUTSIDE = "outside"  # the benchmarks and the notebooks: they use the product, nothing uses them
LAYERS = frozenset({"core", *ENGINES, *APPLICATION})


def layer(module: str) -> str | None:
    """The layer of an imported or importing module name; None for another project's."""
    parts = module.split(".")
    if parts[0] in ENGINES:
        return parts[0]
    if parts[0] in ("benchmarks", "notebooks"):
        return OUTSIDE
    if parts[0] != "planner":
        return None
    if len(parts) > 1 and parts[1] in APPLICATION:
        return parts[1]
    return "core"


def imported_modules(source: str, where: str) -> set[str]:
    """Every module an import statement in `source` names, ours or not, at any depth (imports
    inside functions count: they run too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=where)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from planner import cli` imports planner.cli
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{where}: relative import; use absolute imports")
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def notebook_source(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


@cache
def import_graph() -> dict[str, frozenset[str]]:
    """Every module of the product, the benchmarks and the notebooks, with the modules of ours
    it imports."""
    graph: dict[str, frozenset[str]] = {}
    for top in (*PACKAGES, "benchmarks"):
        for path in sorted((ROOT / top).rglob("*.py")):
            mods = imported_modules(path.read_text(), str(path))
            graph[module_name(path)] = frozenset(m for m in mods if layer(m))
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        mods = imported_modules(notebook_source(path), str(path))
        graph[f"notebooks.{path.stem}"] = frozenset(m for m in mods if layer(m))
    return graph


def core_modules() -> list[str]:
    return sorted(m for m in import_graph() if layer(m) == "core")


@dataclass(frozen=True)
class Arrow:
    """An importer in one of `importers` may import a module of `allowed(importer's layer)`."""

    rule: str
    importers: frozenset[str]
    allowed: Callable[[str], frozenset[str]]

    def violations(self, graph: dict[str, Iterable[str]]) -> list[str]:
        bad = []
        for importer, mods in sorted(graph.items()):
            own = layer(importer)
            if own not in self.importers:
                continue
            ok = self.allowed(own)
            bad += [f"{importer} imports {m}" for m in sorted(mods) if layer(m) not in ok]
        return bad


@dataclass(frozen=True)
class Fence:
    """No module imports the modules under `inside`, except the modules under `inside` and
    `allowed` themselves (a finer arrow than a layer's)."""

    rule: str
    inside: str
    allowed: tuple[str, ...]

    @staticmethod
    def _under(module: str, prefix: str) -> bool:
        return module == prefix or module.startswith(prefix + ".")

    def violations(self, graph: dict[str, Iterable[str]]) -> list[str]:
        bad = []
        for importer, mods in sorted(graph.items()):
            if any(self._under(importer, p) for p in (self.inside, *self.allowed)):
                continue
            bad += [f"{importer} imports {m}" for m in sorted(mods) if self._under(m, self.inside)]
        return bad


ARROWS: dict[str, Arrow | Fence] = {
    "core": Arrow(
        "the core imports nothing above it",
        frozenset({"core"}),
        lambda own: frozenset({"core"}),
    ),
    "engines": Arrow(
        "solver and sim import only the core, never each other",
        frozenset(ENGINES),
        lambda own: frozenset({"core", own}),
    ),
    "cloud": Arrow(
        "the executor and the OpenStack adapter import only the core and each other",
        frozenset({"executor", "openstack"}),
        lambda own: frozenset({"core", "executor", "openstack"}),
    ),
    "app": Arrow(
        "the use cases import anything but the CLI",
        frozenset({"app"}),
        lambda own: LAYERS - {"cli"},
    ),
    "below-app": Arrow(
        "report, the executor and the adapter never import the use cases (they sit above them)",
        frozenset({"report", "executor", "openstack"}),
        lambda own: LAYERS - {"app", "cli"},
    ),
    "cli": Arrow(
        "nothing outside planner/cli imports the CLI",
        frozenset(LAYERS | {OUTSIDE}) - {"cli"},
        lambda own: frozenset(LAYERS | {OUTSIDE}) - {"cli"},
    ),
    # The sandbox is a test cloud: production code takes Nova conventions from the adapter
    # (planner/openstack/conventions.py), not from the sandbox that also writes them; only its
    # command and the benchmarks that measure it start it.
    "sandbox": Fence(
        "only the sandbox command imports the sandbox",
        "planner.openstack.sandbox",
        ("planner.cli.sandbox", "benchmarks"),
    ),
}


def check(name: str) -> list[str]:
    return ARROWS[name].violations(dict(import_graph()))


def test_the_core_is_found() -> None:
    """The modules the engines build on are core, and none of the application layer is."""
    core = core_modules()
    for known in ("planner", "planner.errors", "planner.capacity", "planner.checker"):
        assert known in core
    # every application package exists: a renamed one would silently become core
    for package in APPLICATION:
        assert (ROOT / "planner" / package / "__init__.py").exists(), package


def test_core_imports_nothing_above_it() -> None:
    assert check("core") == []


def test_solver_and_sim_import_only_the_core() -> None:
    assert check("engines") == []


def test_executor_and_openstack_import_neither_engine() -> None:
    assert check("cloud") == []


def test_app_imports_anything_but_the_cli() -> None:
    assert check("app") == []


def test_report_executor_and_openstack_never_import_the_use_cases() -> None:
    assert check("below-app") == []


def test_nothing_outside_the_cli_imports_it() -> None:
    assert check("cli") == []


def test_only_the_sandbox_command_imports_the_sandbox() -> None:
    assert check("sandbox") == []


# Each arrow fed modules that keep it and modules that break it: (importer, import line, kept).
CASES: dict[str, list[tuple[str, str, bool]]] = {
    "core": [
        ("planner.checker", "from planner.inventory import Inventory", True),
        ("planner.checker", "from planner import errors", True),
        ("planner.rules.capacity", "import planner.capacity", True),  # a new core package
        ("planner.rules.capacity", "from planner.rules import registry", True),
        ("planner.checker", "from solver.greedy import plan", False),
        ("planner.rules.capacity", "import sim.engine", False),
        ("planner.bounds", "from planner.report.replay import replay", False),
        ("planner.rules.capacity", "from planner import app", False),
        ("planner.formats", "from planner.openstack import mapping", False),
    ],
    "engines": [
        ("sim.engine", "from planner.inventory import Inventory", True),
        ("sim.engine", "import planner.capacity", True),
        ("solver.greedy", "from solver.context import build_context", True),
        ("solver.waves", "from planner.rules import registry", True),
        ("sim.engine", "from planner.cli import main", False),
        ("sim.engine", "from planner import cli", False),
        ("sim.engine", "import planner.openstack.snapshot", False),
        ("sim.engine", "from solver.greedy import plan", False),
        ("sim.engine", "import solver", False),
        ("solver.greedy", "from sim.model import SimModel", False),
        ("solver.greedy", "from planner.report.replay import replay", False),
    ],
    "cloud": [
        ("planner.executor.run", "from planner.checker import check_plan", True),
        ("planner.executor.run", "from planner.openstack.connect import Api", True),
        ("planner.openstack.snapshot", "from planner import formats", True),
        ("planner.executor.view", "from solver.greedy import GreedyState", False),
        ("planner.executor.eta", "from sim.engine import prepare", False),
        ("planner.openstack.snapshot", "import sim", False),
        ("planner.executor.run", "from planner.report.schedule import Schedule", False),
        ("planner.executor.run", "from planner.app import planning", False),
    ],
    "app": [
        ("planner.app.whatif", "from solver.solve import solve", True),
        ("planner.app.simulation", "from sim.engine import simulate", True),
        ("planner.app.report", "from planner.report.html import write_report", True),
        ("planner.app.execute", "from planner.executor.run import Executor", True),
        ("planner.app.demo", "from planner.cli.check import print_metrics", False),
        ("planner.app.demo", "from planner import cli", False),
    ],
    "below-app": [
        ("planner.report.whatif", "from sim.model import SimModel", True),
        ("planner.report.whatif", "from planner.app.whatif import sweep", False),
        ("planner.executor.run", "import planner.app.execute", False),
        ("planner.openstack.snapshot", "from planner import app", False),
    ],
    "cli": [
        ("planner.report.html", "from planner.report import plots", True),
        ("benchmarks.report_bench", "from planner.app.whatif import sweep", True),
        ("notebooks.capacity-whatif", "from planner.report import plots", True),
        ("planner.report.whatif", "from planner.cli.common import out", False),
        ("planner.app.demo", "from planner.cli import main", False),
        ("benchmarks.report_bench", "from planner.cli.whatif import tradeoff", False),
        ("notebooks.capacity-whatif", "import planner.cli", False),
        ("planner.executor.run", "from planner import cli", False),
        ("solver.solve", "from planner.cli.plan import ProgressLine", False),
    ],
    "sandbox": [
        ("planner.openstack.snapshot", "from planner.openstack import conventions", True),
        ("planner.cli.sandbox", "from planner.openstack.sandbox import manager", True),
        ("benchmarks.sandbox_bench", "from planner.openstack.sandbox import manager", True),
        ("planner.openstack.sandbox.server", "import planner.openstack.sandbox.harness", True),
        ("planner.openstack.snapshot", "from planner.openstack.sandbox.seed import X", False),
        ("planner.executor.cloud", "from planner.openstack.sandbox import manager", False),
        ("planner.openstack.connect", "import planner.openstack.sandbox.server", False),
        ("planner.app.execute", "from planner.openstack import sandbox", False),
    ],
}


def test_every_arrow_is_fed_a_forbidden_import() -> None:
    assert set(CASES) == set(ARROWS)
    assert all(any(not kept for _, _, kept in cases) for cases in CASES.values())


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_rule_catches_a_forbidden_import(name: str, tmp_path: Path) -> None:
    """Each arrow's check must be able to fail: feed it modules that keep it and that break it,
    written to a file and read back as the real tree is."""
    f = tmp_path / "m.py"
    for importer, line, kept in CASES[name]:
        f.write_text(line + "\n")
        mods = {m for m in imported_modules(f.read_text(), str(f)) if layer(m)}
        found = ARROWS[name].violations({importer: mods})
        assert (found == []) is kept, (importer, line, found)


def test_a_relative_import_is_refused() -> None:
    with pytest.raises(AssertionError, match="relative import"):
        imported_modules("from . import x\n", "m.py")
