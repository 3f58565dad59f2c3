"""OpenStack release labels in order, and how far Nova lets computes trail its controllers.

Labels are the series' code names (Austin ... Zed, then Antelope, Bobcat, ...) and, from 2023.1
on, their release ids `YEAR.1` / `YEAR.2` (releases.openstack.org, `data/series_status.yaml` of
openstack/releases). Both spellings of one series are the same release: `2025.1` == `Epoxy`.
A label that is neither is unknown: it is only ever compared for equality (`order` gives None).

Nova's support envelope (nova `doc/source/admin/upgrades.rst`, "Rolling upgrade process", and
`OLDEST_SUPPORTED_SERVICE_VERSION` in `nova/objects/service.py`): from 2023.1 on, SLURP releases
are the `YEAR.1` ones, and a control plane at release R accepts computes back to the previous
SLURP release: N-2 when R is a SLURP release (2025.1 Epoxy accepts 2024.1 Caracal), N-1 when it
is not (2025.2 Flamingo accepts 2025.1 Epoxy). Before 2023.1, one release (N-1). The conductor
refuses to start with older computes.
"""

from __future__ import annotations

import functools
import re

# Every series, oldest first (openstack/releases `data/series_status.yaml`).
CODE_NAMES = (
    "Austin", "Bexar", "Cactus", "Diablo", "Essex", "Folsom", "Grizzly", "Havana", "Icehouse",
    "Juno", "Kilo", "Liberty", "Mitaka", "Newton", "Ocata", "Pike", "Queens", "Rocky", "Stein",
    "Train", "Ussuri", "Victoria", "Wallaby", "Xena", "Yoga", "Zed",
    "Antelope", "Bobcat", "Caracal", "Dalmatian", "Epoxy", "Flamingo", "Gazpacho", "Hibiscus",
    "Indri",
)  # fmt: skip
FIRST_ID_YEAR = 2023  # 2023.1 Antelope: the first release id, and the first SLURP release
_ANTELOPE = CODE_NAMES.index("Antelope")
_BY_NAME = {n.lower(): i for i, n in enumerate(CODE_NAMES)}
_RELEASE_ID = re.compile(r"^(\d{4})\.([12])$")


@functools.lru_cache(maxsize=1024)  # a cloud has a few labels, asked for once per move
def order(label: str | None) -> int | None:
    """The release's position (oldest first), or None for a label that is no release."""
    if label is None:
        return None
    s = label.strip().lower()
    if s in _BY_NAME:
        return _BY_NAME[s]
    m = _RELEASE_ID.match(s)
    if m is None or int(m.group(1)) < FIRST_ID_YEAR:
        return None
    return _ANTELOPE + 2 * (int(m.group(1)) - FIRST_ID_YEAR) + int(m.group(2)) - 1


def name(position: int) -> str:
    """`2025.1 Epoxy`; `Zed` before release ids; `2027.2` past the names known here."""
    rid = ""
    if position >= _ANTELOPE:
        year, half = divmod(position - _ANTELOPE, 2)
        rid = f"{FIRST_ID_YEAR + year}.{half + 1}"
    code = CODE_NAMES[position] if 0 <= position < len(CODE_NAMES) else ""
    return " ".join(x for x in (rid, code) if x)


def is_slurp(position: int) -> bool:
    return position >= _ANTELOPE and (position - _ANTELOPE) % 2 == 0


def oldest_compute(controllers: int) -> int:
    """The oldest compute release a control plane at `controllers` accepts (see above)."""
    if is_slurp(controllers):
        return controllers - 2
    return controllers - 1
