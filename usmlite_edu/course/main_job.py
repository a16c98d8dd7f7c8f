"""The main job's first result: the committed B0s transcribing real speech under PTQ.

:func:`ptq_on_sample` loads a committed B0 and transcribes a test sample that ships in the
repository, as float and under post-training quantization. Two pairs (:data:`SAMPLES`):

* ``an4``: the AN4 B0 (``results/an4/b0``: Conformer-CTC trained on AN4's training
  speakers, recipe chosen on its dev speakers) on ``data_small/an4_sample``, all 130
  utterances of AN4's official test set (ten speakers never trained on), with ESPnet's
  published 7.6% WER on the same test set named beside the float row;
* ``fsdd``: the FSDD B0 (``results/cpu/b0``, trained on FSDD connected digits without
  speaker ``theo``) on ``data_small/fsdd_sample`` (real FSDD *test* speech).

PTQ here is B0's float weights quantized per spec (USM-Lite
Eqs. 1-2), and for N:M specs masks computed once from those weights (Eq. 3, one-shot; no
fine-tuning: the PTQ setting of the paper's rows E0 and E2, not Algorithm 1). Offline, and
under a minute each on 2 CPU cores (one compile per spec).

Outputs in ``out_dir``, per pair (``ptq_an4``, ``ptq_sample`` for FSDD): ``.md`` (WER/CER
and sizes per spec), ``.json`` (the same numbers and every transcript) and ``.png`` (WER
against size).
Sizes are those of section 5's "Model Size Ratio" for B0's own shapes
(:mod:`usmlite_edu.core.sizes`: the paper's convention and the exact packed bytes).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from usmlite_edu.core import sizes
from usmlite_edu.core.specs import as_spec
from usmlite_edu.course import notebook_runner
from usmlite_edu.deploy.forward import get_forward
from usmlite_edu.deploy.recognizer import Recognizer

# Every library call this module makes, in one block, so that moving one is one edit.
from usmlite_edu.speech.batching import prepare
from usmlite_edu.speech.corpora import load_corpus
from usmlite_edu.speech.decoding import wer_cer
from usmlite_edu.speech.paths import in_checkout
from usmlite_edu.speech.runs import load_masks, load_run, read_config

__all__ = [
    "ptq_on_sample",
    "run",
    "run_notebooks",
    "DEFAULT_SPECS",
    "B0_IN_CLONE",
    "SAMPLE_IN_CLONE",
    "SAMPLES",
    "ESPNET_AN4",
]

DEFAULT_SPECS = ("float", "int8", "int4", "int2", "int4+2:4")
#: where a clone of the repository holds them (found from the working directory)
B0_IN_CLONE = "results/cpu/b0"
SAMPLE_IN_CLONE = "data_small/fsdd_sample"
#: ESPnet's ``egs2/an4/asr1`` result on AN4's test set without a language model (its
#: README: Transformer encoder-decoder with CTC, 30 BPE units, speed perturbation, joint
#: CTC/attention beam search of width 10): what the AN4 B0's float row is set beside.
ESPNET_AN4 = ("ESPnet egs2/an4/asr1, Transformer enc-dec + CTC, beam 10, no LM", 7.6)
#: The main job's pairs: (committed B0, shipped test sample, corpus name, output stem,
#: the sample in words, a published reference WER or None).
SAMPLES: dict[str, tuple[str, str, str, str, str, tuple[str, float] | None]] = {
    "an4": (
        "results/an4/b0",
        "data_small/an4_sample",
        "an4_sample",
        "ptq_an4",
        "AN4's official test set (10 speakers never trained on)",
        ESPNET_AN4,
    ),
    "fsdd": (
        B0_IN_CLONE,
        SAMPLE_IN_CLONE,
        "fsdd_sample",
        "ptq_sample",
        "real FSDD test speech",
        None,
    ),
}


def _score(refs: Sequence[str], hyps: Sequence[str]) -> dict:
    words = sum(len(r.split()) for r in refs)
    wer, cer = wer_cer(refs, hyps)
    return {
        "wer": wer,
        "cer": cer,
        "words": words,
        "errors": int(round(wer * words / 100)),
        "utterances": len(refs),
    }


def _examples(res: dict, specs: Sequence[str], k: int = 4) -> list[str]:
    """Utterances worth showing: first those some of ``specs`` get wrong, then correct ones."""
    uids = list(res["references"])
    wrong = [u for u in uids if any(res["hypotheses"][s][u] != res["references"][u] for s in specs)]
    return (wrong + [u for u in uids if u not in wrong])[:k]


def _write_md(res: dict, path: Path) -> None:
    rows = res["rows"]
    n_all = rows[0]["all"]["words"]
    seen, unseen = rows[0]["seen"], rows[0].get("unseen")
    b0_mb = rows[0]["exact_bytes"] / 1e6
    ref = res.get("reference")
    held = res["heldout_speaker"]
    lines = [
        f"# B0 under post-training quantization on `{res['sample_name']}`",
        "",
        f"B0 = `{res['b0_dir']}` ({res['params']:,} parameters, {b0_mb:.2f} MB in float32)"
        + (f", trained without speaker `{held}`" if held else "")
        + f". Sample: {rows[0]['all']['utterances']} utterances of {res['sample_words']}, "
        f"{n_all} words: one word = {100 / n_all:.2f} WER points"
        + (
            f" (seen speakers: {seen['words']} words"
            + (f"; unseen `{held}`: {unseen['words']} words" if unseen else "")
            + ")"
            if held
            else ""
        )
        + ". Greedy CTC decoding, no language model. PTQ = B0's float weights quantized as is (USM-Lite Eqs. 1-2), N:M masks "
        "one-shot from them (Eq. 3); no fine-tuning. Size: section 5's ratio to float32 B0 "
        "(paper convention) and the exact packed bytes (`usmlite_edu.core.sizes`).",
        "",
        f"| spec | WER % ({n_all} words) | CER % | words | errors | WER % seen "
        + (f"| WER % unseen `{res['heldout_speaker']}` " if unseen else "")
        + "| size, paper conv. | size, exact | exact bytes |",
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if unseen else "") + "---:|---:|---:|",
    ]
    for r in rows:
        a = r["all"]
        lines.append(
            f"| `{r['spec']}` | {a['wer']:.2f} | {a['cer']:.2f} | {a['words']} | {a['errors']} "
            f"| {r['seen']['wer']:.2f} "
            + (f"| {r['unseen']['wer']:.2f} " if unseen else "")
            + f"| {r['size_paper']:.1f}% | {r['size_exact']:.1f}% | {r['exact_bytes']:,} |"
        )
        if ref and r["spec"] == "float":
            lines.append(
                f"| *{ref[0]}* | *{ref[1]:.1f}* | | | | " + ("| " if unseen else "") + "| | | |"
            )
    lines += [
        "",
        f"Wall time {res['wall_time_s']:.0f} s (loading, compiling and decoding "
        f"{len(rows)} specs).",
    ]
    path.write_text("\n".join(lines) + "\n")


def _plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    x = [r["size_paper"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.plot(
        x,
        [r["all"]["wer"] for r in rows],
        "o",
        ms=8,
        color="C0",
        label=f"whole sample ({rows[0]['all']['words']} words)",
    )
    if "unseen" in rows[0]:
        ax.plot(
            x,
            [r["unseen"]["wer"] for r in rows],
            "x",
            ms=7,
            color="C3",
            label=f"unseen speaker {res['heldout_speaker']} ({rows[0]['unseen']['words']} words)",
        )
    for r in rows:
        ax.annotate(
            f"{r['spec']}\n{r['all']['wer']:.1f}%",
            (r["size_paper"], r["all"]["wer"]),
            textcoords="offset points",
            xytext=(7, -3),
            va="top",
            fontsize=9,
        )
    ax.set_xscale("log")
    ax.set_xticks([5, 10, 25, 50, 100], ["5%", "10%", "25%", "50%", "100%"])
    ax.set_xlim(min(x) / 1.6, max(x) * 1.6)
    top = max(
        max(r["all"]["wer"] for r in rows),
        max((r["unseen"]["wer"] for r in rows if "unseen" in r), default=0),
    )
    ax.set_ylim(0, max(10.0, top * 1.2))
    ax.set_xlabel("model size, % of float32 B0 (paper convention, log scale)")
    ax.set_ylabel("WER (%)")
    ref = res.get("reference")
    if ref:
        ax.axhline(ref[1], color="0.4", ls="--", lw=1)
        ax.annotate(
            f"{ref[0].split(',')[0]}: {ref[1]:.1f}%",
            (min(x) / 1.5, ref[1]),
            textcoords="offset points",
            xytext=(0, 3),
            fontsize=8,
            color="0.3",
        )
    ax.set_title(
        f"B0 post-training quantization on {res['sample_name']} (real speech)", fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def ptq_on_sample(
    b0_dir: str | os.PathLike | None = None,
    sample_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike = "runs/main",
    specs: Sequence[str] = DEFAULT_SPECS,
    *,
    show: int = 4,
    verbose: bool = True,
    sample: str = "fsdd",
) -> dict[str, Any]:
    """Transcribe a test sample with a B0 under each spec; write the table, JSON and plot.

    ``sample`` names the pair of :data:`SAMPLES` (``"fsdd"`` or ``"an4"``): which committed
    B0 and shipped sample the ``None`` defaults mean, the corpus the sample is read as,
    the output file stem and the reference WER named beside the float row.

    Returns the results: ``rows`` (one per spec, in order: ``all``/``seen``/``unseen``
    scores, ``size_paper`` and ``size_exact`` in %, ``exact_bytes``), ``references`` and
    ``hypotheses[spec]`` (uid -> text) and ``wall_time_s``. ``seen``/``unseen`` split the
    sample by B0's held-out speaker (from its ``config.json``). With ``verbose``, prints the
    table and ``show`` example transcripts for float and int2 (where both are run).
    ``b0_dir`` and ``sample_dir`` default to the committed ones of the clone the working
    directory is in.
    """
    t0 = time.time()
    if sample not in SAMPLES:
        raise ValueError(f"sample must be one of {', '.join(SAMPLES)}, got {sample!r}")
    b0_rel, sample_rel, corpus, stem, words, reference = SAMPLES[sample]
    if b0_dir is None:
        b0_dir = in_checkout(
            b0_rel, "the committed B0", "pass b0_dir (a run directory of `usmlite-edu train`)"
        )
    if sample_dir is None:
        sample_dir = in_checkout(
            sample_rel,
            f"the {sample} test sample",
            f"pass sample_dir (scripts/make_{sample_rel.split('/')[-1]}.py writes one)",
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = load_run(b0_dir)
    cfg, tok, params = run.config, run.tokenizer, run.params
    heldout = run.meta.get("heldout_speaker")
    split = load_corpus(corpus, sample_dir, "test", sample_rate=cfg.sample_rate)
    # One padded length and one batch for the whole sample: one compile per spec instead
    # of one per bucket (about 3x faster). Padding is masked out, so the transcripts are
    # those of B0's own buckets (checked: identical for all five default specs).
    longest = max(u.load(cfg.sample_rate).size for u in split.utterances) / cfg.sample_rate
    tcfg = read_config(b0_dir)[1].replace(
        bucket_seconds=(float(math.ceil(longest)),), eval_batch_size=len(split)
    )
    parts = {"all": split.utterances, "seen": [u for u in split.utterances if u.speaker != heldout]}
    if heldout and len(parts["seen"]) < len(split):
        parts["unseen"] = [u for u in split.utterances if u.speaker == heldout]
    ds = prepare(split, tok, cfg, tcfg.bucket_seconds, keep_long=True)
    if ds.skipped:  # a sample file that cannot be used is a broken checkout, not noise
        raise ValueError(f"{sample_dir}: {len(ds.skipped)} utterances unusable: {ds.skipped[:3]}")
    refs = {e.uid: tok.normalize(e.text) for e in ds.examples}

    rows, hyps = [], {}
    for s in specs:
        spec = as_spec(s)
        t_spec = time.time()
        masks = load_masks(b0_dir, run, spec)  # one-shot N:M (Eq. 3) on B0's weights
        rec = Recognizer(get_forward(cfg, spec, tcfg), params, masks, tok, tcfg)
        done = rec.evaluate(ds)["transcripts"]
        hyps[s] = {t["id"]: t["hyp"] for t in done}
        row = {"spec": s}
        for name, us in parts.items():
            uids = [u.uid for u in us]
            row[name] = _score([refs[u] for u in uids], [hyps[s][u] for u in uids])
        size = sizes.model_size(spec, cfg)
        row.update(
            size_paper=sizes.size_ratio(spec, cfg, "paper"),
            size_exact=size.ratio,
            exact_bytes=int(round(size.total / 8)),
            seconds=time.time() - t_spec,
        )
        rows.append(row)
        if verbose:
            print(
                f"  {s:>9}: WER {row['all']['wer']:5.2f}% ({row['all']['errors']} of "
                f"{row['all']['words']} words wrong), size {row['size_paper']:.1f}% "
                f"({row['seconds']:.0f} s)",
                flush=True,
            )

    res = {
        "b0_dir": str(b0_dir),
        "sample_dir": str(sample_dir),
        "sample_name": split.name,
        "sample_words": words,
        "reference": reference,
        "heldout_speaker": heldout,
        "params": int(sum(np.size(x) for x in jax.tree.leaves(params))),
        "specs": list(specs),
        "rows": rows,
        "references": refs,
        "hypotheses": hyps,
        "wall_time_s": time.time() - t0,
    }
    _write_md(res, out / f"{stem}.md")
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2))
    _plot(res, out / f"{stem}.png")
    res["wall_time_s"] = time.time() - t0
    if verbose:
        print("\n" + (out / f"{stem}.md").read_text())
        shown = [s for s in ("float", "int2") if s in hyps]
        if shown:
            print(f"Example transcripts ({', '.join(shown)}):")
            for u in _examples(res, shown, show):
                print(f"  {u}\n    ref:   {refs[u]}")
                for s in shown:
                    print(f"    {s + ':':<6} {hyps[s][u]}")
        print(f"Wrote {out / stem}.md, .json, .png", flush=True)
    return res


#: Notebooks the main job runs at once (fast mode): two kernels on 2 cores. Fast mode is
#: mostly XLA compiling and Python, one core each, so two at a time nearly halve the step.
NOTEBOOK_JOBS = 2
#: Each kernel's XLA on one thread when two run at once: two kernels each spreading their
#: small ops over both cores only contend.
KERNEL_ENV = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}


def run_notebooks(
    out_dir: str | os.PathLike = "runs/main",
    *,
    full: bool = False,
    names: Sequence[str] | None = None,
    timeout: int | None = None,
    jobs: int | None = None,
) -> int:
    """The main job's last step: execute the notebooks (all, or those whose file name
    contains one of ``names``) headless into ``out_dir/notebooks``, tiny sizes unless
    ``full``. Each cell may run ``timeout`` seconds (default: the runner's limit for the
    mode, :data:`usmlite_edu.course.notebook_runner.CELL_TIMEOUT_S`); a notebook that stalls (a
    cell past the limit, a dead kernel) is reported with its cell and run once more in a
    fresh kernel; a failing cell fails the job (no notebook starts after it). ``jobs``:
    notebooks at once (default :data:`NOTEBOOK_JOBS` in fast mode, 1 in full mode, whose
    training cells use every core). Returns 0; a failure raises.
    """
    jobs = (1 if full else NOTEBOOK_JOBS) if jobs is None else jobs
    print(
        f"\n== Notebooks, executed headless ({'learner' if full else 'tiny'} sizes) ==",
        flush=True,
    )
    if jobs > 1:
        print(f"{jobs} at a time, each in its own kernel, longest first", flush=True)
    return notebook_runner.run_all(
        list(names) if names else None,
        fast=not full,
        out_dir=Path(out_dir) / "notebooks",
        timeout=timeout,
        retries=1,
        jobs=jobs,
        kernel_env=KERNEL_ENV if jobs > 1 else None,
    )


def _where(out: Path, steps: dict[str, float], notebooks: bool) -> str:
    """The closing block: what the job wrote where, and how long each step took."""
    nbs = sorted((out / "notebooks").glob("*.ipynb")) if notebooks else []
    lines = [
        f"== Main job done in {sum(steps.values()):.0f} s; outputs in {out}/ ==",
        f"  {out / 'sizes.md'}: model size ratio of Tables 1-3 (2B model)",
        f"  {out / 'ptq_an4.md'}: AN4 B0 under PTQ on AN4's test set, beside ESPnet's 7.6%",
        f"  {out / 'ptq_sample.md'}: FSDD B0 under PTQ on real FSDD test speech",
        f"  {out / 'ptq_an4.json'}, {out / 'ptq_sample.json'}: the same numbers and every "
        "transcript",
        f"  {out / 'ptq_an4.png'}, {out / 'ptq_sample.png'}: WER against model size",
    ]
    if notebooks:
        lines.append(f"  {out / 'notebooks'}/: {len(nbs)} executed notebooks (open in JupyterLab)")
    lines.append("  step times: " + ", ".join(f"{k} {v:.0f} s" for k, v in steps.items()))
    return "\n".join(lines)


def run(
    out_dir: str | os.PathLike = "runs/main", *, full: bool = False, notebooks: bool = True
) -> int:
    """``make run``: the size table, B0 on real speech under PTQ, then the notebooks.

    Everything is offline: both B0s and both samples ship in the repository. Executed notebooks
    go to ``out_dir/notebooks`` (tiny sizes unless ``full``; see :func:`run_notebooks`).
    Ends with one block naming every output. Returns 0; a failing step raises.
    """
    steps: dict[str, float] = {}
    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    print("== Model size ratio of USM-Lite's Tables 1-3 (section 5), 2B model ==", flush=True)
    table = sizes.format_size_table("usm_2b")
    print(table, flush=True)
    (out / "sizes.md").write_text(table + "\n")
    steps["size table"] = time.time() - t0
    print(
        "\n== The committed AN4 B0 on AN4's official test set, float and post-training "
        "quantized ==",
        flush=True,
    )
    t0 = time.time()
    ptq_on_sample(None, None, out, sample="an4")
    steps["PTQ AN4"] = time.time() - t0
    print(
        "\n== The committed FSDD B0 on real FSDD test speech, float and post-training quantized ==",
        flush=True,
    )
    t0 = time.time()
    ptq_on_sample(None, None, out, sample="fsdd")
    steps["PTQ FSDD"] = time.time() - t0
    if notebooks:
        t0 = time.time()
        run_notebooks(out, full=full)
        steps["notebooks"] = time.time() - t0
    print("\n" + _where(out, steps, notebooks), flush=True)
    return 0
