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
# # 09 · Deploying a compressed model: packed bytes and integer arithmetic (USM-Lite §3.2-3.4, Tables 1-3)
#
# The paper's "Model Size Ratio" column says int4 + 2:4 is 9.4% of float32, and its Eq. (1)
# multiplies integer weights. Neither happens by itself: a training checkpoint stores every
# weight as float32 with a dense mask, and the "native" QAT forward converts the integers
# back to float inside the matmul. This notebook ships the committed reduced-scale B0 the
# way a device would receive it, and measures what that buys.
#
# **After this notebook you will be able to**
#
# * pack a run's compressed weights into one safetensors file with `export.write_packed`
#   and account for every byte against the exact size column of `usmlite_edu.core.sizes`;
# * load the file back and check that it transcribes exactly as the checkpoint does;
# * run the dense layers in other arithmetic (`--arith`: bf16, weight-only int8/int4,
#   W8A8) and read their speed against the processor's matmul peaks;
# * judge the accuracy cost of integer inference with a paired interval, not a point
#   estimate;
# * say what N:M sparsity buys on a CPU (storage) and what it would need to buy speed.

# %% [markdown] tags=["header"]
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/usmlite-edu/usmlite_edu/blob/main/notebooks/09_deploying_a_compressed_model.ipynb) [![Launch on Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/usmlite-edu/usmlite_edu/main?labpath=notebooks%2F09_deploying_a_compressed_model.ipynb)
#
# * **Before you start:** Notebooks 05 and 07.
# * **Reading time:** about 25 min (its text at 120 words a minute, 5 min an exercise).
# * **Running time:** 49 s in fast mode; 59 s in full mode (AMD EPYC (cpu family 25, model 17, stepping 1), 2 cores shared with other jobs; `python scripts/time_notebooks.py`). Fast mode (`USMLITE_FAST=1`) uses tiny sizes; full mode is what the figures in the text describe.

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
import json
import struct
import tempfile
from pathlib import Path

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from usmlite_edu.core import quant, sizes
from usmlite_edu.course import answers
from usmlite_edu.deploy import export, infer
from usmlite_edu.deploy.transcribe import transcribe_files
from usmlite_edu.speech import runs

REPO = env.repo or Path.cwd()
B0 = REPO / "results" / "cpu" / "b0"  # the committed float32 B0 of the reproduction
WER_JSON = REPO / "results" / "infer" / "wer.json"  # scripts/infer_wer.py's output
assert (B0 / "config.json").exists(), f"no committed B0 at {B0}: run from a clone"
SPEC = "int4+2:4"  # the paper's E12/E13 compression
WAVS = sorted((REPO / "data_small" / "fsdd_sample").glob("*/0/*.flac"))[: 3 if FAST else 12]
REPS = 3 if FAST else 15  # timing rounds (fastest kept)
BATCHES = (8,) if FAST else (1, 32)  # utterances per forward pass
SECONDS = 2.0 if FAST else 3.5  # of audio per utterance
OUT = Path(tempfile.mkdtemp(prefix="usmlite09_"))
run = runs.load_run(B0)
cfg = run.config
print(f"B0: preset {cfg.name}, {len(WAVS)} sample recordings, timing batches {BATCHES}")

# %% [markdown]
# ## 1. Pack B0 at int4 + 2:4
#
# `export.write_packed` runs Algorithm 1 on every dense weight (one-shot 2:4 masks, since
# B0 is float: post-training compression) and writes five `U8`/`F32` tensors: the kept
# int4 values two per byte, one float32 scale per output channel, the 2-bit position of
# each kept value inside its group of 4 (the sparse-tensor-core layout), no zero points
# (the int4 grid is symmetric), and every layer the paper keeps float. The command line
# is `usmlite-edu export --checkpoint results/cpu/b0 --spec int4+2:4 --out FILE`.

# %%
path = OUT / "b0_int4_2_4.safetensors"
info = export.write_packed(B0, SPEC, path)
print(info.summary())
exact = sizes.model_size(SPEC, cfg)
assert path.stat().st_size == info.file_bytes
assert abs(info.file_bytes - exact.total / 8) / (exact.total / 8) < 0.01  # within 1%
assert info.data_bytes == exact.total / 8  # the tensor data is the exact column, byte for byte

# %% [markdown]
# ## 2. Account for every byte
#
# A safetensors file is an 8-byte little-endian header length, a JSON header, then the
# tensors' bytes. Read the header by hand and put each tensor beside the component of the
# exact size accounting it stores.

# %%
raw = path.read_bytes()
n_header = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8 : 8 + n_header])
meta = header.pop("__metadata__")
print(f"header: 8 + {n_header:,} bytes; metadata keys: {sorted(meta)}")
print(f"{'tensor':12s} {'dtype':6s} {'file bytes':>11s} {'exact bytes':>12s}")
for name, file_b, exact_b in info.by_component():
    entry = header[name]
    lo, hi = entry["data_offsets"]
    assert hi - lo == file_b
    print(f"{name:12s} {entry['dtype']:6s} {file_b:11,d} {exact_b:12,.0f}")
    assert file_b == exact_b
total = 8 + n_header + sum(b for _, b, _ in info.by_component())
assert total == len(raw)
print(
    f"total {total:,} bytes = {100 * total * 8 / exact.float_total:.2f}% of float32 B0 "
    f"(paper's estimate for int4+2:4: {sizes.size_ratio(SPEC):.1f}%)"
)

# %% [markdown]
# The `values` tensor holds half the weights at 4 bits, the `index` tensor 2 bits per kept
# value (1 bit per weight, the paper's mask estimate). What the paper's 9.4% leaves out is
# visible here: one float32 scale per output channel (a larger share on a 144-wide model
# than on a 1536-wide one) and the float layers (the subsampling convolutions, depthwise
# convolutions, norms and softmax).

# %%
parts = {n: b for n, b, _ in info.by_component() if b}
parts["header"] = 8 + n_header
fig, ax = plt.subplots(figsize=(6, 2.2))
left = 0
for name, b in parts.items():
    ax.barh(0, b / 1024, left=left, label=f"{name} ({b / 1024:.0f} KiB)")
    left += b / 1024
ax.set_yticks([])
ax.set_xlabel("KiB")
ax.set_title(
    f"B0 packed at {SPEC}: {len(raw) / 1024:.0f} KiB "
    f"(float32: {exact.float_total / 8 / 1024:.0f} KiB)"
)
ax.legend(fontsize=7, loc="lower right")
plt.show()

# %% [markdown]
# ## 3. Load it back: the same transcripts
#
# `transcribe --model FILE` rebuilds config, tokenizer and the integer weights from the
# file alone and runs Eq. (1) on them; it must print exactly what the checkpoint prints
# under the same spec.

# %%
files = [str(p) for p in WAVS]
from_file = dict(transcribe_files(None, files, model=path))
from_ckpt = dict(transcribe_files(B0, files, spec=SPEC))
for f in files:
    print(f"{Path(f).name:22s} file: {from_file[f]!r:40s} checkpoint: {from_ckpt[f]!r}")
assert from_file == from_ckpt

# %% [markdown]
# ## 4. Integer inference: how fast, and why not faster
#
# Storage is one thing; arithmetic another. `infer.time_forward` times the encoder and
# the whole forward pass in each `--arith` (the dense layers only change; attention
# scores, convolutions and norms stay float32). The ceiling of any gain is the ratio of
# the processor's matmul peaks, measured here beside them.

# %%
peaks = {
    n: infer.matmul_peak(d, n=512, reps=REPS) / 1e9
    for n, d in (("float32", jnp.float32), ("bfloat16", jnp.bfloat16), ("int8", jnp.int8))
}
print(runs.machine_info()["processor"])
for n, v in peaks.items():
    print(f"  {n:9s} peak {v:6.1f} GOP/s  x{v / peaks['float32']:.2f} float32")
times = {
    b: infer.time_forward(cfg, run.params, b, SECONDS, parts=("encoder",), reps=REPS)
    for b in BATCHES
}
for b, t in times.items():
    ref = t["float32"]["encoder"]
    print(
        f"batch {b}: encoder speed vs float32: "
        + "  ".join(f"{a} x{ref / t[a]['encoder']:.2f}" for a in infer.ARITHS)
    )
assert all(t[a]["encoder"] > 0 for t in times.values() for a in infer.ARITHS)

# %%
fig, ax = plt.subplots(figsize=(6, 3))
w = 0.8 / len(BATCHES)
for k, b in enumerate(BATCHES):
    ref = times[b]["float32"]["encoder"]
    ax.bar(
        np.arange(len(infer.ARITHS)) + k * w,
        [ref / times[b][a]["encoder"] for a in infer.ARITHS],
        w,
        label=f"batch {b}",
    )
ax.axhline(peaks["int8"] / peaks["float32"], ls="--", c="k", lw=1, label="int8 / f32 peak")
ax.axhline(peaks["bfloat16"] / peaks["float32"], ls=":", c="k", lw=1, label="bf16 / f32 peak")
ax.set_xticks(np.arange(len(infer.ARITHS)) + w / 2, infer.ARITHS)
ax.set_ylabel("encoder speed vs float32")
ax.legend(fontsize=7)
plt.show()

# %% [markdown]
# Read the plot against the two dashed lines. A model whose time went entirely into
# large matmuls would reach them; the `cpu` model's matrices are 144 wide, so at batch 1
# the dispatch of many small operations dominates, and at any batch the float parts
# (attention scores, convolutions, norms, the activations' quantization itself) do not
# speed up. Where the int8 x int8 -> int32 peak is not several times the float32 one
# (processors without AMX: on the AMD EPYC the recorded figures come from, 1.5x), W8A8
# cannot be 3x faster however the model is written; `results/infer/README.md` records what each
# processor gave (`benchmarks/bench_infer.py`). Weight-only int8 and int4 run a bfloat16
# dot after unpacking: their speed is bfloat16's, their gain is memory.
#
# ## 5. What does it cost in accuracy?
#
# `scripts/infer_wer.py` transcribed the reproduction's `test` and `unseen` sets of this
# B0 in every arith and compared each with float32 utterance by utterance (paired
# bootstrap, 95% interval). Its committed output:

# %%
wer = json.loads(WER_JSON.read_text())
print(f"measured on {wer['machine']['processor']}")
for arith, res in wer["ariths"].items():
    for split, r in res["splits"].items():
        v = r["vs_float32"]
        print(
            f"{arith:8s} {res['spec']:6s} {split:7s} WER {r['wer']:6.2f}%  diff {v['diff']:+.2f} "
            f"[{v['lo']:+.2f}, {v['hi']:+.2f}]  identical {v['same_hypotheses']}/{r['utterances']}"
        )
assert set(wer["ariths"]) == set(infer.ARITHS)

# %% [markdown]
# A difference whose interval straddles 0 and stays inside the 1-point margin is "no
# worse" at what these sets can resolve; it is not a proof of no cost (one seed, a few
# hundred words). Notice which arith moves words at all: the rounding of activations to
# int8 per token (w8a8) and of weights to int4 (w4, which is int4 PTQ of a float model).
#
# ## 6. What N:M buys on a CPU
#
# The 2:4 file is half the values plus a 2-bit index per kept value. To *run* it, the
# loader scatters the kept values back into a dense matrix: XLA:CPU has no sparse matmul,
# so 2:4 costs exactly a dense int4 model's time. The speed-up of N:M needs hardware that
# skips the zeros: NVIDIA's sparse tensor cores read exactly this layout (2 of every 4
# values along the contraction, 2-bit positions) and run 2:4 matmuls at up to twice the
# dense rate; a CPU gets the storage and the memory traffic, not the arithmetic.
#
# ## Exercises
#
# Each exercise has answer slots, variables marked `# ANSWER` that hold `...` until you
# write your answer in their place, and a check cell. The check prints `[skipped]` while a
# slot still holds `...`, `[correct]` when your answer agrees with what the code
# measures, and fails with a hint when it does not. Answer before running anything. In
# the instructor edition a worked solution (collapsed) follows each check.
#
# **Exercise 1 (prediction: bytes of another spec).** Packed at `int8` instead of
# `int4+2:4` (dense, one byte per value), how many times larger is the `values` tensor of
# B0's file? And the `index` tensor of a `int4+1:4` file, as a fraction of the 2:4 one?

# %%
my_values_ratio = 4.0  # ANSWER: values bytes of int8 / values bytes of int4+2:4
my_index_ratio = 0.5  # ANSWER: index bytes of int4+1:4 / index bytes of int4+2:4

# %%
answers.check_size_part_ratio(
    "Exercise 1a (int8 values)",
    my_values_ratio,
    "values",
    "int8",
    SPEC,
    cfg,
    hint="bits per kept value times the fraction of values kept",
)
answers.check_size_part_ratio(
    "Exercise 1b (1:4 index)",
    my_index_ratio,
    "index",
    "int4+1:4",
    SPEC,
    cfg,
    hint="how many values does each group of 4 keep, and how many bits say where one is?",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: the components of the three specs (bytes; the packed files hold exactly these,
# section 2), and the index bits per group that export stores.
for spec_name in ("int8", SPEC, "int4+1:4"):
    b = sizes.model_size(spec_name, cfg)
    print(
        f"{spec_name:9s} values {b.values / 8:9,.0f}  index {b.index / 8:8,.0f}  "
        f"scales {b.scales / 8:7,.0f}"
    )
for nm in ((2, 4), (1, 4)):
    pos, enum = export.nm_index_bits(*nm)
    print(f"{nm[0]}:{nm[1]}: {pos} bits of positions per group (enumeration: {enum})")

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** int8 keeps every value at 8 bits, int4 + 2:4 half of them at 4 bits: 8 /
# (0.5 x 4) = 4 times. 1:4 keeps one value per group of 4, each with a 2-bit position
# (`ceil(log2 4)`), so its index is half of 2:4's: 0.5 bit per weight, not the paper's flat
# 1 bit. (Enumerating the 4 patterns of 1:4 also takes 2 bits, so nothing is gained there;
# for 2:4 the 6 patterns would fit in 3 bits instead of 4, `export.nm_index_bits`.)

# %% [markdown]
# **Exercise 2 (prediction: the W8A8 rounding bound).** One token's activations have
# largest magnitude 2.54. W8A8 quantizes them per token with `quant.quantize_activations`.
# What is the largest change any one of that token's activations can suffer?

# %%
my_act_err = 2.54 / 127 / 2  # ANSWER: largest |x - dequantized x| for this token

# %%
x_tok = jnp.asarray(np.random.default_rng(1).uniform(-2.54, 2.54, (1, 4096)), jnp.float32)
x_tok = x_tok.at[0, 0].set(2.54)
xq, xs = quant.quantize_activations(x_tok)
measured = float(jnp.max(jnp.abs(xq * xs - x_tok)))
answers.check_w8a8_bound(
    "Exercise 2 (W8A8 rounding bound)",
    my_act_err,
    x_tok,
    measured,
    hint="the step is the token's largest |x| over the largest int8 level used; "
    "how far can rounding move a value?",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: the step and the bound, and the error of one dense layer it implies.
step = float(xs[0, 0])
print(f"step {step:.5f} = 2.54/127; half a step {step / 2:.5f}; measured max {measured:.5f}")
w_toy = jnp.asarray(np.random.default_rng(2).standard_normal((4096, 8)) / 64, jnp.float32)
q_toy = quant.quantize(w_toy, 8)
y8 = quant.IntKernel.from_quantized(q_toy, "w8a8").matmul(x_tok)
yf = quant.native_matmul(x_tok, q_toy)
bound = step / 2 * jnp.abs(quant.dequantize(q_toy)).sum(0)
print("output error", np.asarray(jnp.abs(y8 - yf))[0].round(4), "bound", np.asarray(bound).round(3))
assert bool(jnp.all(jnp.abs(y8 - yf) <= bound + 1e-5))

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** Symmetric per-token int8 sets the step `s = max|x| / 127` and rounds, so
# no activation moves by more than `s / 2 = 2.54 / 254 = 0.01`. The bound is per token:
# one loud token does not coarsen the others (per-tensor activation scales would). A
# layer's output moves by at most `s/2 * sum_i |w_ij|`, a worst case; errors of random
# sign mostly cancel, which is why the measured output error is far below it, and why
# `tests/test_infer.py` can bound each layer tightly.

# %% [markdown]
# ## Summary
#
# * A packed file holds the paper's compression at its real bit widths; for B0 at int4 +
#   2:4 its tensor data equals the exact size column byte for byte, and the header adds
#   well under 1% (USM-Lite Tables 1-3, "Model Size Ratio"; `docs/packed-format.md`).
# * The file transcribes exactly as the checkpoint under the same spec.
# * Integer arithmetic is an inference option, beyond the paper (which runs Eq. (1) in
#   QAT only): its speed is bounded by the processor's integer and bfloat16 matmul peaks
#   and by how much of the model is matmul; its accuracy cost is measured by a paired
#   interval (`results/infer/wer.md`).
# * N:M halves storage on a CPU; its arithmetic speed-up needs sparse tensor cores.
