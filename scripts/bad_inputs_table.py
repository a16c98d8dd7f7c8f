"""Render the bad-input table of ``docs/bad-inputs.md`` from the tests' cases
(``tests/bad_input_cases.py``).

The table sits between ``<!-- bad-inputs:start -->`` and ``<!-- bad-inputs:end -->`` in
docs/bad-inputs.md; ``tests/test_bad_inputs.py`` fails when it differs from what this renders.

    python scripts/bad_inputs_table.py                  # rewrite the page's block in place
    python scripts/bad_inputs_table.py --out /tmp/P.md  # write the updated page elsewhere
    python scripts/bad_inputs_table.py --check          # exit 1 if the page's block is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- bad-inputs:start -->\n", "<!-- bad-inputs:end -->"
PAGE = REPO / "docs" / "bad-inputs.md"


def updated(page: str, table: str) -> str:
    """``page`` (a Markdown page's text) with its bad-inputs block replaced by ``table``."""
    if START not in page or END not in page:
        raise SystemExit(f"the page has no '{START.strip()}' ... '{END}' block to fill")
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + START + table + END + tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--page",
        "--readme",
        dest="page",
        type=Path,
        default=PAGE,
        help="the Markdown page holding the table (default: docs/bad-inputs.md)",
    )
    ap.add_argument("--out", type=Path, help="write the updated page here (default: --page)")
    ap.add_argument("--check", action="store_true", help="only check; exit 1 if it is stale")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests"))
    from bad_input_cases import render_table

    text = args.page.read_text()
    new = updated(text, render_table())
    if args.check:
        if new != text:
            print(
                f"{args.page}: the bad-input table is stale; run "
                "`python scripts/bad_inputs_table.py`",
                file=sys.stderr,
            )
            return 1
        return 0
    out = args.out or args.page
    out.write_text(new)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
