"""The largest numbers rollwave reads, and why (docs/formats.md, "Limits").

Every integer in an input file is at most `MAX_INT`, Placement's own ceiling for an inventory's
`total` and `reserved` and for an allocation's amount (its API schemas cap them at the database's
32-bit `MAX_INT`): a real cloud never holds more, and a file that does is corrupt. Counts such as
`max_hosts_per_wave` or a wave's index get the same ceiling; anything larger means nothing.

A host's effective capacity, (capacity - reserved) x allocation_ratio, is at most
`MAX_EFFECTIVE` (2^40) per class: the solver's models sum capacities over up to 100,000 hosts and
weight them by small factors, and those sums must stay inside CP-SAT's 64-bit integers
(2^40 x 10^5 x 8 < 2^63). Floats are finite and at most `MAX_FLOAT`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

MAX_INT = 2**31 - 1
MAX_EFFECTIVE = 2**40
MAX_FLOAT = 1e15


def shown(value: float) -> str:
    """A number for a message: huge ones by their size, not their thousands of digits."""
    if isinstance(value, int) and abs(value) >= 10**20:
        return f"a number of about {value.bit_length() * 30103 // 100000 + 1} digits"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:g}"


def check_effective(
    bad: Callable[[str, str], None],
    loc: str,
    capacity: Mapping[str, int],
    reserved: Mapping[str, int],
    ratio: Mapping[str, float],
) -> None:
    """Report (via `bad(location, message)`) each class whose effective capacity passes
    `MAX_EFFECTIVE`: the allocation ratio is what makes it so, so it is named."""
    for rc, total in capacity.items():
        r = ratio.get(rc, 1.0)
        if (total - reserved.get(rc, 0)) * r > MAX_EFFECTIVE:
            bad(
                f"{loc}.allocation_ratio.{rc}",
                f"{r:g} makes the effective capacity (capacity - reserved) x ratio more than "
                f"{MAX_EFFECTIVE:,}",
            )
