"""The quantization-error explorer: everything notebook 10 shows, as pure functions.

:func:`explore` takes a quantizer setting (:class:`Setting`: bits, symmetric or
asymmetric grid, sub-channel groups, clip ratio, an optional N:M pattern) and a weight
source (:class:`ToyWeights`: Gaussian, Student-t with ``df`` degrees of freedom, injected
outlier rows or columns; or :class:`B0Layer`: a dense kernel of the committed B0) and
returns an :class:`Exploration` with every number the explorer draws:

* the weights of one channel against that channel's quantization grid (a histogram and
  the grid's levels, Eq. 2);
* the error of every output channel, split into its three sources: *pruning* (the
  weights an N:M mask removes, Eq. 4), *clipping* (kept weights outside the grid's range,
  error more than half a step) and *rounding* (everything else, error at most half a step);
* the rounding error against the uniform-noise prediction ``Delta**2 / 12`` per weight
  (``Delta`` = the step ``s`` of the weight's group and channel): a weight that is not
  near a level's edge lands anywhere within half a step, so on average its squared error
  is that of a uniform variable on ``[-Delta/2, Delta/2]``;
* the size of the layer (and, for a B0 layer, of the whole B0) relative to float32, in
  the paper's convention and exactly (:mod:`usmlite_edu.core.sizes`).

The arithmetic is the library's own: :func:`usmlite_edu.core.compress.prune_then_quantize`
(Algorithm 1: mask, then quantize the masked weight) and
:func:`usmlite_edu.core.quant.dequantize`. A setting the library cannot apply (bits outside
2..8, ``n > m``, groups that do not divide the input dimension, ...) raises the library's
``ValueError``.

:func:`ptq_wer` runs the whole B0 through post-training quantization at a setting and
returns its WER on a few utterances of ``data_small/fsdd_sample`` (the main job's
sample; :mod:`usmlite_edu.course.main_job`). :func:`build_explorer` wraps all of it in
ipywidgets controls (imported only there, so the rest needs no widget library).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from usmlite_edu.core import compress, quant, sizes
from usmlite_edu.core.sizes import ParamInfo
from usmlite_edu.core.specs import CompressionSpec, as_spec
from usmlite_edu.core.weight_stats import dense_kernels
from usmlite_edu.course.main_job import B0_IN_CLONE, SAMPLE_IN_CLONE, _score
from usmlite_edu.course.notebook_setup import find_repo
from usmlite_edu.deploy.forward import get_forward
from usmlite_edu.deploy.recognizer import Recognizer
from usmlite_edu.speech.batching import prepare
from usmlite_edu.speech.corpora import CorpusSplit, load_corpus
from usmlite_edu.speech.model import param_table
from usmlite_edu.speech.paths import in_checkout
from usmlite_edu.speech.runs import load_masks, load_run, read_config

__all__ = [
    "Setting",
    "ToyWeights",
    "B0Layer",
    "Exploration",
    "explore",
    "b0_layer_names",
    "ptq_wer",
    "divisors",
    "build_explorer",
    "ExplorerUI",
    "DEFAULT_LAYER",
    "NM_CHOICES",
]

#: The B0 kernel shown by default: the first feed-forward layer of block 0 (144 x 576).
DEFAULT_LAYER = "encoder/blocks/0/ffn1/dense1/kernel"
#: N:M patterns offered by the widgets (``None`` = dense).
NM_CHOICES = (None, "2:4", "1:4", "4:8", "2:8")


# --------------------------------------------------------------------------- settings
@dataclasses.dataclass(frozen=True)
class Setting:
    """A quantizer setting, as the explorer's controls give it.

    Attributes:
      bits: 2..8.
      symmetric: the symmetric grid ``[-qmax, qmax]`` (paper's int8/int4) or the
        asymmetric one with a zero point (paper's int2).
      groups: sub-channel groups per output channel (must divide the layer's inputs).
      clip: clip ratio in (0, 1], or ``"search"`` (per-group search, :func:`quant.search_clip`).
      nm: an N:M pattern such as ``"2:4"``, or ``None`` for dense.
    """

    bits: int = 4
    symmetric: bool = True
    groups: int = 1
    clip: float | Literal["search"] = 1.0
    nm: str | None = None

    def spec(self) -> CompressionSpec:
        """The setting as a :class:`CompressionSpec` (the library checks every field)."""
        n = m = None
        if self.nm is not None:
            parsed = CompressionSpec.parse(str(self.nm))
            if parsed.quantized or not parsed.sparse:
                raise ValueError(f"nm must be an N:M pattern such as '2:4', got {self.nm!r}")
            n, m = parsed.n, parsed.m
        clip = self.clip if isinstance(self.clip, str) else float(self.clip)
        return CompressionSpec(
            bits=self.bits,
            symmetric=bool(self.symmetric),
            sub_channels=self.groups,
            clip=clip,
            n=n,
            m=m,
        )

    def model_spec(self, in_dim: int) -> CompressionSpec:
        """The spec for a whole model, from a layer with ``in_dim`` inputs.

        Layers of B0 have 144, 288 or 576 inputs, so the same group *count* would give
        groups of different sizes; like the reduced-scale reproduction (README, "Choices
        made to scale the paper down") every layer gets the same group *size*,
        ``in_dim / groups`` (spec ``int<b>/gs<N>``).
        """
        spec = self.spec()
        spec.check_shape((in_dim, 1), f"a layer with {in_dim} inputs")
        if spec.sub_channels == 1:
            return spec
        return spec.replace(sub_channels=1, group_size=in_dim // spec.sub_channels)


@dataclasses.dataclass(frozen=True)
class ToyWeights:
    """A random ``(in, out)`` weight with a chosen distribution.

    Attributes:
      shape: ``(I, J)``.
      dist: ``"gaussian"`` or ``"student_t"`` (heavy tails; ``df`` degrees of freedom:
        the smaller, the heavier; scaled to standard deviation ``std`` when ``df > 2``,
        where the variance exists, left at ``std`` times a standard t variable otherwise).
      df: Student-t degrees of freedom (> 0).
      std: the standard deviation of the entries (before outliers).
      outliers: how many rows (``outlier_axis="input"``: one input feature, across every
        output channel) or columns (``"output"``: one whole output channel) are
        multiplied by ``outlier_scale``. Chosen at random with ``seed``.
      outlier_scale: the factor (> 0).
      seed: seeds the draw (same seed, same weight).
    """

    shape: tuple[int, int] = (256, 64)
    dist: Literal["gaussian", "student_t"] = "gaussian"
    df: float = 4.0
    std: float = 0.02
    outliers: int = 0
    outlier_scale: float = 10.0
    outlier_axis: Literal["input", "output"] = "input"
    seed: int = 0

    def __post_init__(self):
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ValueError(f"shape must be (in, out) with positive sizes, got {self.shape}")
        if self.dist not in ("gaussian", "student_t"):
            raise ValueError(f"dist must be 'gaussian' or 'student_t', got {self.dist!r}")
        if not self.df > 0:
            raise ValueError(f"df (Student-t degrees of freedom) must be > 0, got {self.df}")
        if not self.std > 0:
            raise ValueError(f"std must be > 0, got {self.std}")
        if self.outlier_axis not in ("input", "output"):
            raise ValueError(f"outlier_axis must be 'input' or 'output', got {self.outlier_axis!r}")
        dim = self.shape[0] if self.outlier_axis == "input" else self.shape[1]
        if not 0 <= self.outliers <= dim:
            raise ValueError(
                f"outliers={self.outliers}: the {self.outlier_axis} axis has {dim} "
                f"{'rows' if self.outlier_axis == 'input' else 'columns'}; choose 0..{dim}"
            )
        if not self.outlier_scale > 0:
            raise ValueError(f"outlier_scale must be > 0, got {self.outlier_scale}")

    @property
    def label(self) -> str:
        d = "Gaussian" if self.dist == "gaussian" else f"Student-t (df={self.df:g})"
        if self.outliers:
            d += f", {self.outliers} {self.outlier_axis} outlier(s) x{self.outlier_scale:g}"
        return f"toy {self.shape[0]}x{self.shape[1]} {d}"

    def outlier_index(self) -> np.ndarray:
        """Which rows (or columns) carry outliers (sorted)."""
        dim = self.shape[0] if self.outlier_axis == "input" else self.shape[1]
        rng = np.random.default_rng([self.seed, 1])
        return np.sort(rng.choice(dim, size=self.outliers, replace=False))

    def sample(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        if self.dist == "gaussian":
            z = rng.standard_normal(self.shape)
        else:
            z = rng.standard_t(self.df, self.shape)
            if self.df > 2:
                z = z / math.sqrt(self.df / (self.df - 2))
        w = (self.std * z).astype(np.float32)
        idx = self.outlier_index()
        if self.outlier_axis == "input":
            w[idx, :] *= np.float32(self.outlier_scale)
        else:
            w[:, idx] *= np.float32(self.outlier_scale)
        return w


@dataclasses.dataclass(frozen=True)
class B0Layer:
    """A dense kernel of the committed B0 (``results/cpu/b0``, or ``b0_dir``)."""

    name: str = DEFAULT_LAYER
    b0_dir: str | None = None

    @property
    def label(self) -> str:
        return f"B0 {self.name}"

    def sample(self) -> np.ndarray:
        kernels = _b0_kernels(_b0_dir(self.b0_dir))
        if self.name not in kernels:
            raise ValueError(
                f"B0 has no dense kernel {self.name!r}; choose one of b0_layer_names() "
                f"(e.g. {DEFAULT_LAYER!r})"
            )
        return kernels[self.name]


def _b0_dir(b0_dir: str | os.PathLike | None) -> str:
    if b0_dir is not None:
        return str(b0_dir)
    return str(
        in_checkout(
            B0_IN_CLONE, "the committed B0", "pass b0_dir (a run directory)", start=_clone()
        )
    )


def _clone():
    """Where to look for the clone's files: the working directory's clone or, outside one
    (e.g. a student edition written elsewhere), the clone the package was installed from
    (:func:`usmlite_edu.course.notebook_setup.find_repo`)."""
    return find_repo() or Path.cwd()


@functools.lru_cache(maxsize=2)
def _b0_run(b0_dir: str):
    return load_run(b0_dir)


@functools.lru_cache(maxsize=2)
def _b0_kernels(b0_dir: str) -> dict[str, np.ndarray]:
    run = _b0_run(b0_dir)
    kernels = dense_kernels(run.params, param_table(run.config))
    return {n: np.asarray(w, np.float32) for n, w in kernels.items()}


def b0_layer_names(b0_dir: str | os.PathLike | None = None) -> list[str]:
    """The compressible dense kernels of B0, in model order."""
    return list(_b0_kernels(_b0_dir(b0_dir)))


def divisors(n: int) -> list[int]:
    """The group counts a layer with ``n`` inputs accepts."""
    return [d for d in range(1, n + 1) if n % d == 0]


# --------------------------------------------------------------------------- the numbers
@dataclasses.dataclass(frozen=True)
class Exploration:
    """Everything the explorer draws for one setting and one weight.

    Per-channel arrays have length ``J`` and hold mean squared errors over the channel's
    ``I`` weights, so ``mse = mse_prune + mse_clip + mse_round`` (exactly, up to float
    rounding) and ``predicted_round`` is the uniform-noise prediction of ``mse_round``:
    ``sum of s**2 / 12 over the channel's kept, unclipped weights / I``.
    """

    setting: Setting
    spec: str
    source: str
    w: np.ndarray  # (I, J) float32, the weight
    w_hat: np.ndarray  # (I, J) what the compressed layer uses: dequantize(Q(W * M))
    mask: np.ndarray | None  # (I, J) N:M mask, True = kept
    scale: np.ndarray  # (g, J) step per group and channel
    clip_ratio: np.ndarray  # (g, J) the clip ratio used (the searched one with "search")
    mse: np.ndarray
    mse_prune: np.ndarray
    mse_clip: np.ndarray
    mse_round: np.ndarray
    predicted_round: np.ndarray
    channel_power: np.ndarray  # mean w**2 of each channel
    clipped: np.ndarray  # (I, J) bool: kept weights whose error exceeds half a step
    channel: int  # the channel the histogram shows
    group: int  # ... and its group
    hist_counts: np.ndarray  # the kept weights of (group, channel) per bin
    hist_pruned: np.ndarray  # ... and the pruned ones (all zero without N:M)
    hist_edges: np.ndarray
    grid_levels: np.ndarray  # the dequantized levels s * (q - z) of (group, channel)
    size_paper: float  # this layer, % of its float32 size, paper convention
    size_exact: float  # ... exact stored bits (values, scales, zero points, index)
    model_spec: str | None = None  # B0 layer: the whole-model spec ptq_wer would run
    model_size_paper: float | None = None  # ... B0's size under it, paper convention
    model_size_exact: float | None = None  # ... exact

    @property
    def rel_error(self) -> float:
        """``||W - W^||^2 / ||W||^2``: the whole layer's relative squared error."""
        return float(np.sum(self.mse) / max(np.sum(self.channel_power), 1e-300))

    @property
    def channel_rel_error(self) -> np.ndarray:
        """Each channel's ``||w_j - w^_j||^2 / ||w_j||^2``."""
        return self.mse / np.maximum(self.channel_power, 1e-300)

    @property
    def prediction_ratio(self) -> float:
        """Measured rounding error over its ``Delta**2 / 12`` prediction, whole layer."""
        p = float(np.sum(self.predicted_round))
        return float(np.sum(self.mse_round)) / p if p > 0 else float("nan")

    @property
    def clipped_fraction(self) -> float:
        return float(np.mean(self.clipped))

    @property
    def pruned_fraction(self) -> float:
        return 0.0 if self.mask is None else float(1.0 - np.mean(self.mask))

    def summary(self) -> dict[str, float | str | None]:
        """The headline numbers (what the explorer prints)."""
        return {
            "spec": self.spec,
            "source": self.source,
            "rel_error": self.rel_error,
            "rel_error_prune": float(np.sum(self.mse_prune) / np.sum(self.channel_power)),
            "rel_error_clip": float(np.sum(self.mse_clip) / np.sum(self.channel_power)),
            "rel_error_round": float(np.sum(self.mse_round) / np.sum(self.channel_power)),
            "prediction_ratio": self.prediction_ratio,
            "clipped_fraction": self.clipped_fraction,
            "pruned_fraction": self.pruned_fraction,
            "size_paper": self.size_paper,
            "size_exact": self.size_exact,
            "model_spec": self.model_spec,
            "model_size_paper": self.model_size_paper,
            "model_size_exact": self.model_size_exact,
        }


def explore(
    setting: Setting,
    source: ToyWeights | B0Layer | np.ndarray,
    *,
    channel: int | None = None,
    group: int = 0,
    bins: int = 60,
) -> Exploration:
    """Compress ``source``'s weight with ``setting`` and measure everything.

    Args:
      setting: the quantizer (:class:`Setting`).
      source: :class:`ToyWeights`, :class:`B0Layer`, or an ``(I, J)`` array.
      channel: the output channel of the histogram; default the first outlier column of
        a toy with output outliers, else the channel whose weights hold an outlier row's
        largest entry, else 0.
      group: the sub-channel group of that channel whose grid is drawn.
      bins: histogram bins over the channel's range.

    Raises:
      ValueError: the library's message for a setting it cannot apply to this weight.
    """
    spec = setting.spec()
    if isinstance(source, ToyWeights | B0Layer):
        w, label = source.sample(), source.label
    else:
        w, label = np.asarray(source, np.float32), f"array {np.shape(source)}"
    if w.ndim != 2:
        raise ValueError(f"the weight must be 2-D (in, out), got shape {w.shape}")
    i_dim, j_dim = w.shape
    mask, q = compress.prune_then_quantize(w, spec)  # checks the spec against the shape
    w_hat = np.asarray(quant.dequantize(q), np.float32)
    g = q.sub_channels
    scale = np.asarray(q.scale, np.float64)  # (g, J)
    keep = np.ones_like(w, bool) if mask is None else np.asarray(mask)

    err2 = (w.astype(np.float64) - w_hat) ** 2
    step = np.repeat(scale, i_dim // g, axis=0)  # (I, J): each weight's step
    # Rounding moves a weight by at most half a step; more than that means the grid's range
    # did not reach it (clip < 1, or the zero point's rounding shifted the range).
    clipped = keep & (np.sqrt(err2) > 0.5 * step * (1 + 1e-5) + 1e-12)
    rounded = keep & ~clipped
    mse_prune = np.sum(np.where(keep, 0.0, err2), axis=0) / i_dim
    mse_clip = np.sum(np.where(clipped, err2, 0.0), axis=0) / i_dim
    mse_round = np.sum(np.where(rounded, err2, 0.0), axis=0) / i_dim
    predicted = np.sum(np.where(rounded, step**2 / 12.0, 0.0), axis=0) / i_dim

    if channel is None:
        channel = _default_channel(source, w)
    if not 0 <= channel < j_dim:
        raise ValueError(f"channel={channel} is outside 0..{j_dim - 1}")
    if not 0 <= group < g:
        raise ValueError(f"group={group} is outside 0..{g - 1} ({g} sub-channel groups)")
    rows = slice(group * (i_dim // g), (group + 1) * (i_dim // g))
    col = w[rows, channel]
    qmin, qmax = quant.int_range(spec.bits, spec.symmetric)
    z = 0.0 if q.zero_point is None else float(q.zero_point[group, channel])
    levels = (np.arange(qmin, qmax + 1) - z) * scale[group, channel]
    lo, hi = min(float(col.min()), levels[0]), max(float(col.max()), levels[-1])
    kept_col = keep[rows, channel]
    counts, edges = np.histogram(col[kept_col], bins=bins, range=(lo, hi) if hi > lo else None)
    pruned_counts, _ = np.histogram(col[~kept_col], bins=edges)

    clip_ratio = (
        np.asarray(
            quant.search_clip(w * keep, spec.bits, symmetric=spec.symmetric, sub_channels=g),
            np.float64,
        )
        if spec.clip == "search"
        else np.full((g, j_dim), float(spec.clip))
    )
    info = [ParamInfo("explored", (i_dim, j_dim), "dense", True)]
    extra: dict[str, Any] = {}
    if isinstance(source, B0Layer):
        run = _b0_run(_b0_dir(source.b0_dir))
        mspec = setting.model_spec(i_dim)
        extra = dict(
            model_spec=str(mspec),
            model_size_paper=sizes.size_ratio(mspec, run.config, "paper"),
            model_size_exact=sizes.size_ratio(mspec, run.config, "exact"),
        )
    return Exploration(
        setting=setting,
        spec=str(spec),
        source=label,
        w=w,
        w_hat=w_hat,
        mask=None if mask is None else np.asarray(mask),
        scale=scale,
        clip_ratio=clip_ratio,
        mse=np.sum(err2, axis=0) / i_dim,
        mse_prune=mse_prune,
        mse_clip=mse_clip,
        mse_round=mse_round,
        predicted_round=predicted,
        channel_power=np.mean(w.astype(np.float64) ** 2, axis=0),
        clipped=clipped,
        channel=int(channel),
        group=int(group),
        hist_counts=counts,
        hist_pruned=pruned_counts,
        hist_edges=edges,
        grid_levels=levels,
        size_paper=sizes.size_ratio(spec, info, "paper"),
        size_exact=sizes.size_ratio(spec, info, "exact"),
        **extra,
    )


def _default_channel(source: Any, w: np.ndarray) -> int:
    if isinstance(source, ToyWeights) and source.outliers:
        idx = source.outlier_index()
        if source.outlier_axis == "output":
            return int(idx[0])
        return int(np.argmax(np.abs(w[idx[0]])))
    return 0


# --------------------------------------------------------------------------- PTQ of B0
def _sample(sample_dir: str, n: int, sample_rate: int):
    """``n`` utterances evenly spaced through the sample, first and last included (the
    sample is ordered by speaker, so a few utterances cover several speakers)."""
    split = load_corpus("fsdd_sample", sample_dir, "test", sample_rate=sample_rate)
    if not 1 <= n <= len(split):
        raise ValueError(f"utterances={n}: the sample has {len(split)}; choose 1..{len(split)}")
    idx = np.round(np.linspace(0, len(split) - 1, n)).astype(int)  # distinct for n <= len
    chosen = [split.utterances[i] for i in idx]
    return CorpusSplit(split.name, chosen, [], split.sample_rate)


@functools.lru_cache(maxsize=32)
def _ptq_cached(b0_dir: str, sample_dir: str, n: int, spec: str) -> dict[str, Any]:
    run = _b0_run(b0_dir)
    cfg, tok = run.config, run.tokenizer
    split = _sample(sample_dir, n, cfg.sample_rate)
    # One padded length and one batch, as the main job does: one compile per spec.
    longest = max(u.load(cfg.sample_rate).size for u in split.utterances) / cfg.sample_rate
    tcfg = read_config(b0_dir)[1].replace(
        bucket_seconds=(float(math.ceil(longest)),), eval_batch_size=len(split)
    )
    ds = prepare(split, tok, cfg, tcfg.bucket_seconds, keep_long=True)
    if ds.skipped:
        raise ValueError(f"{sample_dir}: unusable utterances {ds.skipped[:3]}")
    masks = load_masks(b0_dir, run, spec)  # one-shot N:M (Eq. 3) on B0's weights
    rec = Recognizer(get_forward(cfg, spec, tcfg), run.params, masks, tok, tcfg)
    done = rec.evaluate(ds)["transcripts"]
    score = _score([t["ref"] for t in done], [t["hyp"] for t in done])
    return {"spec": spec, **score, "transcripts": done}


def ptq_wer(
    spec: CompressionSpec | str | Setting,
    *,
    in_dim: int | None = None,
    utterances: int = 8,
    reference: bool = True,
    b0_dir: str | os.PathLike | None = None,
    sample_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """WER of the whole B0 under post-training quantization at ``spec``.

    B0's float weights are compressed as they are (Eqs. 1-2; N:M masks one-shot from
    them, Eq. 3; no fine-tuning), as in the main job (:func:`usmlite_edu.course.main_job.ptq_on_sample`),
    and ``utterances`` utterances of ``data_small/fsdd_sample``, evenly spaced through it
    (it is ordered by speaker), are transcribed. A :class:`Setting` needs ``in_dim`` (the explored layer's inputs):
    its groups become a group size for every layer (:meth:`Setting.model_spec`).

    Returns ``spec`` (the canonical name), ``wer``, ``cer`` (%), ``words``, ``errors``,
    ``utterances``, ``float_wer`` (B0 uncompressed on the same utterances; ``None``
    without ``reference``, which saves compiling the float model) and ``transcripts``.
    Results are cached per spec: a second call is free.
    """
    if isinstance(spec, Setting):
        if in_dim is None:
            raise ValueError("a Setting needs in_dim (the explored layer's input width)")
        spec = spec.model_spec(in_dim)
    spec = as_spec(spec)
    b0 = _b0_dir(b0_dir)
    if sample_dir is None:
        sample_dir = in_checkout(
            SAMPLE_IN_CLONE, "the FSDD test sample", "pass sample_dir", start=_clone()
        )

    run = _b0_run(b0)
    for w in param_table(run.config):
        if w.role == "dense":
            spec.check_shape(w.shape, w.name)  # refuse before compiling anything
    res = dict(_ptq_cached(b0, str(sample_dir), int(utterances), str(spec)))
    res["float_wer"] = (
        _ptq_cached(b0, str(sample_dir), int(utterances), "float")["wer"] if reference else None
    )
    return res


# --------------------------------------------------------------------------- widgets
class ExplorerUI:
    """The explorer's widgets (built by :func:`build_explorer`).

    ``widget`` is what a notebook displays; ``controls`` maps each setting's name to its
    widget (set ``controls["bits"].value = 3`` and the view updates, as moving the slider
    does); ``result`` is the latest :class:`Exploration` (``None`` after a refused
    setting, whose message is in ``error``); ``figure`` the latest figure; ``ptq`` the
    latest :func:`ptq_wer` result.
    """

    def __init__(
        self, b0_dir=None, sample_dir=None, utterances=8, toy_shape=(256, 64), reference=True
    ):
        import ipywidgets as W

        self._b0_dir, self._sample_dir, self._utterances = b0_dir, sample_dir, utterances
        self._reference = reference
        self._toy_shape = tuple(toy_shape)
        try:
            layers = b0_layer_names(b0_dir)
        except (FileNotFoundError, ValueError):
            layers = []
        self.result: Exploration | None = None
        self.error: str | None = None
        self.figure = None
        self.ptq: dict[str, Any] | None = None
        self.updates = 0
        sources = [("Gaussian (toy)", "gaussian"), ("heavy-tailed, Student-t (toy)", "student_t")]
        if layers:
            sources.append(("a layer of the committed B0", "b0"))
        # Every slider shows its value (readout), in a readout wide enough for it; the
        # columns keep their width and wrap to a new row in a narrow window rather than
        # squeezing the readouts to one character (issue 26: JupyterLab at 1400 px).
        style = {"description_width": "90px"}
        lay = W.Layout(width="330px", min_width="330px")
        slider = {"readout": True, "style": style, "layout": lay}
        c = {
            "source": W.Dropdown(options=sources, value="gaussian", description="weights"),
            "df": W.FloatLogSlider(
                value=4.0,
                base=10,
                min=math.log10(2.2),
                max=2,
                step=0.05,
                readout_format=".3g",
                **slider,
            ),
            "outliers": W.IntSlider(value=0, min=0, max=16, readout_format="d", **slider),
            "outlier_scale": W.FloatLogSlider(
                value=10.0, base=10, min=0, max=2, step=0.05, readout_format=".3g", **slider
            ),
            "outlier_axis": W.ToggleButtons(options=["input", "output"], value="input"),
            "layer": W.Dropdown(options=layers or ["(B0 not found)"]),
            "bits": W.IntSlider(value=4, min=2, max=8, readout_format="d", **slider),
            "grid": W.ToggleButtons(options=["symmetric", "asymmetric"], value="symmetric"),
            "groups": W.Dropdown(options=divisors(self._toy_shape[0]), value=1),
            "clip": W.FloatSlider(
                value=1.0, min=0.1, max=1.0, step=0.05, readout_format=".2f", **slider
            ),
            "clip_search": W.Checkbox(value=False, description="search the clip ratio"),
            # a string value for "none": a Dropdown whose value is None shows a blank box
            "nm": W.Dropdown(options=[("none", "none")] + [(p, p) for p in NM_CHOICES[1:]]),
            "channel": W.IntSlider(
                value=0, min=0, max=self._toy_shape[1] - 1, readout_format="d", **slider
            ),
        }
        labels = {
            "df": "tail df",
            "outliers": "outliers",
            "outlier_scale": "outlier x",
            "outlier_axis": "outlier axis",
            "layer": "B0 layer",
            "bits": "bits",
            "grid": "grid",
            "groups": "groups",
            "clip": "clip ratio",
            "nm": "N:M",
            "channel": "channel",
        }
        for k, wdg in c.items():
            if hasattr(wdg, "continuous_update"):  # recompute on release, not every pixel
                wdg.continuous_update = False
            if k in labels:
                wdg.description = labels[k]
            wdg.style = style
            if not isinstance(wdg, W.ToggleButtons):
                wdg.layout = W.Layout(width="330px", min_width="330px")
        # layer paths are long (encoder/blocks/0/mhsa/value/kernel): a row of their own
        c["layer"].layout = W.Layout(width="520px", min_width="520px")
        if layers and DEFAULT_LAYER in layers:
            c["layer"].value = DEFAULT_LAYER
        self.controls = c
        self.summary = W.HTML()
        self.plot = W.Output()
        self.ptq_button = W.Button(
            description="PTQ of B0: WER", button_style="primary", layout=W.Layout(width="200px")
        )
        self.ptq_out = W.HTML("<i>(choose the B0 layer source to run the whole B0)</i>")
        self.ptq_button.on_click(lambda _b: self.run_ptq())
        left = W.VBox([c[k] for k in ("source", "df", "outliers", "outlier_scale", "outlier_axis")])
        mid = W.VBox([c[k] for k in ("bits", "grid", "groups", "clip", "clip_search")])
        right = W.VBox([c["nm"], c["channel"], self.ptq_button, self.ptq_out])
        for col in (left, mid, right):
            col.layout = W.Layout(min_width="340px")
        self.widget = W.VBox(
            [
                W.HBox([left, mid, right], layout=W.Layout(flex_flow="row wrap")),
                c["layer"],
                self.summary,
                self.plot,
            ],
            layout=W.Layout(border="1px solid #ddd", padding="6px"),
        )
        self.widget.add_class("usmlite-explorer")
        for wdg in c.values():
            wdg.observe(self._changed, names="value")
        self._source_changed()
        self.update()

    # -- showing it
    def snapshot_png(self) -> bytes | None:
        """The current figure as PNG bytes (``None`` after a refused setting): the static
        picture of the explorer's state."""
        if self.figure is None or self.result is None:
            return None
        import io

        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=80)
        return buf.getvalue()

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        """``display(ui)``: the live widget where a kernel and the widget manager run, and,
        in the same output, a PNG of the current state and a line of text, which a saved
        notebook opened without a kernel, nbconvert or the book can show instead of
        "Loading widget..." (the book prefers the PNG: ``book/conf.py``)."""
        import base64

        bundle = dict(self.widget._repr_mimebundle_(include=include, exclude=exclude))
        png = self.snapshot_png()
        if png is not None:
            bundle["image/png"] = base64.b64encode(png).decode("ascii")
        r = self.result
        bundle["text/plain"] = (
            "quantization-error explorer (run the notebook for the live controls): "
            + (f"{r.spec}, relative error {r.rel_error:.4g}" if r is not None else "refused")
        )
        return bundle

    # -- reading the controls
    def setting(self) -> Setting:
        c = self.controls
        return Setting(
            bits=int(c["bits"].value),
            symmetric=c["grid"].value == "symmetric",
            groups=int(c["groups"].value),
            clip="search" if c["clip_search"].value else float(c["clip"].value),
            nm=None if c["nm"].value == "none" else c["nm"].value,
        )

    def source(self) -> ToyWeights | B0Layer:
        c = self.controls
        if c["source"].value == "b0":
            return B0Layer(c["layer"].value, None if self._b0_dir is None else str(self._b0_dir))
        return ToyWeights(
            shape=self._toy_shape,
            dist=c["source"].value,
            df=float(c["df"].value),
            outliers=int(c["outliers"].value),
            outlier_scale=float(c["outlier_scale"].value),
            outlier_axis=c["outlier_axis"].value,
        )

    def _in_dim_out_dim(self) -> tuple[int, int]:
        src = self.source()
        return src.shape if isinstance(src, ToyWeights) else src.sample().shape

    # -- reacting
    _busy = False

    def _changed(self, change) -> None:
        if self._busy:
            return
        if change["owner"] in (self.controls["source"], self.controls["layer"]):
            self._source_changed()
        if change["owner"] is self.controls["outlier_axis"] or change["owner"] in (
            self.controls["outliers"],
        ):
            self._busy = True
            self.controls["channel"].value = _default_channel(self.source(), self._weights())
            self._busy = False
        self.update()

    def _weights(self) -> np.ndarray:
        return self.source().sample()

    def _source_changed(self) -> None:
        """New shape: offer the groups that divide its inputs and its channels."""
        self._busy = True
        try:
            c = self.controls
            toy = c["source"].value != "b0"
            for k in ("df", "outliers", "outlier_scale", "outlier_axis"):
                c[k].disabled = not toy
            c["df"].disabled = c["source"].value != "student_t"
            c["layer"].disabled = toy
            self.ptq_button.disabled = toy
            i_dim, j_dim = self._in_dim_out_dim()
            opts = divisors(i_dim)
            old = c["groups"].value
            c["groups"].options = opts
            c["groups"].value = old if old in opts else 1
            c["channel"].max = j_dim - 1
            c["channel"].value = min(c["channel"].value, j_dim - 1)
        finally:
            self._busy = False

    def update(self) -> Exploration | None:
        """Recompute and redraw from the controls (what every control change calls)."""
        from IPython.display import display

        self.updates += 1
        try:
            self.result = explore(
                self.setting(), self.source(), channel=int(self.controls["channel"].value)
            )
            self.error = None
        except ValueError as e:
            self.result, self.error = None, str(e)
            self.summary.value = (
                f"<b style='color:#b00'>refused:</b> <span class='usmlite-explorer-refused'>"
                f"{_html(str(e))}</span>"
            )
            return None
        r = self.result
        self.summary.value = _summary_html(r)
        import matplotlib.pyplot as plt

        fig = draw(r)
        self.figure = fig
        with self.plot:
            self.plot.clear_output(wait=True)
            display(fig)
        plt.close(fig)
        if r.model_spec is not None:
            self.ptq_out.value = f"runs B0 as <code>{r.model_spec}</code>"
        return r

    def run_ptq(self) -> dict[str, Any] | None:
        """The button: PTQ of the whole B0 at the current setting, WER on a few utterances."""
        r = self.result
        if r is None or r.model_spec is None:
            self.ptq_out.value = "<i>choose a B0 layer (and a setting it accepts) first</i>"
            return None
        self.ptq_out.value = f"running B0 as <code>{r.model_spec}</code> ..."
        try:
            self.ptq = ptq_wer(
                r.model_spec,
                utterances=self._utterances,
                reference=self._reference,
                b0_dir=self._b0_dir,
                sample_dir=self._sample_dir,
            )
        except ValueError as e:
            self.ptq_out.value = f"<b style='color:#b00'>refused:</b> {_html(str(e))}"
            return None
        p = self.ptq
        ref = "" if p["float_wer"] is None else f"; float B0 {p['float_wer']:.2f}% on them"
        self.ptq_out.value = (
            f"<code>{p['spec']}</code>: WER <b class='usmlite-explorer-wer'>{p['wer']:.2f}</b>% "
            f"({p['errors']} of {p['words']} words, {p['utterances']} utterances){ref}"
        )
        return p


def _html(s: str) -> str:
    import html

    return html.escape(s)


def _summary_html(r: Exploration) -> str:
    s = r.summary()
    model = ""
    if r.model_spec is not None:
        model = (
            f"; whole B0 as <code>{r.model_spec}</code>: {r.model_size_paper:.2f}% (paper), "
            f"{r.model_size_exact:.2f}% (exact)"
        )
    return (
        f"<code>{r.spec}</code> on {_html(r.source)}: relative error "
        f"<b class='usmlite-explorer-error'>{s['rel_error']:.6g}</b> "
        f"(rounding {s['rel_error_round']:.3g}, clipping {s['rel_error_clip']:.3g}, "
        f"pruning {s['rel_error_prune']:.3g}); rounding / (&Delta;&sup2;/12 prediction) = "
        f"{s['prediction_ratio']:.3f}; clipped {100 * s['clipped_fraction']:.2f}% of weights; "
        f"size of this layer {r.size_paper:.2f}% (paper) / {r.size_exact:.2f}% (exact) of float32"
        f"{model}"
    )


def draw(r: Exploration):
    """The explorer's figure: histogram against the grid, per-channel error, error
    against the prediction, sizes. Returns a matplotlib ``Figure`` (not shown)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 6.6))
    ax = axes[0, 0]
    ax.stairs(r.hist_counts, r.hist_edges, fill=True, alpha=0.6, label="weights")
    if r.hist_pruned.any():
        ax.stairs(
            r.hist_counts + r.hist_pruned,
            r.hist_edges,
            baseline=r.hist_counts,
            fill=True,
            color="0.7",
            label="pruned (N:M)",
        )
    for i, v in enumerate(r.grid_levels):
        ax.axvline(v, color="C3", lw=0.8, alpha=0.8, label="grid levels" if i == 0 else None)
    ax.set(
        xlabel=f"w (channel {r.channel}, group {r.group})",
        ylabel="count",
        title=f"channel {r.channel} against its {len(r.grid_levels)}-level grid",
    )
    ax.legend(fontsize=8)

    ax = axes[0, 1]
    j = np.arange(r.mse.size)
    rms = lambda a: np.sqrt(np.maximum(a, 0))  # noqa: E731
    ax.plot(j, rms(r.mse), "k-", lw=1.2, label="total")
    ax.plot(j, rms(r.mse_round), "C0-", lw=0.8, label="rounding")
    ax.plot(j, rms(r.predicted_round), "C1--", lw=0.8, label=r"$\sqrt{\Delta^2/12}$ prediction")
    if np.any(r.mse_clip):
        ax.plot(j, rms(r.mse_clip), "C3-", lw=0.8, label="clipping")
    if np.any(r.mse_prune):
        ax.plot(j, rms(r.mse_prune), "C2-", lw=0.8, label="pruning")
    ax.set(xlabel="output channel j", ylabel="RMS error", title="error per channel")
    ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=2)

    ax = axes[1, 0]
    ok = (r.predicted_round > 0) & (r.mse_round > 0)
    ax.loglog(r.predicted_round[ok], r.mse_round[ok], "o", ms=3, alpha=0.7)
    if ok.any():
        lo = min(r.predicted_round[ok].min(), r.mse_round[ok].min())
        hi = max(r.predicted_round[ok].max(), r.mse_round[ok].max())
        ax.plot([lo, hi], [lo, hi], "k:", lw=1, label="measured = predicted")
        ax.legend(fontsize=8)
    ax.set(
        xlabel=r"predicted rounding MSE, $\Delta^2/12$ per weight",
        ylabel="measured rounding MSE",
        title=f"error vs prediction (ratio {r.prediction_ratio:.3f})",
    )

    ax = axes[1, 1]
    names = ["layer\npaper", "layer\nexact"]
    vals = [r.size_paper, r.size_exact]
    if r.model_spec is not None:
        names += ["B0\npaper", "B0\nexact"]
        vals += [r.model_size_paper, r.model_size_exact]
    bars = ax.bar(names, vals, color=["C0", "C1"] * (len(vals) // 2))
    for b, v in zip(bars, vals):
        ax.annotate(f"{v:.2f}%", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom")
    ax.set(ylabel="% of float32", title="size ratio", ylim=(0, max(vals) * 1.25))
    fig.suptitle(f"{r.spec} on {r.source}: relative error {r.rel_error:.4g}", fontsize=11)
    fig.tight_layout()
    return fig


def build_explorer(
    b0_dir: str | os.PathLike | None = None,
    sample_dir: str | os.PathLike | None = None,
    *,
    utterances: int = 8,
    toy_shape: Sequence[int] = (256, 64),
    reference: bool = True,
) -> ExplorerUI:
    """The explorer's widgets: display ``ui.widget`` in a notebook.

    Every control updates the view live; on a B0 layer the button runs :func:`ptq_wer`
    on ``utterances`` utterances (and, with ``reference``, float B0 on the same ones for
    comparison: one more compile). Without the committed B0 (outside a clone) only the toy
    sources are offered.
    """
    return ExplorerUI(b0_dir, sample_dir, utterances, tuple(toy_shape), reference)
