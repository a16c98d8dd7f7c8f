"""The ``usmlite-edu`` command line: sizes, data, training, evaluation, packed export,
the reproduction of USM-Lite's Tables 1-3, the notebooks, and the project's main job.

Every training-related command takes ``--preset NAME`` and any number of
``--set SECTION.FIELD=VALUE`` overrides (``train.peak_lr=1e-3``, ``model.dropout=0.1``,
``reproduce.finetune_steps=50``); see ``usmlite_edu.speech.presets``.

Exit codes:

* 0: everything asked for was done, every input used.
* 2 (:data:`EXIT_REFUSED`): refused before or during the work, one line on stderr
  (a bad setting or spec, missing data, a run directory that holds another run, ...).
* 3 (:data:`EXIT_INPUTS_FAILED`): ``transcribe`` or ``eval`` finished, but at least one
  input failed (an unreadable, truncated, flat or too-short file, an utterance skipped);
  the last line on stderr counts them ("2 of 5 files failed").
* 4 (:data:`EXIT_TOO_MANY_SKIPPED`): ``train`` or ``reproduce`` finished and wrote its
  outputs, but skipped more than ``usmlite_edu.training.train.MAX_SKIP_SHARE`` (5%) of a split;
  stderr names each such split.
* 5 (:data:`EXIT_DOES_NOT_COMPILE`): ``plan`` printed its plan, but the step did not
  compile for that mesh (the compiler's message, e.g. out of memory, is printed).
* 130: interrupted (a training run resumes when started again with the same ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

#: refused: bad input, one clear line on stderr
EXIT_REFUSED = 2
#: ``transcribe`` / ``eval``: at least one input failed, the others were done
EXIT_INPUTS_FAILED = 3
#: ``train`` / ``reproduce``: more than ``train.MAX_SKIP_SHARE`` of a split was skipped
EXIT_TOO_MANY_SKIPPED = 4
EXIT_DOES_NOT_COMPILE = 5


def _too_many_skipped(lines: list[str]) -> int:
    """Report the splits that lost too much data; the exit code that says so."""
    if not lines:
        return 0
    for line in lines:
        print(f"usmlite-edu: error: {line}", file=sys.stderr)
    print(
        f"usmlite-edu: {len(lines)} split(s) skipped more than the allowed share "
        "(usmlite_edu.training.train.MAX_SKIP_SHARE); the outputs are written, but check the data",
        file=sys.stderr,
    )
    return EXIT_TOO_MANY_SKIPPED


def _spec(args):
    """``--spec`` or ``--spec-map FILE`` (a per-layer map), never both."""
    path = getattr(args, "spec_map", None)
    if path is None:
        return args.spec
    if args.spec:
        raise ValueError(f"give --spec or --spec-map, not both (got --spec {args.spec})")
    from usmlite_edu.core.layer_specs import SpecMap

    return SpecMap.load(path)


def _cmd_sizes(args) -> int:
    from usmlite_edu.core import sizes
    from usmlite_edu.speech.model import compressible_layers, layer_table
    from usmlite_edu.speech.presets import model_config

    if args.layers:
        print("\n".join(compressible_layers(model_config(args.model))))
        return 0
    if args.spec_map:
        m = _spec(args)
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


def _cmd_notebooks(args) -> int:
    from usmlite_edu.course import editions, notebook_runner

    if (args.edition is None) != (args.out is None):
        raise ValueError("--edition and --out go together: --edition student|instructor --out DIR")
    if args.run and args.edition is None:
        raise ValueError("--run executes a written edition: add --edition and --out")
    if args.edition is None:
        return notebook_runner.run_all(args.names, fast=not args.full, directory=args.dir)
    written = editions.write_edition(args.edition, args.out, args.names, args.dir)
    for p in written:
        print(f"wrote {p} ({args.edition} edition)")
    if args.run:
        return notebook_runner.run_all(
            [p.stem for p in written], fast=not args.full, directory=args.out
        )
    return 0


def _cmd_book(args) -> int:
    from usmlite_edu.course import book

    book.build(out=args.out, fast=args.fast, directory=args.dir, executed_dir=args.executed)
    return 0


def _cmd_main(args) -> int:
    """The README's main job: everything a fresh, offline machine can show in minutes."""
    from usmlite_edu.course import main_job

    return main_job.run(out_dir=args.out, full=args.full, notebooks=not args.no_notebooks)


def _data_dir(args) -> str | None:
    return args.data or os.environ.get("USMLITE_DATA")


def _cmd_train(args) -> int:
    from usmlite_edu.scale import distributed

    # before anything touches a device: several processes become one run
    distributed.initialize(
        args.coordinator, args.num_processes, args.process_id, auto=args.distributed == "auto"
    )
    from usmlite_edu.training import train

    r = train.train(
        args.preset,
        args.corpus,
        _data_dir(args),
        args.out,
        spec=_spec(args),
        init=args.init,
        steps=args.steps,
        seed=args.seed,
        heldout_speaker=args.heldout_speaker,
        overrides=args.set,
        mesh_spec=args.mesh,
    )
    print(json.dumps(r, indent=2, default=str))
    return _too_many_skipped(train.too_many_skipped(train.skip_counts(r)))


def _cmd_plan(args) -> int:
    from usmlite_edu.training import plan

    pl = plan.plan_memory(
        args.preset,
        args.spec,
        topology=args.topology,
        mesh_spec=args.mesh,
        global_batch=args.global_batch,
        grad_accum=args.grad_accum,
        remat=args.remat,
        compute_dtype="preset"
        if args.compute_dtype is None
        else (None if args.compute_dtype == "float32" else args.compute_dtype),
        seconds=args.seconds,
        overrides=args.set,
    )
    print(plan.format_plan(pl))
    if args.json:
        import dataclasses

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        rec = {**dataclasses.asdict(pl), "peak_bytes": pl.peak_bytes, "fits": pl.fits}
        Path(args.json).write_text(json.dumps(rec, indent=2) + "\n")
    return 0 if pl.error is None else EXIT_DOES_NOT_COMPILE


def _cmd_eval(args) -> int:
    from usmlite_edu.training import train

    r = train.evaluate_run(
        args.checkpoint,
        args.corpus,
        _data_dir(args),
        args.split,
        spec=_spec(args),
        seed=args.seed,
        heldout_speaker=args.heldout_speaker,
        overrides=args.set,
        model=args.model,
        arith=args.arith,
    )
    print(
        f"{args.split}: WER {r['wer']:.2f}%  CER {r['cer']:.2f}%  "
        f"({r['utterances']} utterances, {r['skipped']} skipped, spec {r['spec']}"
        + (f", arith {args.arith})" if args.arith else ")")
    )
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    if r["skipped"]:
        print(
            f"usmlite-edu: {r['skipped']} of {r['utterances'] + r['skipped']} utterances of "
            f"{args.split} failed (skipped, not scored; the warnings above name each one)",
            file=sys.stderr,
        )
        return EXIT_INPUTS_FAILED
    return 0


def _cmd_transcribe(args) -> int:
    from usmlite_edu.deploy import transcribe

    failed = 0
    texts = transcribe.transcribe_files(
        args.checkpoint, args.files, spec=_spec(args), model=args.model, arith=args.arith
    )
    for path, text in texts:
        print(f"{path}\t{text}", flush=True)
        failed += transcribe.is_error(text)
    if failed:
        print(f"usmlite-edu: {failed} of {len(args.files)} files failed", file=sys.stderr)
        return EXIT_INPUTS_FAILED
    return 0


def _cmd_export(args) -> int:
    from usmlite_edu.deploy import export

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {out}: name the packed file FILE.safetensors")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out {out}: folder {out.parent} does not exist")
    info = export.write_packed(args.checkpoint, _spec(args), out)
    print(info.summary())
    return 0


def _cmd_reproduce(args) -> int:
    from usmlite_edu.speech import presets
    from usmlite_edu.training import reproduce

    p = presets.get_preset(args.preset).override(args.set)
    if p.reproduce is None:
        raise ValueError(
            f"preset {p.name!r} has no reproduction plan; use one of "
            + ", ".join(n for n, q in presets.PRESETS.items() if q.reproduce)
        )
    if args.corpus:
        p = p.override({"reproduce.corpus": args.corpus})
    if args.seeds is not None:
        p = p.override({"reproduce.seeds": tuple(range(args.seeds))})
    records = reproduce.run(p, _data_dir(args), args.out, only=args.only)
    print((Path(args.out) / "table.md").read_text())
    print((Path(args.out) / "claims.md").read_text())
    return _too_many_skipped(_reproduce_skips(records, Path(args.out)))


def _cmd_search(args) -> int:
    from usmlite_edu.search import pipeline as search
    from usmlite_edu.search import supernet

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
        _data_dir(args),
        args.out,
        scfg=scfg,
        init=args.init,
        teacher=args.teacher,
        seed=args.seed,
        finetune_steps=args.finetune_steps,
        compare=args.compare,
        uniform=args.uniform or (),
    )
    print(search.summary(r))
    return 0


def _reproduce_skips(records: list[dict], out: Path) -> list[str]:
    """The splits of a reproduction that skipped more than ``MAX_SKIP_SHARE``: each
    row's evaluation sets (its record's ``results``) and each training run's ``train``
    split (the final record in ``OUT/runs/*/metrics.jsonl``), each named once."""
    from usmlite_edu.speech import runs
    from usmlite_edu.training import train

    counts: dict[str, tuple[int, int]] = {}
    for rec in records:
        held = rec.get("heldout_speaker")
        for split, v in rec.get("results", {}).items():
            if isinstance(v, dict) and "n_utterances" in v and "skipped" in v:
                name = f"{split} (seed {rec.get('seed')}" + (f", held out {held})" if held else ")")
                counts[name] = (int(v["n_utterances"]), int(v["skipped"]))
    for metrics in sorted(out.glob("runs/*/metrics.jsonl")):
        _, final = runs.read_metrics(metrics.parent)
        if final and isinstance(final.get("train"), dict):
            t = final["train"]
            counts[f"train (run {metrics.parent.name})"] = (t["utterances"], t["skipped"])
    return train.too_many_skipped(counts)


def _cmd_fetch(args) -> int:
    import logging

    from usmlite_edu.speech import fetch

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = fetch.fetch(
        args.corpus,
        args.to,
        base_url=args.base_url,
        timeout=args.timeout,
        keep_archives=args.keep_archives,
    )
    print(f"{args.corpus} is ready in {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from usmlite_edu.speech.corpora import CORPORA
    from usmlite_edu.speech.fetch import CORPUS_ARCHIVES
    from usmlite_edu.speech.presets import PRESETS

    names = ", ".join(PRESETS)
    p = argparse.ArgumentParser(
        prog="usmlite-edu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    s.set_defaults(func=_cmd_sizes)

    n = sub.add_parser(
        "notebooks",
        help="execute the teaching notebooks headless",
        description="Run notebooks top to bottom (their check cells assert); "
        "executed copies go to DIR/executed/. With --edition and --out, write the series "
        "as the student edition (no solution or discussion cells, every exercise's answer "
        "left as `...`, so its check skips) or the instructor edition (everything, as "
        "committed) instead of running it.",
    )
    n.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="substrings of notebook file names, e.g. 03 06 (default: all)",
    )
    n.add_argument(
        "--full",
        action="store_true",
        help="the sizes a learner runs in JupyterLab instead of the fast mode "
        "(USMLITE_FAST=1) the tests use",
    )
    n.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="folder holding NN_*.ipynb (default: ./notebooks, else the "
        "repository checkout this package runs from)",
    )
    n.add_argument(
        "--edition",
        choices=("student", "instructor"),
        help="write this edition of the selected notebooks to --out instead of running them",
    )
    n.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where --edition writes NN_*.ipynb (inside the clone, e.g. build/student, "
        "notebooks 06 and 07 find data_small/ and results/ when run from there)",
    )
    n.add_argument(
        "--run",
        action="store_true",
        help="also execute the written edition (executed copies in DIR/executed/)",
    )
    n.set_defaults(func=_cmd_notebooks)

    bk = sub.add_parser(
        "book",
        help="build the rendered book (static HTML) of the notebook series",
        description="Execute every notebook (full mode unless --fast), render the series "
        "with the README as front page (Sphinx + MyST-NB, book/conf.py) into OUT/html, and "
        "check that every notebook has a page showing each of its figures.",
    )
    bk.add_argument("--fast", action="store_true", help="fast mode (USMLITE_FAST=1), as the tests")
    bk.add_argument(
        "--out", type=Path, default=Path("build/book"), metavar="DIR", help="default build/book"
    )
    bk.add_argument("--dir", type=Path, metavar="DIR", help="folder holding NN_*.ipynb")
    bk.add_argument(
        "--executed",
        type=Path,
        metavar="DIR",
        help="render the executed copies in DIR (same file names, executed in the same "
        "mode) instead of executing the series",
    )
    bk.set_defaults(func=_cmd_book)

    def data_args(sp):
        sp.add_argument(
            "--corpus",
            default="data_small",
            choices=CORPORA,
            help="which corpus (default data_small, the synthetic one in the repository)",
        )
        sp.add_argument(
            "--data",
            metavar="DIR",
            help="corpus folder (default: $USMLITE_DATA; data_small and "
            "fsdd_sample fall back to the repository copy); get one with "
            "`usmlite-edu data fetch`",
        )
        sp.add_argument(
            "--seed",
            type=int,
            default=0,
            help="seed of the data order, the FSDD connected-digit builder, the "
            "initialisation and dropout (default 0)",
        )
        sp.add_argument(
            "--heldout-speaker",
            metavar="NAME",
            help="fsdd: leave this speaker out of train/dev; test becomes all "
            "of that speaker's recordings (unseen-speaker WER)",
        )

    def set_arg(sp, sections: str):
        sp.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="SECTION.FIELD=VALUE",
            help=f"override any {sections} field of the preset, repeatable, "
            "e.g. --set train.peak_lr=1e-3 --set model.dropout=0.1 (validated "
            "before any work; recorded in the run's config.json)",
        )

    t = sub.add_parser(
        "train",
        help="train or fine-tune a Conformer-CTC (Algorithm 1)",
        description="Train a model (or fine-tune one with --init) with "
        "compression applied from the first step; resumes from OUT's last "
        "checkpoint when started again.",
    )
    t.add_argument(
        "--preset",
        default="ci",
        metavar="PRESET",
        help=f"model + training recipe: {names} (default ci)",
    )
    data_args(t)
    t.add_argument(
        "--out",
        required=True,
        metavar="RUN",
        help="run directory (config, tokenizer, checkpoints, params, metrics); "
        "resumes if it holds a checkpoint",
    )
    t.add_argument(
        "--spec",
        metavar="SPEC",
        help="compression during training, e.g. int8, int2/gs24, 2:4/fs10, "
        "int4+2:4 (default float)",
    )
    t.add_argument(
        "--spec-map",
        metavar="FILE",
        help="per-layer specs instead of --spec: a JSON map of layer patterns to specs "
        "(README 'Which layer gets which bits')",
    )
    t.add_argument(
        "--init",
        metavar="RUN",
        help="run directory of a trained model to fine-tune from (its model and "
        "tokenizer are kept; the learning-rate schedule continues)",
    )
    t.add_argument("--steps", type=int, help="shorthand for --set train.steps=N")
    t.add_argument(
        "--mesh",
        metavar="AXIS=N,...",
        help="train sharded on a device mesh with axes data, fsdp, tensor, e.g. "
        "data=2,fsdp=4 (their product must be the device count; an axis left out is "
        "1; an empty spec puts every device on fsdp). Default: one "
        "device, no mesh. On a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=8 "
        "simulates 8 devices. A checkpoint resumes on any mesh.",
    )
    t.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="several processes, one run: process 0's address (with --num-processes and "
        "--process-id; every process runs the same command with its own id). The mesh "
        "spans all their devices; each process reads only its rows of every batch",
    )
    t.add_argument("--num-processes", type=int, metavar="N", help="how many processes")
    t.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
    t.add_argument(
        "--distributed",
        choices=["auto"],
        help="auto: several processes whose launch the environment describes (a Cloud "
        "TPU pod slice, SLURM, Open MPI): jax.distributed.initialize() without arguments",
    )
    set_arg(t, "model.* or train.*")
    t.set_defaults(func=_cmd_train)

    def model_args(sp):
        which = sp.add_mutually_exclusive_group(required=True)
        which.add_argument("--checkpoint", metavar="RUN", help="run directory")
        which.add_argument(
            "--model",
            metavar="FILE",
            help="a packed .safetensors file of `usmlite-edu export` (gives exactly the "
            "results of its run under the spec it was exported with)",
        )
        sp.add_argument(
            "--arith",
            metavar="ARITH",
            help="inference arithmetic of the dense layers (default: the run's own): "
            "float32, bf16, w8 / w4 (int8 / int4 weights, bf16 activations) or w8a8 "
            "(int8 weights x int8 activations -> int32); a float spec's weights are "
            "quantized per channel for w8/w4/w8a8 (README 'Export a packed model')",
        )

    x = sub.add_parser(
        "export",
        help="pack a run's compressed weights into a .safetensors file",
        description="Write the run's weights compressed with SPEC at their real bit widths "
        "(int8 one per byte, int4 two, int2 four with zero points; N:M: kept values and "
        "2-bit positions; float32 scales and float layers) into one safetensors file "
        "that holds the config, spec and tokenizer too. Prints the file's bytes beside "
        "the exact figure of `usmlite-edu sizes`. `transcribe --model FILE` and "
        "`eval --model FILE` run it.",
    )
    x.add_argument("--checkpoint", required=True, metavar="RUN", help="run directory")
    x.add_argument(
        "--spec",
        metavar="SPEC",
        help="compression to pack with, e.g. int4+2:4 (default: the run's own; a float "
        "run under another spec is post-training quantization, N:M masks one-shot)",
    )
    x.add_argument(
        "--spec-map",
        metavar="FILE",
        help="per-layer specs instead of --spec: a JSON map of layer patterns to specs "
        "(README 'Which layer gets which bits')",
    )
    x.add_argument("--out", required=True, metavar="FILE", help="the .safetensors file to write")
    x.set_defaults(func=_cmd_export)

    e = sub.add_parser(
        "eval",
        help="WER/CER of a trained run on a split",
        description="Word and character error rate of a run, through its "
        "own spec or another one (post-training quantization).",
    )
    model_args(e)
    data_args(e)
    e.add_argument(
        "--split",
        default="test",
        choices=["train", "dev", "test"],
        help="which split (default test)",
    )
    e.add_argument(
        "--spec",
        metavar="SPEC",
        help="evaluate through another spec (PTQ; N:M masks one-shot from the "
        "weights), e.g. int4 (default: the run's own; not with --model)",
    )
    e.add_argument(
        "--spec-map",
        metavar="FILE",
        help="per-layer specs instead of --spec: a JSON map of layer patterns to specs "
        "(README 'Which layer gets which bits')",
    )
    e.add_argument(
        "--json", metavar="FILE", help="also write the result, with example transcripts, to FILE"
    )
    set_arg(e, "train.* (evaluation batch size, buckets)")
    e.set_defaults(func=_cmd_eval)

    tr = sub.add_parser(
        "transcribe",
        help="transcribe WAV/FLAC files (any rate, mono/stereo)",
        description="Print PATH<TAB>TEXT for each file; a file that cannot be used "
        "(unreadable, truncated, flat, too short for the model) prints <error: ...> and "
        "the others go on. Exit code 3 when any file failed (the last line counts them), "
        "0 when all were transcribed.",
    )
    model_args(tr)
    tr.add_argument(
        "--spec",
        metavar="SPEC",
        help="run through another spec (PTQ), e.g. int4 (default: the run's own; not with --model)",
    )
    tr.add_argument(
        "--spec-map",
        metavar="FILE",
        help="per-layer specs instead of --spec: a JSON map of layer patterns to specs "
        "(README 'Which layer gets which bits')",
    )
    tr.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    tr.set_defaults(func=_cmd_transcribe)

    r = sub.add_parser(
        "reproduce",
        help="the paper's Tables 1-3 at reduced scale",
        description="Per seed, pre-train a float start, then fine-tune B0-B3 and every "
        "E row of USM-Lite's Tables 1-3 from it; writes table.md/csv, results.json, "
        "plot.png, claims.md. A second run skips finished rows.",
    )
    r.add_argument(
        "--preset",
        default="ci",
        metavar="PRESET",
        help="ci (data_small, minutes) or cpu (FSDD, hours on 2 cores)",
    )
    r.add_argument(
        "--corpus",
        choices=CORPORA,
        help="shorthand for --set reproduce.corpus=NAME (default: the preset's)",
    )
    r.add_argument("--data", metavar="DIR", help="corpus folder (default $USMLITE_DATA)")
    r.add_argument(
        "--out", required=True, metavar="DIR", help="results directory (resumes rows already done)"
    )
    r.add_argument(
        "--seeds", type=int, metavar="N", help="seeds 0..N-1 of every row (default: the preset's)"
    )
    r.add_argument(
        "--only", nargs="*", metavar="EXP", help="only these rows and their starts, e.g. B0 E3"
    )
    set_arg(r, "model.*, train.* or reproduce.*")
    r.set_defaults(func=_cmd_reproduce)

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
    se.add_argument("--preset", default="ci", metavar="PRESET", help="ci or cpu (default ci)")
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
    se.set_defaults(func=_cmd_search)

    pl = sub.add_parser(
        "plan",
        help="per-device memory of a train step on a mesh, compiled ahead of time",
        description="Compile the train step of a preset and spec for a mesh of devices "
        "without running it, and print the compiler's per-device memory (arguments, "
        "temporaries, peak) and whether it fits. --topology plans for a compile-only TPU "
        "topology (needs the libtpu package: pip install 'usmlite-edu[tpu]'); without it, "
        "for this machine's devices (XLA_FLAGS=--xla_force_host_platform_device_count=N "
        "simulates N CPU devices; the CPU compiler's figures differ from a TPU's). "
        "Exit status 5 when the step does not compile (e.g. out of memory).",
    )
    pl.add_argument("--preset", default="ci", metavar="PRESET", help=f"{names} (default ci)")
    pl.add_argument("--spec", default="float", metavar="SPEC", help="compression (default float)")
    pl.add_argument("--topology", metavar="NAME", help="TPU topology, e.g. v3:8x8, v5e:16x16")
    pl.add_argument("--mesh", metavar="AXIS=N,...", help="mesh spec (default: all on fsdp)")
    pl.add_argument("--global-batch", type=int, metavar="N", help="utterances per update")
    pl.add_argument("--grad-accum", type=int, metavar="K", help="micro-batches per update")
    pl.add_argument("--remat", choices=["none", "block", "dots"], help="block remat policy")
    pl.add_argument("--compute-dtype", choices=["float32", "bfloat16"], help="dense matmul dtype")
    pl.add_argument(
        "--seconds", type=float, metavar="S", help="utterance length (default: largest bucket)"
    )
    pl.add_argument("--json", metavar="FILE", help="also write the plan as JSON")
    set_arg(pl, "model.* or train.*")
    pl.set_defaults(func=_cmd_plan)

    d = sub.add_parser(
        "data",
        help="corpora: download and verify",
        description="Get the corpora the project trains and evaluates on.",
    )
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    f = dsub.add_parser(
        "fetch",
        help="download, verify (md5) and unpack a corpus",
        description="Download, verify and unpack a corpus. Offline, the "
        "error message says which archive to place where by hand.",
    )
    f.add_argument("corpus", choices=sorted(CORPUS_ARCHIVES), help="which corpus")
    f.add_argument(
        "--to",
        required=True,
        metavar="DIR",
        help="folder to unpack into (created if missing); pass it as --data later",
    )
    f.add_argument("--base-url", metavar="URL", help="a mirror host replacing the default one")
    f.add_argument(
        "--timeout",
        type=float,
        default=30,
        metavar="SECONDS",
        help="seconds per network wait (default 30)",
    )
    f.add_argument(
        "--keep-archives", action="store_true", help="keep the downloaded archives after unpacking"
    )
    f.set_defaults(func=_cmd_fetch)

    m = sub.add_parser(
        "main",
        help="the project's main job (what `make run` does)",
        description="Size table; the committed B0 transcribing real FSDD "
        "test speech as float and under int8/int4/int2/int4+2:4 PTQ; the "
        "notebooks executed headless.",
    )
    m.add_argument("--full", action="store_true", help="notebooks at learner sizes")
    m.add_argument("--no-notebooks", action="store_true", help="skip executing the notebooks")
    m.add_argument(
        "--out",
        default="runs/main",
        metavar="DIR",
        help="where the WER table and plot go (default runs/main)",
    )
    m.set_defaults(func=_cmd_main)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from usmlite_edu import enable_compilation_cache

    enable_compilation_cache()  # a global JAX setting: the CLI opts in, importing does not
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # bad input: one clear line
        print(f"usmlite-edu: error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print(
            "usmlite-edu: interrupted; a training run resumes from its last checkpoint "
            "when started again with the same --out",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
