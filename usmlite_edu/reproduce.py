"""Re-run the paper's Tables 1-3 at reduced scale (``usmlite-edu reproduce``).

Rows (the paper's names):

* **B0** the dense float baseline, trained from scratch; **B1-B3** dense float models with
  about 50%, 33% and 19% of B0's parameters (the paper's 1B / 600M / 300M ratios).
* From B0's final weights: **E0 / E2** int8 / int4 post-training quantization (no
  training), and fine-tuning with Algorithm 1 for **E1** int8, **E3** int4, **E4** int2,
  **E5-E7** int2 with sub-channels, **E8 / E9** 2:4 one-shot / few-shot, **E10 / E11**
  1:4 one-shot / few-shot, **E12 / E13** int4 + 2:4 one-shot / few-shot.

Mapping the paper's knobs to a small model:

* *Sub-channels.* The paper splits 1536-wide inputs into 16 / 32 / 64 groups, i.e.
  groups of 96 / 48 / 24 inputs. Our layers are 144-576 inputs wide, so the same *count*
  would give groups of 9 down to 2 inputs; we keep the same *group size* where it
  divides every layer: ``cpu`` uses 72 / 48 / 24 (E6 and E7 exactly the paper's; 96 does
  not divide 144, so E5 takes 72), ``ci`` uses 16 / 8 / 4.
* *Few-shot.* The paper updates masks for 1k of 200k steps (0.5%). We scale that to our
  fine-tuning length with a floor of ``few_shot_floor`` updates, so that "few-shot" still
  means more than one mask update (``T_p`` is printed in the table).
* *Fine-tuning length.* ``finetune_steps`` for every E row (the paper fine-tunes for the
  full 200k steps; we fine-tune a fraction of B0's training).

Every row is evaluated on the corpus's official test split and, for FSDD, on an
unseen speaker: all models are trained without ``heldout_speaker``; "test" is the official
test split (recording index 0-4) of the other four speakers, "unseen" is every recording of
the held-out speaker. B0, E3, E8 and E12 run with several seeds (each seed: its own B0,
and the E rows fine-tuned from it); the table gives mean and standard deviation.

Outputs in ``--out``: ``table.md``, ``table.csv``, ``results.json`` (every run's
metadata: git commit, preset, spec, seed, steps, wall time, machine), ``plot.png`` (WER
against size ratio, log x, Pareto frontier; the paper's points on a second panel) and
``claims.md`` (each of the paper's claims with our numbers and a verdict). A second run
skips rows already done; an interrupted row restarts from its last checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from usmlite_edu import batching, configs, runs, sizes, train
from usmlite_edu.compress import as_spec
from usmlite_edu.corpora import CorpusSplit, load_corpus
from usmlite_edu.presets import PRESETS, Preset, get_preset

__all__ = ["Row", "plan", "dense_baseline_config", "run", "write_outputs", "judge_claims"]

PAPER_B0_WER = 4.1
#: A B0 above this WER is not a working recognizer; claims about it are inconclusive.
MAX_WORKING_WER = 30.0


@dataclasses.dataclass(frozen=True)
class Row:
    exp: str
    description: str
    kind: str  # "train" | "ptq" | "qat"
    spec: str
    seed: int = 0
    model: tuple = ()  # model overrides (B1-B3) as sorted (key, value) pairs

    @property
    def key(self) -> str:
        return f"{self.exp}_s{self.seed}"


def dense_baseline_config(cfg: configs.ConformerConfig, ratio: float) -> tuple[dict, float]:
    """Width and depth for a dense model with ``ratio`` of ``cfg``'s parameters.

    Searches widths (multiples of 2 x heads) and depths up to ``cfg``'s; returns the
    overrides and the achieved ratio.
    """
    b0 = configs.num_params(cfg)
    best = None
    step = 2 * cfg.num_heads
    for d in range(step, cfg.model_dim + 1, step):
        for layers in range(1, cfg.num_layers + 1):
            r = configs.num_params(cfg.replace(model_dim=d, num_layers=layers)) / b0
            cand = (abs(r - ratio), -layers, d, layers, r)
            best = cand if best is None or cand < best else best
    _, _, d, layers, r = best
    return {"model_dim": d, "num_layers": layers}, r


def _plan_of(p: Preset | str) -> tuple[Preset, configs.ReproConfig]:
    p = get_preset(p)
    if p.reproduce is None:
        raise ValueError(
            f"preset {p.name!r} has no reproduction plan; presets with one: "
            + ", ".join(n for n, q in PRESETS.items() if q.reproduce)
        )
    return p, p.reproduce


def plan(p: Preset | str, vocab_size: int | None = None) -> list[Row]:
    """Every run of the table, in an order where each row's inputs come first."""
    p, rc = _plan_of(p)
    t = rc.t_p
    g5, g6, g7 = rc.group_sizes
    rows: list[Row] = []
    cfg = p.model
    if vocab_size:
        cfg = cfg.replace(vocab_size=vocab_size)
    for seed in rc.seeds:
        rows.append(Row("B0", "float32 dense (ours)", "train", "float", seed))
    for exp, ratio, name in (("B1", 0.502, "1B"), ("B2", 0.335, "600M"), ("B3", 0.189, "300M")):
        over, r = dense_baseline_config(cfg, ratio)
        rows.append(
            Row(
                exp,
                f"float32 dense, {100 * r:.1f}% of B0 (paper: {name})",
                "train",
                "float",
                0,
                tuple(sorted(over.items())),
            )
        )
    e_rows = [
        ("E0", "int8 PTQ", "ptq", "int8"),
        ("E1", "int8 QAT", "qat", "int8"),
        ("E2", "int4 PTQ", "ptq", "int4"),
        ("E3", "int4 QAT", "qat", "int4"),
        ("E4", "int2 QAT", "qat", "int2"),
        ("E5", f"int2 QAT, groups of {g5}", "qat", f"int2/gs{g5}"),
        ("E6", f"int2 QAT, groups of {g6}", "qat", f"int2/gs{g6}"),
        ("E7", f"int2 QAT, groups of {g7}", "qat", f"int2/gs{g7}"),
        ("E8", "2:4 one-shot", "qat", "2:4"),
        ("E9", f"2:4 few-shot (T_p={t})", "qat", f"2:4/fs{t}"),
        ("E10", "1:4 one-shot", "qat", "1:4"),
        ("E11", f"1:4 few-shot (T_p={t})", "qat", f"1:4/fs{t}"),
        ("E12", "int4 QAT + 2:4 one-shot", "qat", "int4+2:4"),
        ("E13", f"int4 QAT + 2:4 few-shot (T_p={t})", "qat", f"int4+2:4/fs{t}"),
    ]
    for exp, desc, kind, spec in e_rows:
        for seed in rc.seeds if exp in rc.seeded_rows else rc.seeds[:1]:
            rows.append(Row(exp, desc, kind, spec, seed))
    return rows


# --------------------------------------------------------------------------- running
def _eval_sets(rc: configs.ReproConfig, data_dir, cfg, tok, tcfg) -> dict[str, batching.Dataset]:
    """The evaluation sets: official test split (minus the held-out speaker) and unseen."""
    out = {}
    test = load_corpus(rc.corpus, data_dir, "test", sample_rate=cfg.sample_rate)
    if rc.heldout_speaker:
        keep = [u for u in test.utterances if u.speaker != rc.heldout_speaker]
        test = CorpusSplit(test.name, keep, test.skipped, test.sample_rate, test.sources)
    out["test"] = batching.prepare(test, tok, cfg, tcfg.bucket_seconds, keep_long=True)
    if rc.heldout_speaker:
        unseen = load_corpus(
            rc.corpus,
            data_dir,
            "test",
            sample_rate=cfg.sample_rate,
            heldout_speaker=rc.heldout_speaker,
        )
        out["unseen"] = batching.prepare(unseen, tok, cfg, tcfg.bucket_seconds, keep_long=True)
    return out


def _evaluate(run_dir: Path | None, row: Row, b0_dir: Path, eval_sets, p: Preset) -> dict:
    """WER/CER of one row on every evaluation set (PTQ rows: B0 through the row's spec)."""
    src = b0_dir if row.kind == "ptq" else run_dir
    run = runs.load_run(src)
    cfg, tok, params = run.config, run.tokenizer, run.params
    spec = as_spec(row.spec)
    trainer = train.get_trainer(cfg, spec, p.train)
    masks = runs.load_masks(src, run, spec)
    res = {}
    for name, ds in eval_sets.items():
        r = trainer.evaluate(params, masks, ds, tok)
        res[name] = {"wer": r["wer"], "cer": r["cer"], "utterances": r["utterances"]}
    n_params = sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(params))
    res["params"] = n_params
    res["model_config"] = dataclasses.asdict(cfg)
    return res


def run(
    p: Preset | str, data_dir: str | None, out_dir: str | Path, *, only: Sequence[str] | None = None
) -> list[dict]:
    """Run (or resume) every row of ``p``'s plan; returns the per-run records (also
    ``results.json``)."""
    p, rc = _plan_of(p)
    out = Path(out_dir)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    commit = runs.git_commit()
    records: list[dict] = []
    eval_sets = None
    rows = plan(p)
    if only:
        rows = [r for r in rows if r.exp in set(only)]
    t_all = time.time()
    for row in rows:
        rec_path = out / "rows" / f"{row.key}.json"
        if rec_path.exists():
            records.append(json.loads(rec_path.read_text()))
            print(f"[{row.key}] done already, skipped", flush=True)
            continue
        t0 = time.time()
        b0_dir = out / "runs" / f"B0_s{row.seed}"
        run_dir = out / "runs" / row.key
        print(f"[{row.key}] {row.description} ({row.kind}, spec {row.spec})", flush=True)
        if row.kind == "train":
            train.train(
                p,
                rc.corpus,
                data_dir,
                run_dir,
                spec="float",
                seed=row.seed,
                steps=rc.b0_steps,
                heldout_speaker=rc.heldout_speaker,
                overrides={f"model.{k}": v for k, v in row.model},
                eval_splits=(),
            )
            steps = rc.b0_steps or p.train.steps
        elif row.kind == "qat":
            train.train(
                p,
                rc.corpus,
                data_dir,
                run_dir,
                spec=row.spec,
                seed=row.seed,
                init=b0_dir,
                steps=rc.finetune_steps,
                heldout_speaker=rc.heldout_speaker,
                eval_splits=(),
            )
            steps = rc.finetune_steps
        else:
            run_dir, steps = None, 0
        if eval_sets is None:
            b0 = runs.load_run(b0_dir)
            eval_sets = _eval_sets(rc, data_dir, b0.config, b0.tokenizer, p.train)
        res = _evaluate(run_dir, row, b0_dir, eval_sets, p)
        rec = {
            **dataclasses.asdict(row),
            "model": dict(row.model),
            "steps": steps,
            "wall_time_s": time.time() - t0,
            "git_commit": commit,
            "preset": p.name,
            "corpus": rc.corpus,
            "heldout_speaker": rc.heldout_speaker,
            "machine": runs.machine_info(),
            "results": res,
        }
        rec_path.write_text(json.dumps(rec, indent=2))
        records.append(rec)
        print(
            f"[{row.key}] "
            + ", ".join(
                f"{k} WER {v['wer']:.2f}%"
                for k, v in res.items()
                if isinstance(v, dict) and "wer" in v
            )
            + f" ({rec['wall_time_s']:.0f} s)",
            flush=True,
        )
    write_outputs(p, records, out, total_time_s=time.time() - t_all)
    publish_b0(out, rc.seeds[0])
    return records


def publish_b0(out: str | Path, seed: int = 0) -> Path:
    """Copy B0's final model (config, tokenizer, parameters; no optimizer checkpoints) to
    ``out/b0``: small enough to commit, and what notebook 07 starts from."""
    import shutil

    out = Path(out)
    src, dst = out / "runs" / f"B0_s{seed}", out / "b0"
    if not (src / "params").exists():
        raise FileNotFoundError(f"no finished B0 in {src}; run the reproduction first")
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in ("config.json", "metrics.jsonl"):
        shutil.copy2(src / name, dst / name)
    for name in ("tokenizer", "params"):
        shutil.copytree(src / name, dst / name)
    return dst


# --------------------------------------------------------------------------- outputs
def _size_ratios(rec: dict, b0_params_cfg: dict) -> tuple[float, float]:
    """(paper-convention %, exact %) of a row relative to B0's float32 size."""
    cfg = configs.config_from_dict(configs.ConformerConfig, rec["results"]["model_config"])
    b0 = configs.config_from_dict(configs.ConformerConfig, b0_params_cfg)
    if rec["exp"].startswith("B"):
        r = sizes.size_ratio("float", cfg, reference=b0)
        return r, r
    spec = as_spec(rec["spec"])
    return (sizes.size_ratio(spec, cfg, "paper"), sizes.size_ratio(spec, cfg, "exact"))


def summarize(records: list[dict]) -> list[dict]:
    """One line per experiment: mean and standard deviation over seeds."""
    by_exp: dict[str, list[dict]] = {}
    for r in records:
        by_exp.setdefault(r["exp"], []).append(r)
    b0 = by_exp["B0"][0]["results"]["model_config"]
    paper = {p.exp: p for p in sizes.PAPER_ROWS}
    order = [
        "B0",
        "E0",
        "E1",
        "E2",
        "E3",
        "E4",
        "E5",
        "E6",
        "E7",
        "E8",
        "E9",
        "E10",
        "E11",
        "E12",
        "E13",
        "B1",
        "B2",
        "B3",
    ]
    lines = []
    for exp in [e for e in order if e in by_exp]:
        rs = by_exp[exp]
        sets = [k for k, v in rs[0]["results"].items() if isinstance(v, dict) and "wer" in v]
        line = {
            "exp": exp,
            "description": rs[0]["description"],
            "spec": rs[0]["spec"],
            "seeds": len(rs),
            "steps": rs[0]["steps"],
            "wall_time_s": float(sum(r["wall_time_s"] for r in rs)),
        }
        for s in sets:
            w = np.array([r["results"][s]["wer"] for r in rs])
            c = np.array([r["results"][s]["cer"] for r in rs])
            line[f"wer_{s}"] = float(w.mean())
            line[f"wer_{s}_sd"] = float(w.std(ddof=1)) if len(w) > 1 else None
            line[f"cer_{s}"] = float(c.mean())
        line["size_paper"], line["size_exact"] = _size_ratios(rs[0], b0)
        line["paper_wer"] = PAPER_B0_WER if exp == "B0" else paper[exp].paper_wer
        line["paper_size"] = 100.0 if exp == "B0" else paper[exp].paper_ratio
        lines.append(line)
    return lines


def _fmt(v, sd=None):
    if v is None:
        return "-"
    return f"{v:.2f} ± {sd:.2f}" if sd is not None else f"{v:.2f}"


def write_outputs(
    p: Preset | str, records: list[dict], out: Path, total_time_s: float = 0.0
) -> None:
    p, rc = _plan_of(p)
    lines = summarize(records)
    sets = ["test"] + (["unseen"] if rc.heldout_speaker else [])
    # CSV
    keys = list(lines[0].keys())
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(lines)
    # Markdown
    head = [
        "exp",
        "model",
        "spec",
        *[f"WER {s} (%)" for s in sets],
        "size, paper conv.",
        "size, exact",
        "seeds",
        "steps",
        "paper WER",
        "paper size",
    ]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for l in lines:
        md.append(
            "| "
            + " | ".join(
                [
                    l["exp"],
                    l["description"],
                    f"`{l['spec']}`",
                    *[_fmt(l.get(f"wer_{s}"), l.get(f"wer_{s}_sd")) for s in sets],
                    f"{l['size_paper']:.1f}%",
                    f"{l['size_exact']:.1f}%",
                    str(l["seeds"]),
                    str(l["steps"]),
                    f"{l['paper_wer']:.1f}",
                    f"{l['paper_size']:.1f}%",
                ]
            )
            + " |"
        )
    commits = list(dict.fromkeys(r["git_commit"] for r in records)) or ["unknown"]
    commit = commits[0]
    short = lambda c: c[:12] + ("-dirty" if c.endswith("-dirty") else "")  # keep the flag
    at = "commit " + ", ".join(f"`{short(c)}`" for c in commits)
    if len(commits) > 1:  # a resumed run: say which rows came from which commit
        at += (
            " ("
            + "; ".join(
                f"`{short(c)}`: "
                + ", ".join(r["exp"] + f"_s{r['seed']}" for r in records if r["git_commit"] == c)
                for c in commits
            )
            + ")"
        )
    wall = sum(r["wall_time_s"] for r in records)
    header = (
        f"# Reduced-scale reproduction: preset `{p.name}` on `{rc.corpus}`\n\n"
        f"Made by `usmlite-edu reproduce --preset {p.name} --corpus {rc.corpus} ...` at "
        f"{at}. Fine-tuning: {rc.finetune_steps} steps per E row from B0; "
        f"few-shot T_p = {rc.t_p}; sub-channel group sizes {rc.group_sizes}. "
        + (
            f"All models trained without speaker `{rc.heldout_speaker}`; 'test' = the "
            f"official test split of the other speakers, 'unseen' = `{rc.heldout_speaker}`. "
            if rc.heldout_speaker
            else "'test' speakers are not in training. "
        )
        + f"Mean ± standard deviation over seeds where seeds > 1. Sum of row wall times "
        f"{wall / 60:.1f} min.\n\n"
    )
    (out / "table.md").write_text(header + "\n".join(md) + "\n")
    (out / "results.json").write_text(
        json.dumps(
            {
                "preset": p.name,
                "config": dataclasses.asdict(rc),
                "git_commit": commit,
                "git_commits": commits,
                "runs": records,
                "summary": lines,
            },
            indent=2,
        )
    )
    _plot(lines, out / "plot.png")
    (out / "claims.md").write_text(judge_claims(lines, p))


def _pareto(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points not dominated in (size, WER): no other point is smaller and better."""
    front, best = [], float("inf")
    for p in sorted(points, key=lambda p: (p[0], p[1])):
        if p[1] < best:
            front.append(p)
            best = p[1]
    return front


def _plot(lines: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for ax, title, key_size, key_wer in (
        (axes[0], "ours (official test split; bars: ±1 s.d. over seeds)", "size_paper", "wer_test"),
        (axes[1], "paper (voice search, 2B USM)", "paper_size", "paper_wer"),
    ):
        pts = [(l[key_size], l[key_wer], l["exp"]) for l in lines]
        sds = [(l.get("wer_test_sd") or 0.0) if key_wer == "wer_test" else 0.0 for l in lines]
        for (x, y, name), sd in zip(pts, sds):
            ax.errorbar(
                x,
                y,
                yerr=sd or None,
                fmt="o",
                capsize=3,
                zorder=3,
                color="C1" if name.startswith("B") else "C0",
            )  # bars: seed spread
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=8)
        front = _pareto(pts)
        ax.plot(
            [p[0] for p in front],
            [p[1] for p in front],
            "--",
            color="C2",
            label="Pareto frontier",
            zorder=2,
        )
        ax.set(
            xscale="log",
            xlabel="model size ratio (% of float32 B0, paper convention)",
            ylabel="WER (%)",
            title=title,
        )
        # Linear below 10% (our rows), logarithmic above (the paper's collapsed int2 rows).
        top = max(p[1] + sd for p, sd in zip(pts, sds))
        ax.set_yscale("symlog", linthresh=10, linscale=2)
        ax.set_ylim(0, top * 1.15)
        ticks = [t for t in (0, 1, 2, 3, 4, 5, 6, 8, 10, 20, 50, 100) if t <= top * 1.15]
        ax.set_yticks(ticks, [str(t) for t in ticks])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def judge_claims(lines: list[dict], p: Preset | str) -> str:
    """The paper's claims (USM-Lite sections 5.1-5.3, Tables 1-3) against our table, with
    verdicts."""
    p, rc = _plan_of(p)
    L = {l["exp"]: l for l in lines}
    w = lambda e: L[e]["wer_test"] if e in L else float("nan")
    sd_b0 = L["B0"].get("wer_test_sd") or 0.0
    tol = max(1.0, 2 * sd_b0)  # a difference smaller than this is noise here
    close = lambda a, b: abs(a - b) <= tol
    worse = lambda a, b: a - b > tol
    out = [
        f"# The paper's claims, checked at reduced scale (`{p.name}` on `{rc.corpus}`)",
        "",
        f"Generated from `table.md`. B0 = {w('B0'):.2f}% WER (official test split; seed "
        f"standard deviation {sd_b0:.2f}). Two WERs are called *the same* when they differ "
        f"by at most {tol:.2f} points (the larger of 1 point and twice B0's seed spread), "
        "*worse* when the difference exceeds that.",
        "",
    ]

    broken = not w("B0") <= MAX_WORKING_WER
    if broken:
        out.extend(
            [
                f"**B0 does not recognise speech at this budget** ({w('B0'):.1f}% WER > "
                f"{MAX_WORKING_WER:g}%): every comparison below is between broken models, "
                "so every verdict is *inconclusive*. This preset checks that the pipeline "
                "runs end to end; the `cpu` preset on FSDD is the reproduction.",
                "",
            ]
        )

    def claim(title, paper, ours, verdict, why, exps):
        if broken:
            verdict, why = "inconclusive", "B0 itself does not work (see above)."
        out.extend([f"## {title}", "", f"- paper: {paper}", f"- ours: {ours}"])
        unseen = [(e, L[e].get("wer_unseen")) for e in exps if e in L]
        if unseen and all(u is not None for _, u in unseen):
            # Reported beside the verdict, not judged: the seen-speaker test WER is close to
            # its floor, and the unseen speaker often separates rows that it cannot.
            out.append(
                "- same rows on the unseen speaker (reported, not judged): "
                + ", ".join(f"{e} {u:.2f}" for e, u in unseen)
            )
        out.extend([f"- verdict: **{verdict}**. {why}", ""])

    e0, e1 = w("E0"), w("E1")
    v = (
        "reproduced"
        if close(e0, w("B0")) and close(e1, w("B0"))
        else ("partly" if close(e1, w("B0")) or close(e0, w("B0")) else "not reproduced")
    )

    moved = [
        f"{name} {w(e) - w('B0'):+.2f} points"
        for e, name in (("E0", "PTQ"), ("E1", "QAT"))
        if not close(w(e), w("B0"))
    ]
    claim(
        "int8 PTQ and QAT keep the float WER",
        "B0 4.1, E0 4.2, E1 4.2",
        f"B0 {w('B0'):.2f}, E0 {e0:.2f}, E1 {e1:.2f}",
        v,
        "8-bit per-channel weights lose almost nothing."
        if v == "reproduced"
        else f"Beyond the noise level, int8 moved the WER by: {', '.join(moved)} (rows with "
        "one seed; compare the seed spread of the seeded rows).",
        ["B0", "E0", "E1"],
    )
    e2, e3 = w("E2"), w("E3")
    if worse(e2, e3) and close(e3, w("B0")):
        v, why = "reproduced", "int4 PTQ degrades; QAT recovers the float WER."
    elif worse(e2, e3):
        v, why = "partly", "QAT helps over PTQ, but does not reach the float WER."
    elif close(e2, w("B0")):
        v, why = (
            "not reproduced",
            "At this scale int4 PTQ already keeps the float WER: a "
            "2M-parameter model trained briefly has few outlier channels, so 7 levels "
            "per channel suffice without training.",
        )
    else:
        v, why = "not reproduced", "QAT does not beat PTQ here."
    claim(
        "int4 needs QAT",
        "E2 int4 PTQ 86.7 vs E3 int4 QAT 4.3",
        f"E2 {e2:.2f} vs E3 {e3:.2f}",
        v,
        why,
        ["E2", "E3"],
    )
    e4, e5, e6, e7 = (w(e) for e in ("E4", "E5", "E6", "E7"))
    collapses = e4 > MAX_WORKING_WER  # the paper's E4 does not recognise speech
    degrades = worse(e4, w("B0"))
    improves = e7 < e4 - tol and e5 >= e7
    v = (
        "reproduced"
        if collapses and improves
        else "partly"
        if collapses or (degrades and improves)
        else "not reproduced"
    )
    state = (
        f"collapses (above the working limit of {MAX_WORKING_WER:g}%)"
        if collapses
        else f"costs {e4 - w('B0'):+.2f} points over B0 but still recognises speech "
        "(the paper's E4 collapses to 99.9%)"
        if degrades
        else "keeps B0's WER within noise"
    )
    claim(
        "int2 fails without sub-channels and improves with more",
        "E4 99.9, E5/E6/E7 45.2 / 32.0 / 12.3",
        f"E4 {e4:.2f}, E5/E6/E7 {e5:.2f} / {e6:.2f} / {e7:.2f} (groups {rc.group_sizes})",
        v,
        f"int2 without groups {state}; smaller groups "
        + ("help beyond noise." if improves else "do not help beyond noise."),
        ["B0", "E4", "E5", "E6", "E7"],
    )
    e8, e10, e11 = w("E8"), w("E10"), w("E11")
    v = "reproduced" if close(e8, w("B0")) else "not reproduced"
    claim(
        "2:4 is nearly free",
        "E8 4.4 vs B0 4.1",
        f"E8 {e8:.2f} vs B0 {w('B0'):.2f}",
        v,
        "Half the weights of every group of four go, and the WER stays."
        if v == "reproduced"
        else "2:4 costs more than noise here.",
        ["B0", "E8"],
    )
    v = "reproduced" if worse(e10, w("B0")) else "not reproduced"
    claim(
        "1:4 is not free",
        "E10 11.7 vs B0 4.1",
        f"E10 {e10:.2f} vs B0 {w('B0'):.2f}",
        v,
        "Keeping one weight in four hurts."
        if v == "reproduced"
        else "At this scale and task 1:4 still keeps the WER.",
        ["B0", "E10"],
    )
    v = "reproduced" if e11 < e10 - tol else ("partly" if e11 < e10 else "not reproduced")
    claim(
        "few-shot masks help 1:4",
        "E11 10.6 vs E10 11.7",
        f"E11 {e11:.2f} vs E10 {e10:.2f}",
        v,
        "Difference beyond noise."
        if v == "reproduced"
        else ("Lower, but within noise." if v == "partly" else "Few-shot does not help here."),
        ["E10", "E11"],
    )
    e12, b1 = w("E12"), w("B1")
    s12, sb1 = L["E12"]["size_paper"], L["B1"]["size_paper"]
    v = (
        "reproduced"
        if e12 <= b1 + (tol if close(e12, b1) else 0) and e12 <= b1
        else ("partly" if close(e12, b1) else "not reproduced")
    )
    claim(
        "int4 + 2:4 beats the 1B dense model at about a fifth of its size",
        "E12 4.4 at 9.4% vs B1 4.5 at 50.2%",
        f"E12 {e12:.2f} at {s12:.1f}% vs B1 {b1:.2f} at {sb1:.1f}% (size ratio {s12 / sb1:.2f})",
        v,
        "Compressing a large model beats training a smaller dense one."
        if v == "reproduced"
        else (
            f"E12 matches B1 within noise at {s12 / sb1:.2f} of its size but does not beat "
            f"it ({e12 - b1:+.2f} points); the paper's own margin is 0.1 point."
            if v == "partly"
            else "E12 is worse than B1 beyond noise."
        ),
        ["E12", "B1"],
    )
    return "\n".join(out) + "\n"
