"""``usmlite-edu search``: a per-layer spec map under a size budget, fine-tuned and scored."""

from __future__ import annotations

import argparse

from usmlite_edu.cli.common import data_dir
from usmlite_edu.speech.corpora import CORPORA


def add_parser(sub: argparse._SubParsersAction) -> None:
    se = sub.add_parser(
        "search",
        help="choose a spec per layer under a size budget (Gumbel-softmax supernet), "
        "fine-tune and score it",
        description="Search a per-layer spec map with a Gumbel-softmax supernet (CTC + "
        "KL to a float teacher + a penalty pulling the expected size to --budget), "
        "fine-tune the start under it with Algorithm 1 for the reproduction's fine-tuning "
        "steps, and score it on dev/test/unseen with 95%% intervals (README 'Which layer "
        "gets which bits'). Writes DIR/spec_map.json, DIR/result.json, DIR/summary.md; a "
        "second call resumes.",
    )
    se.add_argument("--preset", default="ci", metavar="PRESET", help="ci, cpu or an4 (default ci)")
    se.add_argument(
        "--corpus", choices=CORPORA, help="the corpus (default: the preset's reproduction's)"
    )
    se.add_argument("--data", metavar="DIR", help="corpus folder (default $USMLITE_DATA)")
    se.add_argument("--seed", type=int, default=0, help="one of the preset's seeds (default 0)")
    se.add_argument("--out", required=True, metavar="DIR", help="where everything goes")
    se.add_argument(
        "--budget",
        type=float,
        required=True,
        metavar="PERCENT",
        help="model size target, %% of the float32 B0 (e.g. 9.4: E12's size)",
    )
    se.add_argument(
        "--convention",
        choices=["paper", "exact"],
        default="paper",
        help="size convention of --budget (default paper)",
    )
    se.add_argument(
        "--candidates",
        nargs="+",
        metavar="SPEC",
        help="specs each layer chooses from (default: float int8 int4 2:4 int4+2:4 "
        "int2/gs24 int2/gs72 int2)",
    )
    se.add_argument(
        "--init",
        metavar="RUN",
        help="float start (e.g. a reproduction's runs/W0_s0); default: pre-train one in DIR/start",
    )
    se.add_argument("--teacher", metavar="RUN", help="float teacher (default: the start)")
    se.add_argument("--search-steps", type=int, metavar="N", help="search steps (default 100)")
    se.add_argument("--search-size-weight", type=float, metavar="W", help="size penalty weight")
    se.add_argument("--search-kl-weight", type=float, metavar="W", help="KL weight")
    se.add_argument("--search-logit-lr", type=float, metavar="LR", help="logits' Adam rate")
    se.add_argument("--search-weight-lr", type=float, metavar="LR", help="weights' Adam rate")
    se.add_argument(
        "--finetune-steps",
        type=int,
        metavar="N",
        help="fine-tuning steps under the map (default: the reproduction's)",
    )
    se.add_argument(
        "--compare",
        metavar="ROWS",
        help="a reproduction's rows/ directory (e.g. results/cpu/rows) to compare with",
    )
    se.add_argument("--uniform", nargs="+", metavar="EXP", help="rows of --compare, e.g. E12 E5 E3")
    se.add_argument(
        "--no-one-stage",
        dest="one_stage",
        action="store_false",
        help="make only the two-stage model (the start fine-tuned under the map), not the "
        "one-stage Pass 1 (the supernet's weights under the map) and Pass 2 (those fine-tuned)",
    )
    se.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from usmlite_edu.search import pipeline as search  # lazy: imports jax; keeps --help fast
    from usmlite_edu.search import supernet  # lazy: imports jax; keeps --help fast

    kw = {}
    if args.candidates:
        kw["candidates"] = tuple(args.candidates)
    for name in ("steps", "size_weight", "kl_weight", "logit_lr", "weight_lr"):
        v = getattr(args, f"search_{name}")
        if v is not None:
            kw[name] = v
    scfg = supernet.SearchConfig(budget=args.budget, convention=args.convention, **kw)
    r = search.run(
        args.preset,
        args.corpus,
        data_dir(args),
        args.out,
        scfg=scfg,
        init=args.init,
        teacher=args.teacher,
        seed=args.seed,
        finetune_steps=args.finetune_steps,
        compare=args.compare,
        uniform=args.uniform or (),
        one_stage=args.one_stage,
    )
    print(search.summary(r))
    return 0
