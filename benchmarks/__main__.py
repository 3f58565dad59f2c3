"""`python -m benchmarks [NAME ...]` (or `./dev bench`): run the benchmarks, each printing a table.

With no name, lists them; `all` runs every one in turn (several minutes: the solver's and the
simulator's take longest). Arguments after `--` go to the named benchmark, e.g.
`python -m benchmarks sim_bench -- --quick`.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.endswith("_bench"))


def main(argv: list[str]) -> int:
    names, extra = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :])
        if "--" in argv
        else (
            argv,
            [],
        )
    )
    known = available()
    if not names:
        print("benchmarks:", ", ".join(known))
        print("run: python -m benchmarks NAME [NAME ...] [-- ARGS] | all")
        return 0
    if names == ["all"]:
        names = known
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(known)}")
        return 2
    for name in names:
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        sys.argv = [f"benchmarks.{name}", *extra]
        rc = module.main()  # each benchmark parses sys.argv with argparse
        if rc:
            return int(rc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
