"""Fixture clouds for Nova's state rules (`planner.rules.method`): VMs in each state, a host
that is down, a hard affinity group. Each is a valid plan the checker accepts."""

from __future__ import annotations

from tests.clouds import Cloud, Fixture, make_plan, mv, policy, wave


def nova_states() -> Fixture:
    """cmp-1 holds a PAUSED VM (live), a SUSPENDED one (shelve: allow_stop), a SHUTOFF one (cold)
    and one in ERROR (no way to move: stopped in place); cmp-2 is an empty spare."""
    c = Cloud("nova-states")
    c.hosts_("cmp-1", "cmp-2", "cmp-3")
    c.vm("paused", "cmp-1", status="PAUSED").vm("suspended", "cmp-1", status="SUSPENDED")
    c.vm("off", "cmp-1", status="SHUTOFF").vm("broken", "cmp-1", status="ERROR")
    pol = policy(1, failures=0, allow_stop=True)
    plan = make_plan(
        pol,
        wave(1, ["cmp-2"]),
        wave(
            2,
            ["cmp-1"],
            [
                mv("paused", "cmp-1", "cmp-2", "live"),
                mv("suspended", "cmp-1", "cmp-2", "shelve"),
                mv("off", "cmp-1", "cmp-2", "cold"),
            ],
            [("broken", "cmp-1")],
        ),
        wave(3, ["cmp-3"]),
    )
    return Fixture("nova_states", c.build(), pol, plan)


def down_host() -> Fixture:
    """cmp-1 is down with an ACTIVE and a SHUTOFF VM (shared storage); the policy allows
    evacuation, so they are rebuilt on cmp-2 in cmp-1's wave."""
    c = Cloud("down-host")
    c.host("cmp-1", up=False).hosts_("cmp-2", "cmp-3")
    c.vm("a", "cmp-1").vm("b", "cmp-1", status="SHUTOFF")
    pol = policy(1, failures=0, allow_evacuate=True)
    plan = make_plan(
        pol,
        wave(1, ["cmp-2"]),
        wave(
            2,
            ["cmp-1"],
            [mv("a", "cmp-1", "cmp-2", "evacuate"), mv("b", "cmp-1", "cmp-2", "evacuate")],
        ),
        wave(3, ["cmp-3"]),
    )
    return Fixture("down_host", c.build(), pol, plan)


def affinity_shelved() -> Fixture:
    """A hard affinity pair on cmp-1: with allow_stop the group is shelved and each member
    unshelved to cmp-2, in one wave."""
    c = Cloud("affinity-shelved")
    c.hosts_("cmp-1", "cmp-2", "cmp-3")
    c.vm("db-1", "cmp-1").vm("db-2", "cmp-1", status="SHUTOFF")
    c.group("db", "affinity", members=["db-1", "db-2"])
    pol = policy(1, failures=0, allow_stop=True)
    plan = make_plan(
        pol,
        wave(1, ["cmp-2"]),
        wave(
            2,
            ["cmp-1"],
            [mv("db-1", "cmp-1", "cmp-2", "shelve"), mv("db-2", "cmp-1", "cmp-2", "shelve")],
        ),
        wave(3, ["cmp-3"]),
    )
    return Fixture("affinity_shelved", c.build(), pol, plan)


def left_down() -> Fixture:
    """cmp-1 is down and the policy does not allow evacuation: the plan leaves it out."""
    c = Cloud("left-down")
    c.host("cmp-1", up=False).hosts_("cmp-2", "cmp-3")
    c.vm("a", "cmp-1")
    pol = policy(1, failures=0)
    plan = make_plan(pol, wave(1, ["cmp-2"]), wave(2, ["cmp-3"]))
    return Fixture("left_down", c.build(), pol, plan)


NOVA = {f.__name__: f for f in (nova_states, down_host, affinity_shelved, left_down)}
