"""From a corpus split to fixed-shape batches: bucketing, bad-input filtering, resumable order.

JAX compiles one program per input shape, so utterances are padded to a few fixed
*bucket* lengths (e.g. 2, 4, 8 s) and label sequences to a fixed length per bucket: a
whole training run compiles at most one step per bucket.

Every utterance that cannot train is reported with its id and reason, counted, and
skipped, never crashing the run: unreadable audio, empty or un-encodable transcripts,
audio longer than the largest bucket, and utterances with fewer CTC output frames than
the labels need (labels plus one blank between each repeated pair), which would give an
infinite CTC loss.

The order is a pure function of ``(seed, epoch)``: buckets are shuffled into batches of a
fixed size, and the batch order is shuffled across buckets. The position ``(epoch,
index)`` is all a checkpoint needs to resume the stream exactly.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Collection, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from usmlite_edu.speech import augment, frontend
from usmlite_edu.speech.audio import AudioError
from usmlite_edu.speech.configs import ConformerConfig
from usmlite_edu.speech.corpora import CorpusSplit
from usmlite_edu.speech.tokenizer import Tokenizer

log = logging.getLogger(__name__)

__all__ = [
    "Example",
    "Batch",
    "Dataset",
    "prepare",
    "ctc_min_frames",
    "BatchStream",
    "eval_batches",
]


@dataclasses.dataclass(frozen=True)
class Example:
    uid: str
    text: str
    audio: np.ndarray  # float32 mono at the model's sample rate
    tokens: np.ndarray  # int32 label ids (no blank)
    bucket: int


class Batch(NamedTuple):
    waveforms: np.ndarray  # (B, N_bucket) float32, zero-padded
    lengths: np.ndarray  # (B,) int32 valid samples
    labels: np.ndarray  # (B, L_bucket) int32, zero-padded
    label_lengths: np.ndarray  # (B,) int32
    weights: np.ndarray  # (B,) float32; 0 for filler rows of a last eval batch


@dataclasses.dataclass
class Dataset:
    """Examples of one split, grouped by bucket, plus what was skipped and why."""

    name: str
    examples: list[Example]
    bucket_samples: tuple[int, ...]
    label_lengths: tuple[int, ...]
    skipped: list[tuple[str, str]]
    sample_rate: int

    def summary(self) -> str:
        reasons: dict[str, int] = {}
        for _, r in self.skipped:
            key = r.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        per_bucket = [
            sum(e.bucket == b for e in self.examples) for b in range(len(self.bucket_samples))
        ]
        return (
            f"{self.name}: {len(self.examples)} utterances in buckets "
            f"{[f'{n / self.sample_rate:g}s' for n in self.bucket_samples]} "
            f"({per_bucket}); skipped {len(self.skipped)} {reasons or ''}"
        )


def ctc_min_frames(tokens: Sequence[int]) -> int:
    """Fewest output frames CTC needs: one per label plus a blank between repeats."""
    return len(tokens) + sum(1 for a, b in zip(tokens, tokens[1:]) if a == b)


def prepare(
    split: CorpusSplit,
    tokenizer: Tokenizer,
    cfg: ConformerConfig,
    bucket_seconds: Sequence[float],
    *,
    keep_long: bool = False,
    speed_factors: Sequence[float] = (),
) -> Dataset:
    """Load, tokenize and bucket every utterance; report and skip what cannot train.

    ``keep_long`` (for evaluation: a test set must not lose its long utterances) adds
    buckets, in whole seconds, for utterances longer than the largest one instead of
    skipping them.

    ``speed_factors`` (for the training split only: ``train.speed_perturb``) replaces each
    utterance by one copy per factor, resampled by
    :func:`usmlite_edu.speech.augment.speed_perturb`, in the order given, right after each other;
    a copy's id is :func:`usmlite_edu.speech.augment.speed_uid` (``<uid>_sp0.9``; factor 1 keeps
    the id). The length and CTC checks and the bucket apply to each copy, so a slowed copy
    that no longer fits the largest bucket is skipped on its own. ``()`` keeps the audio.
    """
    sr = cfg.sample_rate
    if not bucket_seconds:
        raise ValueError("bucket_seconds is empty")
    augment.check_speed_factors(speed_factors)
    factors = tuple(speed_factors) or (1.0,)
    buckets = tuple(sorted(set(int(round(s * sr)) for s in bucket_seconds)))
    mel = frontend.LogMelConfig.from_model(cfg)
    skipped = list(split.skipped)
    examples: list[Example] = []
    for u in split.utterances:

        def skip(reason, u=u):  # bound now: called within this iteration only
            log.warning("skipping %s: %s", u.path or u.uid, reason)
            skipped.append((u.path or u.uid, reason))

        try:
            audio = np.asarray(u.load(sr), np.float32)
        except AudioError as e:
            skip(f"unreadable audio: {e.reason}")
            continue
        if audio.size == 0:
            skip("empty audio: no samples")
            continue
        if not np.all(np.isfinite(audio)):
            skip("audio contains NaN or infinity")
            continue
        if not u.text.strip():
            skip("empty transcript")
            continue
        ok, why = tokenizer.can_encode(u.text)
        if not ok:
            skip(f"transcript cannot be encoded: {why}")
            continue
        tokens = np.asarray(tokenizer.encode(u.text), np.int32)
        need = ctc_min_frames(tokens.tolist())
        original = audio
        for factor in factors:
            audio = augment.speed_perturb(original, factor) if factor != 1 else original
            copy = f" (speed {factor:g})" if factor != 1 else ""
            if audio.size > buckets[-1] and keep_long:  # a new bucket, in whole seconds
                buckets = buckets + (int(math.ceil(audio.size / sr)) * sr,)
            if audio.size > buckets[-1]:
                skip(
                    f"too long{copy}: {audio.size / sr:.2f} s > largest bucket "
                    f"{buckets[-1] / sr:g} s (raise bucket_seconds to keep it)"
                )
                continue
            frames = int(frontend.subsampled_lengths(frontend.num_frames(audio.size, mel)))
            if frames < need:
                skip(
                    f"too short for CTC{copy}: {frames} output frames < {need} needed by "
                    f"{len(tokens)} labels"
                )
                continue
            bucket = next(i for i, n in enumerate(buckets) if audio.size <= n)
            uid = augment.speed_uid(u.uid, factor)
            examples.append(Example(uid, u.text, audio, tokens, bucket))
    if not examples:
        raise ValueError(
            f"{split.name}: no usable utterance out of {len(split.utterances)} "
            f"(first problems: {skipped[:3]})"
        )
    # Labels pad to a fixed length per bucket (a multiple of 8), from the data itself.
    label_lengths = []
    for b in range(len(buckets)):
        longest = max((len(e.tokens) for e in examples if e.bucket == b), default=1)
        label_lengths.append(8 * math.ceil(max(longest, 1) / 8))
    ds = Dataset(split.name, examples, buckets, tuple(label_lengths), skipped, sr)
    log.info(ds.summary())
    return ds


def _make_batch(
    ds: Dataset,
    idx: Sequence[int],
    bucket: int,
    batch_size: int,
    rows: tuple[int, int] | None = None,
) -> Batch:
    """The batch of examples ``idx`` (filled to ``batch_size`` with weight-0 copies of the
    first); ``rows=(lo, hi)``: only its rows ``lo:hi``, the same arrays as slicing the
    whole batch, without reading the other rows' examples."""
    lo, hi = (0, batch_size) if rows is None else rows
    n, lmax = ds.bucket_samples[bucket], ds.label_lengths[bucket]
    wav = np.zeros((hi - lo, n), np.float32)
    lengths = np.zeros(hi - lo, np.int32)
    labels = np.zeros((hi - lo, lmax), np.int32)
    llen = np.zeros(hi - lo, np.int32)
    weights = np.zeros(hi - lo, np.float32)
    full = list(idx) + [idx[0]] * (batch_size - len(idx))  # filler rows copy a real one
    for r, i in enumerate(full[lo:hi]):
        e = ds.examples[i]
        wav[r, : e.audio.size] = e.audio
        lengths[r] = e.audio.size
        labels[r, : len(e.tokens)] = e.tokens
        llen[r] = len(e.tokens)
        weights[r] = 1.0 if lo + r < len(idx) else 0.0
    return Batch(wav, lengths, labels, llen, weights)


class BatchStream:
    """Endless, deterministic stream of full training batches with a resumable position.

    ``position = (epoch, index)``: the next batch is batch ``index`` of epoch ``epoch``'s
    order, which depends only on ``seed`` and ``epoch``.

    ``rows=(lo, hi)`` (one process of several, :func:`usmlite_edu.scale.mesh.process_rows`):
    each batch holds only rows ``lo:hi`` of the global batch of ``batch_size``; every
    process draws the same order, so the processes' rows together are exactly the batch
    one process would make.
    """

    def __init__(
        self,
        ds: Dataset,
        batch_size: int,
        seed: int,
        position: tuple[int, int] = (0, 0),
        rows: tuple[int, int] | None = None,
    ):
        if rows is not None and not 0 <= rows[0] < rows[1] <= batch_size:
            raise ValueError(f"rows {rows} are not a range inside a batch of {batch_size}")
        self.ds, self.batch_size, self.seed, self.rows = ds, batch_size, seed, rows
        self.epoch, self.index = position
        self._order = self._epoch_order(self.epoch)
        if not self._order:
            raise ValueError(
                f"{ds.name}: fewer utterances per bucket than batch_size="
                f"{batch_size}; lower the batch size or merge buckets"
            )

    def _epoch_order(self, epoch: int) -> list[tuple[int, list[int]]]:
        rng = np.random.default_rng([self.seed, epoch])
        batches = []
        for b in range(len(self.ds.bucket_samples)):
            members = np.array([i for i, e in enumerate(self.ds.examples) if e.bucket == b])
            rng.shuffle(members)
            for k in range(len(members) // self.batch_size):  # drop the remainder
                batches.append(
                    (b, members[k * self.batch_size : (k + 1) * self.batch_size].tolist())
                )
        perm = rng.permutation(len(batches))
        return [batches[i] for i in perm]

    @property
    def position(self) -> tuple[int, int]:
        return self.epoch, self.index

    @property
    def batches_per_epoch(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        if self.index >= len(self._order):
            self.epoch, self.index = self.epoch + 1, 0
            self._order = self._epoch_order(self.epoch)
        bucket, idx = self._order[self.index]
        self.index += 1
        return _make_batch(self.ds, idx, bucket, self.batch_size, self.rows)


def eval_batches(
    ds: Dataset, batch_size: int, skip: Collection[int] = ()
) -> Iterator[tuple[Batch, list[int]]]:
    """Every example once (but those whose index is in ``skip``), in order, bucket by
    bucket; the last batch of a bucket is filled with weight-0 copies. Yields ``(batch,
    example indices)``."""
    skip = frozenset(skip)
    for b in range(len(ds.bucket_samples)):
        members = [i for i, e in enumerate(ds.examples) if e.bucket == b and i not in skip]
        for k in range(0, len(members), batch_size):
            idx = members[k : k + batch_size]
            yield _make_batch(ds, idx, b, batch_size), idx
