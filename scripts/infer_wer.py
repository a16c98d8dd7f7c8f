#!/usr/bin/env python
"""Is integer inference's speed bought with accuracy? The WER of each ``--arith`` of the
committed B0, paired against its float32 arithmetic on the same utterances.

B0 (``results/cpu/b0``: the reproduction's float32 dense row, seed 0, which held out
speaker ``theo``) is transcribed on the reproduction's ``test`` and ``unseen`` sets of that
seed (:func:`usmlite_edu.training.reproduce.eval_sets`: FSDD's official test recordings of the
training speakers, and every recording of the held-out speaker, connected digits built
with the evaluation seed) in every arithmetic of :mod:`usmlite_edu.deploy.infer`. Each is
compared with float32 by the paired bootstrap of :func:`usmlite_edu.core.stats.paired_difference`
(the same utterance indices for both in each of 2,000 resamples), with the verdict of
:func:`usmlite_edu.core.stats.verdict` for the claim "no worse than float32" (``no_worse``:
the interval's upper end below the 1-point margin). One seed: the committed checkpoint is
the only one (the interval covers the test utterances, not training seeds).

B0 is float, so ``w8`` / ``w8a8`` quantize its weights per channel to int8 and ``w4`` to
int4 (post-training quantization of the weights, as ``--spec int8`` / ``int4`` do), then
run their own arithmetic (:mod:`usmlite_edu.deploy.infer`). Writes ``wer.json`` (every
utterance's reference and hypothesis per arith, the differences, the machine) and
``wer.md`` to ``--out``.

    PYTHONPATH=. .venv/bin/python scripts/infer_wer.py [--out results/infer] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from usmlite_edu.core import stats
from usmlite_edu.deploy import infer
from usmlite_edu.deploy.recognizer import Recognizer
from usmlite_edu.speech import presets, runs
from usmlite_edu.training import reproduce

REPO = Path(__file__).resolve().parents[1]
SPLITS = ("test", "unseen")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=str(REPO / "results" / "cpu" / "b0"))
    ap.add_argument("--data-dir", help="FSDD folder (default: the one the run trained on)")
    ap.add_argument("--out", default=str(REPO / "results" / "infer"))
    ap.add_argument("--ariths", nargs="+", default=list(infer.ARITHS))
    args = ap.parse_args()
    if args.ariths[0] != "float32":
        raise SystemExit("--ariths: float32 comes first (the reference of every comparison)")
    run_cfg = json.loads((Path(args.checkpoint) / "config.json").read_text())
    data_dir = args.data_dir or run_cfg["data_dir"]
    rc = presets.get_preset(run_cfg["preset"]).reproduce
    heldout = run_cfg["heldout_speaker"]

    results: dict = {}
    sets = None
    for arith in args.ariths:
        t = time.perf_counter()
        m = Recognizer.from_run(args.checkpoint, arith=arith)
        if sets is None:
            sets = reproduce.eval_sets(
                rc, data_dir, m.config, m.tokenizer, m.train_config, heldout=heldout, splits=SPLITS
            )
        per = {}
        for split, ds in sets.items():
            r = m.evaluate(ds)
            per[split] = {k: r[k] for k in ("wer", "cer", "utterances", "skipped", "transcripts")}
        results[arith] = {
            "spec": str(m.spec),
            "seconds": time.perf_counter() - t,
            "splits": per,
        }
        print(
            f"{arith:8s} spec {results[arith]['spec']:8s} "
            + "  ".join(f"{s} WER {per[s]['wer']:.2f}%" for s in per),
            flush=True,
        )

    rows = []
    for arith, res in results.items():
        for split in SPLITS:
            a = stats.score(res["splits"][split]["transcripts"])
            b = stats.score(results["float32"]["splits"][split]["transcripts"])
            iv = stats.paired_difference([a], [b])
            res["splits"][split]["vs_float32"] = {
                "diff": iv.estimate,
                "lo": iv.lo,
                "hi": iv.hi,
                "verdict_no_worse": stats.verdict(iv.lo, iv.hi, "no_worse"),
                "same_hypotheses": sum(
                    x["hyp"] == y["hyp"]
                    for x, y in zip(
                        sorted(res["splits"][split]["transcripts"], key=lambda u: u["id"]),
                        sorted(
                            results["float32"]["splits"][split]["transcripts"],
                            key=lambda u: u["id"],
                        ),
                    )
                ),
            }
            rows.append((arith, res["spec"], split, res["splits"][split]))

    machine = runs.machine_info()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "checkpoint": str(Path(args.checkpoint).resolve().relative_to(REPO))
        if Path(args.checkpoint).resolve().is_relative_to(REPO)
        else args.checkpoint,
        "heldout_speaker": heldout,
        "eval_seed": reproduce.EVAL_SEED,
        "margin": stats.EQUIVALENCE_MARGIN,
        "resamples": stats.DEFAULT_RESAMPLES,
        "machine": machine,
        "command": "PYTHONPATH=. .venv/bin/python scripts/infer_wer.py",
        "ariths": results,
    }
    (out / "wer.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [
        "# WER of B0 in each inference arithmetic, paired against float32",
        "",
        f"Made by `{record['command']}` on {machine['processor']} (jax {machine['jax']}). "
        f"Checkpoint `{record['checkpoint']}` (seed 0, held-out speaker {heldout}); "
        "difference = arith - float32 in WER points, 95% paired bootstrap interval over "
        f"utterances ({stats.DEFAULT_RESAMPLES} resamples); verdict of 'no worse than "
        f"float32' with a {stats.EQUIVALENCE_MARGIN:g}-point margin.",
        "",
        "| arith | weights | split | utterances | WER % | diff vs float32 | 95% interval "
        "| identical hypotheses | no worse? |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arith, spec, split, r in rows:
        v = r["vs_float32"]
        lines.append(
            f"| {arith} | {spec} | {split} | {r['utterances']} | {r['wer']:.2f} | "
            f"{v['diff']:+.2f} | [{v['lo']:+.2f}, {v['hi']:+.2f}] | "
            f"{v['same_hypotheses']}/{r['utterances']} | "
            f"{'(reference)' if arith == 'float32' else v['verdict_no_worse']} |"
        )
    (out / "wer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
