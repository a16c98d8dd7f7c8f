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
# # 04 · int2: asymmetric grids, sub-channels and clipping (USM-Lite §3.2, §5.1)
#
# At two bits every level counts. The paper switches int2 to an asymmetric grid and
# splits each channel into sub-channels with their own scales (following the 2-bit
# Conformer paper, ref. [25]); that paper also clips the range.
#
# **After this notebook you will be able to**
#
# * count the levels a symmetric and an asymmetric int2 grid actually use;
# * quantize with `sub_channels=g` and relate the error to the storage overhead
#   $g/I$ (1.04%, 2.08%, 4.17% for $g=16, 32, 64$ at $I=1536$; §5.1's Table 1 prints
#   the rounded sizes 7.3%, 8.3%, 10.4% beside int2's 6.3%);
# * see the clipping trade-off (error against clip ratio is a U) and search the ratio
#   per group with `quant.search_clip`;
# * read an error-versus-overhead plot.

# %% [markdown] tags=["header"]
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/usmlite-edu/usmlite_edu/blob/main/notebooks/04_int2_subchannels_clipping.ipynb) [![Launch on Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/usmlite-edu/usmlite_edu/main?labpath=notebooks%2F04_int2_subchannels_clipping.ipynb)
#
# * **Before you start:** Notebooks 01 and 03.
# * **Reading time:** about 35 min (its text at 120 words a minute, 5 min an exercise).
# * **Running time:** 19 s in fast mode; 33 s in full mode (AMD EPYC (cpu family 25, model 17, stepping 1), 2 cores shared with other jobs; `python scripts/time_notebooks.py`). Fast mode (`USMLITE_FAST=1`) uses tiny sizes; full mode is what the figures in the text describe.

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

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from usmlite_edu.core import compress, quant, sizes
from usmlite_edu.course import answers, labs

# I = 1536 as in USM (g/I then equals the paper's g/1536); FAST has fewer channels.
I, J = (1536, 32) if FAST else (1536, 256)
GROUPS = [1, 16, 32, 64]
# Clip ratios searched in this notebook: wider than the library's default grid
# (quant.DEFAULT_CLIP_GRID, 0.3 to 1), whose lower edge binds for long int2 channels here.
CLIP_GRID = tuple(float(c) for c in np.linspace(0.05, 1.0, 39))


def quantize_searched(w, sub_channels=1):
    """Asymmetric int2 with the clip ratio searched on CLIP_GRID per (group, channel)."""
    kw = dict(symmetric=False, sub_channels=sub_channels)
    return quant.quantize(w, 2, clip=quant.search_clip(w, 2, grid=CLIP_GRID, **kw), **kw)


# %% [markdown]
# ## 1. Symmetric int2 wastes a level
#
# Two bits give four codes, $\{-2,-1,0,1\}$. The symmetric grid of Eq. (2) uses
# $[-q_{\max}, q_{\max}]$ with $q_{\max} = 2^{b-1}-1 = 1$: only three levels
# $\{-1, 0, 1\}$ (§3.2: "only three values are used"). The asymmetric grid of the
# 2-bit paper maps $[\min(w,0), \max(w,0)]$ onto all four codes
# $[q_{\min}, q_{\max}] = [-2^{b-1}, 2^{b-1}-1] = [-2, 1]$ with an integer zero point
# $z$, the code that $w = 0$ gets (so zero stays exact):
#
# $$ s = \frac{\max(w,0) - \min(w,0)}{2^b - 1},\qquad z = \mathrm{clip}\Big(\mathrm{round}\big(q_{\min} - \tfrac{\min(w,0)}{s}\big),\, q_{\min},\, q_{\max}\Big),$$
#
# $$ q = \mathrm{clip}\big(\mathrm{round}(w/s) + z,\; q_{\min},\; q_{\max}\big),\qquad \hat w = s\,(q - z).$$
#
# We use a heavy-tailed weight (Student-t), closer to trained weights than a Gaussian.

# %%
W = jax.random.t(jax.random.fold_in(key, 1), 4.0, (I, J)) * 0.02
rel_err = lambda w, w_hat: float(jnp.linalg.norm(w - w_hat) / jnp.linalg.norm(w))

q_sym = quant.quantize(W, 2, symmetric=True)
q_asym = quant.quantize(W, 2, symmetric=False)
codes_sym, counts_sym = np.unique(np.asarray(q_sym.values), return_counts=True)
codes_asym, counts_asym = np.unique(np.asarray(q_asym.values), return_counts=True)
print(
    "integer ranges: symmetric", quant.int_range(2, True), " asymmetric", quant.int_range(2, False)
)
print("symmetric codes used: ", dict(zip(codes_sym.tolist(), counts_sym.tolist())))
print("asymmetric codes used:", dict(zip(codes_asym.tolist(), counts_asym.tolist())))
print("zero points used:", np.unique(np.asarray(q_asym.zero_point)).tolist())
err_sym, err_asym = rel_err(W, quant.dequantize(q_sym)), rel_err(W, quant.dequantize(q_asym))
print(f"relative error: symmetric {err_sym:.3f}, asymmetric {err_asym:.3f}")
print(
    "the library's default for 'int2' is asymmetric:",
    compress.CompressionSpec.parse("int2").symmetric is False,
)

# %%
# Checks: 3 vs 4 codes, zero stays exact on the asymmetric grid, asym is more accurate.
assert len(codes_sym) == 3 and set(codes_sym.tolist()) == {-1, 0, 1}
assert len(codes_asym) == 4 and set(codes_asym.tolist()) == {-2, -1, 0, 1}
assert q_asym.zero_point.shape == (1, J) and q_asym.scale.shape == (1, J)
W0 = W.at[0, :].set(0.0)
assert bool(jnp.all(quant.dequantize(quant.quantize(W0, 2, symmetric=False))[0] == 0.0))
assert err_asym < err_sym
print("int2 grid checks passed")

# %% [markdown]
# Even the asymmetric grid leaves a large error: four levels for 1536 (or more) weights
# with one scale. Without more, QAT could not recover in the paper (Table 1, E4).
#
# ## 2. Sub-channels: more scales, less error
#
# Sub-channel quantization splits the $I$ inputs of every output channel into $g$
# contiguous groups of $I/g$ rows, each with its own scale and zero point. Each group's
# range is inside the channel's range, so each group's step is no larger. The price is
# $g$ float32 scales per output channel: per weight, $32g/I$ extra bits, i.e. an
# overhead of $g/I$ of the float32 size (plus a 2-bit zero point per group).

# %%
rows = []
for g in GROUPS:
    q_g = quant.quantize(W, 2, symmetric=False, sub_channels=g)
    q_gc = quantize_searched(W, g)
    rows.append(
        dict(
            g=g,
            group_rows=I // g,
            overhead=g / I,
            paper_overhead=sizes.size_ratio(f"int2/g{g}") - sizes.size_ratio("int2"),
            err=rel_err(W, quant.dequantize(q_g)),
            err_clip=rel_err(W, quant.dequantize(q_gc)),
            scale_shape=tuple(q_g.scale.shape),
        )
    )
print(
    f"{'g':>3} {'rows/group':>10} {'overhead g/I':>13} {'paper (g/1536)':>15} "
    f"{'error':>7} {'error, clip search':>19}"
)
for r in rows:
    print(
        f"{r['g']:>3} {r['group_rows']:>10} {100 * r['overhead']:>12.2f}% "
        f"{r['paper_overhead']:>14.2f}% {r['err']:>7.3f} {r['err_clip']:>19.3f}"
    )

# %%
# Checks: g scales per channel; error falls as g grows; the paper-convention overhead
# is g/1536 (1.04%, 2.08%, 4.17% for 16, 32, 64).
for r in rows:
    assert r["scale_shape"] == (r["g"], J)
    expected = 100 * r["g"] / 1536 if r["g"] > 1 else 0.0  # per-channel scales are not counted
    np.testing.assert_allclose(r["paper_overhead"], expected, rtol=1e-9, atol=1e-12)
errs = [r["err"] for r in rows]
assert all(a > b for a, b in zip(errs, errs[1:]))
print("sub-channel checks passed")

# %% [markdown]
# ## 3. Clipping: trade a few outliers for a finer step
#
# With a heavy tail, a few large weights set the range, and almost all the others fall
# into the middle levels. Shrinking the range by a ratio $\gamma<1$ clips those few but
# makes the step finer for everyone else. Too little clipping wastes levels on the tail;
# too much clips a large share of the weights: the error of one channel against $\gamma$
# is a U. `quant.search_clip` tries a grid of $\gamma$ values for each (group, channel)
# and keeps the one with the lowest squared error; $\gamma = 1$ is always on the grid, so
# the search never does worse than no clipping. The library's default grid
# (`quant.DEFAULT_CLIP_GRID`, used by `clip="search"` and the spec `int2/clipsearch`)
# stops at 0.3; this notebook searches `CLIP_GRID`, which goes down to 0.05, because a
# whole int2 channel of this heavy-tailed weight wants more clipping than 0.3 allows.

# %%
col = W[:, :1]  # one channel, shape (I, 1)
gammas = np.array(CLIP_GRID)
sq_err = lambda w, q: float(jnp.sum((w - quant.dequantize(q)) ** 2))
curve = [sq_err(col, quant.quantize(col, 2, symmetric=False, clip=float(c))) for c in gammas]
best = float(quant.search_clip(col, 2, symmetric=False, grid=CLIP_GRID)[0, 0])
best_default = float(quant.search_clip(col, 2, symmetric=False)[0, 0])
err_best = sq_err(col, quantize_searched(col))
print(
    f"search on CLIP_GRID picked gamma = {best:.3f}: squared error {err_best:.4f}, against "
    f"{curve[-1]:.4f} without clipping and {curve[0]:.4f} at gamma = {gammas[0]:.2f}"
)
default_picks = np.asarray(quant.search_clip(W, 2, symmetric=False))
print(
    f"the default grid picks {best_default:.2f} here, and its lower edge "
    f"{min(quant.DEFAULT_CLIP_GRID):.2f} for {int((default_picks == min(quant.DEFAULT_CLIP_GRID)).sum())}"
    f" of {J} channels"
)

fig, ax = plt.subplots(figsize=(6, 3.4))
ax.plot(gammas, curve, ".-", label="squared error of channel 0")
ax.axvline(best, color="C3", ls="--", label=f"search on CLIP_GRID: gamma={best:.2f}")
ax.axvspan(
    min(quant.DEFAULT_CLIP_GRID), 1.0, color="gray", alpha=0.15, label="library's default grid"
)
ax.set(
    xlabel="clip ratio gamma (1 = no clipping)",
    ylabel=r"$\|w-\hat w\|^2$",
    title="int2 (asymmetric), one channel: clipping too little or too much",
)
ax.legend(fontsize=8)
plt.show()

# %%
# Checks: the optimum is inside the searched range (a U, not a slope), the search finds
# it, and per (group, channel) the search is never worse than no clipping.
i_best = int(np.argmin(curve))
assert 0 < i_best < len(gammas) - 1 and curve[0] > curve[i_best] < curve[-1]
assert np.isclose(best, gammas[i_best], rtol=1e-6) and err_best <= curve[-1] + 1e-9
g = 16
wg = W.reshape(g, I // g, J)
per_group = lambda q: jnp.sum((wg - quant.dequantize(q).reshape(wg.shape)) ** 2, axis=1)
e_none = per_group(quant.quantize(W, 2, symmetric=False, sub_channels=g))
e_srch = per_group(quantize_searched(W, g))
assert e_none.shape == (g, J) and bool(jnp.all(e_srch <= e_none * (1 + 1e-5) + 1e-12))
print(
    f"clip search never worse; it helps {int((e_srch < e_none * (1 - 1e-6)).sum())} of "
    f"{e_none.size} groups at g={g}"
)

# %% [markdown]
# ## 4. Error versus overhead

# %%
ov = [100 * r["overhead"] for r in rows]
fig, ax = plt.subplots(figsize=(6, 3.8))
ax.plot(ov, [r["err"] for r in rows], "o-", label="asymmetric int2")
ax.plot(ov, [r["err_clip"] for r in rows], "s-", label="asymmetric int2, clip search")
ax.axhline(err_sym, color="gray", ls=":", label="symmetric int2, g=1")
for r, x in zip(rows, ov):
    ax.annotate(f"g={r['g']}", (x, r["err"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
ax.set_xscale("log")
ax.set(
    xlabel="scale overhead g/I (% of float32 size)",
    ylabel="relative error",
    title=f"int2 on a {I}x{J} weight",
)
ax.legend(fontsize=8)
plt.show()
gains = {r["g"]: r["err"] - r["err_clip"] for r in rows}
print("error removed by the clip search:", {g: round(v, 3) for g, v in gains.items()})
assert gains[1] == max(gains.values())  # largest gain with the longest groups

# %% [markdown]
# Two observations to check in the plot: sub-channels buy accuracy at a cost that
# grows linearly in $g$, and clipping gives the largest gain where groups are long
# ($g=1$) and the tail dominates the range. How large is the overhead next to the int2
# values themselves, and what did it buy in the paper? The cell prints the paper's
# estimate and its Table 1 rows.

# %%
int2_values = sizes.size_ratio("int2")
print(f"int2 values alone: {int2_values:.2f}% of float32")
for g in GROUPS[1:]:
    extra = sizes.size_ratio(f"int2/g{g}") - int2_values
    print(
        f"g={g}: +{extra:.2f}% for scales, i.e. {100 * extra / int2_values:.0f}% on top of the values"
    )
for r in sizes.PAPER_ROWS:
    if r.exp in ("E4", "E5", "E6", "E7"):
        print(f"{r.exp} {r.description:27s} size {r.paper_ratio:5.1f}%   WER {r.paper_wer}")

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Answer.** The scales are not a rounding error next to the values: at $g=64$ they add
# about two thirds of what the int2 values themselves cost (the percentages above), and
# the size grows from E4 to E7 by the same amount. What they buy, in the paper's Table 1,
# is the difference between an unusable model (E4) and one whose WER falls with every
# doubling of $g$ (E5 to E7). On our toy weight the error falls with each doubling too
# (section 2's table), while the cost doubles each time.

# %% [markdown]
# ## Exercises
#
# Each exercise has answer slots, variables marked `# ANSWER` that hold `...` until you
# write your answer in their place, and a check cell. The check prints `[skipped]` while a
# slot still holds `...`, `[correct]` when your answer agrees with what the code
# measures, and fails with a hint when it does not. Answer before running anything. In
# the instructor edition a worked solution (collapsed) follows each check.
#
# **Exercise 1 (prediction: the price of 128 groups).** In the paper's convention, how
# many percent of the float32 model does int2 with $g = 128$ sub-channels add for its
# scales, on top of the int2 values? (Two decimals are enough.)

# %%
my_overhead_g128 = 100 * 128 / 1536  # ANSWER: percent of the float32 size

# %%
answers.check_size_ratio(
    "Exercise 1 (the price of 128 groups)",
    my_overhead_g128,
    "int2/g128",
    relative_to="int2",
    abs_tol=0.005,
    hint="one float32 scale per group of I / g weights; the paper takes I = 1536 for "
    "every matrix (section 2's table)",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: 32 bits per group of 1536 / g weights, against 2 bits per weight.
for g in (16, 32, 64, 128):
    extra = 100 * (32 / (1536 // g)) / 32
    assert abs(extra - (sizes.size_ratio(f"int2/g{g}") - sizes.size_ratio("int2"))) < 1e-9
    print(f"g={g:3d}: groups of {1536 // g:3d} weights, scales {extra:5.2f}% of float32")
print(
    f"int2 values: {sizes.size_ratio('int2'):.2f}%; int2/g128 in all "
    f"{sizes.size_ratio('int2/g128'):.2f}%; int4 without sub-channels {sizes.size_ratio('int4'):.2f}%"
)

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** A group of $1536/g$ weights shares one float32 scale, i.e.
# $32g/1536$ extra bits per weight, or $g/1536$ of the float32 size: $128/1536 \approx 8.3\%$.
# That is more than the int2 values themselves: at $g=128$ a weight costs more for its
# scale than for its value, and the whole of int2/g128 is larger than int4 without
# sub-channels (both printed above), which has 15 levels to its 4. The paper stops at
# $g = 64$.

# %% [markdown]
# **Exercise 2 (prediction: more scales or a better grid?).** Is symmetric int2 with 64
# sub-channels (three levels, four times the scales) a substitute for the asymmetric
# grid with 16? Predict which of the two has the lower relative error on `W`.
#
# Answer with a pair: your choice, and the number it follows from, the median over `W`'s
# weights of the step a weight gets under symmetric g=64 divided by the step it gets
# under asymmetric g=16 (the grids below as `(bits, symmetric, sub_channels)`;
# `answers.median_step_ratio` reads the steps off `quant.quantize`'s scales).

# %%
SYM64, ASYM16 = (2, True, 64), (2, False, 16)
my_more_accurate = ("asymmetric g=16", answers.median_step_ratio(W, SYM64, ASYM16))  # ANSWER

# %%
answers.check_grid_choice(
    "Exercise 2 (more scales or a better grid?)",
    my_more_accurate,
    W,
    {"symmetric g=64": SYM64, "asymmetric g=16": ASYM16},
    hint="count the levels each grid can use per group, and compare with what four "
    "times shorter groups buy (section 2's table)",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: symmetric and asymmetric int2 at every group count, with the paper-convention
# scale overhead.
print(f"{'g':>4} {'overhead':>9} {'symmetric':>10} {'asymmetric':>11}")
sym_errs, asym_errs = {}, {}
for g in (1, 16, 32, 64, 128, 256):
    sym_errs[g] = rel_err(W, quant.dequantize(quant.quantize(W, 2, sub_channels=g)))
    asym_errs[g] = rel_err(
        W, quant.dequantize(quant.quantize(W, 2, symmetric=False, sub_channels=g))
    )
    print(f"{g:4d} {100 * g / 1536:8.2f}% {sym_errs[g]:10.3f} {asym_errs[g]:11.3f}")
catch_up = min((g for g in sym_errs if sym_errs[g] <= asym_errs[16]), default=None)
print("smallest g at which symmetric matches asymmetric g=16:", catch_up)
print(
    f"median step, symmetric g=64 / asymmetric g=16: {answers.median_step_ratio(W, SYM64, ASYM16):.2f}"
)
assert all(sym_errs[g] > asym_errs[g] for g in sym_errs)

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** No: at every group count the symmetric grid is worse than the
# asymmetric one with the same groups, and it needs many times more scales to match
# asymmetric $g=16$ (the table above). The symmetric grid throws away one of the four
# codes everywhere, and a group's scale cannot give that code back: the median step
# printed last is how much coarser its grid stays, even with four times the scales,
# because a symmetric grid of three levels spans $[-\max|w|, \max|w|]$ with two steps
# where the asymmetric one spans $[\min, \max]$ with three. The asymmetric grid
# costs one small integer zero point per group and uses all four codes. For int2, a
# better grid is cheaper than more scales; that is why the paper (following the 2-bit
# Conformer paper) switches int2 to the asymmetric grid and only then adds sub-channels.

# %% [markdown]
# **Exercise 3 (prediction: which groups get clipped harder?).** The search picks a
# clip ratio per (group, channel). With $g = 64$ groups of 24 rows, is the median ratio
# it picks `"larger"` or `"smaller"` than with whole channels ($g = 1$, 1536 rows)?
# Answer with a pair: your choice, and the reason as a number: the median, over the
# 24-row groups of every channel, of a group's $\max|w|$ divided by its RMS (within 5%;
# a whole channel's is about 7).

# %%
my_g64_ratio = ("larger", 2.6)  # ANSWER: ("larger" or "smaller", median max|w| / RMS)

# %%
answers.check_group_clipping(
    "Exercise 3 (which groups get clipped harder?)",
    my_g64_ratio,
    W,
    CLIP_GRID,
    64,
    hint="the range of a group is set by its largest |w|; how does the largest of n "
    "heavy-tailed draws grow with n?",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: median clip ratio and the range of a group relative to its typical weight.
print(f"{'g':>3} {'rows':>5} {'median gamma':>13} {'median max|w| / RMS':>20}")
medians = []
for g in GROUPS:
    wg = np.asarray(W).reshape(g, I // g, J)
    ratio = np.median(np.abs(wg).max(axis=1) / np.sqrt((wg**2).mean(axis=1)))
    gam = float(
        jnp.median(quant.search_clip(W, 2, symmetric=False, sub_channels=g, grid=CLIP_GRID))
    )
    medians.append(gam)
    print(f"{g:3d} {I // g:5d} {gam:13.2f} {ratio:20.1f}")
assert all(a <= b for a, b in zip(medians, medians[1:]))

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** Shorter groups are clipped less (their ratio is closer to 1). The
# largest of $n$ draws from a heavy-tailed distribution grows quickly with $n$: a whole
# channel of 1536 weights almost always contains a few far-out weights, so its range is
# several times its typical weight (last column), most levels sit in the empty tail, and
# clipping hard pays. A group of 24 rarely contains such an outlier; its range is close
# to what its weights need, and there is little to gain by cutting it. Sub-channels and
# clipping attack the same problem, a range set by a few weights, which is why the clip
# search helps most at $g = 1$ (section 4) and the two gains do not add up.

# %% [markdown]
# ## Lab (implement it): the asymmetric quantizer
#
# Write the asymmetric grid of section 1 yourself, with its zero point and a clip ratio:
# `my_asym_quant(w, bits, clip)` returns the dequantized weight $\hat w = s\,(q - z)$, per
# output channel, with the range $[\mathrm{clip}\cdot\min(w,0),\ \mathrm{clip}\cdot
# \max(w,0)]$ spread over the $2^b$ codes $[-2^{b-1}, 2^{b-1}-1]$. The check compares it
# with `quant.dequantize(quant.quantize(w, bits, symmetric=False, clip=clip))` on 12
# random weights, each with one channel that has no negative weight; the **stretch** level
# adds a channel of zeros.


# %%
def my_asym_quant(w, bits, clip):
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    lo = jnp.minimum(w.min(axis=0), 0.0) * clip  # ANSWER: the range's low end, per channel
    hi = jnp.maximum(w.max(axis=0), 0.0) * clip  # ANSWER: its high end
    s = jnp.where(hi > lo, (hi - lo) / (qmax - qmin), 1.0)  # ANSWER: the step
    z = jnp.clip(jnp.round(qmin - lo / s), qmin, qmax)  # ANSWER: the code that 0 maps to
    q = jnp.clip(jnp.round(w / s) + z, qmin, qmax)  # ANSWER: the codes
    return s * (q - z)


# %%
labs.check_asym_quantizer(my_asym_quant)
labs.check_asym_quantizer(my_asym_quant, "stretch")

# %% [markdown]
# ## Summary
#
# * Symmetric int2 uses three of the four codes; the asymmetric grid with an integer
#   zero point uses all four and keeps zero exact (§3.2).
# * Sub-channels shrink the error at an overhead of $g/I$ float32 per weight; the
#   paper's accounting, $g/1536$, gives 1.04%, 2.08% and 4.17% for $g = 16, 32, 64$
#   (§5.1; Table 1's rounded sizes differ from int2's 6.3% by 1.0, 2.0 and 4.1),
#   and Table 1 (printed in section 4) shows the WER falling steadily from E4 to E7.
# * Clipping the range (the 2-bit Conformer paper's search, listed as future work in
#   §5.4) trades a few clipped outliers for a finer step and never increases the
#   per-group error.
# * Notebook 05 compares these int2 variants against int4 + 2:4, which the paper finds
#   smaller *and* more accurate (E12 vs E7).
