"""Re-run the paper's Tables 1-3 at reduced scale (``usmlite-edu reproduce``).

**The plan: siblings, as in the paper.** Every model of Tables 1-3 fine-tunes the same
pre-trained model (section 2: compression during the ASR fine-tuning of the pre-trained
USM) for the same number of steps (section 4.2: 200k), with its compression on from the
first step (Algorithm 1). Per seed ``s`` (``ReproConfig.seeds``, three for
``cpu``):

* **W0** (run ``W0_s``): a float32 dense model trained from scratch for
  ``pretrain_steps``, our stand-in for the paper's pre-trained USM. **W1-W3**: the same at
  the sizes of B1-B3 (about 50%, 33% and 19% of B0's parameters, the paper's 1B / 600M /
  300M ratios).
* **B0**: W0 fine-tuned in float32 for ``finetune_steps``; **B1-B3**: W1-W3 likewise.
* **E1, E3-E13**: W0 fine-tuned for ``finetune_steps`` with Algorithm 1: **E1** int8,
  **E3** int4, **E4** int2, **E5-E7** int2 with sub-channels, **E8 / E9** 2:4 one-shot /
  few-shot, **E10 / E11** 1:4 one-shot / few-shot, **E12 / E13** int4 + 2:4 one-shot /
  few-shot.
* **E0 / E2**: int8 / int4 post-training quantization of seed ``s``'s B0 (no training).
* **V0, V2, V4**: the paper's own explanation of its int4 PTQ (E2) and int2 QAT (E4)
  collapses, tested. Section 5.4: "we do not enable global variational noise (VN) during
  fine-tuning", i.e. the paper *suspects* that Gaussian weight noise during fine-tuning
  (Graves 2011; ``train.weight_noise_std``) would have made its weights robust to a coarse
  grid; it does not measure it. **V0** is B0 fine-tuned with weight noise of standard
  deviation ``vn_std`` on every kernel, **V2** int4 PTQ of V0 (E2 with the noise),
  **V4** int2 QAT fine-tuned from W0 with the same noise (E4 with the noise). They are
  not rows of the paper; :mod:`usmlite_edu.training.claims` compares V2 with E2, V4 with E4 and
  V0 with B0 (C23-C25).

A fine-tuning run continues its start's learning-rate schedule (``train.train`` with
``init``: the step count goes on from ``pretrain_steps``, after a re-warm over 10% of the
steps) with seed ``s``'s data order and dropout, so siblings differ only in their
compression spec. Every row runs every seed and seed ``s`` of every row starts from seed
``s``'s W: rows pair by seed, and :mod:`usmlite_edu.training.claims` compares them seed by seed on
the same utterances (:mod:`usmlite_edu.core.stats`).

Mapping the paper's knobs to a small model:

* *Sub-channels.* The paper splits 1536-wide inputs into 16 / 32 / 64 groups, i.e.
  groups of 96 / 48 / 24 inputs. Our layers are 144-576 inputs wide, so the same *count*
  would give groups of 9 down to 2 inputs; we keep the same *group size* where it
  divides every layer: ``cpu`` uses 72 / 48 / 24 (E6 and E7 exactly the paper's; 96 does
  not divide 144, so E5 takes 72), ``ci`` uses 16 / 8 / 4.
* *Few-shot.* The paper updates masks for 1k of 200k steps (0.5%). We scale that to our
  fine-tuning length with a floor of ``few_shot_floor`` updates, so that "few-shot" still
  means more than one mask update (``T_p`` is printed in the table).
* *Lengths.* ``pretrain_steps`` and ``finetune_steps`` (the paper fine-tunes 200k steps
  from a model pre-trained far longer; we fine-tune a sixth of the pre-training).

**Evaluation.** Every row is evaluated on three splits, with the synthesis seed 0 for
every row (FSDD's connected-digit utterances are built from a seed), so that every row of
a seed sees the same utterances:

* ``dev``: the training speakers' dev recordings (FSDD index 5-9, carved out of the
  official train split; :mod:`usmlite_edu.speech.corpora`). Recipes are chosen here.
* ``test``: the official test split (index 0-4) of the training speakers.
* ``unseen`` (FSDD with ``heldout_speaker``): every recording of the speaker the seed held
  out of training. With ``heldout_rotation`` each seed holds out another speaker (``cpu``:
  theo, jackson, nicolas), so "unseen" pools three voices; "test" then differs per seed
  too (the held-out speaker's recordings leave it), and comparisons pair within a seed.

Nothing here chooses anything on ``test`` or ``unseen``: the plan is fixed by the preset,
and the two splits are only measured and judged.

Outputs in ``--out``: ``rows/<exp>_s<seed>.json`` (one per run: metadata, and per split
the WER, CER and every utterance's ``{"id", "ref", "hyp"}``), ``runs/`` (the run
directories), ``table.md`` and ``table.csv`` (each row's mean WER over seeds with its 95%
bootstrap interval and detectable difference), ``results.json`` (every record without
the transcripts, the table and the verdicts), ``plot.png`` (WER against size with
interval bars; the paper's points on another panel), ``claims.md`` (every claim of
sections 5.1-5.3, and the section 5.4 hypothesis, with its paired difference, interval and
verdict, :mod:`usmlite_edu.training.claims`)
and ``b0/`` (seed 0's B0, what notebook 07 loads). A second run skips rows already done; an
interrupted row resumes from its last checkpoint. The rows can outlive the run directories
(``rows/`` is committed, ``runs/`` is not, and a table may take several sessions on
different machines): a row whose start's run directory is gone trains that start again
from its seed, evaluates it, and keeps in its record (``start_rebuilt``) the start's
recorded and new WERs per split. Training is deterministic on one kind of processor, so
there they agree to the last word; on another, XLA may sum in another order and they may
differ by a few words, which the record then shows.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from usmlite_edu.core import sizes, stats
from usmlite_edu.core.specs import as_spec
from usmlite_edu.speech import batching, configs, model, runs
from usmlite_edu.speech.corpora import CorpusSplit, load_corpus
from usmlite_edu.speech.presets import PRESETS, Preset, get_preset
from usmlite_edu.training import claims, train
from usmlite_edu.training.claims import MAX_WORKING_WER

__all__ = [
    "Row",
    "plan",
    "dense_baseline_config",
    "eval_sets",
    "run",
    "summarize",
    "write_outputs",
    "publish_b0",
    "read_results",
    "MAX_WORKING_WER",
]

PAPER_B0_WER = 4.1
#: the rows that test the paper's section 5.4 hypothesis (global variational noise)
VN_ROWS = ("V0", "V2", "V4")
#: the evaluation splits, in table order
SPLITS = ("dev", "test", "unseen")
#: table order: the paper's rows (the variational-noise rows after the E rows they test),
#: then the pre-trained starts
ORDER = (
    "B0",
    *(f"E{i}" for i in range(14)),
    *VN_ROWS,
    "B1",
    "B2",
    "B3",
    "W0",
    "W1",
    "W2",
    "W3",
)
#: B1-B3: parameter ratio to B0 and the paper's name (Table 3)
DENSE_SIZES = (("B1", 0.502, "1B"), ("B2", 0.335, "600M"), ("B3", 0.189, "300M"))
#: synthesis seed of every evaluation split (the same utterances for every row)
EVAL_SEED = 0


@dataclasses.dataclass(frozen=True)
class Row:
    """One run of the table.

    ``kind``: ``"pretrain"`` (W0-W3, from scratch), ``"finetune"`` (B0-B3, V0, V4 and the
    QAT / pruning rows, from ``start``) or ``"ptq"`` (E0, E2, V2: ``start``'s weights
    through ``spec``). ``start`` names the row of the same seed it starts from; ``model``
    holds the model overrides of W1-W3 and ``train`` the training overrides of V0 / V4
    (``weight_noise_std``: the global variational noise the paper did not enable, section
    5.4), both as sorted ``(key, value)`` pairs of the config's field names.
    """

    exp: str
    description: str
    kind: str
    spec: str
    seed: int = 0
    model: tuple = ()
    start: str | None = None
    heldout_speaker: str | None = None
    train: tuple = ()

    @property
    def key(self) -> str:
        return f"{self.exp}_s{self.seed}"

    @property
    def start_key(self) -> str | None:
        return f"{self.start}_s{self.seed}" if self.start else None

    @property
    def overrides(self) -> dict[str, object]:
        """``model`` and ``train`` as :func:`usmlite_edu.training.train.train`'s ``overrides``."""
        return {
            **{f"model.{k}": v for k, v in self.model},
            **{f"train.{k}": v for k, v in self.train},
        }


def dense_baseline_config(cfg: configs.ConformerConfig, ratio: float) -> tuple[dict, float]:
    """Width and depth for a dense model with ``ratio`` of ``cfg``'s parameters.

    Searches widths (multiples of 2 x heads) and depths up to ``cfg``'s; returns the
    overrides and the achieved ratio.
    """
    b0 = model.num_params(cfg)
    best = None
    step = 2 * cfg.num_heads
    for d in range(step, cfg.model_dim + 1, step):
        for layers in range(1, cfg.num_layers + 1):
            r = model.num_params(cfg.replace(model_dim=d, num_layers=layers)) / b0
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


def _e_rows(rc: configs.ReproConfig) -> list[tuple[str, str, str, str]]:
    """``(exp, description, kind, spec)`` of E0-E13."""
    t = rc.t_p
    g5, g6, g7 = rc.group_sizes
    return [
        ("E0", "int8 PTQ of B0", "ptq", "int8"),
        ("E1", "int8 QAT", "finetune", "int8"),
        ("E2", "int4 PTQ of B0", "ptq", "int4"),
        ("E3", "int4 QAT", "finetune", "int4"),
        ("E4", "int2 QAT", "finetune", "int2"),
        ("E5", f"int2 QAT, groups of {g5}", "finetune", f"int2/gs{g5}"),
        ("E6", f"int2 QAT, groups of {g6}", "finetune", f"int2/gs{g6}"),
        ("E7", f"int2 QAT, groups of {g7}", "finetune", f"int2/gs{g7}"),
        ("E8", "2:4 one-shot", "finetune", "2:4"),
        ("E9", f"2:4 few-shot (T_p={t})", "finetune", f"2:4/fs{t}"),
        ("E10", "1:4 one-shot", "finetune", "1:4"),
        ("E11", f"1:4 few-shot (T_p={t})", "finetune", f"1:4/fs{t}"),
        ("E12", "int4 QAT + 2:4 one-shot", "finetune", "int4+2:4"),
        ("E13", f"int4 QAT + 2:4 few-shot (T_p={t})", "finetune", f"int4+2:4/fs{t}"),
    ]


def plan(p: Preset | str, vocab_size: int | None = None) -> list[Row]:
    """Every run of the table, each row's start before it.

    Rows are grouped by experiment (all seeds of W0, then of B0, E0, ...) rather than by
    seed: runs of one spec then follow each other and reuse its compiled step
    (:func:`usmlite_edu.training.train.get_trainer`).
    """
    p, rc = _plan_of(p)
    cfg = p.model.replace(vocab_size=vocab_size) if vocab_size else p.model
    rows: list[Row] = []

    def each(exp: str, description: str, kind: str, spec: str, **kw) -> None:
        for seed in rc.seeds:
            rows.append(
                Row(exp, description, kind, spec, seed, heldout_speaker=rc.heldout_for(seed), **kw)
            )

    each("W0", "pre-trained start of B0, E1-E13, V0 and V4 (float32 dense)", "pretrain", "float")
    each("B0", "float32 dense (ours)", "finetune", "float", start="W0")
    for exp, desc, kind, spec in _e_rows(rc):
        each(exp, desc, kind, spec, start="B0" if kind == "ptq" else "W0")
    # Section 5.4's hypothesis: B0 / E2 / E4 with global variational noise.
    vn = (("weight_noise_std", rc.vn_std),)
    each(
        "V0",
        "float32 dense fine-tuned with variational noise",
        "finetune",
        "float",
        start="W0",
        train=vn,
    )
    each("V2", "int4 PTQ of V0", "ptq", "int4", start="V0")
    each("V4", "int2 QAT with variational noise", "finetune", "int2", start="W0", train=vn)
    for i, (exp, ratio, name) in enumerate(DENSE_SIZES, start=1):
        over, r = dense_baseline_config(cfg, ratio)
        model = tuple(sorted(over.items()))
        each(
            f"W{i}", f"pre-trained start of {exp} (float32 dense)", "pretrain", "float", model=model
        )
        each(
            exp,
            f"float32 dense, {100 * r:.1f}% of B0 (paper: {name})",
            "finetune",
            "float",
            start=f"W{i}",
        )
    return rows


def check_plan(p: Preset | str, rows: Sequence[Row] | None = None) -> None:
    """Refuse, before any work, a plan whose rows cannot all build: ``ValueError`` naming
    the first row whose spec some weight of its model cannot take (e.g. a sub-channel group
    size of ``reproduce.group_sizes`` that does not divide a layer's input dimension), so a
    table of hours does not stop at its first E5-E7 row. ``rows``: those to check (default:
    the whole plan)."""
    p, _ = _plan_of(p)
    seen: set[tuple] = set()
    for row in plan(p) if rows is None else rows:
        if (row.model, row.spec) in seen:
            continue
        seen.add((row.model, row.spec))
        cfg = p.model.replace(**dict(row.model))
        try:
            model.check_spec(cfg, model.ModelOptions(spec=as_spec(row.spec)))
        except ValueError as e:
            raise ValueError(
                f"preset {p.name!r}, row {row.exp} ({row.spec}): {e}; for E5-E7 set "
                "reproduce.group_sizes to sizes that divide every layer's input dimension"
            ) from None


def _with_starts(rows: list[Row], only: Sequence[str]) -> list[Row]:
    """The rows of ``only`` and, recursively, the rows they start from (in plan order)."""
    by_key = {r.key: r for r in rows}
    keep: set[str] = set()
    todo = [r.key for r in rows if r.exp in set(only)]
    while todo:
        k = todo.pop()
        if k not in keep:
            keep.add(k)
            if by_key[k].start_key:
                todo.append(by_key[k].start_key)
    return [r for r in rows if r.key in keep]


# --------------------------------------------------------------------------- evaluation
def eval_sets(
    rc: configs.ReproConfig,
    data_dir,
    cfg: configs.ConformerConfig,
    tok,
    tcfg: configs.TrainConfig,
    *,
    heldout: str | None,
    splits: Sequence[str] = SPLITS,
) -> dict[str, batching.Dataset]:
    """The evaluation sets of a seed that held out ``heldout`` (module docstring).

    ``dev``: the training speakers' dev split; ``test``: the official test split without
    ``heldout``; ``unseen`` (only with ``heldout``): every recording of ``heldout``. All
    built with synthesis seed :data:`EVAL_SEED`.
    """
    out = {}
    load = lambda split, **kw: load_corpus(
        rc.corpus, data_dir, split, seed=EVAL_SEED, sample_rate=cfg.sample_rate, **kw
    )
    prep = lambda split: batching.prepare(split, tok, cfg, tcfg.bucket_seconds, keep_long=True)
    for name in splits:
        if name == "dev":
            out["dev"] = prep(load("dev", heldout_speaker=heldout))
        elif name == "test":
            test = load("test")
            if heldout:
                keep = [u for u in test.utterances if u.speaker != heldout]
                test = CorpusSplit(test.name, keep, test.skipped, test.sample_rate, test.sources)
            out["test"] = prep(test)
        elif name == "unseen" and heldout:
            out["unseen"] = prep(load("test", heldout_speaker=heldout))
    return out


def _eval_sets(rc, data_dir, cfg, tok, tcfg) -> dict[str, batching.Dataset]:
    """``test`` and ``unseen`` of the first seed (``rc.heldout_speaker``): the sets the
    committed ``results/cpu`` B0 was evaluated on (notebook 07, tests/test_model_golden.py)."""
    return eval_sets(
        rc, data_dir, cfg, tok, tcfg, heldout=rc.heldout_speaker, splits=("test", "unseen")
    )


class _EvalCache:
    """Evaluation sets by (held-out speaker, sample rate, tokenizer); the last three kept
    (one per seed: the W runs of a seed train the same tokenizer)."""

    def __init__(self, rc, data_dir, tcfg):
        self.rc, self.data_dir, self.tcfg = rc, data_dir, tcfg
        self.sets: dict[tuple, dict[str, batching.Dataset]] = {}

    def get(self, heldout, cfg, tok) -> dict[str, batching.Dataset]:
        key = (heldout, cfg.sample_rate, tuple(tok.pieces))
        if key not in self.sets:
            if len(self.sets) >= 3:
                self.sets.pop(next(iter(self.sets)))
            self.sets[key] = eval_sets(self.rc, self.data_dir, cfg, tok, self.tcfg, heldout=heldout)
        return self.sets[key]


def _evaluate(src: Path, row: Row, cache: _EvalCache, p: Preset) -> dict:
    """WER/CER and every transcript of ``src``'s weights through ``row.spec``, per split."""
    run = runs.load_run(src)
    cfg, tok, params = run.config, run.tokenizer, run.params
    spec = as_spec(row.spec)
    trainer = train.get_trainer(cfg, spec, p.train)
    masks = runs.load_masks(src, run, spec)
    res: dict = {}
    for name, ds in cache.get(row.heldout_speaker, cfg, tok).items():
        r = trainer.evaluate(params, masks, ds, tok)
        res[name] = {
            "wer": r["wer"],
            "cer": r["cer"],
            "n_utterances": r["utterances"],
            "skipped": r["skipped"],
            "utterances": r["transcripts"],
        }
    res["params"] = sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(params))
    res["model_config"] = dataclasses.asdict(cfg)
    return res


def _train_row(
    row: Row, p: Preset, rc: configs.ReproConfig, data_dir: str | None, out: Path
) -> tuple[int, Path]:
    """Train ``row``'s run directory (resuming its checkpoints); ``(steps, the run
    directory whose weights the row evaluates)``: a PTQ row evaluates its start's."""
    run_dir = out / "runs" / row.key
    start_dir = out / "runs" / row.start_key if row.start else None
    common = dict(seed=row.seed, heldout_speaker=row.heldout_speaker, eval_splits=())
    if row.kind == "pretrain":
        steps = rc.pretrain_steps or p.train.steps
        train.train(
            p,
            rc.corpus,
            data_dir,
            run_dir,
            spec="float",
            steps=steps,
            overrides=row.overrides,
            **common,
        )
        return steps, run_dir
    if row.kind == "finetune":
        steps = rc.finetune_steps
        train.train(
            p,
            rc.corpus,
            data_dir,
            run_dir,
            spec=row.spec,
            init=start_dir,
            steps=steps,
            overrides=row.overrides,
            **common,
        )
        return steps, run_dir
    return 0, start_dir


def _rebuild_start(
    row: Row,
    by_key: dict[str, Row],
    p: Preset,
    rc: configs.ReproConfig,
    data_dir: str | None,
    out: Path,
    cache: _EvalCache,
) -> dict:
    """Train ``row``'s start (and, first, its own start) again where its run directory is
    gone but its record is kept; ``{start key: {split: [recorded WER, new WER]}}`` of every
    start trained again (empty when none was)."""
    if not row.start or (out / "runs" / row.start_key / "params").exists():
        return {}
    start = by_key[row.start_key]
    done = _rebuild_start(start, by_key, p, rc, data_dir, out, cache)
    rec_path = out / "rows" / f"{start.key}.json"
    print(f"[{row.key}] its start {start.key} has no run directory: training it again", flush=True)
    _, src = _train_row(start, p, rc, data_dir, out)
    res = _evaluate(src, start, cache, p)
    recorded = json.loads(rec_path.read_text())["results"] if rec_path.exists() else {}
    wers = {
        split: [recorded[split]["wer"] if split in recorded else None, v["wer"]]
        for split, v in res.items()
        if isinstance(v, dict) and "wer" in v
    }
    same = all(a == b for a, b in wers.values())
    print(
        f"[{start.key}] trained again: "
        + ", ".join(
            f"{k} WER {b:.2f}% (recorded {a if a is None else f'{a:.2f}%'})"
            for k, (a, b) in wers.items()
        )
        + ("" if same else " -- NOT the recorded start: this row's record says so (start_rebuilt)"),
        flush=True,
    )
    return {**done, start.key: wers}


def _check_record(rec: dict, row: Row, path: Path) -> None:
    """Refuse a finished record that is not this row's (another plan wrote ``--out``)."""
    ok = (
        rec.get("kind") == row.kind
        and rec.get("spec") == row.spec
        and rec.get("start") == row.start
        and rec.get("heldout_speaker") == row.heldout_speaker
        # records written before rows had train overrides have none
        and rec.get("train", {}) == dict(row.train)
        and all(
            isinstance(v.get("utterances"), list)
            for v in rec.get("results", {}).values()
            if isinstance(v, dict) and "wer" in v
        )
    )
    if not ok:
        raise ValueError(
            f"{path} holds another plan's {row.key} (kind, spec, start, held-out speaker, "
            "training overrides or transcripts differ, e.g. written by an older version); use "
            "a new --out directory"
        )


def run(
    p: Preset | str, data_dir: str | None, out_dir: str | Path, *, only: Sequence[str] | None = None
) -> list[dict]:
    """Run (or resume) every row of ``p``'s plan, or of the rows ``only`` names and the rows
    they start from; writes the outputs and returns the rows' records."""
    p, rc = _plan_of(p)
    out = Path(out_dir)
    rows = plan(p)
    if only:
        unknown = sorted(set(only) - {r.exp for r in rows})
        if unknown:
            raise ValueError(f"no row(s) {unknown} in the plan; rows: {', '.join(ORDER)}")
        rows = _with_starts(rows, only)
    check_plan(p, rows)  # before anything is written: a refused plan leaves no folder
    (out / "rows").mkdir(parents=True, exist_ok=True)
    commit = runs.git_commit()
    cache = _EvalCache(rc, data_dir, p.train)
    records: list[dict] = []
    by_key = {r.key: r for r in plan(p)}  # every row, for starts outside ``only``
    t_all = time.time()
    for row in rows:
        rec_path = out / "rows" / f"{row.key}.json"
        if rec_path.exists():
            rec = json.loads(rec_path.read_text())
            _check_record(rec, row, rec_path)
            records.append(rec)
            print(f"[{row.key}] done already, skipped", flush=True)
            continue
        t0 = time.time()
        print(f"[{row.key}] {row.description} ({row.kind}, spec {row.spec})", flush=True)
        rebuilt = _rebuild_start(row, by_key, p, rc, data_dir, out, cache)
        steps, src = _train_row(row, p, rc, data_dir, out)
        res = _evaluate(src, row, cache, p)
        rec = {
            **dataclasses.asdict(row),
            "key": row.key,
            "model": dict(row.model),
            "train": dict(row.train),
            "steps": steps,
            "wall_time_s": time.time() - t0,
            "git_commit": commit,
            "preset": p.name,
            "corpus": rc.corpus,
            "machine": runs.machine_info(),
            "results": res,
            **({"start_rebuilt": rebuilt} if rebuilt else {}),
        }
        rec_path.write_text(json.dumps(rec, indent=1))
        records.append(rec)
        wers = ", ".join(
            f"{k} WER {v['wer']:.2f}%" for k, v in res.items() if isinstance(v, dict) and "wer" in v
        )
        print(f"[{row.key}] {wers} ({rec['wall_time_s']:.0f} s)", flush=True)
    write_outputs(p, records, out, total_time_s=time.time() - t_all)
    if any(r["exp"] == "B0" and r["seed"] == rc.seeds[0] for r in records):
        publish_b0(out, rc.seeds[0])
    return records


def read_results(out: str | Path) -> dict:
    """The ``results.json`` of a reproduction's output folder ``out`` (what
    :func:`write_outputs` wrote), refused with a line that says what to run when the folder
    holds none (``FileNotFoundError``) or one from a version without claims or the ``rows/``
    transcripts (``ValueError``)."""
    out = Path(out).expanduser()
    path = out / "results.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no reproduction in {out.resolve()} (need results.json, table.md, rows/): "
            "run `usmlite-edu reproduce --preset cpu --corpus fsdd --data DIR --out results/cpu`, "
            "or point USMLITE_RESULTS at another output directory of `usmlite-edu reproduce`"
        )
    results = json.loads(path.read_text())
    if "claims" not in results or not (out / "rows").is_dir():
        raise ValueError(
            f"{path} was written by an older `usmlite-edu reproduce` (no claims list, no rows/ "
            "with transcripts): run the reproduction again with this version, or point "
            "USMLITE_RESULTS at an output directory it wrote"
        )
    return results


def publish_b0(out: str | Path, seed: int = 0) -> Path:
    """Copy B0's final model (config, tokenizer, parameters; no optimizer checkpoints) to
    ``out/b0``: small enough to commit, and what notebook 07 starts from. Where B0's run
    directory is gone and ``out/b0`` already holds seed ``seed``'s float B0 (published by
    an earlier call), that copy is kept."""
    out = Path(out)
    src, dst = out / "runs" / f"B0_s{seed}", out / "b0"
    if not (src / "params").exists() and (dst / "params").exists():
        published = json.loads((dst / "config.json").read_text())
        if published.get("seed") == seed and published.get("spec") == "float":
            return dst  # published by an earlier call whose run directories are gone
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
def _size_ratios(rec: dict, b0_cfg: dict) -> tuple[float, float]:
    """(paper-convention %, exact %) of a row relative to B0's float32 size."""
    cfg = configs.config_from_dict(configs.ConformerConfig, rec["results"]["model_config"])
    b0 = configs.config_from_dict(configs.ConformerConfig, b0_cfg)
    if rec["kind"] != "ptq" and as_spec(rec["spec"]) == as_spec("float"):
        r = sizes.size_ratio("float", cfg, reference=b0)
        return r, r
    spec = as_spec(rec["spec"])
    return sizes.size_ratio(spec, cfg, "paper"), sizes.size_ratio(spec, cfg, "exact")


def _splits(records: Sequence[dict]) -> list[str]:
    present = {k for r in records for k, v in r["results"].items() if isinstance(v, dict)}
    return [s for s in SPLITS if s in present]


def summarize(
    records: list[dict],
    *,
    scored: dict | None = None,
    resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = 0,
) -> list[dict]:
    """One line per experiment (table order): per split the mean WER over seeds with its
    95% interval (:func:`usmlite_edu.core.stats.wer_interval`: seeds and utterances resampled),
    the seeds' standard deviation, the mean CER and the detectable difference
    (:func:`usmlite_edu.core.stats.detectable_difference`); sizes; the paper's numbers."""
    scored = claims.scored_records(records) if scored is None else scored
    by_exp: dict[str, list[dict]] = {}
    for r in sorted(records, key=lambda r: r["seed"]):
        by_exp.setdefault(r["exp"], []).append(r)
    b0_cfg = next(iter(by_exp.get("B0", by_exp.get("W0", records[:1]))))["results"]["model_config"]
    paper = {p.exp: p for p in sizes.PAPER_ROWS}
    splits = _splits(records)
    lines = []
    for exp in [e for e in ORDER if e in by_exp]:
        rs = by_exp[exp]
        line = {
            "exp": exp,
            "description": rs[0]["description"],
            "spec": rs[0]["spec"],
            "seeds": len(rs),
            "steps": rs[0]["steps"],
            "wall_time_s": float(sum(r["wall_time_s"] for r in rs)),
        }
        for s in splits:
            got = [scored[(exp, r["seed"], s)] for r in rs if (exp, r["seed"], s) in scored]
            if not got:
                continue
            iv = stats.wer_interval(got, resamples=resamples, seed=seed)
            w = np.array(iv.per_seed)
            line[f"wer_{s}"] = iv.estimate
            line[f"wer_{s}_lo"], line[f"wer_{s}_hi"] = iv.lo, iv.hi
            line[f"wer_{s}_sd"] = float(w.std(ddof=1)) if len(w) > 1 else None
            line[f"cer_{s}"] = float(np.mean([r["results"][s]["cer"] for r in rs]))
            line[f"detectable_{s}"] = stats.detectable_difference(
                got, resamples=resamples, seed=seed
            )
        line["size_paper"], line["size_exact"] = _size_ratios(rs[0], b0_cfg)
        line["paper_wer"] = (
            PAPER_B0_WER if exp == "B0" else paper[exp].paper_wer if exp in paper else None
        )
        line["paper_size"] = (
            100.0 if exp == "B0" else paper[exp].paper_ratio if exp in paper else None
        )
        lines.append(line)
    return lines


def _fmt_wer(line: dict, s: str) -> str:
    if line.get(f"wer_{s}") is None:
        return "-"
    return f"{line[f'wer_{s}']:.2f} [{line[f'wer_{s}_lo']:.2f}, {line[f'wer_{s}_hi']:.2f}]"


def _commits(records: list[dict]) -> tuple[list[str], str]:
    """The commits the records were made at, and a sentence saying which rows came from
    which (a resumed run may span several)."""
    commits = list(dict.fromkeys(r["git_commit"] for r in records)) or ["unknown"]
    short = lambda c: c[:12] + ("-dirty" if c.endswith("-dirty") else "")  # keep the flag
    at = "commit " + ", ".join(f"`{short(c)}`" for c in commits)
    if len(commits) > 1:
        at += (
            " ("
            + "; ".join(
                f"`{short(c)}`: " + ", ".join(r["key"] for r in records if r["git_commit"] == c)
                for c in commits
            )
            + ")"
        )
    return commits, at


def _plan_text(p: Preset, rc: configs.ReproConfig) -> str:
    held = {s: rc.heldout_for(s) for s in rc.seeds}
    return (
        f"Plan: per seed ({', '.join(map(str, rc.seeds))}), W0-W3 trained from scratch for "
        f"{rc.pretrain_steps or p.train.steps} steps; B0-B3 and E1, E3-E13 fine-tuned from "
        f"their seed's W for {rc.finetune_steps} steps each, compression on from step 1; "
        f"E0 / E2 quantize their seed's B0. V0 / V4 are B0 / E4 fine-tuned with global "
        f"variational noise (Gaussian weight noise, std {rc.vn_std:g} on every kernel), V2 "
        "quantizes V0 to int4: the paper's section 5.4 hypothesis, not rows of the paper. "
        f"Few-shot T_p = {rc.t_p}; sub-channel group sizes {rc.group_sizes}. "
        + (
            "Held out of training (the 'unseen' split): "
            + ", ".join(f"seed {s} `{h}`" for s, h in held.items())
            + "; 'test' = the official test split of the other speakers; 'dev' = the "
            "training speakers' dev recordings."
            if rc.heldout_speaker
            else "'dev' and 'test' are the corpus's dev and test splits."
        )
    )


def write_outputs(
    p: Preset | str, records: list[dict], out: Path, total_time_s: float = 0.0
) -> None:
    """``table.md``, ``table.csv``, ``results.json``, ``plot.png`` and ``claims.md`` from
    the rows' records (module docstring)."""
    p, rc = _plan_of(p)
    out = Path(out)
    scored = claims.scored_records(records)
    lines = summarize(records, scored=scored)
    splits = _splits(records)
    # CSV: every key of every line (W rows have no paper columns)
    keys = list(dict.fromkeys(k for line in lines for k in line))
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(lines)
    head = [
        "exp",
        "model",
        "spec",
        *[f"WER {s} (%) [95%]" for s in splits],
        *[f"δ {s}" for s in splits if s != "dev"],
        "size, paper conv.",
        "size, exact",
        "seeds",
        "steps",
        "paper WER",
        "paper size",
    ]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for l in lines:
        cells = [
            l["exp"],
            l["description"],
            f"`{l['spec']}`",
            *[_fmt_wer(l, s) for s in splits],
            *[
                f"{l[f'detectable_{s}']:.2f}" if f"detectable_{s}" in l else "-"
                for s in splits
                if s != "dev"
            ],
            f"{l['size_paper']:.1f}%",
            f"{l['size_exact']:.1f}%",
            str(l["seeds"]),
            str(l["steps"]),
            "-" if l["paper_wer"] is None else f"{l['paper_wer']:.1f}",
            "-" if l["paper_size"] is None else f"{l['paper_size']:.1f}%",
        ]
        md.append("| " + " | ".join(cells) + " |")
    commits, at = _commits(records)
    wall = sum(r["wall_time_s"] for r in records)
    header = (
        f"# Reduced-scale reproduction: preset `{p.name}` on `{rc.corpus}`\n\n"
        f"Made by `usmlite-edu reproduce --preset {p.name} --corpus {rc.corpus} ...` at "
        f"{at}. {_plan_text(p, rc)}\n\n"
        "WER: mean over seeds, in brackets its 95% bootstrap interval (seeds resampled, then "
        f"each seed's utterances; {stats.DEFAULT_RESAMPLES} resamples). δ: the smallest "
        "difference from the row's WER its evaluation set can detect (1.96 x sqrt(2) x the "
        "bootstrap standard error, at least one word per seed; `usmlite_edu/core/stats.py`). "
        "W0-W3 are the pre-trained starts, not rows of the paper; neither are V0, V2, V4 "
        "(with variational noise, the paper's section 5.4 hypothesis). Differences between rows "
        "and the verdicts: `claims.md`. Every utterance's transcript: `rows/`. Sum of the "
        f"runs' wall times {wall / 60:.1f} min.\n\n"
    )
    (out / "table.md").write_text(header + "\n".join(md) + "\n")
    judgements = claims.judge(records, scored=scored)
    # B0's detectable difference per split, printed in claims.md's header
    detectable = {
        s: stats.detectable_difference(
            [v for k, v in sorted(scored.items()) if k[0] == "B0" and k[2] == s]
        )
        for s in splits
        if any(k[0] == "B0" and k[2] == s for k in scored)
    }
    size_of = {l["exp"]: l["size_paper"] for l in lines}
    # the paper's summary figure, on the judged splits B0 ran
    lossless = [
        r
        for s in claims.JUDGED_SPLITS
        if any(k[0] == "B0" and k[2] == s for k in scored)
        for r in claims.largest_lossless(scored, size_of, s)
    ]
    (out / "claims.md").write_text(
        claims.render(
            judgements,
            title=f"The paper's claims, checked at reduced scale (`{p.name}` on `{rc.corpus}`)",
            sizes=size_of,
            detectable=detectable,
            notes=[f"Made at {at}. {_plan_text(p, rc)}"],
        )
        + ("\n" + claims.render_lossless(lossless) if lossless else "")
    )
    slim = [
        {
            **r,
            "results": {
                k: (
                    {kk: vv for kk, vv in v.items() if kk != "utterances"}
                    if isinstance(v, dict) and "wer" in v
                    else v
                )
                for k, v in r["results"].items()
            },
        }
        for r in records
    ]
    (out / "results.json").write_text(
        json.dumps(
            {
                "preset": p.name,
                "config": dataclasses.asdict(rc),
                "git_commit": commits[0],
                "git_commits": commits,
                "total_time_s": total_time_s,
                "runs": slim,
                "summary": lines,
                "detectable": detectable,
                "largest_lossless": [
                    {
                        "split": r.split,
                        "rule": r.rule,
                        "exp": r.exp,
                        "size_paper": r.size,
                        "ratio": r.ratio,
                        "difference": dataclasses.asdict(r.difference) if r.difference else None,
                        "qualifying": [list(c) for c in r.candidates],
                    }
                    for r in lossless
                ],
                "claims": [
                    {
                        "key": j.claim.key,
                        "title": j.claim.title,
                        "row": j.claim.row,
                        "base": j.claim.base,
                        "kind": j.claim.kind,
                        "seeds": list(j.seeds),
                        "differences": {
                            s: dataclasses.asdict(iv) for s, iv in j.differences.items()
                        },
                        "verdicts": j.verdicts,
                        "reasons": j.reasons,
                        "missing": list(j.missing),
                    }
                    for j in judgements
                ],
            },
            indent=1,
        )
    )
    _plot(lines, out / "plot.png")


def _pareto(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points not dominated in (size, WER): no other point is smaller and better."""
    front, best = [], float("inf")
    for p in sorted(points, key=lambda p: (p[0], p[1])):
        if p[1] < best:
            front.append(p)
            best = p[1]
    return front


def _dodged(xs: list[float], names: list[str], step: float = 1.05) -> list[float]:
    """Rows of the same size (e.g. E8 and E9, both 2:4) side by side: each group of equal
    ``x`` spread by factors of ``step`` around it (a log axis), in name order."""
    out = list(xs)
    groups: dict[float, list[int]] = {}
    for i, x in enumerate(xs):
        groups.setdefault(round(x, 6), []).append(i)
    for idx in groups.values():
        idx = sorted(idx, key=lambda i: names[i])
        for k, i in enumerate(idx):
            out[i] = xs[i] * step ** (k - (len(idx) - 1) / 2)
    return out


def _place_labels(ax, xs, ys, names, fontsize: int = 8) -> None:
    """Name every point without two names overlapping: each label starts just right of its
    point and moves down (then up) in steps of a line until its box is clear of the labels
    placed before it. Works in display coordinates, so call it after the axes' limits."""
    fig = ax.figure
    fig.canvas.draw()
    to_px = ax.transData.transform
    line = fontsize * fig.dpi / 72 * 1.15  # one text line, in pixels
    placed: list[tuple[float, float, float, float]] = []
    for i in sorted(range(len(xs)), key=lambda i: -to_px((xs[i], ys[i]))[1]):
        px, py = to_px((xs[i], ys[i]))
        w = 0.62 * line * len(names[i])
        x0 = px + 0.35 * line
        for k in (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6):
            y0 = py + 0.2 * line - k * line
            box = (x0, y0, x0 + w, y0 + line)
            if not any(
                box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed
            ):
                break
        placed.append(box)
        ax.annotate(
            names[i],
            (xs[i], ys[i]),
            xytext=(box[0] - px, box[1] - py),
            textcoords="offset pixels",
            fontsize=fontsize,
            va="bottom",
            arrowprops=None if k == 0 else {"arrowstyle": "-", "lw": 0.4, "color": "0.5"},
        )


def _plot(lines: list[dict], path: Path) -> None:
    """WER against size (log x, Pareto frontier): ours per evaluation split with 95%
    interval bars, the paper's on the last panel. The pre-trained starts are left out.
    Rows of equal size are drawn side by side and no two names overlap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [l for l in lines if not l["exp"].startswith("W")]
    ours = [s for s in ("test", "unseen") if any(f"wer_{s}" in l for l in lines)]
    panels = [
        (f"ours, {s} (bars: 95% interval)", "size_paper", f"wer_{s}", f"wer_{s}_lo", f"wer_{s}_hi")
        for s in ours
    ] + [("paper (voice search, 2B USM)", "paper_size", "paper_wer", None, None)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.4), sharex=True)
    for ax, (title, key_size, key_wer, key_lo, key_hi) in zip(np.atleast_1d(axes), panels):
        drawn = [l for l in lines if l.get(key_wer) is not None]
        pts = [(l[key_size], l[key_wer], l["exp"]) for l in drawn]
        names = [l["exp"] for l in drawn]
        xs = _dodged([l[key_size] for l in drawn], names)
        ys = [l[key_wer] for l in drawn]
        top = 0.0
        for l, x, y in zip(drawn, xs, ys):
            lo, hi = (l[key_lo], l[key_hi]) if key_lo else (y, y)
            top = max(top, hi)
            ax.errorbar(
                x,
                y,
                yerr=[[y - lo], [hi - y]] if key_lo else None,
                fmt="o",
                capsize=3,
                zorder=3,
                color="C1" if l["exp"].startswith("B") else "C3" if l["exp"] in VN_ROWS else "C0",
            )
        front = _pareto(pts)
        ax.plot(
            [q[0] for q in front],
            [q[1] for q in front],
            "--",
            color="C2",
            label="Pareto frontier (means)",
            zorder=2,
        )
        ax.set(
            xscale="log",
            xlabel="model size ratio (% of float32 B0, paper convention)",
            ylabel="WER (%)",
            title=title,
        )
        top = max(top, 1.0)
        ax.set_ylim(0, top * 1.15)
        if max(ys) > 3 * float(np.median(ys)):
            # a few collapsed rows (the paper's int2): linear below 10%, logarithmic above
            ax.set_yscale("symlog", linthresh=10, linscale=2)
            ticks = [t for t in (0, 1, 2, 3, 4, 5, 6, 8, 10, 20, 50, 100) if t <= top * 1.15]
            ax.set_yticks(ticks, [str(t) for t in ticks])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    for ax, (_, key_size, key_wer, _, _) in zip(np.atleast_1d(axes), panels):
        drawn = [l for l in lines if l.get(key_wer) is not None]
        names = [l["exp"] for l in drawn]
        _place_labels(
            ax, _dodged([l[key_size] for l in drawn], names), [l[key_wer] for l in drawn], names
        )
    fig.savefig(path, dpi=110)
    plt.close(fig)
