"""Searched and sensitivity-allocated spec maps against uniform specs of the same size
(the ``cpu`` reproduction, three seeds, three budgets).

    PYTHONPATH=. python scripts/search_cpu.py --out results/search            # run / resume
    PYTHONPATH=. python scripts/search_cpu.py --out results/search --render   # tables only

For each budget (the paper-convention size of a uniform row: E5 ``int2/gs72`` 7.64%, E12
``int4+2:4`` 9.375%, E3 ``int4`` 12.5%) and each seed ``s`` of the reproduction:

* **searched**: ``usmlite-edu search`` (:func:`usmlite_edu.search.pipeline.run`) from the
  reproduction's pre-trained start ``W0_s`` with ``B0_s`` as the float teacher, then
  fine-tuned under its map from ``W0_s`` for the reproduction's 100 steps;
* **sensitivity** (``--arms sensitivity``): the exact loss-sensitivity allocation of
  ``results/sensitivity`` at the same budget (measured once, on seed 0's B0 and dev
  utterances, post-training), fine-tuned the same way;
* **uniform**: the reproduction's own row (``results/cpu/rows/<E>_s<s>.json``), which
  was fine-tuned from the same ``W0_s`` with the same recipe.

The three are scored on the same utterances of ``dev``, ``test`` and ``unseen`` and
compared with paired bootstrap differences pooled over the seeds
(:func:`usmlite_edu.core.stats.paired_difference`). The search's settings are fixed before any
test or unseen number is seen (README: they were set from the search's own size
statistics on seed 0; nothing here is tuned on test).

Writes ``<out>/<E>_<arm>_s<seed>/`` (``result.json`` with every transcript,
``spec_map.json``, ``summary.md``, ``search/search.json`` with the choice history; the
run directories are not committed) and ``<out>/README.md``, ``<out>/results.json``,
``<out>/layers.png`` (the chosen spec of every layer), ``<out>/probs.png`` (the choice
probabilities of a few layers over the search, seed 0 at E12's budget).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from usmlite_edu.core import sizes, stats
from usmlite_edu.core.specs import SpecMap
from usmlite_edu.search import pipeline as searchlib
from usmlite_edu.search import supernet
from usmlite_edu.speech import runs
from usmlite_edu.speech.presets import get_preset
from usmlite_edu.training import train

BUDGETS = {"E5": "int2/gs72", "E12": "int4+2:4", "E3": "int4"}
#: never useful at these budgets (float: 100%, 2:4: 53% of a layer), so left out of the
#: search: they only put probability on choices the size penalty must then push away
CANDIDATES = ("int8", "int4", "int4+2:4", "int2/gs24", "int2/gs72", "int2")
SEARCH = dict(steps=100, logit_lr=0.1)
SPLITS = ("dev", "test", "unseen")


def sensitivity_map(path: Path, budget_spec: str, cfg) -> SpecMap:
    """The exact loss-sensitivity allocation of ``results/sensitivity`` at a budget."""
    d = json.loads(path.read_text())
    alloc = next(
        a
        for a in d["allocations"]
        if a["budget_spec"] == budget_spec and a["kind"] == "loss" and a["method"] == "exact"
    )
    assignment = {n: alloc["specs"][g] for g, members in d["groups"].items() for n in members}
    return SpecMap.from_assignment(assignment, "float")


def run_all(args) -> None:
    p = get_preset("cpu")
    rc = p.reproduce
    out = Path(args.out)
    for exp in args.budgets:
        spec = BUDGETS[exp]
        for seed in args.seeds:
            init = Path(args.runs) / f"W0_s{seed}"
            teacher = Path(args.runs) / f"B0_s{seed}"
            if "search" in args.arms:
                d = out / f"{exp}_search_s{seed}"
                if not (d / "result.json").exists():
                    t = time.time()
                    scfg = supernet.SearchConfig(
                        budget=sizes.size_ratio(spec, p.model, "paper"),
                        candidates=CANDIDATES,
                        **SEARCH,
                    )
                    searchlib.run(
                        "cpu",
                        "fsdd",
                        args.data,
                        d,
                        scfg=scfg,
                        init=init,
                        teacher=teacher,
                        seed=seed,
                        compare=args.rows,
                        uniform=[exp],
                    )
                    print(f"[{d.name}] {time.time() - t:.0f} s", flush=True)
            if "sensitivity" in args.arms:
                d = out / f"{exp}_sensitivity_s{seed}"
                if not (d / "result.json").exists():
                    t = time.time()
                    cfg = runs.load_run(init).config
                    smap = sensitivity_map(Path(args.sensitivity), spec, cfg)
                    heldout = rc.heldout_for(seed)
                    train.train(
                        p,
                        "fsdd",
                        args.data,
                        d / "run",
                        spec=smap,
                        init=init,
                        steps=rc.finetune_steps,
                        seed=seed,
                        heldout_speaker=heldout,
                        eval_splits=(),
                    )
                    splits = searchlib.score(d / "run", rc, args.data, heldout)
                    res = {
                        "seed": seed,
                        "heldout_speaker": heldout,
                        **searchlib.map_record(smap, cfg),
                        "splits": splits,
                        "wall_time_s": {"finetune_and_eval_s": time.time() - t},
                        "machine": runs.machine_info(),
                        "git_commit": runs.git_commit(),
                        "source": str(args.sensitivity),
                    }
                    smap.save(d / "spec_map.json")
                    runs.write_json(d / "result.json", res)
                    print(f"[{d.name}] {time.time() - t:.0f} s", flush=True)


def _scored(rec, split):
    return stats.score(rec["splits"][split]["utterances"])


def _row_scored(rec, split):
    return stats.score(rec["results"][split]["utterances"])


def _reading(lo: float, hi: float) -> str:
    if hi < 0:
        return "better"
    if lo > 0:
        return "worse"
    if stats.within_margin(lo, hi):
        return "equivalent (within 1 point)"
    return "inconclusive"


def render(args) -> dict:
    out = Path(args.out)
    table, lines = [], []
    for exp in args.budgets:
        uni = {
            s: json.loads((Path(args.rows) / f"{exp}_s{s}.json").read_text()) for s in args.seeds
        }
        arms = {}
        for arm in ("search", "sensitivity"):
            recs = {}
            for s in args.seeds:
                f = out / f"{exp}_{arm}_s{s}" / "result.json"
                if f.exists():
                    recs[s] = json.loads(f.read_text())
            if len(recs) == len(args.seeds):
                arms[arm] = recs
        for arm, recs in arms.items():
            entry = {
                "budget_row": exp,
                "uniform_spec": BUDGETS[exp],
                "arm": arm,
                "size_paper": [recs[s]["size_paper"] for s in args.seeds],
                "size_exact": [recs[s]["size_exact"] for s in args.seeds],
                "uniform_size_paper": sizes.size_ratio(
                    BUDGETS[exp], get_preset("cpu").model, "paper"
                ),
                "splits": {},
            }
            for split in SPLITS:
                if not all(split in recs[s]["splits"] for s in args.seeds):
                    continue
                a = [_scored(recs[s], split) for s in args.seeds]
                b = [_row_scored(uni[s], split) for s in args.seeds]
                iv = stats.paired_difference(a, b)
                wa, wb = stats.wer_interval(a), stats.wer_interval(b)
                entry["splits"][split] = {
                    "wer": wa.estimate,
                    "wer_lo": wa.lo,
                    "wer_hi": wa.hi,
                    "uniform_wer": wb.estimate,
                    "uniform_lo": wb.lo,
                    "uniform_hi": wb.hi,
                    "difference": iv.estimate,
                    "lo": iv.lo,
                    "hi": iv.hi,
                    "per_seed": list(iv.per_seed),
                    "reading": _reading(iv.lo, iv.hi),
                }
            if "search" in arms and "sensitivity" in arms and arm == "sensitivity":
                for split in SPLITS:
                    if split in entry["splits"]:
                        a = [_scored(arms["search"][s], split) for s in args.seeds]
                        b = [_scored(recs[s], split) for s in args.seeds]
                        iv = stats.paired_difference(a, b)
                        entry["splits"][split]["search_minus_sensitivity"] = [
                            iv.estimate,
                            iv.lo,
                            iv.hi,
                        ]
            table.append(entry)
    lines += [
        "# Searched and allocated spec maps against uniform specs of the same size",
        "",
        "Written by `PYTHONPATH=. python scripts/search_cpu.py --out results/search` "
        "(three seeds of the `cpu` reproduction; each arm fine-tuned from the seed's W0 for "
        "100 steps, as the uniform rows were). WER (%) is the mean over seeds with its 95% "
        "bootstrap interval (seeds and utterances resampled); the difference is arm minus "
        "uniform in points, paired on the same utterances and seeds.",
        "",
        "| budget (uniform row) | arm | size paper / exact % | split | arm WER | uniform WER | "
        "difference [95%] | reading |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in table:
        for split, v in e["splits"].items():
            lines.append(
                f"| {e['uniform_size_paper']:.2f}% ({e['budget_row']} {e['uniform_spec']}) | {e['arm']} | "
                f"{np.mean(e['size_paper']):.2f} / {np.mean(e['size_exact']):.2f} | {split} | "
                f"{v['wer']:.2f} [{v['wer_lo']:.2f}, {v['wer_hi']:.2f}] | "
                f"{v['uniform_wer']:.2f} [{v['uniform_lo']:.2f}, {v['uniform_hi']:.2f}] | "
                f"{v['difference']:+.2f} [{v['lo']:+.2f}, {v['hi']:+.2f}] | {v['reading']} |"
            )
    cmp = [
        (e["budget_row"], s, v["search_minus_sensitivity"])
        for e in table
        for s, v in e["splits"].items()
        if "search_minus_sensitivity" in v
    ]
    if cmp:
        lines += ["", "Searched minus sensitivity allocation (points, paired):", ""]
        lines += [
            f"* {b} {s}: {d:+.2f} [{lo:+.2f}, {hi:+.2f}] ({_reading(lo, hi)})"
            for b, s, (d, lo, hi) in cmp
        ]
    times = []
    for d in sorted(out.glob("*_search_s*/result.json")):
        r = json.loads(d.read_text())
        times.append(r["wall_time_s"])
    if times:
        lines += [
            "",
            "Wall time per searched model (mean over runs, 2-core AMD EPYC shared with other "
            "jobs): "
            + ", ".join(f"{k[:-2]} {np.mean([t[k] for t in times]):.0f} s" for k in times[0]),
        ]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    runs.write_json(out / "results.json", {"table": table, "git_commit": runs.git_commit()})
    plot_layers(out, args)
    return {"table": table}


def plot_layers(out: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches
    import matplotlib.pyplot as plt

    cols, names = [], []
    for exp in args.budgets:
        for arm in ("search", "sensitivity"):
            for s in args.seeds:
                f = out / f"{exp}_{arm}_s{s}" / "result.json"
                if f.exists():
                    r = json.loads(f.read_text())
                    cols.append([row["spec"] for row in r["layers"]])
                    names.append(f"{exp} {arm[:4]} s{s}")
                    layers = [row["layer"] for row in r["layers"]]
    if not cols:
        return
    specs = sorted({s for c in cols for s in c}, key=lambda s: -sizes.size_ratio(s, "cpu", "paper"))
    grid = np.array([[specs.index(s) for s in c] for c in cols]).T
    fig, ax = plt.subplots(figsize=(3.5 + 0.35 * len(cols), 0.2 * len(layers) + 1.8))
    cmap = plt.get_cmap("viridis", len(specs))
    ax.imshow(grid, aspect="auto", cmap=cmap, vmin=-0.5, vmax=len(specs) - 0.5)
    short = [l.replace("encoder/blocks/", "b").replace("/", ".") for l in layers]
    ax.set_yticks(range(len(layers)), short, fontsize=7)
    ax.set_xticks(range(len(cols)), names, rotation=90, fontsize=7)
    handles = [
        matplotlib.patches.Patch(
            color=cmap(k), label=f"{s} ({sizes.size_ratio(s, 'cpu', 'paper'):.1f}%)"
        )
        for k, s in enumerate(specs)
    ]
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.02, 1),
        fontsize=7,
        title="spec (paper size)",
        title_fontsize=7,
    )
    ax.set_title("spec chosen per layer\n(columns: budget row, arm, seed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "layers.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    f = out / "E12_search_s0" / "search" / "search.json"
    if f.exists():
        r = json.loads(f.read_text())
        steps = [h["step"] for h in r["history"]]
        probs = np.array([h["probs"] for h in r["history"]])  # (T, L, K)
        show = [
            i
            for i, l in enumerate(r["layers"])
            if l.endswith(("ffn1/dense1", "mhsa/query", "conv/pointwise1"))
        ][:6]
        fig, axes = plt.subplots(2, 3, figsize=(11, 5.5), sharex=True, sharey=True)
        for ax, i in zip(axes.ravel(), show):
            for k, c in enumerate(r["candidates"]):
                ax.plot(steps, probs[:, i, k], label=c)
            ax.set_title(r["layers"][i].replace("encoder/blocks/", "b"), fontsize=9)
        axes[0, 0].legend(fontsize=7)
        for ax in axes[1]:
            ax.set_xlabel("search step")
        for ax in axes[:, 0]:
            ax.set_ylabel("P(choice)")
        fig.suptitle(
            "Choice probabilities softmax(alpha) during the search (E12 budget, seed 0)",
            fontsize=10,
        )
        fig.tight_layout()
        fig.savefig(out / "probs.png", dpi=110)
        plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/search")
    ap.add_argument(
        "--runs",
        default="results/cpu/runs",
        help="run directories of the reproduction that wrote --rows (W0_s<seed>, B0_s<seed>)",
    )
    ap.add_argument("--rows", default="results/cpu/rows")
    ap.add_argument("--sensitivity", default="results/sensitivity/sensitivity.json")
    ap.add_argument("--data", default="/work/shared/corpora/fsdd")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budgets", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    ap.add_argument("--arms", nargs="+", default=["search", "sensitivity"])
    ap.add_argument("--render", action="store_true", help="only the tables and plots")
    args = ap.parse_args()
    if not args.render:
        run_all(args)
    render(args)
    print((Path(args.out) / "README.md").read_text())


if __name__ == "__main__":
    main()
