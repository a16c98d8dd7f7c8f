"""The ``usmlite-edu`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


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
    from usmlite_edu import notebook_runner, reproduce, sizes, train

    print("== Model-size table (guide section 2) ==", flush=True)
    print(sizes.format_size_table("usm_2b"), flush=True)
    print("\n== Notebooks (headless) ==", flush=True)
    notebook_runner.run_all(None, fast=not args.full)
    print("\n== Train the ci preset on data_small (offline) ==", flush=True)
    r = train.train("ci", "data_small", None, args.out, eval_splits=("dev", "test"))
    print(f"ci preset on data_small: dev WER {r['dev']['wer']:.1f}%, "
          f"test WER {r['test']['wer']:.1f}% after {r['step']} steps "
          f"({r['train_time_s']:.0f} s of training)", flush=True)
    print("\n== The paper's Tables 1-3, ci preset on data_small (a pipeline check) ==", flush=True)
    out = Path(args.out).parent / "reproduce_ci"
    reproduce.run(reproduce.REPRO_PRESETS["ci"], None, out)
    print((out / "table.md").read_text())
    print((out / "claims.md").read_text())
    return 0


def _data_dir(args) -> str | None:
    return args.data or os.environ.get("USMLITE_DATA")


def _cmd_train(args) -> int:
    from usmlite_edu import train

    r = train.train(args.preset, args.corpus, _data_dir(args), args.out, spec=args.spec,
                    init=args.init, steps=args.steps, seed=args.seed,
                    heldout_speaker=args.heldout_speaker,
                    train_overrides={k: v for k, v in (("batch_size", args.batch_size),)
                                     if v is not None})
    print(json.dumps(r, indent=2, default=str))
    return 0


def _cmd_eval(args) -> int:
    from usmlite_edu import train

    r = train.evaluate_run(args.checkpoint, args.corpus, _data_dir(args), args.split,
                           spec=args.spec, seed=args.seed, heldout_speaker=args.heldout_speaker)
    print(f"{args.split}: WER {r['wer']:.2f}%  CER {r['cer']:.2f}%  "
          f"({r['utterances']} utterances, {r['skipped']} skipped, spec {r['spec']})")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0


def _cmd_transcribe(args) -> int:
    from usmlite_edu import transcribe

    for path, text in transcribe.transcribe_files(args.checkpoint, args.files, spec=args.spec):
        print(f"{path}\t{text}", flush=True)
    return 0


def _cmd_reproduce(args) -> int:
    import dataclasses

    from usmlite_edu import reproduce

    if args.preset not in reproduce.REPRO_PRESETS:
        raise ValueError(f"reproduce has presets {sorted(reproduce.REPRO_PRESETS)}, not {args.preset!r}")
    rc = reproduce.REPRO_PRESETS[args.preset]
    if args.corpus and args.corpus != rc.corpus:
        rc = dataclasses.replace(rc, corpus=args.corpus)
    if args.seeds is not None:
        rc = dataclasses.replace(rc, seeds=tuple(range(args.seeds)))
    reproduce.run(rc, _data_dir(args), args.out, only=args.only)
    print((Path(args.out) / "table.md").read_text())
    print((Path(args.out) / "claims.md").read_text())
    return 0


def _cmd_fetch(args) -> int:
    from usmlite_edu import fetch

    path = fetch.fetch(args.corpus, args.to)
    print(f"{args.corpus} is ready in {path}")
    return 0


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

    corpora = ["fsdd", "data_small", "mini-librispeech", "librispeech"]

    def data_args(sp):
        sp.add_argument("--corpus", default="data_small", choices=corpora)
        sp.add_argument("--data", help="corpus directory (default: $USMLITE_DATA; data_small "
                        "falls back to the repository copy)")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--heldout-speaker", help="fsdd: leave this speaker out (unseen-speaker split)")

    t = sub.add_parser("train", help="train or fine-tune a Conformer-CTC (Algorithm 1)")
    t.add_argument("--preset", default="ci", help="ci | cpu | small | usm_2b")
    data_args(t)
    t.add_argument("--out", required=True, help="run directory (resumes if it has a checkpoint)")
    t.add_argument("--spec", default="float", help="compression, e.g. int4+2:4 (default float)")
    t.add_argument("--init", help="run directory of a dense model to fine-tune from")
    t.add_argument("--steps", type=int, help="override the preset's step count")
    t.add_argument("--batch-size", type=int)
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("eval", help="WER/CER of a trained run on a split")
    e.add_argument("--checkpoint", required=True, help="run directory")
    data_args(e)
    e.add_argument("--split", default="test", choices=["train", "dev", "test"])
    e.add_argument("--spec", help="evaluate through another spec (PTQ), e.g. int4")
    e.add_argument("--json", help="also write the result (with example transcripts) here")
    e.set_defaults(func=_cmd_eval)

    tr = sub.add_parser("transcribe", help="transcribe WAV/FLAC files (any rate, mono/stereo)")
    tr.add_argument("--checkpoint", required=True, help="run directory")
    tr.add_argument("--spec", help="run through another spec (PTQ)")
    tr.add_argument("files", nargs="+")
    tr.set_defaults(func=_cmd_transcribe)

    r = sub.add_parser("reproduce", help="the paper's Tables 1-3 at reduced scale")
    r.add_argument("--preset", default="ci", help="ci (data_small, minutes) | cpu (FSDD, about 90 min)")
    r.add_argument("--corpus", help="default: the preset's (ci: data_small, cpu: fsdd)")
    r.add_argument("--data", help="corpus directory (default $USMLITE_DATA)")
    r.add_argument("--out", required=True, help="results directory (resumes rows already done)")
    r.add_argument("--seeds", type=int, help="seeds for B0/E3/E8/E12 (default 3)")
    r.add_argument("--only", nargs="*", help="only these rows, e.g. B0 E3")
    r.set_defaults(func=_cmd_reproduce)

    d = sub.add_parser("data", help="corpora")
    dsub = d.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="download and verify a corpus")
    f.add_argument("corpus", choices=["fsdd", "mini-librispeech", "librispeech-100"])
    f.add_argument("--to", required=True, help="target directory")
    f.set_defaults(func=_cmd_fetch)

    m = sub.add_parser("main", help="the project's main job (what `make run` does)")
    m.add_argument("--full", action="store_true", help="notebooks at learner sizes")
    m.add_argument("--out", default="runs/ci", help="run directory of the ci training")
    m.set_defaults(func=_cmd_main)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # bad input: one clear line
        print(f"usmlite-edu: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("usmlite-edu: interrupted; a training run resumes from its last checkpoint "
              "when started again with the same --out", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
