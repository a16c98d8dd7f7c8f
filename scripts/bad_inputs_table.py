"""Render the README's bad-input table from the tests' cases (``tests/bad_input_cases.py``).

The table sits between ``<!-- bad-inputs:start -->`` and ``<!-- bad-inputs:end -->`` in
README.md; ``tests/test_bad_inputs.py`` fails when it differs from what this renders.

    python scripts/bad_inputs_table.py                  # rewrite README.md's block in place
    python scripts/bad_inputs_table.py --out /tmp/R.md  # write the updated README elsewhere
    python scripts/bad_inputs_table.py --check          # exit 1 if README.md's block is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- bad-inputs:start -->\n", "<!-- bad-inputs:end -->"


def updated(readme: str, table: str) -> str:
    """``readme`` with its bad-inputs block replaced by ``table``."""
    if START not in readme or END not in readme:
        raise SystemExit(f"README has no '{START.strip()}' ... '{END}' block to fill")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + START + table + END + tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readme", type=Path, default=REPO / "README.md", help="the README to read")
    ap.add_argument("--out", type=Path, help="write the updated README here (default: --readme)")
    ap.add_argument("--check", action="store_true", help="only check; exit 1 if it is stale")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests"))
    from bad_input_cases import render_table

    text = args.readme.read_text()
    new = updated(text, render_table())
    if args.check:
        if new != text:
            print(
                f"{args.readme}: the bad-input table is stale; run "
                "`python scripts/bad_inputs_table.py`",
                file=sys.stderr,
            )
            return 1
        return 0
    out = args.out or args.readme
    out.write_text(new)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
