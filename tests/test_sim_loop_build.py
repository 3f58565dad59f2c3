"""The simulator's loop compiled by mypyc (setup.py) is used only while it matches its modules
(sim/loop_state.py, sim/loop_moves.py and sim/loop.py), and it is there when the test run expects
it (./dev test sets ROLLWAVE_EXPECT_COMPILED=1 where a C compiler is found: the install compiled
it)."""

from __future__ import annotations

import ast
import hashlib
import heapq
import os
from pathlib import Path
from types import ModuleType

from sim import engine, loop_moves, loop_state
from sim import loop as python_loop
from sim.engine import choose_loop

SOURCE = engine.loop_source()


def built(source: bytes, file: str = "_loop_c.cpython-311-x86_64-linux-gnu.so") -> ModuleType:
    """A module as setup.py builds it from `source` (its loop stands in for the compiled one)."""
    m = ModuleType("sim._loop_c")
    m.__file__ = f"/somewhere/sim/{file}"
    m.SOURCE_DIGEST = hashlib.sha256(source).hexdigest()  # type: ignore[attr-defined]
    m.run_loop = lambda *a: None  # type: ignore[attr-defined]
    return m


def test_a_compiled_loop_built_from_the_current_source_is_used() -> None:
    m = built(SOURCE)
    run, what = choose_loop(m, SOURCE)
    assert run is m.run_loop
    assert what == "compiled (mypyc)"


def test_a_stale_compiled_loop_is_not_used() -> None:
    run, what = choose_loop(built(SOURCE + b"\n# an edit\n"), SOURCE)
    assert run is python_loop.run_loop
    assert "stale" in what


def test_an_edit_of_either_loop_module_makes_it_stale() -> None:
    for module in (python_loop, loop_moves, loop_state):
        text = Path(str(module.__file__)).read_bytes()
        assert text in SOURCE
        edited = SOURCE.replace(text, text + b"\n# an edit\n")
        run, what = choose_loop(built(SOURCE), edited)
        assert run is python_loop.run_loop and "stale" in what


def test_setup_compiles_the_modules_the_engine_checks() -> None:
    """setup.py's LOOP_MODULES (copied, compiled, digested in that order) are the engine's."""
    tree = ast.parse((Path(__file__).resolve().parent.parent / "setup.py").read_text())
    found = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "LOOP_MODULES" for t in node.targets)
    ]
    assert found == [engine.LOOP_MODULES]


def test_no_compiled_loop_or_its_python_copy_means_the_python_loop() -> None:
    for m in (None, built(SOURCE, file="_loop_c.py")):
        run, what = choose_loop(m, SOURCE)
        assert run is python_loop.run_loop
        assert "without it" in what


def test_the_environment_can_force_the_python_loop() -> None:
    run, what = choose_loop(built(SOURCE), SOURCE, env="python")
    assert run is python_loop.run_loop
    assert "ROLLWAVE_SIM_ENGINE" in what


def test_the_installed_loop_is_the_one_chosen_and_compiled_when_expected() -> None:
    forced = os.environ.get("ROLLWAVE_SIM_ENGINE", "")
    run, what = choose_loop(engine._compiled(), SOURCE, forced)
    assert (run, what) == (engine._run_loop, engine.IMPLEMENTATION)
    if os.environ.get("ROLLWAVE_EXPECT_COMPILED") == "1" and forced != "python":
        assert engine.IMPLEMENTATION == "compiled (mypyc)", engine.IMPLEMENTATION
        compiled = engine._compiled()
        assert compiled is not None
        assert hashlib.sha256(SOURCE).hexdigest() == compiled.SOURCE_DIGEST


def test_each_loop_knows_whether_it_is_compiled() -> None:
    """`COMPILED` picks the variants written for each (the event heap, a scan): the Python loop
    runs heapq's functions, a compiled copy its own."""
    assert python_loop.COMPILED is False
    assert python_loop.heap_push is heapq.heappush and python_loop.heap_pop is heapq.heappop
    compiled = engine._compiled()
    if compiled is not None and str(compiled.__file__).endswith((".so", ".pyd")):
        assert compiled.COMPILED is True
        assert compiled.heap_push is not heapq.heappush
