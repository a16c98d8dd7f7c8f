"""``usmlite-edu search``: a per-layer spec map under a size budget, its models, scored.

One call, for one seed, in ``--out DIR``:

1. **Start and teacher.** ``--init RUN`` (e.g. the reproduction's pre-trained start
   ``W0_s<seed>``) is the supernet's float weights; ``--teacher RUN`` (default: the start)
   the float model whose posteriors the KL term follows. Without ``--init``, a start is
   pre-trained first in ``DIR/start`` with the preset's recipe (as the reproduction's W0).
2. **Search** (:func:`usmlite_edu.search.supernet.search`, ``DIR/search``): Gumbel-softmax
   choice per layer among the candidates, then the map (``DIR/spec_map.json``) and the
   supernet's own weights (``DIR/search/params``).
3. **Models at the map's size**, each a run directory:

   * ``DIR/run``, **two-stage** (the controlled comparison): only the map is kept; the
     start is fine-tuned under it with Algorithm 1 for the reproduction's
     ``finetune_steps`` (the uniform rows E1-E13 get exactly that recipe, so searched and
     uniform models differ only in their specs);
   * ``DIR/pass1``, **one-stage Pass 1** (the method of Xu et al., 2025): the supernet's
     jointly learned weights, compressed under the map (one-shot N:M masks, Eq. 3, from
     those weights, as every search step made them), with no further training;
   * ``DIR/pass2``, **one-stage Pass 2**: Pass 1 fine-tuned under the map with the same
     recipe and steps as the two-stage run, so the two differ only in their starting
     weights.

   ``one_stage=False`` (``--no-one-stage``) makes the two-stage run only.
4. **Score** every model on the reproduction's splits of this seed (``dev``, ``test``,
   ``unseen``: :func:`usmlite_edu.training.reproduce.eval_sets`), each WER with its 95%
   bootstrap interval; with ``--compare ROWS --uniform E12 ...``, each model's paired
   difference (model minus uniform, same utterances,
   :func:`usmlite_edu.core.stats.paired_difference`) against each named row of a
   reproduction's ``rows/`` directory for the same seed.

Each model's **compression time** is the wall time from the float start to it: search
plus fine-tuning (two-stage, Pass 2) or the search alone (Pass 1); scoring is not counted.
A stage's time is summed over the calls that worked on it (``DIR/times.json``), so an
interrupted and resumed search reports the time its stages ran, not the last call's.

Writes ``DIR/result.json`` (sizes in both conventions, per-layer table, every model's WERs,
intervals, comparisons, transcripts and compression time, wall times) and
``DIR/summary.md``. ``result["splits"]`` and ``result["compare"]`` are the two-stage
model's (the layout of earlier versions); ``result["methods"]`` holds all of them. A
second call resumes each stage (the search and the fine-tuning checkpoints; finished
stages are skipped).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from usmlite_edu.core import sizes, stats
from usmlite_edu.core.specs import SpecMap
from usmlite_edu.deploy.recognizer import Recognizer
from usmlite_edu.search import supernet
from usmlite_edu.speech import batching, runs
from usmlite_edu.speech.corpora import load_corpus
from usmlite_edu.speech.model import layer_table
from usmlite_edu.speech.presets import get_preset
from usmlite_edu.training import reproduce, train

__all__ = ["run", "score", "map_record", "compare_rows", "write_pass1", "summary", "METHODS"]

#: The models of one search, in report order: ``result["methods"]`` keys.
METHODS = ("two_stage", "one_stage_pass1", "one_stage_pass2")
_RUN_DIRS = {"two_stage": "run", "one_stage_pass1": "pass1", "one_stage_pass2": "pass2"}


class _StageTimes:
    """Seconds per stage, summed over the calls of one ``DIR`` and kept in ``path``."""

    def __init__(self, path: Path):
        self.path = path
        self.seconds: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}

    def add(self, stage: str, seconds: float) -> None:
        if stage == "eval_s":  # scoring reruns whole on every call: this call's time
            self.seconds[stage] = seconds
        else:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        runs.write_json(self.path, self.seconds)

    def __getitem__(self, stage: str) -> float:
        return self.seconds[stage]


def compare_rows(
    result: dict[str, Any],
    rows_dir: str | Path,
    exps: Sequence[str],
    seed: int,
    splits: dict[str, dict] | None = None,
) -> dict[str, dict]:
    """Paired differences (points, searched minus the row) against each ``exps`` row of
    ``rows_dir`` for ``seed``, per split both have; refuses a row of another held-out
    speaker or other utterances. ``splits``: the scored model (default
    ``result["splits"]``, the two-stage one)."""
    out: dict[str, dict] = {}
    for exp in exps:
        path = Path(rows_dir) / f"{exp}_s{seed}.json"
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: no row {exp} for seed {seed} (a reproduction's rows/ directory, "
                "e.g. results/cpu/rows)"
            )
        rec = json.loads(path.read_text())
        if rec.get("heldout_speaker") != result["heldout_speaker"]:
            raise ValueError(
                f"{path} held out {rec.get('heldout_speaker')!r}, this search "
                f"{result['heldout_speaker']!r}: compare rows of the same seed and split"
            )
        diffs = {}
        for split, mine in (result["splits"] if splits is None else splits).items():
            theirs = rec["results"].get(split)
            if not isinstance(theirs, dict):
                continue
            a = stats.score(mine["utterances"])
            b = stats.score(theirs["utterances"])
            iv = stats.paired_difference([a], [b])
            diffs[split] = {
                "searched_wer": mine["wer"],
                "uniform_wer": theirs["wer"],
                "difference": iv.estimate,
                "low": iv.lo,
                "high": iv.hi,
            }
        out[exp] = {"spec": rec["spec"], "splits": diffs}
    return out


def map_record(smap: SpecMap, cfg: Any) -> dict[str, Any]:
    """A map as a result record states it: the map, its size in both conventions (% of
    B0) and every layer's spec and bytes (:func:`usmlite_edu.speech.model.layer_table`)."""
    return {
        "spec_map": smap.to_dict(),
        "size_paper": sizes.size_ratio(smap, cfg, "paper"),
        "size_exact": sizes.model_size(smap, cfg).ratio,
        "layers": [{**r, "shape": list(r["shape"])} for r in layer_table(smap, cfg)],
    }


def write_pass1(
    start_dir: str | Path, search_dir: str | Path, smap: SpecMap, out: str | Path
) -> Path:
    """One-stage Pass 1 as a run directory ``out``: the start's ``config.json`` (model,
    training settings, so that fine-tuning it continues the same schedule as the two-stage
    run) with the map as its spec, the start's tokenizer, and the supernet's final weights
    (``search_dir/params``) as its parameters. A run's evaluation compresses its weights
    under its spec, so :class:`~usmlite_edu.deploy.recognizer.Recognizer` reads it as the
    compressed model. Idempotent: an existing complete ``out`` is kept."""
    start_dir, search_dir, out = Path(start_dir), Path(search_dir), Path(out)
    if (out / "config.json").exists():
        return out
    if not (search_dir / "params").exists():
        raise FileNotFoundError(
            f"{search_dir / 'params'}: the search did not save its weights (a search of an "
            f"earlier version); delete {search_dir} and search again for the one-stage models"
        )
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copytree(start_dir / "tokenizer", tmp / "tokenizer")
    shutil.copytree(search_dir / "params", tmp / "params")
    meta = json.loads((start_dir / "config.json").read_text())
    meta.update(
        spec=str(smap),
        init=str(start_dir),
        weights=f"one-stage Pass 1: the supernet's weights ({search_dir / 'params'})",
        git_commit=runs.git_commit(),
    )
    runs.write_json(tmp / "config.json", meta)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # config.json appears with the rest: a killed copy is redone
    return out


def score(
    run_dir: str | Path, rc: Any, data_dir: str | None, heldout: str | None
) -> dict[str, dict]:
    """WER, CER, 95% interval (utterances resampled) and every transcript of a run under
    its own spec, on the reproduction's splits (``rc``: its ``ReproConfig``) of the seed
    that held out ``heldout``."""
    rec = Recognizer.from_run(run_dir)
    sets = reproduce.eval_sets(
        rc, data_dir, rec.config, rec.tokenizer, rec.train_config, heldout=heldout
    )
    splits = {}
    for name, d in sets.items():
        r = rec.evaluate(d)
        iv = stats.wer_interval([stats.score(r["transcripts"])])
        splits[name] = {
            "wer": r["wer"],
            "cer": r["cer"],
            "low": iv.lo,
            "high": iv.hi,
            "n_utterances": r["utterances"],
            "utterances": r["transcripts"],
        }
    return splits


def run(
    preset: str,
    corpus: str | None,
    data_dir: str | None,
    out_dir: str | Path,
    *,
    scfg: supernet.SearchConfig,
    init: str | Path | None = None,
    teacher: str | Path | None = None,
    seed: int = 0,
    finetune_steps: int | None = None,
    compare: str | Path | None = None,
    uniform: Sequence[str] = (),
    one_stage: bool = True,
) -> dict[str, Any]:
    """Steps 1-4 of the module doc; returns (and writes) ``DIR/result.json``."""
    p = get_preset(preset)
    if p.reproduce is None:
        raise ValueError(f"preset {p.name!r} has no reproduction plan (its splits and recipe)")
    rc = p.reproduce if corpus is None else p.reproduce.replace(corpus=corpus)
    if seed not in rc.seeds:
        raise ValueError(f"seed {seed} is not one of preset {p.name!r}'s seeds {rc.seeds}")
    if uniform and compare is None:
        raise ValueError("--uniform names rows of --compare ROWS; give --compare")
    heldout = rc.heldout_for(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    times = _StageTimes(out / "times.json")
    common = dict(seed=seed, heldout_speaker=heldout, eval_splits=())

    # 1. the start and the teacher
    t = time.time()
    if init is None:
        init = out / "start"
        train.train(
            p, rc.corpus, data_dir, init, steps=rc.pretrain_steps or p.train.steps, **common
        )
    start = runs.load_run(init)
    if not start.spec.is_float:
        raise ValueError(f"--init {init} was trained under {start.spec}: start from a float run")
    teacher_run = runs.load_run(teacher) if teacher is not None else start
    if teacher_run.config != start.config:
        raise ValueError(f"--teacher {teacher} is another model than --init {init}")
    cfg, (_, tcfg, _) = start.config, runs.read_config(init)
    times.add("start_s", time.time() - t)

    # 2. the search, on the training split the start was trained on
    t = time.time()
    train_split = load_corpus(
        rc.corpus,
        data_dir,
        "train",
        seed=seed,
        sample_rate=cfg.sample_rate,
        heldout_speaker=heldout,
    )
    ds = batching.prepare(train_split, start.tokenizer, cfg, tcfg.bucket_seconds)
    sres = supernet.search(
        start.params, teacher_run.params, cfg, tcfg, ds, scfg, out / "search", seed=seed
    )
    smap = SpecMap.load(out / "search" / "spec_map.json")
    smap.save(out / "spec_map.json")
    times.add("search_s", time.time() - t)

    # 3. the models at the map's size
    steps = rc.finetune_steps if finetune_steps is None else finetune_steps
    t = time.time()  # two-stage: the start fine-tuned under the map
    train.train(p, rc.corpus, data_dir, out / "run", spec=smap, init=init, steps=steps, **common)
    times.add("finetune_s", time.time() - t)
    compression = {"two_stage": times["search_s"] + times["finetune_s"]}
    if one_stage:  # Pass 1: the supernet's weights under the map; Pass 2: those fine-tuned
        write_pass1(init, out / "search", smap, out / "pass1")
        compression["one_stage_pass1"] = times["search_s"]
        t = time.time()
        train.train(
            p,
            rc.corpus,
            data_dir,
            out / "pass2",
            spec=smap,
            init=out / "pass1",
            steps=steps,
            **common,
        )
        times.add("pass2_finetune_s", time.time() - t)
        compression["one_stage_pass2"] = times["search_s"] + times["pass2_finetune_s"]

    # 4. score
    t = time.time()
    methods = {
        m: {
            "run": str(out / _RUN_DIRS[m]),
            "compression_s": compression[m],
            "splits": score(out / _RUN_DIRS[m], rc, data_dir, heldout),
        }
        for m in METHODS
        if m in compression
    }
    splits = methods["two_stage"]["splits"]
    times.add("eval_s", time.time() - t)
    result: dict[str, Any] = {
        "preset": p.name,
        "corpus": rc.corpus,
        "seed": seed,
        "heldout_speaker": heldout,
        "init": str(init),
        "teacher": str(teacher) if teacher is not None else str(init),
        "finetune_steps": steps,
        "search_config": dataclasses.asdict(scfg),
        "selected_by": sres["selected_by"],
        **map_record(smap, cfg),
        "splits": splits,
        "methods": methods,
        "wall_time_s": dict(times.seconds),
        "machine": runs.machine_info(),
        "git_commit": runs.git_commit(),
    }
    if compare is not None:
        for m in methods.values():
            m["compare"] = compare_rows(result, compare, uniform, seed, m["splits"])
        result["compare"] = methods["two_stage"]["compare"]
    runs.write_json(out / "result.json", result)
    (out / "summary.md").write_text(summary(result))
    return result


_LABELS = {
    "two_stage": "two-stage (start fine-tuned)",
    "one_stage_pass1": "one-stage Pass 1",
    "one_stage_pass2": "one-stage Pass 2",
}


def summary(result: dict[str, Any]) -> str:
    """A short Markdown report of one search's result: every model's WER per split with
    its interval and compression time, and each comparison with a uniform row."""
    methods = result.get("methods") or {
        "two_stage": {"splits": result["splits"], "compare": result.get("compare", {})}
    }
    lines = [
        f"# Searched spec map: budget {result['search_config']['budget']}% "
        f"({result['search_config']['convention']}), seed {result['seed']}",
        "",
        f"Size: paper {result['size_paper']:.2f}%, exact {result['size_exact']:.2f}% of B0 "
        f"(selected by {result['selected_by']}); every model below has this map.",
        "",
        "| model | split | WER % | 95% interval | compression time |",
        "|---|---|---|---|---|",
    ]
    for m, r in methods.items():
        took = f"{r['compression_s']:.0f} s" if "compression_s" in r else "-"
        for s, v in r["splits"].items():
            lines.append(
                f"| {_LABELS.get(m, m)} | {s} | {v['wer']:.2f} | "
                f"[{v['low']:.2f}, {v['high']:.2f}] | {took} |"
            )
    for m, r in methods.items():
        for exp, c in r.get("compare", {}).items():
            lines += [
                "",
                f"{_LABELS.get(m, m)} against {exp} ({c['spec']}), model minus uniform (points):",
                "",
            ]
            for s, d in c["splits"].items():
                lines.append(
                    f"* {s}: {d['difference']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}] "
                    f"({d['searched_wer']:.2f} vs {d['uniform_wer']:.2f})"
                )
    counts: dict[str, int] = {}
    for row in result["layers"]:
        counts[row["spec"]] = counts.get(row["spec"], 0) + 1
    lines += ["", "Layers per spec: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))]
    t = result["wall_time_s"]
    lines += ["", "Wall time: " + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in t.items())]
    return "\n".join(lines) + "\n"
