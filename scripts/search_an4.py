"""Mixed precision on AN4 at E12's size: uniform, two-stage, one-stage Pass 1 and Pass 2.

    PYTHONPATH=. python scripts/search_an4.py --table DIR --out results/an4/search   # run / resume
    PYTHONPATH=. python scripts/search_an4.py --table DIR --out results/an4/search --render

``--table DIR`` is the output folder of ``usmlite-edu reproduce --preset an4`` whose
``runs/W0_s<s>`` and ``runs/B0_s<s>`` are still there (a search can start once ``B0_s``
is; ``--render`` needs the rows and, for the uniform row's time, ``runs/E12_s<s>``). For
each seed ``s`` one call of ``usmlite-edu search`` (:func:`usmlite_edu.search.pipeline.run`)
in ``OUT/E12_s<s>``: the Gumbel-softmax supernet
starts from ``W0_s`` with ``B0_s`` as the float teacher and searches a per-layer map at
E12's paper-convention size (``int4+2:4``, 9.375%); then

* **two-stage**: only the map is kept, ``W0_s`` fine-tuned under it with Algorithm 1 for
  the reproduction's ``finetune_steps``, as the uniform rows were;
* **one-stage Pass 1** (Xu et al., 2025, the method itself): the supernet's own weights,
  compressed under the map, no further training;
* **one-stage Pass 2**: Pass 1 fine-tuned under the map with the same recipe and steps;
* **uniform**: the reproduction's own ``E12_s`` row (``int4+2:4`` everywhere).

Settings fixed before any run, not tuned on AN4 (README, "Mixed precision on AN4"): the
``cpu`` search's 100 steps and logits' Adam rate 0.1, its other defaults, and its candidates
less ``int2/gs72`` (72 divides neither the 96-wide layers nor the subsampler's 360
inputs): ``int8``, ``int4``, ``int4+2:4``, ``int2/gs24``, ``int2``.

The report (``OUT/README.md``, ``OUT/results.json``) pools the three seeds: each model's
mean WER on dev and test with its 95% bootstrap interval, its size, its compression time
(wall time from the float start W0 to the model: search plus fine-tuning; the uniform
row's fine-tuning loop), paired differences (same utterances, seeds paired,
:func:`usmlite_edu.core.stats.paired_difference`) of each model against uniform and of the
one-stage models against two-stage, each read with the project's verdict rule for the
direction the seed paper claims, and the paper's summary figure, the largest lossless
compression ratio (:func:`usmlite_edu.training.claims.largest_lossless`) over every row of
the AN4 table and the three searched models.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from usmlite_edu.core import sizes, stats
from usmlite_edu.search import pipeline as searchlib
from usmlite_edu.search import supernet
from usmlite_edu.speech import runs
from usmlite_edu.speech.presets import get_preset
from usmlite_edu.training import claims

PRESET = "an4"
UNIFORM = ("E12", "int4+2:4")
CANDIDATES = ("int8", "int4", "int4+2:4", "int2/gs24", "int2")
SEARCH = dict(steps=100, logit_lr=0.1)
SPLITS = ("dev", "test")
#: report order: name, label, where its transcripts are
MODELS = (
    ("uniform", "uniform int4+2:4 (E12)"),
    ("two_stage", "two-stage (map only; W0 fine-tuned)"),
    ("one_stage_pass1", "one-stage Pass 1 (supernet's weights)"),
    ("one_stage_pass2", "one-stage Pass 2 (Pass 1 fine-tuned)"),
)
#: the searched models' names among the table's rows (the lossless ratio)
SHORT = {
    "two_stage": "two-stage",
    "one_stage_pass1": "one-stage Pass 1",
    "one_stage_pass2": "one-stage Pass 2",
}
#: (model, baseline, claim kind for model - baseline): the direction the seed paper claims
COMPARISONS = (
    ("two_stage", "uniform", "better"),
    ("one_stage_pass1", "uniform", "better"),
    ("one_stage_pass2", "uniform", "better"),
    ("one_stage_pass1", "two_stage", "no_worse"),
    ("one_stage_pass2", "two_stage", "better"),
)


def run_all(args) -> None:
    p = get_preset(PRESET)
    table = Path(args.table)
    for seed in args.seeds:
        d = Path(args.out) / f"E12_s{seed}"
        if (d / "result.json").exists():
            print(f"[{d.name}] done already, skipped", flush=True)
            continue
        t = time.time()
        scfg = supernet.SearchConfig(
            budget=sizes.size_ratio(UNIFORM[1], p.model, "paper"), candidates=CANDIDATES, **SEARCH
        )
        searchlib.run(
            PRESET,
            None,
            args.data,
            d,
            scfg=scfg,
            init=table / "runs" / f"W0_s{seed}",
            teacher=table / "runs" / f"B0_s{seed}",
            seed=seed,
        )  # compared with the table's rows by render, which may run after the table ends
        print(f"[{d.name}] {time.time() - t:.0f} s", flush=True)


def _load(args) -> tuple[dict, dict, dict]:
    """(search results by seed, table rows by (exp, seed), uniform fine-tuning seconds by seed)."""
    out, rows_dir = Path(args.out), Path(args.table) / "rows"
    found = {s: out / f"E12_s{s}" / "result.json" for s in args.seeds}
    missing = [str(f) for f in found.values() if not f.exists()]
    if missing:
        raise SystemExit(f"search_an4: no result yet at {', '.join(missing)}; run without --render")
    results = {s: json.loads(f.read_text()) for s, f in found.items()}
    rows = {}
    for f in sorted(rows_dir.glob("*.json")):
        r = json.loads(f.read_text())
        if r["seed"] in args.seeds:
            rows[(r["exp"], r["seed"])] = r
    need = [f"{e}_s{s}" for s in args.seeds for e in ("B0", UNIFORM[0]) if (e, s) not in rows]
    if need:
        raise SystemExit(
            f"search_an4: the table has no row {', '.join(need)} in {rows_dir} yet; render "
            "again once it has"
        )
    times = {}
    for s in args.seeds:
        f = out / f"E12_s{s}" / "uniform_time.json"
        uniform_run = Path(args.table) / "runs" / f"{UNIFORM[0]}_s{s}"
        if not f.exists() and (uniform_run / "metrics.jsonl").exists():
            _, final = runs.read_metrics(uniform_run)  # kept: the table's runs/ is not committed
            if final:
                runs.write_json(f, {"train_time_s": final["train_time_s"]})
        if f.exists():
            times[s] = json.loads(f.read_text())["train_time_s"]
    return results, rows, times


def _utterances(model: str, seed: int, split: str, results: dict, rows: dict) -> list[dict]:
    if model == "uniform":
        return rows[(UNIFORM[0], seed)]["results"][split]["utterances"]
    return results[seed]["methods"][model]["splits"][split]["utterances"]


def render(args) -> dict:
    results, rows, utimes = _load(args)
    seeds = list(args.seeds)
    cfg = get_preset(PRESET).model
    scored = {
        (m, s, split): stats.score(_utterances(m, s, split, results, rows))
        for m, _ in MODELS
        for s in seeds
        for split in SPLITS
    }
    size_paper = {
        "uniform": sizes.size_ratio(UNIFORM[1], cfg, "paper"),
        **{m: float(np.mean([results[s]["size_paper"] for s in seeds])) for m, _ in MODELS[1:]},
    }
    size_exact = {
        "uniform": sizes.model_size(UNIFORM[1], cfg).ratio,
        **{m: float(np.mean([results[s]["size_exact"] for s in seeds])) for m, _ in MODELS[1:]},
    }
    comp = {
        "uniform": float(np.mean(list(utimes.values()))) if len(utimes) == len(seeds) else None,
        **{
            m: float(np.mean([results[s]["methods"][m]["compression_s"] for s in seeds]))
            for m, _ in MODELS[1:]
        },
    }
    models = []
    for m, label in MODELS:
        e = {"model": m, "label": label, "size_paper": size_paper[m], "size_exact": size_exact[m]}
        e["compression_s"] = comp[m]
        for split in SPLITS:
            iv = stats.wer_interval([scored[(m, s, split)] for s in seeds])
            e[split] = {"wer": iv.estimate, "lo": iv.lo, "hi": iv.hi}
        models.append(e)
    comparisons = []
    for a, b, kind in COMPARISONS:
        c = {"model": a, "baseline": b, "kind": kind}
        for split in SPLITS:
            iv = stats.paired_difference(
                [scored[(a, s, split)] for s in seeds], [scored[(b, s, split)] for s in seeds]
            )
            c[split] = {
                "difference": iv.estimate,
                "lo": iv.lo,
                "hi": iv.hi,
                "per_seed": list(iv.per_seed),
                "verdict": stats.verdict(iv.lo, iv.hi, kind),
            }
        comparisons.append(c)
    # the paper's summary figure over every model at hand: the table's rows and the searches
    everything = {
        (e, s, split): stats.score(r["results"][split]["utterances"])
        for (e, s), r in rows.items()
        for split in SPLITS
        if isinstance(r["results"].get(split), dict)
    }
    row_sizes = {e: sizes.size_ratio(r["spec"], cfg, "paper") for (e, _), r in rows.items()}
    for m, _ in MODELS[1:]:
        name = SHORT[m]
        everything.update(
            {(name, s, split): scored[(m, s, split)] for s in seeds for split in SPLITS}
        )
        row_sizes[name] = size_paper[m]
    lossless = [
        r for split in SPLITS for r in claims.largest_lossless(everything, row_sizes, split)
    ]
    (Path(args.out) / "README.md").write_text(
        _text(models, comparisons, lossless, results, seeds, args)
    )
    record = {
        "models": models,
        "comparisons": comparisons,
        "largest_lossless": [
            {
                "split": r.split,
                "rule": r.rule,
                "row": r.exp,
                "size": r.size,
                "ratio": r.ratio,
                "difference": None
                if r.difference is None
                else [r.difference.estimate, r.difference.lo, r.difference.hi],
            }
            for r in lossless
        ],
        "seeds": seeds,
        "search_settings": {"candidates": list(CANDIDATES), **SEARCH},
        "git_commits": sorted({results[s]["git_commit"] for s in seeds}),
    }
    runs.write_json(Path(args.out) / "results.json", record)
    return record


def _text(models, comparisons, lossless, results, seeds, args) -> str:
    label = dict(MODELS)
    machines = sorted({results[s]["machine"]["processor"] for s in seeds})
    lines = [
        "# Mixed precision on AN4 at E12's size: uniform, two-stage, one-stage",
        "",
        f"Written by `PYTHONPATH=. python scripts/search_an4.py --table DIR --out {args.out}` "
        f"({'seed' if len(seeds) == 1 else 'seeds'} {', '.join(map(str, seeds))} of the `an4` "
        "reproduction; its module docstring "
        "says what each model is). WER (%): mean over seeds with its 95% bootstrap interval "
        "(seeds and utterances resampled). Compression time: wall time from the float start "
        f"W0 to the model, mean over seeds ({'; '.join(machines)}, 2 cores).",
        "",
        "| model | size paper / exact % | dev WER | test WER | compression time |",
        "|---|---|---|---|---|",
    ]
    for e in models:
        t = "-" if e["compression_s"] is None else f"{e['compression_s']:.0f} s"
        lines.append(
            f"| {e['label']} | {e['size_paper']:.2f} / {e['size_exact']:.2f} | "
            + " | ".join(f"{e[s]['wer']:.2f} [{e[s]['lo']:.2f}, {e[s]['hi']:.2f}]" for s in SPLITS)
            + f" | {t} |"
        )
    lines += [
        "",
        "Paired differences (points, model minus baseline, the same utterances, seeds paired), "
        "each read for the direction the seed paper claims (*better*: reproduced if the "
        "interval lies below 0, not reproduced if above -1; *no worse*: reproduced if it lies "
        "below +1, not reproduced if at or above +1; inconclusive otherwise):",
        "",
        "| model | baseline | claim | dev | test |",
        "|---|---|---|---|---|",
    ]
    for c in comparisons:
        cells = [
            f"{c[s]['difference']:+.2f} [{c[s]['lo']:+.2f}, {c[s]['hi']:+.2f}] **{c[s]['verdict']}**"
            for s in SPLITS
        ]
        lines.append(
            f"| {label[c['model']]} | {label[c['baseline']]} | {c['kind'].replace('_', ' ')} | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", claims.render_lossless(lossless).rstrip()]
    counts: dict[str, int] = {}
    for s in seeds:
        for row in results[s]["layers"]:
            counts[row["spec"]] = counts.get(row["spec"], 0) + 1
    lines += [
        "",
        "Layers per spec over the seeds' maps: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + ". Per seed: `E12_s<seed>/summary.md`; every transcript: `E12_s<seed>/result.json`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", required=True, help="the an4 reproduction's --out folder")
    ap.add_argument("--out", default="results/an4/search")
    ap.add_argument("--data", default="/work/shared/corpora/an4")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--render", action="store_true", help="only the report")
    args = ap.parse_args()
    if not args.render:
        run_all(args)
    render(args)  # refused, with what is missing, until the table's rows are there
    print((Path(args.out) / "README.md").read_text())


if __name__ == "__main__":
    main()
