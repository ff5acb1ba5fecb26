"""The install-time warm-up of the numba kernels (issue #21, item 3): in one process against one process per core.

``make venv`` and desktop Slicer (once after installing, in a worker process) run ``python -m RadiomicsLabLib.warmup``,
which compiles every kernel into numba's cache (:mod:`RadiomicsLabLib.warmup`). Each variant here runs it into a fresh
numba cache (``NUMBA_CACHE_DIR`` a new folder, the stamp in another), one after the other in the same run:

1. ``--workers 1``: everything compiled in the warm-up's own process, task after task (the warm-up before
   2026-12-07);
2. the default: the tasks compiled in one worker process per core at once, then loaded by the warm-up's process,
   which compiles what is left (printed: should be 0).

Printed: seconds, compilations (the workers compile the kernels that several tasks share once each, so more than in
one process), the largest process's peak memory, and the ratio one-process / per-core seconds.

  .venv/bin/python Testing/benchmarks/bench_warmup.py [--workers N]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Runs the warm-up with the given arguments and prints its report and the largest process's peak memory (its own
#: or a worker's: RUSAGE_CHILDREN's maximum covers every descendant waited for).
RUNNER = r'''
import json, resource, subprocess, sys
done = subprocess.run([sys.executable, "-m", "RadiomicsLabLib.warmup", "--json", *sys.argv[1:]], capture_output=True,
                      text=True, check=True)
report = json.loads(done.stdout)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
print(json.dumps({key: report[key] for key in ("seconds", "compiled", "compiled_here", "workers")} | {"peak": peak}))
'''


def warm_up(folder: Path, arguments: list[str]) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(folder / "numba"), XDG_CACHE_HOME=str(folder / "stamp"),
               LOCALAPPDATA=str(folder / "stamp"))
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", RUNNER, *arguments], env=env, cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1]) | {"wall": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=None, help="worker processes of the second variant "
                        "(default: the warm-up's own choice, one per core as memory allows)")
    args = parser.parse_args()
    from RadiomicsLabLib.limits import compute_threads

    print(f"machine: {platform.processor() or platform.machine()}, {compute_threads()} cores usable, "
          f"Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="bench-warmup-") as temporary:
        one = warm_up(Path(temporary) / "one", ["--workers", "1"])
        many = warm_up(Path(temporary) / "many", [] if args.workers is None else ["--workers", str(args.workers)])
    print(f"{'warm-up into a fresh cache':38} {'s':>7} {'compiled':>9} {'in its process':>15} {'peak GB':>8}")
    for label, run in (("in one process (--workers 1)", one), (f"in {many['workers']} worker processes", many)):
        print(f"{label:38} {run['wall']:7.1f} {run['compiled']:9d} {run['compiled_here']:15d} "
              f"{run['peak'] / 2 ** 30:8.2f}")
    print(f"ratio one process / workers: {one['wall'] / many['wall']:.2f}x")


if __name__ == "__main__":
    main()
