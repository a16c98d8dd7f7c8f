"""``usmlite-edu search``: a per-layer spec map under a size budget, fine-tuned and scored.

One call, for one seed, in ``--out DIR``:

1. **Start and teacher.** ``--init RUN`` (e.g. the reproduction's pre-trained start
   ``W0_s<seed>``) is the supernet's float weights; ``--teacher RUN`` (default: the start)
   the float model whose posteriors the KL term follows. Without ``--init``, a start is
   pre-trained first in ``DIR/start`` with the preset's recipe (as the reproduction's W0).
2. **Search** (:func:`usmlite_edu.search.supernet.search`, ``DIR/search``): Gumbel-softmax
   choice per layer among the candidates, then the map (``DIR/spec_map.json``).
3. **Fine-tune** the start under the map with Algorithm 1 for the reproduction's
   ``finetune_steps`` (``DIR/run``; the uniform rows E1-E13 get exactly that recipe, so
   searched and uniform models differ only in their specs).
4. **Score** on the reproduction's splits of this seed (``dev``, ``test``, ``unseen``:
   :func:`usmlite_edu.training.reproduce.eval_sets`), each WER with its 95% bootstrap interval;
   with ``--compare ROWS --uniform E12 ...``, the paired difference (searched minus
   uniform, same utterances, :func:`usmlite_edu.core.stats.paired_difference`) against each
   named row of a reproduction's ``rows/`` directory for the same seed.

Writes ``DIR/result.json`` (sizes in both conventions, per-layer table, WERs, intervals,
comparisons, every transcript, wall times) and ``DIR/summary.md``. A second call resumes
each stage (the search and the fine-tuning checkpoint; finished stages are skipped).
"""

from __future__ import annotations

import dataclasses
import json
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

__all__ = ["run", "score", "map_record", "compare_rows", "summary"]


def compare_rows(
    result: dict[str, Any], rows_dir: str | Path, exps: Sequence[str], seed: int
) -> dict[str, dict]:
    """Paired differences (points, searched minus the row) against each ``exps`` row of
    ``rows_dir`` for ``seed``, per split both have; refuses a row of another held-out
    speaker or other utterances."""
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
        for split, mine in result["splits"].items():
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
    times: dict[str, float] = {}
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
    times["start_s"] = time.time() - t

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
    times["search_s"] = time.time() - t

    # 3. fine-tune under the map, as the reproduction fine-tunes a uniform spec
    t = time.time()
    steps = rc.finetune_steps if finetune_steps is None else finetune_steps
    train.train(p, rc.corpus, data_dir, out / "run", spec=smap, init=init, steps=steps, **common)
    times["finetune_s"] = time.time() - t

    # 4. score
    t = time.time()
    splits = score(out / "run", rc, data_dir, heldout)
    times["eval_s"] = time.time() - t
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
        "wall_time_s": times,
        "machine": runs.machine_info(),
        "git_commit": runs.git_commit(),
    }
    if compare is not None:
        result["compare"] = compare_rows(result, compare, uniform, seed)
    runs.write_json(out / "result.json", result)
    (out / "summary.md").write_text(summary(result))
    return result


def summary(result: dict[str, Any]) -> str:
    """A short Markdown report of one search's result."""
    lines = [
        f"# Searched spec map: budget {result['search_config']['budget']}% "
        f"({result['search_config']['convention']}), seed {result['seed']}",
        "",
        f"Size: paper {result['size_paper']:.2f}%, exact {result['size_exact']:.2f}% of B0 "
        f"(selected by {result['selected_by']}).",
        "",
        "| split | WER % | 95% interval |",
        "|---|---|---|",
    ]
    for s, v in result["splits"].items():
        lines.append(f"| {s} | {v['wer']:.2f} | [{v['low']:.2f}, {v['high']:.2f}] |")
    for exp, c in result.get("compare", {}).items():
        lines += ["", f"Against {exp} ({c['spec']}), searched minus uniform (points):", ""]
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
