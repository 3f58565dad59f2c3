"""Import direction: planner core <- solver, sim <- planner's application layer (cli, ...).

`solver` and `sim` may import only planner's core modules, never the CLI or the OpenStack adapter,
and never each other. The core imports neither solver, sim, nor the application layer.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# planner's core: the modules solver and sim may use. Anything else under planner/ is above them.
CORE = {
    "planner",
    "planner.errors",
    "planner.inventory",
    "planner.policy",
    "planner.plan",
    "planner.formats",
    "planner.documents",
    "planner.reader",
    "planner.capacity",
    "planner.checker",
    "planner.bounds",
    "planner.generate",
    "planner.rules",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from planner import cli` imports planner.cli
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}: relative import; use absolute imports")
    return found


def ours(name: str) -> str | None:
    top = name.split(".")[0]
    return top if top in {"planner", "solver", "sim"} else None


def violations(package: str, allowed: Callable[[str], bool]) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for mod in sorted(imported_modules(path)):
            if ours(mod) and not allowed(mod):
                bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    return bad


def _is_planner_submodule_name(mod: str) -> bool:
    # `from planner.inventory import Host` yields "planner.inventory.Host": judge by its module.
    parts = mod.split(".")
    return any(".".join(parts[:n]) in CORE for n in range(len(parts), 0, -1))


def core_only(own: str) -> Callable[[str], bool]:
    def allowed(mod: str) -> bool:
        top = mod.split(".")[0]
        if top == own:
            return True
        if top == "planner":
            return _is_planner_submodule_name(mod) and not _names_app_layer(mod)
        return False

    return allowed


def _names_app_layer(mod: str) -> bool:
    parts = mod.split(".")
    return len(parts) >= 2 and f"planner.{parts[1]}" not in CORE


@pytest.mark.parametrize("package", ["solver", "sim"])
def test_solver_and_sim_import_only_planner_core(package: str) -> None:
    assert violations(package, core_only(package)) == []


def test_core_imports_nothing_above_it() -> None:
    bad = []
    for mod_name in sorted(CORE - {"planner"}):
        base = ROOT / mod_name.replace(".", "/")
        paths = sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
        for path in (p for p in paths if p.exists()):
            for mod in imported_modules(path):
                if ours(mod) and not (mod.split(".")[0] == "planner" and not _names_app_layer(mod)):
                    bad.append(f"{mod_name} imports {mod}")
    assert bad == []


def test_the_rule_catches_a_forbidden_import(tmp_path: Path) -> None:
    """The checker above must be able to fail: feed it modules that break each rule."""
    f = tmp_path / "m.py"
    allowed = core_only("sim")
    for line, ok in [
        ("from planner.inventory import Inventory", True),
        ("import planner.capacity", True),
        ("from planner import errors", True),
        ("from planner.cli import main", False),
        ("from planner import cli", False),
        ("import planner.openstack.snapshot", False),
        ("from solver.greedy import plan", False),
        ("import solver", False),
    ]:
        f.write_text(line + "\n")
        mods = {m for m in imported_modules(f) if ours(m)}
        assert all(allowed(m) for m in mods) is ok, line
