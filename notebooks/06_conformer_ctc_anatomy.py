# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Anatomy of a Conformer-CTC (USM-Lite §3.1, §4.2, Algorithm 1)
#
# Notebooks 01-05 compressed single weight matrices. USM-Lite compresses the weights of
# a whole speech recognizer: a 2B-parameter Conformer encoder with a CTC output layer
# (the USM-CTC backbone of §3.1, fed as described in §4.2). Before compressing one
# (notebook 07), this notebook takes a small one apart and trains it on real audio
# files, following one batch from the waveform to the transcript.
#
# **After this notebook you will be able to**
#
# * load a corpus split with `usmlite_edu.speech.corpora`, listen to utterances and read their
#   transcripts;
# * compute the paper's log-mel features (§4.2: 32 ms window, 10 ms hop) with
#   `usmlite_edu.speech.frontend`, predict their shape, and name the filterbank convention;
# * build the Conformer as a Flax NNX module and inspect it by attribute access (a block's
#   attention module, its query / key / value kernels, `nnx.state(m, nnx.Param)`);
# * run the same model as the pure function of its parameters that training jits
#   (`model.split_model`, `model.forward`), and find a weight's N:M mask by the weight's
#   own path in the mask tree;
# * follow tensor shapes through the Conformer: 4x subsampling, blocks, softmax; and
#   tell the compressible (dense) weights from the float ones, for our toy and for the
#   2B model;
# * check the relative-position attention (Transformer-XL, §3.1) against its
#   definition, including Lingvo's `rel_shift` golden case;
# * train the `ci` model with `usmlite_edu.training.train` (Algorithm 1 without compression),
#   read its loss curve, and explain the early all-blank CTC plateau;
# * read a CTC posteriorgram, decode it greedily, and score it with WER and CER.

# %% [markdown] tags=["header"]
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/usmlite-edu/usmlite_edu/blob/main/notebooks/06_conformer_ctc_anatomy.ipynb) [![Launch on Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/usmlite-edu/usmlite_edu/main?labpath=notebooks%2F06_conformer_ctc_anatomy.ipynb)
#
# * **Before you start:** Notebooks 01-05; convolutions and attention at the level of a deep-learning course.
# * **Reading time:** about 60 min (its text at 120 words a minute, 5 min an exercise).
# * **Running time:** 44 s in fast mode; 2 min in full mode (AMD EPYC (cpu family 25, model 17, stepping 1), 2 cores shared with other jobs; `python scripts/time_notebooks.py`). Fast mode (`USMLITE_FAST=1`) uses tiny sizes; full mode is what the figures in the text describe.

# %% tags=["colab"]
# Colab only (elsewhere this cell does nothing): clone the repository, install the
# package and work in the clone's notebooks/ folder, as in a local checkout.
import os
import subprocess
import sys

if "google.colab" in sys.modules:
    CLONE = "/content/usmlite_edu"
    if not os.path.isdir(CLONE):
        subprocess.run(
            ["git", "clone", "--depth", "1", "https://github.com/usmlite-edu/usmlite_edu", CLONE],
            check=True,
        )
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", CLONE], check=True)
    sys.path.insert(0, CLONE)  # an editable install is seen by new kernels only
    os.chdir(f"{CLONE}/notebooks")

# %%
# %matplotlib inline
from usmlite_edu.course.notebook_setup import setup

# The same set-up cell opens every notebook of the series (usmlite_edu/course/notebook_setup.py):
# it reads USMLITE_FAST (1 = tiny sizes and few steps, what the test command uses), seeds
# NumPy and JAX, sets matplotlib defaults and finds the checkout's data_small/ and results/.
# compilation_cache=True calls usmlite_edu.enable_compilation_cache(): a *global* JAX
# setting for this whole kernel, which keeps compiled XLA programs on disk so that running
# a notebook again skips recompiling (USMLITE_JAX_CACHE=0 turns it off).
env = setup(seed=0, compilation_cache=True)
FAST, SEED, rng, key = env.fast, env.seed, env.rng, env.key
print(env.summary())

# %%
# This notebook's imports and sizes.
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx
from IPython.display import Audio, display

from usmlite_edu.course import answers, labs
from usmlite_edu.course.exercises import check_answer
from usmlite_edu.speech import (
    batching,
    corpora,
    decoding,
    frontend,
    model,
    presets,
    runs,
)
from usmlite_edu.training import train

CI = presets.get_preset("ci")  # the preset registry: CI.model (architecture), CI.train (recipe)
REPO = env.repo or Path.cwd()  # the clone (outside one, runs/ goes under the working directory)
SR = 16000  # data_small is 16 kHz, like the paper's input
STEPS = 20 if FAST else 500  # optimizer steps of the training run (section 5)
# The preset's recipe unchanged (one 3 s bucket), with a log line every 5 steps in FAST mode.
TRAIN_OVERRIDES = {"train.log_every": 5 if FAST else 10}
# The full run keeps its directory (gitignored) so notebook 07 can fine-tune from it.
RUN_DIR = Path(tempfile.mkdtemp(prefix="usmlite_nb06_")) if FAST else REPO / "runs" / "nb06"
T_TOY, H_TOY, D_TOY = (5, 2, 4) if FAST else (12, 4, 8)  # relative-attention toy sizes
print(
    f"FAST={FAST}  STEPS={STEPS}  run dir {RUN_DIR}  jax {jax.__version__} on {jax.default_backend()}"
)

# %% [markdown]
# ## 1. Listen to the data
#
# The paper fine-tunes on 1.2 million hours of voice search (§4.1); we use
# `data_small/`, 800 short synthetic utterances in the LibriSpeech layout that ship with
# the repository: connected digits ("seven three one", chapter `10`) and short sentences
# from a small grammar (chapter `20`). `corpora.load_corpus` returns a `CorpusSplit`
# of `Utterance`s whose audio is read on demand, at the sample rate we ask for.

# %%
train_split = corpora.load_corpus("data_small", env.data_small, "train", sample_rate=SR)
dev_split = corpora.load_corpus("data_small", env.data_small, "dev", sample_rate=SR)
print(train_split.summary())
print(dev_split.summary())

# one connected-digit utterance (chapter 10) and one sentence (chapter 20)
picked = [next(u for u in train_split if u.uid.split("-")[1] == ch) for ch in ("10", "20")]
waves = [u.load(SR) for u in picked]
for u, w in zip(picked, waves):
    print(f"{u.uid}  speaker {u.speaker}  {len(w) / SR:.2f} s  '{u.text}'")
    display(Audio(w, rate=SR))

# %%
assert len(train_split) > 0 and len(dev_split) > 0 and not train_split.skipped
for u, w in zip(picked, waves):
    assert w.dtype == np.float32 and w.ndim == 1 and np.abs(w).max() <= 1.0
    assert u.text == corpora.normalize_text(u.text)  # lower-case a-z, ' and spaces
train_speakers = {u.speaker for u in train_split}
assert not train_speakers & {u.speaker for u in dev_split}, "dev speakers are unseen in training"
print("audio is float32 mono in [-1, 1]; transcripts are normalised; dev speakers are held out")

# %% [markdown]
# JAX compiles one program per input shape, so training pads utterances to a few fixed
# *bucket* lengths (`usmlite_edu.speech.batching`). The `ci` preset's training recipe
# (`CI.train`, from `presets.get_preset("ci")`) uses the buckets below; the histogram
# shows why so few are enough here.

# %%
durations = np.array([len(u.load(SR)) / SR for u in train_split])
buckets = CI.train.bucket_seconds
plt.figure(figsize=(6, 2.6))
plt.hist(durations, bins=40, color="tab:blue")
for b in buckets:
    plt.axvline(b, color="k", ls="--")
plt.xlabel("duration (s)")
plt.ylabel("utterances")
plt.title(
    f"data_small/train: {len(durations)} utterances, {durations.sum() / 60:.1f} min; buckets {buckets} s"
)
plt.show()
print(
    f"shortest {durations.min():.2f} s, longest {durations.max():.2f} s; "
    f"{np.mean(durations <= buckets[0]):.0%} fit the first bucket"
)

# %%
assert durations.max() <= max(buckets), "every training utterance fits a bucket"
print("every training utterance fits the largest bucket")

# %% [markdown]
# **Optional: real recordings.** The reduced-scale reproduction trains on the Free
# Spoken Digit Dataset (FSDD, real 8 kHz recordings) turned into connected digits. The
# cell below plays two such utterances if FSDD is on this machine (in `$USMLITE_DATA`
# or `../shared/corpora/fsdd`), and skips itself otherwise; fetch it with
# `usmlite-edu data fetch fsdd --to DIR`.

# %%
candidates = [os.environ.get("USMLITE_DATA"), REPO.parent / "shared" / "corpora"]
fsdd_dir = None
for c in filter(None, candidates):
    for d in (Path(c), Path(c) / "fsdd"):
        if (d / "recordings").is_dir():
            fsdd_dir = fsdd_dir or d
if fsdd_dir is None and "google.colab" in sys.modules:  # Colab: fetch it
    from usmlite_edu.speech import fetch

    fsdd_dir = fetch.fetch("fsdd", "/content/fsdd")
if fsdd_dir is None:
    print("FSDD not found: skipping (optional)")
else:
    fsdd_dev = corpora.load_fsdd_connected(fsdd_dir, "dev", num_utterances=2, seed=SEED)
    print(fsdd_dev.summary(), "from", fsdd_dir)
    for u in fsdd_dev:
        print(f"{u.uid}  {len(u.audio) / fsdd_dev.sample_rate:.2f} s  '{u.text}'")
        display(Audio(u.audio, rate=fsdd_dev.sample_rate))
        assert set(u.text.split()) <= set(corpora.DIGIT_WORDS)

# %% [markdown]
# ## 2. From waveform to log-mel features (§4.2)
#
# The paper feeds the encoder "128-dimensional log Mel-filterbank energies, extracted
# from a 32ms window and 10ms shifts". At 16 kHz that is a 512-sample window, a
# 160-sample hop and a 512-point FFT (257 frequency bins). Without centre padding a
# signal of $L$ samples gives
#
# $$T(L) = 1 + \left\lfloor \frac{L - 512}{160} \right\rfloor \quad (L \ge 512)$$
#
# frames (`frontend.num_frames`). Our `ci` model keeps the framing but uses 40 mel
# bins instead of 128. `frontend.log_mel` works on a zero-padded batch with
# per-utterance lengths and returns the features and a frame mask;
# `frontend.normalize` then standardises each mel bin over the valid frames of each
# utterance (the trainer does both).

# %%
cfg = CI.model  # the `ci` Conformer's configuration
mel_cfg = frontend.LogMelConfig.from_model(cfg)
print(mel_cfg)
print(
    f"window {mel_cfg.win_length} samples, hop {mel_cfg.hop_length}, FFT {mel_cfg.n_fft} "
    f"({mel_cfg.num_bins} bins), {mel_cfg.num_mels} mels"
)

lengths = np.array([len(w) for w in waves], np.int32)
wave_batch = np.zeros((len(waves), lengths.max()), np.float32)  # zero-padded batch
for i, w in enumerate(waves):
    wave_batch[i, : len(w)] = w
feats, frame_mask = frontend.log_mel(wave_batch, lengths, mel_cfg)
feats_n = frontend.normalize(feats, frame_mask)
print(
    "waveforms",
    wave_batch.shape,
    "-> features",
    feats.shape,
    "mask",
    frame_mask.shape,
    "valid frames",
    np.asarray(frame_mask.sum(1)),
)

# %%
T_max = frontend.num_frames(wave_batch.shape[1], mel_cfg)
assert feats.shape == (2, T_max, cfg.num_mels) and frame_mask.shape == (2, T_max)
np.testing.assert_array_equal(np.asarray(frame_mask.sum(1)), frontend.num_frames(lengths, mel_cfg))
assert bool(jnp.all(jnp.where(frame_mask[..., None], 0.0, feats) == 0.0)), "padded frames are 0"
# an utterance's features do not depend on what it was batched with
short = int(np.argmin(lengths))
alone, _ = frontend.log_mel(waves[short][None], lengths[short : short + 1], mel_cfg)
np.testing.assert_allclose(
    np.asarray(alone[0]), np.asarray(feats[short, : alone.shape[1]]), atol=1e-4
)
# normalised: per utterance and mel bin, mean 0 and standard deviation 1 over valid frames
for b in range(2):
    x = np.asarray(feats_n[b][np.asarray(frame_mask[b])])
    np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(x.std(0), 1.0, atol=1e-2)
print("shapes, mask, padding invariance and normalisation checked")

# %%
b = 1
n_valid = int(frame_mask[b].sum())
fig, axes = plt.subplots(2, 1, figsize=(8, 4.5), sharex=True)
t_wave = np.arange(lengths[b]) / SR
axes[0].plot(t_wave, waves[b], lw=0.4)
axes[0].set_ylabel("amplitude")
axes[0].set_title(f"'{picked[b].text}'")
t_frames = (np.arange(n_valid) * mel_cfg.hop_length + mel_cfg.win_length / 2) / SR  # frame centres
im = axes[1].imshow(
    np.asarray(feats[b, :n_valid]).T,
    origin="lower",
    aspect="auto",
    extent=[t_frames[0], t_frames[-1], -0.5, cfg.num_mels - 0.5],
    cmap="magma",
)
axes[1].set_ylabel("mel bin")
axes[1].set_xlabel("time (s)")
axes[1].grid(False)
fig.colorbar(im, ax=axes, label="log mel energy", shrink=0.6)
plt.show()

# %% [markdown]
# ### The mel filterbank and its convention
#
# Each mel bin is a triangle over the FFT bins, centred on points equally spaced on the
# mel scale. Two conventions are common: librosa's default (Slaney scale, filters
# normalised to unit area) and the **TF/Lingvo convention (HTK scale
# $2595\log_{10}(1 + f/700)$, no normalisation: every triangle peaks at 1)**, which
# `usmlite_edu` uses, as the paper's Lingvo/Praxis code base does. Mixing the two gives
# features that differ by a per-bin scale and a warped frequency axis, so a checkpoint
# trained with one must be served with the same one.

# %%
fb = frontend.mel_filterbank(mel_cfg)  # (n_fft // 2 + 1, num_mels)
freqs = np.arange(mel_cfg.num_bins) * SR / mel_cfg.n_fft
plt.figure(figsize=(8, 2.8))
plt.plot(freqs, fb, lw=0.8)
plt.xlabel("frequency (Hz)")
plt.ylabel("weight")
plt.title(f"{cfg.num_mels} HTK mel filters, no area normalisation (TF/Lingvo)")
plt.show()
cfg_2b = presets.get_preset("usm_2b").model  # the paper's 2B model (§4.2)
fb_2b = frontend.mel_filterbank(cfg_2b)
print(f"ci: {fb.shape}; usm_2b: {fb_2b.shape}, empty filters: {int((fb_2b.max(0) == 0).sum())}")

# %%
assert fb.shape == (mel_cfg.num_bins, cfg.num_mels) and fb.min() >= 0.0 and fb.max() <= 1.0
assert (fb.max(0) > 0.5).all(), "every ci filter covers at least one FFT bin near its peak"
centres = freqs[fb.argmax(0)]
assert (np.diff(centres) >= 0).all(), "centres increase with the bin index"
# The paper's 128 mels on a 512-point FFT: the lowest triangle is narrower than one
# FFT bin and catches none, so its feature is the constant log(log_floor).
assert fb_2b.shape == (257, 128) and (fb_2b.max(0) == 0).sum() == 1 and fb_2b[:, 0].max() == 0
try:
    import librosa
except ImportError:
    print("librosa not installed: comparison skipped")
else:
    ref = librosa.filters.mel(
        sr=SR, n_fft=mel_cfg.n_fft, n_mels=cfg.num_mels, htk=True, norm=None
    ).T
    np.testing.assert_allclose(fb, ref, atol=1e-6)
    slaney = librosa.filters.mel(sr=SR, n_fft=mel_cfg.n_fft, n_mels=cfg.num_mels).T
    print(
        f"equal to librosa(htk=True, norm=None); librosa's default differs by up to "
        f"{np.abs(fb - slaney).max():.2f}"
    )
print("filterbank checked")

# %% [markdown]
# ## 3. The model as an NNX module (§3.1, §4.2)
#
# `model.build_model(cfg, spec, seed=...)` builds the Conformer-CTC of §3.1 with every
# dense weight routed through one compression spec (`"float"` here; notebook 07 changes
# it):
#
# * **frontend** (§4.2): two 3x3 convolutions with stride 2 (4x fewer frames and mel
#   bins), ReLU, then a linear projection to the model dimension;
# * **Conformer blocks**: ½ feed-forward, relative-position self-attention, convolution
#   module (pointwise, GLU, depthwise kernel 5, pointwise), ½ feed-forward, LayerNorm;
# * **softmax**: one dense layer to the word-piece vocabulary, trained with CTC.
#
# The model is a Flax NNX module: an ordinary Python object whose layers are its
# attributes. Its weights are `nnx.Param` variables, created from the seed while the
# object is built, so there is no separate initialisation step. `m.encoder.blocks[0]` is
# the first Conformer block, `m.encoder.blocks[0].mhsa` its self-attention module, and
# `m.encoder.blocks[0].mhsa.query.kernel` the weight matrix of its query projection
# (`kernel[...]` reads the array out of the variable). `nnx.state(m, nnx.Param)` gathers
# every parameter of the object.

# %%
m = model.build_model(cfg, "float", seed=SEED)
block0 = m.encoder.blocks[0]  # the first Conformer block
mhsa = block0.mhsa  # ... and its self-attention module
print(
    f"{type(m).__name__}: frontend {type(m.frontend).__name__}, "
    f"encoder {len(m.encoder.blocks)} x {type(block0).__name__}, softmax {type(m.softmax).__name__}"
)
print(
    "m.encoder.blocks[0]:",
    ", ".join(
        f".{k} ({type(getattr(block0, k)).__name__})"
        for k in ("ffn1", "mhsa", "conv", "ffn2", "final_norm")
    ),
)
print("m.encoder.blocks[0].mhsa.query =", mhsa.query)  # one projection: its spec and its Params
for proj in ("query", "key", "value"):
    kernel = getattr(mhsa, proj).kernel  # an nnx.Param; kernel[...] is the jax.Array
    print(
        f"m.encoder.blocks[0].mhsa.{proj}.kernel: {type(kernel).__name__}, "
        f"shape {kernel[...].shape} (inputs, outputs), {kernel[...].dtype}"
    )
param_state = nnx.state(m, nnx.Param)
n_param_nnx = sum(x.size for x in jax.tree.leaves(param_state))
print(
    f"nnx.state(m, nnx.Param): {len(jax.tree.leaves(param_state))} arrays, {n_param_nnx:,} parameters"
)

# %%
d = cfg.model_dim
for proj in ("query", "key", "value", "out"):
    layer = getattr(mhsa, proj)
    assert layer.kernel[...].shape == (d, d) and layer.bias[...].shape == (d,), proj
assert mhsa.pos.bias is None, "the position projection has no bias"
assert mhsa.u_bias[...].shape == mhsa.v_bias[...].shape == (cfg.num_heads, cfg.head_dim)
assert cfg.num_heads * cfg.head_dim == d, "the heads split the model dimension"
assert (
    block0.ffn1.dense1.kernel[...].shape == (d, cfg.ffn_dim)
    and len(m.encoder.blocks) == cfg.num_layers
)
assert n_param_nnx == model.num_params(cfg), "nnx.state holds every parameter of the config"
print(
    f"query/key/value/out kernels are ({d}, {d}); {cfg.num_heads} heads of {cfg.head_dim}; "
    f"{n_param_nnx:,} parameters"
)

# %% [markdown]
# ### Follow the shapes
#
# Each stride-2 convolution pads one frame on each side, so $T \mapsto \lceil T/2
# \rceil$ and overall $T' = \lceil\lceil T/2\rceil/2\rceil$
# (`model.subsampled_lengths`); the frame mask is subsampled the same way. With the
# 10 ms hop one encoder frame covers 40 ms. Calling `m(feats, mask)` returns the logits
# and the output mask; wrapped in `nnx.capture(m, nnx.Intermediate,
# method_outputs=nnx.Intermediate)`, the call also returns the output of every
# submodule, filed under the submodule's path (the blocks under their integer index:
# `["encoder"]["blocks"][0]`), so we can print the shapes.

# %%
capture_all = nnx.capture(m, nnx.Intermediate, method_outputs=nnx.Intermediate)
(logits0, out_mask0), captured = capture_all(feats_n, frame_mask)
outputs = nnx.to_pure_dict(captured)  # a nested dict, like the module's attributes


def first(*path):
    # the output of the submodule at `path` (its first call)
    tree = outputs
    for name in path:
        tree = tree[name]
    return tree["__call__"][0]


last = cfg.num_layers - 1
stages = [
    ("log-mel features (B, T, F)", feats_n.shape),
    ("frontend.conv1 (B, T/2, F/2, C1)", first("frontend", "conv1").shape),
    ("frontend.conv2 (B, T/4, F/4, C2)", first("frontend", "conv2").shape),
    ("frontend.proj (B, T/4, D)", first("frontend", "proj").shape),
    (
        "encoder.blocks[0].ffn1.dense1 (B, T/4, 4D)",
        first("encoder", "blocks", 0, "ffn1", "dense1").shape,
    ),
    ("encoder.blocks[0].mhsa (B, T/4, D)", first("encoder", "blocks", 0, "mhsa").shape),
    ("encoder.blocks[0] output (B, T/4, D)", first("encoder", "blocks", 0).shape),
    (f"encoder.blocks[{last}] output (B, T/4, D)", first("encoder", "blocks", last).shape),
    ("softmax logits (B, T/4, V)", logits0.shape),
]
for name, shape in stages:
    print(f"{name:45s} {tuple(shape)}")
print("valid frames:", np.asarray(frame_mask.sum(1)), "->", np.asarray(out_mask0.sum(1)))

# %%
T_in = feats_n.shape[1]
T_sub = int(model.subsampled_lengths(T_in))
assert first("frontend", "conv1").shape == (
    2,
    -(-T_in // 2),
    -(-cfg.num_mels // 2),
    cfg.subsample_channels[0],
)
assert first("frontend", "conv2").shape == (
    2,
    T_sub,
    cfg.subsampled_mels,
    cfg.subsample_channels[1],
)
assert first("frontend", "proj").shape == (2, T_sub, cfg.model_dim)
assert first("encoder", "blocks", 0).shape == (2, T_sub, cfg.model_dim)
assert first("encoder", "blocks", 0, "ffn1", "dense1").shape == (2, T_sub, cfg.ffn_dim)
assert logits0.shape == (2, T_sub, cfg.vocab_size)
np.testing.assert_array_equal(
    np.asarray(out_mask0.sum(1)), np.asarray(model.subsampled_lengths(frame_mask.sum(1)))
)
assert abs(T_in / T_sub - 4) < 0.1, "4x subsampling in time"
print(f"{T_in} frames of 10 ms -> {T_sub} encoder frames of 40 ms")

# %% [markdown]
# ### The same model as a pure function: what the trainer runs
#
# Training needs the model as a *function* of its weights: `jax.grad` differentiates
# with respect to a function's arguments, and `jax.jit` compiles a function of arrays.
# `model.split_model(m)` cuts the object in two: a `graphdef`, the structure (which
# layers, their sizes and settings; static and hashable), and `params`, a plain nested
# dict of arrays in which a weight has the path of its attribute:
# `params["encoder"]["blocks"][0]["mhsa"]["query"]["kernel"]` is
# `m.encoder.blocks[0].mhsa.query.kernel`. `model.forward(graphdef, params, feats,
# mask)` joins them again (`nnx.merge`) and calls the module. `train.Trainer` runs
# exactly this function under `jax.jit`, after applying the N:M masks to `params`
# (Eq. 4, below). Being an ordinary pytree, `params` is what optax updates, Orbax
# saves and `jax.tree.map` transforms, and a new tree is a new model: the cell zeroes
# the softmax layer in a copy of the tree and the object `m` is untouched.

# %%
graphdef, params = model.split_model(m)
print(
    f"graphdef: {type(graphdef).__name__}; params: {type(params).__name__} with keys {list(params)}, "
    f"blocks {list(params['encoder']['blocks'])}"
)
q_kernel = params["encoder"]["blocks"][0]["mhsa"]["query"]["kernel"]
print("params['encoder']['blocks'][0]['mhsa']['query']['kernel']:", q_kernel.shape)

forward_jit = jax.jit(model.forward, static_argnums=0)  # graphdef is static (hashable)
logits_f, out_mask_f = forward_jit(graphdef, params, feats_n, frame_mask)
max_diff = float(jnp.abs(logits_f - logits0).max())
print(
    f"jit(model.forward)(graphdef, params, ...) vs the eager call m(feats, mask): "
    f"max |logit difference| {max_diff:.1e} (largest |logit| {float(jnp.abs(logits0).max()):.2f})"
)

params_zero = {**params, "softmax": jax.tree.map(jnp.zeros_like, params["softmax"])}
logits_z, _ = forward_jit(graphdef, params_zero, feats_n, frame_mask)
print(
    f"softmax zeroed in a copy of the tree: max |logit| {float(jnp.abs(logits_z).max())}; "
    f"m.softmax.kernel still has max |w| {float(jnp.abs(m.softmax.kernel[...]).max()):.2f}"
)

# %%
np.testing.assert_allclose(np.asarray(logits_f), np.asarray(logits0), rtol=1e-4, atol=1e-4)
np.testing.assert_array_equal(np.asarray(out_mask_f), np.asarray(out_mask0))
np.testing.assert_array_equal(np.asarray(q_kernel), np.asarray(mhsa.query.kernel[...]))
assert sum(x.size for x in jax.tree.leaves(params)) == n_param_nnx
assert not np.any(np.asarray(logits_z)) and np.any(np.asarray(m.softmax.kernel[...]))
print(
    "the jitted functional forward equals the eager module call to float tolerance; "
    "attribute path and dict path name the same array"
)

# %% [markdown]
# ### Which weights does USM-Lite compress?
#
# `model.param_table(cfg)` lists every parameter with its role, read off the model: each
# `nnx.Param` is created with its role and logical sharding axes as metadata. The paper applies
# quantization and N:M sparsity to the **dense** matrices (the frontend projection and
# every matrix in the blocks) and keeps the convolutions and the softmax layer in
# float "as their parameter counts are much lower" (§4.2); biases, norms and the
# attention biases $u, v$ are float too (`other`). The same list is the single source
# of the size accounting of notebook 05 and of the mesh's sharding (notebook 08), and its
# names are the paths of `params` (`encoder/blocks/0/mhsa/query/kernel`).

# %%
ws = model.param_table(cfg)
print(f"{'parameter':42s} {'shape':>14s}  role")
for w in ws:
    if not w.name.startswith("encoder/") or w.name.startswith("encoder/blocks/0/"):
        print(f"{w.name:42s} {str(w.shape):>14s}  {w.role}")
print(f"... and {cfg.num_layers - 1} more block(s) like encoder/blocks/0")


def by_role(c):
    out = {}
    for w in model.param_table(c):
        out[w.role] = out.get(w.role, 0) + w.size
    return out


shapes_nnx = model.param_shapes(m)  # {"/"-joined path of params: shape}
roles_ci, roles_2b = by_role(cfg), by_role(cfg_2b)
n_ci, n_2b = model.num_params(cfg), model.num_params(cfg_2b)
print(
    f"\nci: {n_ci:,} parameters ({len(ws)} arrays);  usm_2b: {n_2b:,} parameters "
    f"({n_2b / 1e9:.2f}B, {4 * n_2b / 1e9:.1f} GB in float32), counted without allocating it"
)
for role in ("dense", "conv", "softmax", "other"):
    print(
        f"  {role:8s} ci {100 * roles_ci[role] / n_ci:5.1f}%   usm_2b {100 * roles_2b[role] / n_2b:6.2f}%"
    )

# %%
assert {w.name: w.shape for w in ws} == shapes_nnx, "param_table agrees with the NNX model's tree"
assert sum(x.size for x in jax.tree.leaves(params)) == n_ci == sum(w.size for w in ws)
assert {w.role for w in ws if "kernel" in w.name and "/conv/pointwise" in w.name} == {"dense"}
assert {w.role for w in ws if w.name.startswith("frontend/conv")} <= {"conv", "other"}
assert n_2b > 1.8e9 and roles_2b["dense"] / n_2b > 0.98
print(
    f"compressible share: {100 * roles_ci['dense'] / n_ci:.1f}% of ci, "
    f"{100 * roles_2b['dense'] / n_2b:.2f}% of usm_2b"
)

# %%
fig, ax = plt.subplots(figsize=(6, 1.8))
colors = {"dense": "tab:blue", "conv": "tab:orange", "softmax": "tab:green", "other": "tab:gray"}
for row, (_name, roles, n) in enumerate([("usm_2b", roles_2b, n_2b), ("ci", roles_ci, n_ci)]):
    left = 0.0
    for role, c in colors.items():
        share = 100 * roles[role] / n
        ax.barh(row, share, left=left, color=c, label=role if row == 0 else None)
        left += share
ax.set_yticks([0, 1], ["usm_2b", "ci"])
ax.set_xlabel("% of parameters")
ax.legend(ncol=4, loc="upper center", bbox_to_anchor=(0.5, 1.45), frameon=False)
plt.show()

# %% [markdown]
# In the 2B model almost every parameter sits in a dense matrix, which is why
# compressing only those gives the paper's size ratios. The float share grows as
# models shrink: biases, norms and convolutions weigh more next to small matrices, and
# the softmax grows with the vocabulary (16k word pieces in the 2B model). Keep that in
# mind when reading model sizes of small models.

# %% [markdown]
# ### Pruning: the masks are a tree with the parameters' paths
#
# Notebook 07 prunes every dense matrix to 2:4 (§3.3, Eq. 3: in every group of 4
# consecutive inputs of an output channel, keep the 2 weights of largest magnitude).
# The masks form a pytree shaped like `params`: `model.one_shot_masks(params, "2:4",
# cfg)` puts a boolean mask on every compressible (`dense`) kernel and a scalar `True`
# on every other leaf (`model.compressible_mask_tree` picks them, from the roles
# above). A weight's mask is therefore found by the weight's own path, and
# `model.apply_masks(params, masks)` is Eq. (4), `W * M`, leaf by leaf; the pruned
# tree runs through the same jitted `forward`. Here on the untrained weights, to see
# the structure; notebook 07 prunes a trained model.

# %%
masks = model.one_shot_masks(params, "2:4", cfg)  # Eq. (3) on every dense kernel
mask_d1 = masks["encoder"]["blocks"][0]["ffn1"]["dense1"]["kernel"]
print(
    f"masks['encoder']['blocks'][0]['ffn1']['dense1']['kernel']: {mask_d1.shape} {mask_d1.dtype}, "
    f"{float(mask_d1.mean()):.0%} kept (m.encoder.blocks[0].ffn1.dense1.kernel is "
    f"{block0.ffn1.dense1.kernel[...].shape})"
)
print("its first 8 inputs x 6 outputs (1 = kept):\n", np.asarray(mask_d1[:8, :6]).astype(int))
print(
    "a float leaf, masks['encoder']['blocks'][0]['conv']['depthwise']['kernel'] =",
    masks["encoder"]["blocks"][0]["conv"]["depthwise"]["kernel"],
)
pruned = model.apply_masks(params, masks)  # W * M (Eq. 4)
logits_p, _ = forward_jit(graphdef, pruned, feats_n, frame_mask)
print(f"the pruned model's logits move by up to {float(jnp.abs(logits_p - logits0).max()):.2f}")

# %%
where = model.compressible_mask_tree(params, cfg)  # True on the masked leaves
BLOCK_KERNELS = [
    ("ffn1", "dense1"),
    ("ffn1", "dense2"),
    ("mhsa", "query"),
    ("mhsa", "key"),
    ("mhsa", "value"),
    ("mhsa", "pos"),
    ("mhsa", "out"),
    ("conv", "pointwise1"),
    ("conv", "pointwise2"),
    ("ffn2", "dense1"),
    ("ffn2", "dense2"),
]
for sub, layer in BLOCK_KERNELS:
    mk = np.asarray(masks["encoder"]["blocks"][0][sub][layer]["kernel"])
    w = getattr(getattr(block0, sub), layer).kernel[...]  # the same path, as attributes
    assert mk.dtype == bool and mk.shape == w.shape, (sub, layer)
    I, J = mk.shape
    assert np.all(mk.reshape(I // 4, 4, J).sum(axis=1) == 2), (
        f"blocks[0].{sub}.{layer}: not 2 of every 4 inputs"
    )
    assert np.all(np.asarray(pruned["encoder"]["blocks"][0][sub][layer]["kernel"])[~mk] == 0.0)
for mk, masked in zip(jax.tree.leaves(masks), jax.tree.leaves(where)):
    assert (np.ndim(mk) == 2) == masked and (masked or bool(mk)), (
        "a mask where dense, True elsewhere"
    )
n_masked = sum(jax.tree.leaves(where))
assert n_masked == sum(1 for w in ws if w.role == "dense")
print(
    f"{len(BLOCK_KERNELS)} kernels of encoder.blocks[0]: 2 of every 4 inputs kept, pruned weights 0; "
    f"{n_masked} masked kernels in the model, the dense ones"
)

# %% [markdown]
# ## 4. Relative-position self-attention (§3.1, Transformer-XL)
#
# USM uses "relative attention" (§3.1, ref. [32], Transformer-XL). The score of query
# $i$ for key $j$ depends on the content of both and on their *distance* $i - j$:
#
# $$\text{logit}_{ij} = (q_i + u)\cdot k_j + (q_i + v)\cdot P_{i-j},$$
#
# with learned global biases $u, v$ (one per head) and projected sinusoidal embeddings
# $P$ of the distances $-(T-1)\dots T-1$. Computing the second term pair by pair costs
# $T^2$ lookups; the efficient way multiplies every query with every distance, a
# $(T, 2T-1)$ matrix, then **shifts** each row so that column $j$ holds distance
# $i - j$: `model.rel_shift`, $\text{out}[i, j] = x[i, (T-1) + i - j]$.
#
# Lingvo's unit test pins the convention down: $T = 3$ and $x[i, r] = i + 3r$ must give
# `[[6, 3, 0], [10, 7, 4], [14, 11, 8]]`.

# %%
x_golden = np.arange(15).reshape(5, 3).T  # x[i, r] = i + 3 r, shape (T, 2T - 1)
shifted = model.rel_shift(jnp.asarray(x_golden))
print("x =\n", x_golden, "\nrel_shift(x) =\n", np.asarray(shifted))

# %%
np.testing.assert_array_equal(np.asarray(shifted), [[6, 3, 0], [10, 7, 4], [14, 11, 8]])
# the definition, for a random T: column j of row i holds distance i - j
T_r = int(rng.integers(2, 9))
xr = rng.normal(size=(T_r, 2 * T_r - 1)).astype(np.float32)
sr = np.asarray(model.rel_shift(jnp.asarray(xr)))
for i in range(T_r):
    for j in range(T_r):
        assert sr[i, j] == xr[i, (T_r - 1) + i - j]
print(f"Lingvo's golden case and the definition (T = {T_r}) hold")

# %% [markdown]
# Now the full logits. `model.relative_logits` (batched einsums and `rel_shift`, what
# the model runs) must equal `model.relative_logits_reference`, a slow double loop
# over $(i, j)$ that is the formula above written out.

# %%
kq, kk, kp, ku, kv = jax.random.split(jax.random.fold_in(key, 4), 5)
q = jax.random.normal(kq, (1, T_TOY, H_TOY, D_TOY))
k = jax.random.normal(kk, (1, T_TOY, H_TOY, D_TOY))
p = jax.random.normal(kp, (2 * T_TOY - 1, H_TOY, D_TOY))
u = jax.random.normal(ku, (H_TOY, D_TOY))
v = jax.random.normal(kv, (H_TOY, D_TOY))
fast_logits = np.asarray(model.relative_logits(q, k, p, u, v))[0]  # (H, T, T)
ref_logits = model.relative_logits_reference(
    *(np.asarray(a, np.float64) for a in (q[0], k[0], p, u, v))
)
print("logits", fast_logits.shape, " max |difference|", np.abs(fast_logits - ref_logits).max())

# %%
assert fast_logits.shape == ref_logits.shape == (H_TOY, T_TOY, T_TOY)
np.testing.assert_allclose(fast_logits, ref_logits, rtol=1e-4, atol=1e-4)
# with q = k = 0 only the position term v . P[i - j] is left: constant along diagonals
pos_only = np.asarray(model.relative_logits(0 * q, 0 * k, p, u, v))[0]
for d in range(-(T_TOY - 1), T_TOY):
    diag = np.diagonal(pos_only, offset=-d, axis1=1, axis2=2)  # entries with i - j = d
    np.testing.assert_allclose(diag, diag[:, :1] * np.ones_like(diag), rtol=1e-5, atol=1e-5)
print("relative_logits == the direct definition; the position term depends only on i - j")

# %% [markdown]
# The model masks padded keys (and, in the paper, keys more than 128 frames away on
# either side: `left_context = right_context = 128`, i.e. ±5.12 s at 40 ms per frame;
# our `ci` model, with utterances of a few seconds, uses full context).
# `model.attention_maps(m, feats, mask)` runs the model once under `nnx.capture` and
# returns the logits, the output mask and, for every block, the attention weights
# $(B, H, T', T')$ that its attention module records (`sow`) during the call. Here are
# those of the first block of the *untrained* model on the shorter utterance; section 6
# shows them again after training.

# %%
logits_a, out_mask_a, attn_maps = model.attention_maps(m, feats_n, frame_mask)
attn0 = np.asarray(attn_maps[0])  # encoder.blocks[0]: (B, H, T', T')
print(f"{len(attn_maps)} attention maps of shape {attn0.shape}")
n_out = np.asarray(out_mask0.sum(1))
b = short
fig, axes = plt.subplots(1, cfg.num_heads, figsize=(3 * cfg.num_heads, 3))
for h, ax in enumerate(axes):
    ax.imshow(attn0[b, h], cmap="viridis", origin="upper")
    ax.grid(False)
    ax.axvline(n_out[b] - 0.5, color="w", lw=0.8, ls="--")
    ax.set_title(f"head {h}")
    ax.set_xlabel("key j")
axes[0].set_ylabel("query i")
fig.suptitle(
    f"encoder.blocks[0] attention at initialisation (dashed: end of the {n_out[b]} valid frames)"
)
plt.show()

# %%
assert len(attn_maps) == cfg.num_layers and attn0.shape == (2, cfg.num_heads, T_sub, T_sub)
np.testing.assert_allclose(np.asarray(logits_a), np.asarray(logits0), rtol=1e-5, atol=1e-5)
np.testing.assert_allclose(attn0.sum(-1), 1.0, atol=1e-5)  # each row is a distribution
assert attn0[b, :, :, n_out[b] :].max() < 1e-6, "padded keys get no attention"
print(f"one map per block; rows sum to 1; padded keys of utterance {b} get weight < 1e-6")

# %% [markdown]
# ## 5. Train the `ci` model (Algorithm 1 without compression)
#
# `train.train` runs Algorithm 1 of the paper: each step computes the CTC loss of a
# batch, back-propagates and updates the weights with Adam and the transformer
# learning-rate schedule, 0.5x on the frontend and encoder, 2x on the softmax (§4.2).
# With `spec="float"` lines 4-8 (masks and quantization) do nothing: this is the
# float baseline, the analogue of the paper's B0. It starts from fresh weights
# (`model.init_params(cfg, spec, seed)`: `build_model`'s NNX initialisation, as a
# `params` dict) and jits the functional `forward` of section 3 inside the loss. The run
# writes a directory with the configuration, the tokenizer, Orbax checkpoints, the
# final parameters and `metrics.jsonl`, and returns the dev WER (greedy decoding, no
# language model). Settings of the preset can be changed with `overrides`
# (`"section.field": value`, here the log interval and, in FAST mode, the buckets).
#
# Expect a minute or two in the full mode (part of it is XLA compiling one step per
# bucket and the evaluation), less in FAST mode.

# %%
if not FAST and RUN_DIR.exists():
    shutil.rmtree(RUN_DIR)  # a fresh run, so the loss curve is this run's
t0 = time.time()
result = train.train(
    "ci",
    "data_small",
    env.data_small,
    RUN_DIR,
    steps=STEPS,
    seed=SEED,
    eval_splits=("dev",),
    overrides=TRAIN_OVERRIDES,
)
train_seconds = time.time() - t0
print(
    f"{STEPS} steps in {train_seconds:.0f} s; dev WER {result['dev']['wer']:.2f}%, "
    f"CER {result['dev']['cer']:.2f}%"
)

# %%
log_lines, final = runs.read_metrics(RUN_DIR)
steps_logged = np.array([r["step"] for r in log_lines])
losses = np.array([r["loss"] for r in log_lines])

plt.figure(figsize=(7, 3))
plt.plot(steps_logged, losses, marker=".")
plt.yscale("log")
plt.xlabel("step")
plt.ylabel("CTC loss per label")
plt.title(f"ci on data_small: dev WER {result['dev']['wer']:.1f}% after {STEPS} steps")
plt.show()
print(
    "first log lines (step, loss):",
    [(int(s), round(float(l), 2)) for s, l in zip(steps_logged[:6], losses[:6])],
)

# %%
assert final["step"] == STEPS == steps_logged[-1]
assert np.all(np.isfinite(losses)) and result["nonfinite_skipped"] == 0
assert losses[-1] < losses[0], "the loss went down"
assert 0.0 <= result["dev"]["wer"] and 0.0 <= result["dev"]["cer"]
assert result["dev"]["utterances"] == len(dev_split)
print(
    f"loss {losses[0]:.2f} -> {losses[-1]:.2f}; dev WER {result['dev']['wer']:.2f}% "
    f"on {result['dev']['utterances']} utterances"
)

# %% [markdown]
# **The all-blank plateau.** The loss falls fast in the first few dozen steps, then
# sits on a plateau: the network has learnt that the CTC blank is the right output for
# most frames (there are far more frames than labels), and emits blanks everywhere, so
# every transcript is empty and the WER is 100%. Only later does it learn *where*
# the labels go, and the loss drops again. This plateau is normal for CTC; a run that
# stops during it (the FAST mode does) decodes to empty strings.
#
# **Why is the dev WER still far from zero?** The training loss keeps falling, but the
# model is tiny, the corpus holds a quarter of an hour of speech from a few
# synthetic voices, and the dev speakers never occur in training. Two readings fit a
# high dev WER: *over-fitting* (the model learnt the training voices: its WER on
# training utterances is far below the dev WER) and *too few steps* (both are high).
# A falling loss cannot tell them apart; the WER on training utterances, measured
# beside the dev WER in section 6, does. The paper's regime is far from ours either way
# (a pre-trained 2B encoder, 1.2M hours of fine-tuning data).
#
# `runs.load_run` reads everything back from the run directory, as a `Run` (a named
# tuple): the model configuration (with the vocabulary size of the trained tokenizer),
# the compression spec, the tokenizer, the final parameters (the `params` dict of
# section 3) and the `config.json` metadata. `runs.read_config` gives the training
# settings the run used.

# %%
run = runs.load_run(RUN_DIR)
cfg_run, spec, tok, params_run, meta = run  # a Run unpacks like a 5-tuple
_, tcfg_run, _ = runs.read_config(RUN_DIR)  # the run's training settings
print(cfg_run.name, "vocab", cfg_run.vocab_size, "spec", spec, "|", tok)
print("Run fields:", run._fields, "| buckets", tcfg_run.bucket_seconds)
print("word pieces:", tok.pieces[:12], "...")

# %%
assert cfg_run.vocab_size == tok.vocab_size and tok.blank_id == 0 and tok.pieces[0] == "<blank>"
assert str(spec) == "float" and meta["preset"] == "ci"
run_shapes = model.param_shapes(cfg_run)  # built abstractly: no memory used
flat = {
    "/".join(str(k.key) for k in path): x.shape
    for path, x in jax.tree_util.tree_flatten_with_path(params_run)[0]
}
assert flat == run_shapes
print(
    f"the loaded parameters match the model of {RUN_DIR.name}: {sum(np.prod(s) for s in flat.values()):,} parameters"
)

# %% [markdown]
# ## 6. The CTC posteriorgram and its greedy path
#
# CTC gives, for every encoder frame, a distribution over the word pieces plus a
# **blank** (id 0). A path is one symbol per frame; it maps to a transcript by merging
# repeated symbols and then dropping blanks (`a a _ b b _ _ b` reads `a b b`). The
# paper decodes without a language model (§4.2); the simplest decoder, used here and
# in all our WERs, takes the most likely symbol per frame (`decoding.greedy_decode`).
#
# `train.Trainer` holds the model's `graphdef` with its jitted feature extraction and
# forward pass (`model.forward`, masks applied first); `train.get_trainer(cfg, spec,
# tcfg)` returns a cached one, here the trainer `train.train` has already compiled.
# `trainer.logits(params, masks, waveforms, lengths)` returns the logits and the
# output mask (`masks=None`: no N:M masks).

# %%
trainer = train.get_trainer(cfg_run, spec, tcfg_run)
utt = next(u for u in dev_split if u.uid.split("-")[1] == "10")  # a digit string
wave = jnp.asarray(utt.load(cfg_run.sample_rate))
wave_len = jnp.array([wave.shape[0]])
logits_u, omask_u = trainer.logits(params_run, None, wave[None], wave_len)
logp = np.asarray(jax.nn.log_softmax(logits_u[0], axis=-1))  # (T', V)
path = logp.argmax(-1)

ids = decoding.greedy_decode(np.asarray(logits_u), np.asarray(omask_u))[0]
hyp, ref = tok.decode(ids), tok.normalize(utt.text)
wer_u, cer_u = decoding.wer_cer([ref], [hyp])
print(
    f"{utt.uid}: {len(utt.load(cfg_run.sample_rate)) / cfg_run.sample_rate:.2f} s -> {logp.shape[0]} frames"
)
print("greedy path:", " ".join(tok.id_to_piece(i) if i else "_" for i in path))
print(f"REF: {ref}\nHYP: {hyp}\nWER {wer_u:.1f}%  CER {cer_u:.1f}%")

# %%
V = cfg_run.vocab_size
n_frames = int(model.subsampled_lengths(frontend.num_frames(int(wave.shape[0]), trainer.mel)))
assert logp.shape == (n_frames, V) and bool(omask_u.all())
np.testing.assert_allclose(np.exp(logp).sum(-1), 1.0, atol=1e-4)
assert all(0 < i < V for i in ids), "decoded ids are word pieces, never the blank"
assert set(ids) <= set(path.tolist()) - {0}, "every decoded piece is on the argmax path"
assert len(ids) <= int((path != 0).sum()), "merging repeats never adds symbols"
n_ref, n_hyp = len(ref.split()), len(hyp.split())
assert 0.0 <= wer_u <= 100.0 * max(n_ref, n_hyp) / n_ref
assert 0.0 <= cer_u <= 100.0 * max(len(ref), len(hyp)) / len(ref)
print(
    f"path consistent with the argmax; {len(ids)} pieces from {int((path != 0).sum())} non-blank frames"
)

# %%
# Rows: the blank, the pieces of the reference and the pieces on the greedy path, plus
# the next most probable pieces, up to 16 rows (all 48 would make the labels unreadable).
shown = [0] + [i for i in dict.fromkeys(tok.encode(ref) + path.tolist()) if i != 0]
for i in np.argsort(-logp.max(0)):
    if len(shown) >= 16:
        break
    if int(i) not in shown:
        shown.append(int(i))
rows = [0] + sorted(shown[1:])
row_of = {t: r for r, t in enumerate(rows)}
fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
im = axes[0].imshow(
    logp[:, rows].T, origin="lower", aspect="auto", cmap="magma", vmin=max(logp.min(), -20)
)
axes[0].plot(np.arange(len(path)), [row_of[int(t)] for t in path], "c.", ms=5, label="greedy path")
labels = ["<blank>"] + [repr(tok.id_to_piece(i)).strip("'") for i in rows[1:]]
axes[0].set_yticks(range(len(rows)), labels, fontsize=8)
axes[0].set_ylabel(f"token ({len(rows)} of {V})")
axes[0].grid(False)
axes[0].legend(loc="upper right")
axes[0].set_title(f"log posteriors, '{ref}' -> '{hyp}'")
fig.colorbar(im, ax=axes[0], label="log p", pad=0.01)
probs = np.exp(logp)
axes[1].plot(probs[:, 0], label="blank")
axes[1].plot(probs[:, 1:].max(-1), label="best word piece")
axes[1].set_xlabel("encoder frame (40 ms)")
axes[1].set_ylabel("p")
axes[1].legend(loc="right")
plt.show()

# %% [markdown]
# A trained CTC model is **peaky**: the blank takes almost every frame with probability
# near 1, and each word piece fires on one or two frames. (In FAST mode the model is
# still on the plateau and the whole picture is blank.)
#
# Next, the WER of the whole dev split, recomputed from the parameters on disk with
# `Trainer.evaluate`: it must reproduce what `train.train` printed.

# %%
dev_ds = batching.prepare(dev_split, tok, cfg_run, tcfg_run.bucket_seconds, keep_long=True)
dev_eval = trainer.evaluate(params_run, None, dev_ds, tok)
print(
    f"dev WER {dev_eval['wer']:.2f}% CER {dev_eval['cer']:.2f}% (train printed {result['dev']['wer']:.2f}%)"
)
for e in dev_eval["examples"][:5]:
    print(f"  REF {e['ref']!r:45s} HYP {e['hyp']!r}")

# %% [markdown]
# The same evaluation on as many *training* utterances as dev has tells the two readings
# of section 5 apart: a training WER far below the dev WER is over-fitting (the model
# knows these voices and sentences), a training WER as high as dev's is too few steps or
# too small a model. (In FAST mode both are 100%: the run stopped on the plateau.)

# %%
train_sample = corpora.CorpusSplit(
    "train (sample)", train_split.utterances[: len(dev_split)], [], train_split.sample_rate
)
train_ds = batching.prepare(train_sample, tok, cfg_run, tcfg_run.bucket_seconds, keep_long=True)
train_eval = trainer.evaluate(params_run, None, train_ds, tok)
print(
    f"WER on {len(train_sample)} training utterances {train_eval['wer']:.2f}%, "
    f"on dev {dev_eval['wer']:.2f}%: gap {dev_eval['wer'] - train_eval['wer']:+.2f} points"
)

# %%
assert dev_eval["utterances"] == result["dev"]["utterances"]
assert (
    abs(dev_eval["wer"] - result["dev"]["wer"]) < 1e-6
    and abs(dev_eval["cer"] - result["dev"]["cer"]) < 1e-6
)
print("the saved run reproduces its dev WER and CER")

# %% [markdown]
# ### What the trained attention looks at
#
# The same `model.attention_maps` as in section 4, now with the trained parameters on
# the dev utterance. `nnx.merge(trainer.graphdef, params_run)` turns the trainer's
# graphdef and the loaded `params` back into a module object (what `model.forward` does
# inside). The features come from `trainer.features` (log-mel + normalisation, as in
# training). Heads typically specialise: some attend to a narrow band around the
# diagonal (local context, like a convolution), others send every query to the same few
# frames (vertical stripes). The mean attention distance per head, compared with that
# of uniform attention, summarises it. (In FAST mode the weights are barely trained.)

# %%
feats_u, fmask_u = trainer.features(wave[None], wave_len)
m_run = nnx.merge(trainer.graphdef, params_run)  # the trained model, as an object again
_, _, maps_run = model.attention_maps(m_run, feats_u, fmask_u)
attn_t = np.asarray(maps_run[0][0])  # encoder.blocks[0], the one utterance
dist = np.abs(np.arange(n_frames)[:, None] - np.arange(n_frames)[None, :])
mean_dist = (attn_t * dist).sum(-1).mean(-1)  # per head, in encoder frames
fig, axes = plt.subplots(1, cfg_run.num_heads, figsize=(3 * cfg_run.num_heads, 3))
for h, ax in enumerate(axes):
    ax.imshow(attn_t[h], cmap="viridis")
    ax.grid(False)
    ax.set_title(f"head {h}: mean |i-j| {mean_dist[h]:.1f}")
    ax.set_xlabel("key j")
axes[0].set_ylabel("query i")
fig.suptitle(f"encoder.blocks[0] attention after {STEPS} steps, '{ref}'")
plt.show()
print(
    "mean attention distance per head (frames):",
    np.round(mean_dist, 1),
    f"(uniform attention would give {dist.mean():.1f})",
)

# %%
assert attn_t.shape == (cfg_run.num_heads, n_frames, n_frames)
np.testing.assert_allclose(attn_t.sum(-1), 1.0, atol=1e-5)
assert np.all(mean_dist >= 0) and np.all(mean_dist <= n_frames - 1)
print("trained attention rows are distributions")

# %% [markdown]
# ## 7. A speaker-independent model: spelled letters on AN4
#
# The `ci` model above learnt a few synthetic voices in a few hundred steps. The
# project's B0 for the AN4 benchmark (CMU's census database: 74 training speakers, 10
# other test speakers, spelled names, digits and a few commands; `results/an4`) is a
# Conformer-CTC of the same design at the `an4` preset's size, trained with the
# recipe chosen on held-out speakers. `Recognizer.from_run` loads its run directory:
# the forward pass, parameters, tokenizer and frontend, nothing of training. The
# utterances come from `data_small/an4_sample`, AN4's official test set shipped with
# the project (the licence is beside it).
#
# A spelled name is the clearest picture of CTC's alignment there is: each letter is a
# short, separate sound, so its word piece fires on one frame inside that sound, and the
# blank fills the frames between. Below: the log-mel features with a line at each
# emitted piece's frame, and the posteriorgram under it.

# %%
from usmlite_edu.deploy.recognizer import Recognizer

AN4_B0 = (env.results or REPO / "results") / "an4" / "b0"
an4_rec = Recognizer.from_run(AN4_B0)
AN4_SAMPLE = (env.data_small or REPO / "data_small") / "an4_sample"
an4_test = corpora.load_corpus(
    "an4_sample", AN4_SAMPLE, "test", seed=SEED, sample_rate=an4_rec.config.sample_rate
)
# the first spelled name of six or more letters (every word a single letter)
an4_utt = next(
    u for u in an4_test if len(u.text.split()) >= 6 and all(len(w) == 1 for w in u.text.split())
)
a_wave = np.asarray(an4_utt.load(an4_rec.config.sample_rate), np.float32)
# padded to the smallest training bucket that holds it, as the recognizer pads
bucket = next(
    int(b * an4_rec.config.sample_rate)
    for b in an4_rec.train_config.bucket_seconds
    if a_wave.size <= b * an4_rec.config.sample_rate
)
a_padded = np.zeros((1, bucket), np.float32)
a_padded[0, : a_wave.size] = a_wave
a_logits, a_omask = an4_rec.logits(a_padded, np.array([a_wave.size], np.int32))
a_logp = np.asarray(jax.nn.log_softmax(a_logits[0], axis=-1))[np.asarray(a_omask[0], bool)]
a_path = a_logp.argmax(-1)
a_tok = an4_rec.tokenizer
frame_s = 4 * an4_rec.forward.mel.hop_length / an4_rec.config.sample_rate  # 4x subsampling
# the frame where each emitted piece starts: a non-blank that differs from the frame before
fires = [t for t in range(len(a_path)) if a_path[t] != 0 and (t == 0 or a_path[t] != a_path[t - 1])]
a_hyp = a_tok.decode([int(a_path[t]) for t in fires])
a_ref = a_tok.normalize(an4_utt.text)
print(
    f"{an4_utt.uid} ({an4_utt.speaker}, a test speaker): {a_wave.size / an4_rec.config.sample_rate:.2f} s, {len(a_path)} frames of {1000 * frame_s:.0f} ms"
)
print(f"REF: {a_ref}\nHYP: {a_hyp}")
for t in fires:
    print(f"  {a_tok.id_to_piece(int(a_path[t]))!r:>8} at {t * frame_s:5.2f} s (frame {t})")

# %%
a_feats, a_fmask = an4_rec.forward.features(a_padded, np.array([a_wave.size], np.int32))
a_feats = np.asarray(a_feats[0])[np.asarray(a_fmask[0], bool)]
a_rows = [0] + sorted({int(i) for i in a_path if i != 0} | set(a_tok.encode(a_ref)))
fig, axes = plt.subplots(
    2, 1, figsize=(9, 5.5), sharex=True, gridspec_kw={"height_ratios": [1, 1.4]}
)
axes[0].imshow(
    a_feats.T,
    origin="lower",
    aspect="auto",
    cmap="viridis",
    extent=(
        0,
        a_feats.shape[0] * an4_rec.forward.mel.hop_length / an4_rec.config.sample_rate,
        0,
        a_feats.shape[1],
    ),
)
axes[0].set_ylabel("mel bin")
axes[0].grid(False)
axes[1].imshow(
    a_logp[:, a_rows].T,
    origin="lower",
    aspect="auto",
    cmap="magma",
    vmin=-20,
    extent=(0, len(a_path) * frame_s, -0.5, len(a_rows) - 0.5),
)
axes[1].set_yticks(
    range(len(a_rows)), ["<blank>"] + [a_tok.id_to_piece(i) for i in a_rows[1:]], fontsize=8
)
axes[1].grid(False)
for t in fires:
    for ax in axes:
        ax.axvline((t + 0.5) * frame_s, color="c", lw=0.8)
    axes[0].text(
        (t + 0.5) * frame_s,
        a_feats.shape[1] + 1,
        a_tok.id_to_piece(int(a_path[t])),
        ha="center",
        fontsize=9,
    )
axes[1].set_xlabel("time (s)")
axes[0].set_title(f"'{a_ref}' -> '{a_hyp}'", pad=16)
plt.show()

# %%
assert a_logp.shape[0] == len(a_path) and np.all(np.diff(fires) > 0)
assert a_hyp == an4_rec.transcribe(a_wave), "the path read here is the recognizer's greedy decode"
blank_share = float((a_path == 0).mean())
print(
    f"{len(fires)} pieces fired (letters and word starts) on {len(fires)} of {len(a_path)} frames; "
    f"the blank holds {100 * blank_share:.0f}% of the frames"
)

# %% [markdown]
# Each letter fires once, inside its own burst of energy in the features, just after
# `▁`, the tokenizer's mark for the start of a word (a one-letter word is two pieces:
# `▁` and the letter). The blank holds most frames: the *peaky* behaviour of section 6,
# now on speakers the model never heard. Where the transcript is wrong, the picture shows how: a letter whose piece
# never rose above the blank (a deletion), or the wrong piece firing in a letter's burst
# (a substitution; AN4's hardest pairs are the rhyming letters, *b d e g p t v*).
# `usmlite-edu eval --checkpoint results/an4/b0 --corpus an4_sample` scores all 130 test
# utterances; `results/an4/README.md` sets the WER beside ESPnet's published recipe.

# %% [markdown]
# ## Exercises
#
# Each exercise has answer slots, variables marked `# ANSWER` that hold `...` until you
# write your answer in their place, and a check cell: `[skipped]` while a slot holds
# `...`, `[correct]` when your answer agrees with what the code measures, a failure with a
# hint when it does not. Answer the predictions before running anything. In the
# instructor edition a worked solution (collapsed) follows each check.
#
# **Exercise 1 (prediction: feature shapes).** Pick a number of mel bins and a duration,
# and *predict* the shape of `frontend.log_mel` for a batch of one such waveform at
# 16 kHz (32 ms window, 10 ms hop) before running the check. Then try the paper's 128
# bins and a 2 s utterance.

# %%
my_num_mels = 80  # EXERCISE: any value from 1 to 257
my_duration_s = 1.0  # EXERCISE: any duration of at least one window (0.032 s)
my_shape = (1, 97, 80)  # ANSWER: your prediction (batch, frames, mel bins)

# %%
mel_ex = frontend.LogMelConfig.from_model(cfg.replace(num_mels=my_num_mels))
answers.check_feature_shape(
    "Exercise 1 (feature shapes)",
    my_shape,
    cfg,
    my_num_mels,
    my_duration_s,
    hint=f"frames = 1 + (samples - window) // hop, with a {mel_ex.win_length}-sample window "
    f"and a {mel_ex.hop_length}-sample hop; the last axis is the number of mel bins",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: the frame count from the window and the hop, for the paper's setting too
for s, mels in ((1.0, 80), (2.0, 128)):
    n = int(round(s * SR))
    frames = 1 + (n - mel_ex.win_length) // mel_ex.hop_length
    f, _ = frontend.log_mel(
        np.zeros((1, n), np.float32),
        np.array([n]),
        frontend.LogMelConfig.from_model(cfg.replace(num_mels=mels)),
    )
    print(f"{s} s, {mels} mels: 1 + ({n} - {mel_ex.win_length}) // {mel_ex.hop_length} = {frames}")
    assert tuple(f.shape) == (1, frames, mels)

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** A frame needs a whole window of samples, so a 1 s utterance (16,000
# samples) has $1 + \lfloor(16000 - 512)/160\rfloor = 97$ frames, not 100: the last
# window must fit inside the signal (no padding at the ends, the paper's front end). The
# number of mel bins does not change the number of frames; it is only the last axis.

# %% [markdown]
# **Exercise 2 (prediction: encoder frames and what CTC can fit).** How many encoder
# frames does the model produce for a `my_duration_s` utterance? CTC needs at least one
# frame per label plus one blank between two equal consecutive labels
# (`batching.ctc_min_frames`); utterances with fewer frames get an infinite loss and
# `batching.prepare` skips them. Predict the frames, then how many repetitions of the
# word "one" (one piece each) CTC can fit in that duration.

# %%
my_duration_s = 3.0  # EXERCISE: any duration >= 0.032 s
my_encoder_frames = 75  # ANSWER: your prediction of the encoder frames
my_max_ones = 38  # ANSWER: how many times "one" fits (pieces plus blanks between them)

# %%
one = tok.encode("one")
answers.check_encoder_frames(
    "Exercise 2a (encoder frames)",
    my_encoder_frames,
    my_duration_s,
    cfg,
    hint="T = 1 + (L - 512) // 160 log-mel frames, then two stride-2 convolutions: "
    "ceil(ceil(T / 2) / 2)",
)
answers.check_max_repeats(
    "Exercise 2b (what CTC can fit)",
    my_max_ones,
    one,
    my_duration_s,
    cfg,
    hint=f"'one' is {len(one)} piece(s); k repetitions need k * {len(one)} label frames "
    "plus a blank between each two equal neighbours",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: encoder frames for a few durations (the paper's 10 s utterance included), and
# the longest run of repeated "one"s each can hold
for s in (0.5, 1.0, 3.0, 10.0):
    n = int(round(s * SR))
    t_enc = int(model.subsampled_lengths(frontend.num_frames(n, cfg)))
    k_max = max(k for k in range(1, 400) if batching.ctc_min_frames(one * k) <= t_enc)
    print(
        f"{s:5.1f} s: {frontend.num_frames(n, cfg):4d} log-mel frames -> {t_enc:4d} "
        f"encoder frames -> at most {k_max} x 'one'"
    )

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** 3 s is 48,000 samples: $1 + \lfloor 47488/160 \rfloor = 297$ log-mel
# frames, $\lceil 297/2 \rceil = 149$, then $\lceil 149/2\rceil = 75$ encoder frames of
# 40 ms. With "one" a single piece, $k$ repetitions need $k$ label frames and $k-1$
# blanks between equal neighbours: $2k - 1 \le 75$ gives $k = 38$. Read the other way,
# CTC cannot emit the same label in two consecutive frames without a blank between them;
# at 40 ms per frame that caps a repeated label at 12.5 per second, far above speech rates,
# so subsampling by 4 is safe here. Subsampling by 8 (80 ms frames) would start to bite
# for fast speech with many repeated pieces.

# %% [markdown]
# **Exercise 3 (decode a hand-made posteriorgram).** Write a frame-level path, one
# symbol id per frame (0 = blank), whose CTC reading is `TARGET_TEXT`. The check turns
# it into a posteriorgram (log-probabilities, the path's symbol most likely in each
# frame), decodes it with `decoding.greedy_decode` and `tok.decode`, and compares. A path
# that surrounds every piece with blanks works; can you find the shortest one? Why does
# the repeated word need a blank in between?

# %%
TARGET_TEXT = "one one two"
target_ids = tok.encode(TARGET_TEXT)
print("pieces:", [tok.id_to_piece(i) for i in target_ids], "ids:", target_ids)
my_path = [0] + [s for t in target_ids for s in (t, t, 0)]  # ANSWER: a list of ids


# %%
def reads_target(path) -> bool:
    path = [int(i) for i in path]
    assert path and all(0 <= i < tok.vocab_size for i in path), "ids must be in the vocabulary"
    V = tok.vocab_size
    post = np.full((len(path), V), np.log(0.1 / (V - 1)))  # 0.1 spread over the others
    post[np.arange(len(path)), path] = np.log(0.9)
    text = tok.decode(decoding.greedy_decode(post[None], np.ones((1, len(path)), bool))[0])
    assert text == tok.normalize(TARGET_TEXT), f"your path reads {text!r}"
    return True


shortest = batching.ctc_min_frames(target_ids)
check_answer(
    "Exercise 3 (a CTC path)",
    my_path,
    accept=reads_target,
    hint="greedy CTC decoding merges equal neighbouring frames, then drops blanks (id 0)",
    correct=f"your path reads '{TARGET_TEXT}'; the shortest possible has {shortest} frames",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: a blank only between equal consecutive pieces
shortest_path = []
for t in target_ids:
    if shortest_path and shortest_path[-1] == t:
        shortest_path.append(0)
    shortest_path.append(t)
assert reads_target(shortest_path) and len(shortest_path) == shortest
print(shortest_path, "reads", repr(TARGET_TEXT), f"in {len(shortest_path)} frames")

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** Greedy CTC decoding first merges runs of the same symbol, then removes
# blanks. Without a blank, the two frames of "one one" would merge into a single "one";
# the blank separates them. Between different pieces no blank is needed, so the shortest
# path has one frame per piece plus one blank per pair of equal neighbours
# (`batching.ctc_min_frames`). A trained model's paths are much longer than this and
# mostly blank (section 5's plateau): blank is the right answer for most 40 ms frames.

# %% [markdown]
# ## Lab (implement it): greedy CTC decoding's collapse
#
# Section 6 decoded the best path by merging repeats and dropping blanks. Write that
# collapse yourself: `my_collapse(path, blank)` takes the per-frame argmax ids (a NumPy
# array) and returns the token ids, so that `[a, a, _, a]` gives `[a, a]` and `[a, a, a]`
# gives `[a]`. The check compares it with `decoding.greedy_decode` on 12 random paths; the
# **stretch** level adds empty and all-blank paths and a blank id other than 0.


# %%
def my_collapse(path, blank):
    merged = [t for i, t in enumerate(path) if i == 0 or t != path[i - 1]]  # ANSWER: repeats once
    return [int(t) for t in merged if t != blank]  # ANSWER: then without blanks


# %%
labs.check_ctc_collapse(my_collapse)
labs.check_ctc_collapse(my_collapse, "stretch")

# %% [markdown]
# ## Summary
#
# * **§4.2, the input.** 32 ms / 10 ms log-mel frames (HTK mel scale, no area
#   normalisation, the TF/Lingvo convention), `1 + (L - win) // hop` of them; two
#   stride-2 convolutions cut time (and frequency) by 4, so one encoder frame is
#   40 ms. The paper uses 128 mel bins; with its 512-point FFT the lowest filter is
#   empty.
# * **§3.1, the encoder.** Conformer blocks (½ FFN, relative-position MHSA, convolution
#   module, ½ FFN) with Transformer-XL attention $(q_i+u)\cdot k_j + (q_i+v)\cdot
#   P_{i-j}$, computed with `rel_shift` (Lingvo's convention) and checked against the
#   direct definition. USM-CTC: 32 blocks of width 1536, 16 heads, kernel 5, ±128
#   frames of attention context, 1.84B parameters, more than 98% of them in dense
#   matrices, the only ones USM-Lite compresses; convolutions and the softmax stay
#   float.
# * **The model in code.** A Flax NNX module: layers and weights are attributes
#   (`m.encoder.blocks[0].mhsa.query.kernel`). `model.split_model` gives its static
#   `graphdef` and a `params` dict with the same paths; `model.forward` is the pure
#   function that training jits and differentiates; the N:M masks are a tree with
#   those paths too, applied leaf by leaf (Eq. 4); `model.attention_maps` records
#   every block's attention with `nnx.capture`.
# * **Algorithm 1, the training loop.** CTC loss, Adam with the transformer schedule
#   and the 0.5x / 2x learning-rate multipliers; here with `spec="float"`, so the
#   mask (lines 4-7) and quantization (line 8) steps are identities. CTC first learns
#   to emit only blanks (the plateau), then where the labels go; decoding is greedy,
#   with no language model, as in the paper's evaluation.
#
# **Next: notebook 07 (compression-aware fine-tuning).** It starts from a dense
# checkpoint like the one in `runs/nb06` (`train.train(..., init=RUN_DIR,
# spec="int4+2:4")`) and runs Algorithm 1 with its masks and native quantization
# switched on, to reproduce the shape of the paper's Tables 1-3 at reduced scale.

# %%
if FAST:  # the FAST run lives in a temporary directory
    shutil.rmtree(RUN_DIR, ignore_errors=True)
