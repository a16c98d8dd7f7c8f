"""Paired statistics for the reproduction's word error rates (NumPy; jiwer aligns words).

Every number the reproduction reports about a difference between two rows comes from
here (:mod:`usmlite_edu.training.claims`, the table of :mod:`usmlite_edu.training.reproduce`).

**Per-utterance errors.** :func:`word_errors` aligns each hypothesis with its reference
(jiwer) and counts the utterance's word errors, substitutions + deletions + insertions,
and its reference words. An empty reference counts as the one word ``<empty>``, as in
:func:`usmlite_edu.speech.decoding.wer_cer`. A system's result on one seed's utterances is a
:class:`Scored`; its corpus WER is ``100 * sum(errors) / sum(words)``, what ``jiwer.wer``
gives for the whole list. :class:`Scored` keeps its utterances sorted by id, so nothing
below depends on the order in which the utterances were listed.

**Paired difference** (:func:`paired_difference`). Two systems A and B, seeds
``s = 1..S``, both systems of seed ``s`` on the same utterances::

    D = (1/S) * sum_s (WER_A,s - WER_B,s)          (WER points)

Its 95% interval is a paired percentile bootstrap: ``R`` resamples (default 2,000); in
each, for every seed, ``n_s`` utterance indices are drawn with replacement, *the same
indices for A and B*, both corpus WERs are recomputed on the drawn utterances, and the
seeds' differences are averaged. The interval is the 2.5th and 97.5th percentile of the
``R`` averages. The random generator is ``numpy.random.default_rng(seed)``: the same
inputs give the same interval. Seeds are not resampled: the interval covers the sampling
of the test utterances given the trained models; variation between training seeds enters
through the average over the paired seeds, and the per-seed differences are reported
beside it (:attr:`Interval.per_seed`).

**One system's WER** (:func:`wer_interval`): the mean over seeds of its corpus WER, with a
two-level bootstrap: each resample draws ``S`` seeds with replacement, then the
utterances of each drawn seed with replacement.

**Detectable difference** (:func:`detectable_difference`)::

    delta = max(1.96 * sqrt(2) * SE, 100 / W)

``SE`` is the bootstrap standard error of the system's mean WER over its seeds (utterances
resampled within each seed, seeds fixed) and ``W`` the mean number of reference words per
seed. ``1.96 * sqrt(2) * SE`` is the half-width of the 95% interval of a zero-difference
comparison of the system with an independent replicate of itself: two systems with its WER
and standard error whose errors fall on unrelated utterances differ by more than this
only 5% of the time. ``100 / W`` is one word error on each seed's test set, below which a
difference is not a whole error. Systems whose errors fall on the same utterances (a row
and its fine-tuned sibling) can be told apart at less than ``delta``; their paired
intervals are computed directly and never use it.

**Verdicts** (:func:`verdict`) on the 95% interval ``[lo, hi]`` of ``D = row - base`` (WER
points; positive means the row has more errors) and the margin ``m``
(:data:`EQUIVALENCE_MARGIN`, 1 point). A claim is one of four kinds:

=============  ==========================  ===================  ==========================
kind           the paper says              *reproduced* when    *not reproduced* when
=============  ==========================  ===================  ==========================
``worse``      the row is worse            ``lo > 0``           ``hi < m``
``better``     the row is better           ``hi < 0``           ``lo > -m``
``no_worse``   nearly free: at most a      ``hi < m``           ``lo >= m``
               marginal regression
``same``       no real difference          ``-m < lo, hi < m``  ``lo >= m`` or ``hi <= -m``
=============  ==========================  ===================  ==========================

checked in this order; *inconclusive* otherwise, i.e. when the interval allows both
readings. A direction (``worse`` / ``better``) is reproduced when the interval lies on the
paper's side of 0, and not reproduced when it excludes a change of the margin's size in
the paper's direction: any change there is one the paper itself would call marginal. A
``worse`` claim can thus be reproduced by a real regression smaller than the margin
(:func:`within_margin` says so). A nearly-free claim is a non-inferiority test: the row
may be better than its baseline.

**The margin.** ``EQUIVALENCE_MARGIN = 1.0`` WER point, absolute. The paper calls
differences of +0.1 (E0, E1 against B0), +0.2 (E3, E9), +0.3 (E8, E12) and +0.4 (E13)
points "retain" or "marginal", and the smallest difference it reads as real is E11
against E10, -1.1 points, "superior" (Tables 1-3, sections 5.1-5.3). One point lies
between the two. Scaling the paper's relative margin instead (section 5.3: E12's "only
7.3% relative WER regression") to our B0 of 1-2% WER gives 0.1-0.15 points, less than one
word error on our test sets (FSDD "test" has about 200 words: one word is 0.5 point), so it
cannot be tested. At our B0's WER one point is a large relative change: read a
reproduced "nearly free" as "costs less than one WER point".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "Scored",
    "Interval",
    "word_errors",
    "score",
    "paired_difference",
    "wer_interval",
    "standard_error",
    "detectable_difference",
    "verdict",
    "within_margin",
    "EQUIVALENCE_MARGIN",
    "DEFAULT_RESAMPLES",
    "KINDS",
    "VERDICTS",
    "Z95",
]

#: the margin of the verdict rules, in WER points (module docstring, "The margin")
EQUIVALENCE_MARGIN = 1.0
DEFAULT_RESAMPLES = 2000
#: the two-sided 95% quantile of the standard normal distribution
Z95 = 1.959963984540054
KINDS = ("worse", "better", "no_worse", "same")
VERDICTS = ("reproduced", "not reproduced", "inconclusive")


@dataclasses.dataclass(frozen=True, eq=False)
class Scored:
    """One system on one seed's utterances: word errors and reference words per utterance.

    The constructor sorts the three sequences by id (and refuses repeated ids), so two
    :class:`Scored` built from the same utterances in any order are the same.
    """

    ids: tuple[str, ...]
    errors: np.ndarray
    words: np.ndarray

    def __post_init__(self):
        ids = tuple(str(i) for i in self.ids)
        errors = np.asarray(self.errors, np.int64).reshape(-1)
        words = np.asarray(self.words, np.int64).reshape(-1)
        if not len(ids) == len(errors) == len(words):
            raise ValueError(
                f"ids, errors and words differ in length: {len(ids)}, {len(errors)}, {len(words)}"
            )
        if len(set(ids)) != len(ids):
            raise ValueError("utterance ids repeat")
        if (errors < 0).any() or (words < 1).any():
            raise ValueError("errors must be >= 0 and every reference at least one word")
        order = sorted(range(len(ids)), key=ids.__getitem__)
        object.__setattr__(self, "ids", tuple(ids[i] for i in order))
        object.__setattr__(self, "errors", errors[order])
        object.__setattr__(self, "words", words[order])

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def wer(self) -> float:
        """Corpus WER in percent (errors summed over utterances / reference words)."""
        return 100.0 * float(self.errors.sum()) / max(int(self.words.sum()), 1)


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval.

    Attributes:
      estimate: the statistic on the data as observed (mean over seeds).
      lo, hi: the percentile interval at ``level``.
      se: standard deviation of the bootstrap replicates.
      per_seed: the statistic of each seed, in the order the seeds were given.
      resamples, level: the bootstrap's settings.
    """

    estimate: float
    lo: float
    hi: float
    se: float
    per_seed: tuple[float, ...]
    resamples: int
    level: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def contains(self, x: float) -> bool:
        return self.lo <= x <= self.hi


def word_errors(refs: Sequence[str], hyps: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per utterance: word errors (substitutions + deletions + insertions of jiwer's
    alignment) and reference length in words, as two int arrays."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    import jiwer

    refs = [r if r.strip() else "<empty>" for r in refs]
    out = jiwer.process_words(list(refs), list(hyps))
    errors = []
    for chunks in out.alignments:
        e = 0
        for c in chunks:
            if c.type in ("substitute", "delete"):
                e += c.ref_end_idx - c.ref_start_idx
            elif c.type == "insert":
                e += c.hyp_end_idx - c.hyp_start_idx
        errors.append(e)
    return np.asarray(errors, np.int64), np.asarray([len(r) for r in out.references], np.int64)


def score(utterances: Sequence[Mapping[str, str]]) -> Scored:
    """A :class:`Scored` from transcripts ``[{"id", "ref", "hyp"}, ...]`` (what the
    reproduction stores per split of every row)."""
    errors, words = word_errors([u["ref"] for u in utterances], [u["hyp"] for u in utterances])
    return Scored(tuple(u["id"] for u in utterances), errors, words)


def _check_paired(a: Scored, b: Scored) -> None:
    if a.ids != b.ids:
        only_a, only_b = set(a.ids) - set(b.ids), set(b.ids) - set(a.ids)
        raise ValueError(
            f"a paired comparison needs the same utterances: {len(only_a)} only in the "
            f"first system, {len(only_b)} only in the second (e.g. "
            f"{sorted(only_a or only_b)[:3]})"
        )
    if not np.array_equal(a.words, b.words):
        raise ValueError("the two systems have different reference lengths for the same ids")
    if not len(a):
        raise ValueError("no utterances to compare")


def _interval(replicates: np.ndarray, estimate: float, per_seed, resamples, level) -> Interval:
    lo, hi = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    se = float(replicates.std(ddof=1)) if len(replicates) > 1 else 0.0
    return Interval(
        float(estimate),
        float(lo),
        float(hi),
        se,
        tuple(float(x) for x in per_seed),
        int(resamples),
        float(level),
    )


def _check_settings(resamples: int, level: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def paired_difference(
    a: Sequence[Scored],
    b: Sequence[Scored],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Mean over seeds of ``WER(a) - WER(b)`` (points) with its paired bootstrap interval.

    ``a[i]`` and ``b[i]`` are the two systems on seed ``i``'s utterances (the same ids);
    each resample draws one set of utterance indices per seed and applies it to both
    systems (module docstring, "Paired difference").
    """
    _check_settings(resamples, level)
    if len(a) != len(b) or not a:
        raise ValueError(f"need the same number (>= 1) of seeds, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples)
    per_seed = []
    for sa, sb in zip(a, b):
        _check_paired(sa, sb)
        per_seed.append(sa.wer - sb.wer)
        idx = rng.integers(0, len(sa), size=(resamples, len(sa)))
        # Word counts are the same for both systems (checked), so one sum serves both.
        words = sa.words[idx].sum(axis=1)
        total += 100.0 * (sa.errors[idx].sum(axis=1) - sb.errors[idx].sum(axis=1)) / words
    return _interval(total / len(a), float(np.mean(per_seed)), per_seed, resamples, level)


def wer_interval(
    systems: Sequence[Scored],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
    resample_seeds: bool = True,
) -> Interval:
    """Mean over seeds of one system's corpus WER, with a bootstrap interval that
    resamples seeds (``resample_seeds``; with one seed there is nothing to draw) and the
    utterances of each drawn seed."""
    _check_settings(resamples, level)
    if not systems or any(len(s) == 0 for s in systems):
        raise ValueError("need at least one seed, each with at least one utterance")
    rng = np.random.default_rng(seed)
    n = len(systems)
    if resample_seeds and n > 1:
        picks = rng.integers(0, n, size=(resamples, n))
    else:
        picks = np.broadcast_to(np.arange(n), (resamples, n))
    total = np.zeros(resamples)
    for j in range(n):
        for k, sys in enumerate(systems):
            rows = np.flatnonzero(picks[:, j] == k)
            if rows.size == 0:
                continue
            idx = rng.integers(0, len(sys), size=(rows.size, len(sys)))
            total[rows] += 100.0 * sys.errors[idx].sum(axis=1) / sys.words[idx].sum(axis=1)
    per_seed = [s.wer for s in systems]
    return _interval(total / n, float(np.mean(per_seed)), per_seed, resamples, level)


def standard_error(
    systems: Sequence[Scored], *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> float:
    """Bootstrap standard error of the mean WER over ``systems``' seeds, utterances
    resampled within each seed and the seeds fixed."""
    return wer_interval(systems, resamples=resamples, seed=seed, resample_seeds=False).se


def detectable_difference(
    systems: Sequence[Scored], *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> float:
    """``max(1.96 * sqrt(2) * SE, 100 / W)`` in WER points: the smallest difference from
    these systems' mean WER that their test sets can detect (module docstring,
    "Detectable difference")."""
    se = standard_error(systems, resamples=resamples, seed=seed)
    words = float(np.mean([s.words.sum() for s in systems]))
    return max(Z95 * math.sqrt(2.0) * se, 100.0 / words)


def verdict(lo: float, hi: float, kind: str, margin: float = EQUIVALENCE_MARGIN) -> str:
    """*reproduced*, *not reproduced* or *inconclusive* for a claim of ``kind`` given the
    interval ``[lo, hi]`` of ``row - base`` (the table in the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not lo <= hi:
        raise ValueError(f"need lo <= hi, got [{lo}, {hi}]")
    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    m = margin
    if kind == "worse":
        yes, no = lo > 0, hi < m
    elif kind == "better":
        yes, no = hi < 0, lo > -m
    elif kind == "no_worse":
        yes, no = hi < m, lo >= m
    else:
        yes, no = (-m < lo and hi < m), (lo >= m or hi <= -m)
    return "reproduced" if yes else "not reproduced" if no else "inconclusive"


def within_margin(lo: float, hi: float, margin: float = EQUIVALENCE_MARGIN) -> bool:
    """Whether the whole interval lies strictly inside ``(-margin, margin)``."""
    return -margin < lo and hi < margin
