"""Measure how long each notebook takes to run, for the pacing in its header.

    python scripts/time_notebooks.py --mode fast            # every notebook, fast mode
    python scripts/time_notebooks.py --mode full 01 02 05   # some notebooks, full mode

Executes each notebook top to bottom (``usmlite_edu.course.notebook_runner.execute``, the same
runner as the test command; executed copies go to a temporary folder) and records its wall
time in ``notebooks/run_times.json`` beside the processor and core count it ran on (per
notebook and mode: figures from different machines can sit side by side). Earlier figures
for other notebooks or modes are kept. Then run ``python scripts/notebook_header.py``
to write them into the notebooks. Times include starting a kernel and, for a first run,
compiling; with the JAX compilation cache warm (a second run) they are shorter.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from usmlite_edu.course import notebook_runner  # noqa: E402
from usmlite_edu.speech import runs  # noqa: E402

OUT = ROOT / "notebooks" / "run_times.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help="notebook numbers or name parts (default: all)")
    ap.add_argument("--mode", choices=("fast", "full"), required=True)
    ap.add_argument("--shared", action="store_true", help="say that other jobs shared the cores")
    args = ap.parse_args(argv)
    data = json.loads(OUT.read_text()) if OUT.exists() else {"notebooks": {}}
    machine = runs.machine_info()
    where = f"{machine['processor']}, {os.cpu_count()} cores"
    if args.shared:
        where += " shared with other jobs"
    # The top-level "machine" is where the figures without their own were measured; a
    # figure measured elsewhere keeps its machine beside it, so no time is misattributed.
    data.setdefault("machine", where)
    with tempfile.TemporaryDirectory() as tmp:
        for path in notebook_runner.select(args.names or None, ROOT / "notebooks"):
            t0 = time.perf_counter()
            notebook_runner.execute(path, out_dir=Path(tmp), fast=args.mode == "fast", timeout=7200)
            seconds = round(time.perf_counter() - t0, 1)
            entry = data["notebooks"].setdefault(path.name[:2], {})
            entry[args.mode] = seconds
            entry.setdefault("machine", {})[args.mode] = where
            print(f"{path.name}: {seconds:.0f} s in {args.mode} mode", flush=True)
            OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
