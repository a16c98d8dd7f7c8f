"""Copy a reproduction's outputs into the committed results folder, as the tests expect them.

    python scripts/publish_table.py --table DIR [--to results/an4] [--b0]

``DIR`` is a ``usmlite-edu reproduce --out`` folder whose outputs (``results.json``,
``table.md``, ...) were written by its last run. Copied: the rows that ``results.json``
names (and only those, so a seed still running in ``DIR`` stays out), ``table.md``,
``table.csv``, ``results.json``, ``claims.md``, ``plot.png``, and ``b0/`` with ``--b0``.
The table is then written into ``README.md`` between its ``<!-- results-table:start -->``
and ``<!-- results-table:end -->`` markers (``tests/test_results_tables.py`` checks that
the README shows the committed table). The README's prose (its status paragraph, the
claims in words) stays for a person to write. ``--to`` defaults to ``results/<preset>``.

Exit codes: 0 done, 2 a missing file or marker (one line on stderr; nothing is copied).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("table.md", "table.csv", "results.json", "claims.md", "plot.png")
START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"


def with_table(readme: str, table_md: str) -> str:
    """``readme`` with the Markdown table of ``table_md`` between the markers."""
    if START not in readme or END not in readme:
        raise ValueError(f"README.md has no {START} ... {END} markers")
    lines = [ln for ln in table_md.splitlines() if ln.startswith("|")]
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + START + "\n" + "\n".join(lines) + "\n" + END + tail


def publish(table: Path, to: Path | None = None, b0: bool = False) -> list[str]:
    """Copy (see the module docstring); returns the row keys published."""
    results = json.loads((table / "results.json").read_text())
    to = to or ROOT / "results" / results["preset"]
    keys = sorted(r["key"] for r in results["runs"])
    missing = [f for f in OUTPUTS if not (table / f).exists()]
    missing += [f"rows/{k}.json" for k in keys if not (table / "rows" / f"{k}.json").exists()]
    if b0 and not (table / "b0").is_dir():
        missing.append("b0/")
    if missing:
        raise FileNotFoundError(f"{table}: missing {', '.join(missing)}")
    readme = with_table((to / "README.md").read_text(), (table / "table.md").read_text())
    (to / "rows").mkdir(parents=True, exist_ok=True)
    for k in keys:
        shutil.copyfile(table / "rows" / f"{k}.json", to / "rows" / f"{k}.json")
    for f in OUTPUTS:
        shutil.copyfile(table / f, to / f)
    if b0:
        shutil.rmtree(to / "b0", ignore_errors=True)
        shutil.copytree(table / "b0", to / "b0")
    (to / "README.md").write_text(readme)
    return keys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", type=Path, required=True, help="a reproduce --out folder")
    ap.add_argument("--to", type=Path, help="the results folder (default results/<preset>)")
    ap.add_argument("--b0", action="store_true", help="also replace b0/ with the table's")
    args = ap.parse_args(argv)
    try:
        keys = publish(args.table, args.to, args.b0)
    except (OSError, ValueError, KeyError) as e:
        print(f"publish_table: {e}", file=sys.stderr)
        return 2
    seeds = sorted({k.split("_s")[1] for k in keys}, key=int)
    print(f"published {len(keys)} rows (seeds {', '.join(seeds)}) and the outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
