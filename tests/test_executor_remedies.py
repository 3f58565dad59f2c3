"""The executor's planned force-completes without a cloud: what the journal keeps of them (the
plan's fields through re-plans, a fallback's new method for a resume), the options it records,
and the dry run's calls. The force itself, against Nova, is in test_executor_force.py."""

from __future__ import annotations

from dataclasses import replace

from planner.app.execute import RECORDED_WHEN_SET, merge_recorded
from planner.executor.journal import NOTE, RunState, wave_from_dict, wave_to_dict
from planner.executor.options import ExecOptions, safe_options
from planner.plan import Migration, Wave
from tests.clouds import NAMED
from tests.test_executor_units import dry_run


def _wave() -> Wave:
    return Wave(
        1,
        ("a",),
        (
            Migration("v1", "a", "b", "live", force_complete_after_s=90.0, remedy="force-complete"),
            Migration("v2", "a", "c"),
        ),
    )


def test_a_wave_keeps_its_planned_forces_through_the_journal() -> None:
    w = _wave()
    d = wave_to_dict(w)
    assert d["migrations"][1] == {"vm": "v2", "from": "a", "to": "c", "method": "live"}
    assert wave_from_dict(d) == w


def test_a_fallback_note_turns_the_migration_cold_for_a_resume() -> None:
    st = RunState(schedule=[_wave()])
    st.apply(
        {"ev": "done", "op": "force", "step": "w1/migrate/v1/1/force/1", "wave": 1, "vm": "v1"}
    )
    assert set(st.forced) == {(1, "v1")}
    st.apply({"ev": NOTE, "op": "fallback", "wave": 1, "vm": "v1", "to": "cold", "reason": "x"})
    m = st.schedule[0].migrations[0]
    assert (m.method, m.force_complete_after_s, m.remedy) == ("cold", None, "cold")
    assert st.schedule[0].migrations[1] == _wave().migrations[1]
    assert st.counts()["force_fallbacks"] == 1 and st.counts()["migrations_forced"] == 0
    # no cold fallback: the migration stays as planned (the VM is given up at run time)
    st2 = RunState(schedule=[_wave()])
    st2.apply({"ev": NOTE, "op": "fallback", "wave": 1, "vm": "v1", "to": None, "reason": "x"})
    assert st2.schedule == [_wave()]


def test_a_retarget_keeps_the_planned_force() -> None:
    st = RunState(schedule=[_wave()])
    st.apply({"ev": NOTE, "op": "retarget", "wave": 1, "vm": "v1", "src": "a", "dst": "d"})
    m = st.schedule[0].migrations[0]
    assert (m.dst, m.force_complete_after_s) == ("d", 90.0)


def test_force_stall_is_recorded_only_when_set_and_resumes_as_recorded() -> None:
    assert "force_stall_s" not in safe_options(ExecOptions())
    opts = safe_options(ExecOptions(force_stall_s=5.0))
    assert opts["force_stall_s"] == 5.0 and "force_stall_s" in RECORDED_WHEN_SET
    given = {"force_stall_s": 30.0}
    got, changed = merge_recorded(opts, given, explicit=set())
    assert got == {"force_stall_s": 5.0} and changed == []
    got, changed = merge_recorded(opts, {"force_stall_s": 7.0}, explicit={"force_stall_s"})
    assert got == {"force_stall_s": 7.0} and changed == [("force_stall_s", 5.0)]
    # a journal without it (the default then): the command line's value
    assert merge_recorded({}, given, explicit=set())[0] == given


def test_the_dry_run_prints_the_planned_force_call() -> None:
    fx = NAMED["three_plus_spare"]()
    waves = list(fx.plan.waves)
    first = next(i for i, w in enumerate(waves) if any(m.method == "live" for m in w.migrations))
    w = waves[first]
    vm = next(m.vm for m in w.migrations if m.method == "live")
    waves[first] = replace(
        w,
        migrations=tuple(
            replace(m, force_complete_after_s=60.0, remedy="force-complete") if m.vm == vm else m
            for m in w.migrations
        ),
    )
    res, lines = dry_run(fx.inventory, replace(fx.plan, waves=tuple(waves)))
    assert res.status == "completed", res.reason
    forces = [ln for ln in lines if '{"force_complete": null}' in ln]
    assert forces == [
        f'POST compute /servers/{vm}/migrations/<migration>/action {{"force_complete": null}}'
    ]
    move = next(i for i, ln in enumerate(lines) if f"/servers/{vm}/action" in ln)
    assert lines.index(forces[0]) > move
