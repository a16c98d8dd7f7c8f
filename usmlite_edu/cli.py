"""The ``usmlite-edu`` command line."""

from __future__ import annotations

import argparse
import sys


def _cmd_sizes(args) -> int:
    from usmlite_edu import sizes

    if args.spec:
        for s in args.spec:
            paper = sizes.size_ratio(s, args.model, "paper")
            exact = sizes.model_size(s, args.model)
            print(f"{s}\tpaper {paper:.2f}%\texact {exact.ratio:.2f}%\t{exact.megabytes:,.1f} MB")
    else:
        print(sizes.format_size_table(args.model))
    return 0


def _cmd_notebooks(args) -> int:
    from usmlite_edu import notebook_runner

    return notebook_runner.run_all(args.names, fast=not args.full)


def _cmd_main(args) -> int:
    """The README's main job: everything a fresh machine can reproduce offline."""
    from usmlite_edu import notebook_runner, sizes

    print("== Model-size table (guide section 2) ==")
    print(sizes.format_size_table("usm_2b"))
    print("\n== Toy notebooks (headless) ==")
    return notebook_runner.run_all(None, fast=not args.full)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="usmlite-edu", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sizes", help="print the model-size table (paper estimate and exact)")
    s.add_argument("--model", default="usm_2b", help="preset (default usm_2b)")
    s.add_argument("--spec", nargs="*", help="only these specs, e.g. int4+2:4 int2/g64")
    s.set_defaults(func=_cmd_sizes)

    n = sub.add_parser("notebooks", help="execute the notebooks headless")
    n.add_argument("names", nargs="*", help="substrings of notebook names (default: all)")
    n.add_argument("--full", action="store_true", help="learner sizes instead of fast mode")
    n.set_defaults(func=_cmd_notebooks)

    m = sub.add_parser("main", help="the project's main job (what `make run` does)")
    m.add_argument("--full", action="store_true", help="notebooks at learner sizes")
    m.set_defaults(func=_cmd_main)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:  # invalid settings: one clear line, no traceback
        print(f"usmlite-edu: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
