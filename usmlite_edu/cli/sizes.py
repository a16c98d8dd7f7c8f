"""``usmlite-edu sizes``: the 'Model Size Ratio' column of USM-Lite's Tables 1-3."""

from __future__ import annotations

import argparse

from usmlite_edu.cli.common import preset_names, spec_arg
from usmlite_edu.speech.presets import model_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    names = preset_names()
    s = sub.add_parser(
        "sizes",
        help="print the model-size table (paper estimate and exact)",
        description="The 'Model Size Ratio' column of USM-Lite's Tables 1-3: "
        "the paper's estimate and the exact bytes stored, scales included.",
    )
    s.add_argument(
        "--model",
        default="usm_2b",
        metavar="PRESET",
        help=f"the model whose weights are counted: {names} (default usm_2b)",
    )
    s.add_argument(
        "--spec",
        nargs="*",
        metavar="SPEC",
        help="only these compression specs, e.g. int4+2:4 int2/g64",
    )
    s.add_argument(
        "--spec-map",
        metavar="FILE",
        help="a per-layer spec map (JSON; README 'Which layer gets which bits'): each "
        "layer's spec and bytes, and the whole model's size in both conventions",
    )
    s.add_argument(
        "--layers", action="store_true", help="list the model's compressible layer names"
    )
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from usmlite_edu.core import sizes  # lazy: imports jax; keeps --help fast
    from usmlite_edu.speech.model import compressible_layers, layer_table  # lazy: jax

    if args.layers:
        print("\n".join(compressible_layers(model_config(args.model))))
        return 0
    if args.spec_map:
        m = spec_arg(args)
        cfg = model_config(args.model)
        for r in layer_table(m, cfg):
            print(
                f"{r['layer']:<36}{str(r['shape']):>14}  {r['spec']:<14}"
                f"{r['exact_bits'] / 8:>14,.0f} B  paper {r['paper_percent']:6.2f}%"
            )
        exact = sizes.model_size(m, args.model)
        print(
            f"whole model ({args.spec_map}): paper {sizes.size_ratio(m, args.model, 'paper'):.2f}%"
            f"\texact {exact.ratio:.2f}%\t{exact.total / 8:,.0f} B"
        )
        return 0
    if args.spec:
        for s in args.spec:
            paper = sizes.size_ratio(s, args.model, "paper")
            exact = sizes.model_size(s, args.model)
            print(f"{s}\tpaper {paper:.2f}%\texact {exact.ratio:.2f}%\t{exact.megabytes:,.1f} MB")
    else:
        print(sizes.format_size_table(args.model))
    return 0
