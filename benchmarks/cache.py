"""Pickled inputs for benchmarks, cached under $TMPDIR/rollwave-bench.

Planning is not what most benchmarks measure, so their plans are cached. The key carries a
fingerprint of the planner's and solver's sources: a plan made by other code (another checkout,
an older commit) is never measured as this code's, and a pickle that no longer loads is rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "rollwave-bench"


@cache
def fingerprint() -> str:
    """A digest of every source file the cached objects come from."""
    h = hashlib.sha256()
    for pkg in ("planner", "solver"):
        for f in sorted((ROOT / pkg).rglob("*.py")):
            h.update(str(f.relative_to(ROOT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def cached(name: str, make: Callable[[], T]) -> T:
    """make(), pickled as NAME for this source; rebuilt when missing or unreadable."""
    CACHE.mkdir(parents=True, exist_ok=True)
    f = CACHE / f"{name}-{fingerprint()}.pickle"
    if f.exists():
        try:
            with f.open("rb") as fh:
                got: T = pickle.load(fh)
            return got
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
            pass  # written by other code or cut short: rebuild it
    got = make()
    tmp = f.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        pickle.dump(got, fh)
    tmp.replace(f)  # never a half-written pickle under the real name
    return got
