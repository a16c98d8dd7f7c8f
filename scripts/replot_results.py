"""Redraw a reproduction's plot.png from its results.json (no training, no evaluation).

    python scripts/replot_results.py results/cpu

``usmlite-edu reproduce`` draws the plot when it assembles the table; this redraws it with
the current plotting code (``usmlite_edu.training.reproduce._plot``) from the recorded summary.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from usmlite_edu.training import reproduce  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    out = Path(argv[0])
    results = out / "results.json"
    if not results.is_file():
        print(f"{results} not found: pass the --out folder of `usmlite-edu reproduce`")
        return 2
    reproduce._plot(json.loads(results.read_text())["summary"], out / "plot.png")
    print(f"wrote {out / 'plot.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
