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
# # 10 · A quantization-error explorer (USM-Lite §3.2-3.4)
#
# Notebooks 01-05 took each knob of the paper's quantizer on its own. This one puts all
# of them on one panel: bits, symmetric or asymmetric grid, sub-channel groups, clip ratio,
# an N:M pattern, and the weights themselves (a Gaussian, a heavy-tailed Student-t,
# injected outliers, or a real layer of the committed B0). A few guided experiments come
# first, each with a prediction to make before you run it; the live explorer is at the end.
#
# **After this notebook you will be able to**
#
# * predict a layer's rounding error from its step size, $\Delta^2/12$ per weight, and say
#   when that prediction fails;
# * split a compressed layer's error into rounding, clipping and pruning, channel by
#   channel;
# * tell an outlier that hurts per-channel quantization (an input row) from one that does
#   not (an output column), and see sub-channel groups contain it;
# * compute a layer's size in the paper's convention and in exact stored bits;
# * run post-training quantization of the whole B0 at a setting of your choice and read
#   its WER.
#
# Everything plotted here comes from `usmlite_edu.course.explorer`, which calls the library's
# quantizer (`quant`), masks (`sparsity`), Algorithm 1 (`compress`) and size accounting
# (`sizes`); `tests/test_explorer.py` tests it.

# %% [markdown] tags=["header"]
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/usmlite-edu/usmlite_edu/blob/main/notebooks/10_quantization_error_explorer.ipynb) [![Launch on Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/usmlite-edu/usmlite_edu/main?labpath=notebooks%2F10_quantization_error_explorer.ipynb)
#
# * **Before you start:** Notebooks 01, 02 and 04.
# * **Reading time:** about 25 min (its text at 120 words a minute, 5 min an exercise).
# * **Running time:** 37 s in fast mode; 38 s in full mode (AMD EPYC (cpu family 25, model 17, stepping 1), 2 cores shared with other jobs; `python scripts/time_notebooks.py`). Fast mode (`USMLITE_FAST=1`) uses tiny sizes; full mode is what the figures in the text describe.

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

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from usmlite_edu.core import compress, sizes
from usmlite_edu.core.sizes import ParamInfo
from usmlite_edu.course import answers, explorer
from usmlite_edu.course.explorer import B0Layer, Setting, ToyWeights, explore

SHAPE = (256, 64) if FAST else (1024, 128)  # (inputs, output channels) of the toy weights
PTQ_UTTERANCES = 4 if FAST else 16  # utterances of data_small/fsdd_sample per PTQ run
HAVE_B0 = env.results is not None and (env.results / "cpu" / "b0").is_dir()
print(f"toy weights {SHAPE}; committed B0 found: {HAVE_B0}")

# %% [markdown]
# ## 1. The step-size prediction
#
# Per-channel quantization (Eq. 2) rounds every weight of channel $j$ to a grid of step
# $\Delta_j = s_j$. A weight that is not at the grid's edge lands somewhere within half a
# step of a level; if it is equally likely to land anywhere, its error is uniform on
# $[-\Delta/2, \Delta/2]$ and its mean square is
#
# $$\mathbb{E}[(w - \hat w)^2] = \frac{1}{\Delta}\int_{-\Delta/2}^{\Delta/2} e^2\,de = \frac{\Delta^2}{12}.$$
#
# `explore` measures each channel's mean squared error and this prediction side by side
# (`mse_round` and `predicted_round`; `prediction_ratio` is their ratio over the layer).

# %%
gauss = ToyWeights(shape=SHAPE)
for bits in (8, 6, 4):
    r = explore(Setting(bits=bits), gauss)
    print(
        f"int{bits}: relative error {r.rel_error:.2e}, measured / predicted rounding error "
        f"{r.prediction_ratio:.3f}, clipped {r.clipped_fraction:.1%}"
    )
r4 = explore(Setting(bits=4), gauss)
fig = explorer.draw(r4)
plt.show()

# %%
# Check: at 4 to 8 bits the uniform-noise model predicts a Gaussian layer's error within a
# few per cent, and nothing is clipped without a clip ratio.
for bits in (4, 6, 8):
    r = explore(Setting(bits=bits), gauss)
    assert abs(r.prediction_ratio - 1) < 0.05 and r.clipped_fraction == 0, (bits, r.summary())
np.testing.assert_allclose(r4.mse, r4.mse_round)  # no pruning, no clipping: all rounding
print("Delta^2/12 holds at 4-8 bits")

# %% [markdown]
# **Exercise 1 (prediction: three levels).** Symmetric int2 has only the levels
# $\{-s, 0, s\}$ with $s = \max_i|w_{ij}|$. On the same Gaussian weights, is the measured
# rounding error `"larger"` than $\Delta^2/12$, `"smaller"`, or `"about equal"` (within 5%)?
# Think about where a Gaussian's weights lie relative to the three levels before running.
# Answer with a pair: your choice, and the reason as a number: the fraction of the weights
# (`gauss.sample()`, all channels) that round to the level 0 (within 0.03).

# %%
my_int2_vs_prediction = ("smaller", 0.89)  # ANSWER: (choice, fraction of weights at 0)

# %%
r2 = explore(Setting(bits=2), gauss)
answers.check_three_levels(
    "Exercise 1 (three levels)",
    my_int2_vs_prediction,
    r2.prediction_ratio,
    gauss.sample(),
    hint="with s = max|w|, a weight rounds to 0 when |w| < s/2: how many do, and how far is "
    "a typical one from 0 compared with s/2?",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: where the weights sit on the three-level grid.
s_typ = float(np.median(r2.scale))
inside = np.abs(r2.w) < 0.5 * np.repeat(r2.scale, SHAPE[0], axis=0)
print(f"typical step s = {s_typ:.4f} = {s_typ / gauss.std:.2f} std")
print(f"weights that round to 0: {inside.mean():.1%}")
print(f"their mean square {np.mean(r2.w[inside] ** 2):.2e} vs s^2/12 = {s_typ**2 / 12:.2e}")
print(f"measured / predicted over the layer: {r2.prediction_ratio:.3f}")

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** The prediction assumes that a weight is equally likely to sit anywhere
# inside its half-step. With three levels the step is the channel's largest weight, about
# 3 standard deviations at these sizes, so most weights round to 0, and a Gaussian piles
# them up *near* 0, not evenly over $[-s/2, s/2]$: their error is $|w|$, smaller on average
# than the uniform model says. With many levels (4 bits and up) each step is small
# compared with the spread and the density is nearly flat across it, which is why the
# prediction holds there. A heavy-tailed layer makes the step wider still (next section).

# %% [markdown]
# ## 2. Heavy tails and outliers
#
# The step is set by each channel's *largest* weight. A heavy tail (Student-t with few
# degrees of freedom `df`, scaled to the same standard deviation) makes that maximum
# larger relative to the typical weight, so every weight of the channel shares a coarser
# step.

# %%
dfs = [2.5, 3, 5, 10, 30]
errs_t = [explore(Setting(bits=4), ToyWeights(shape=SHAPE, dist="student_t", df=d)) for d in dfs]
for d, r in zip(dfs, errs_t):
    print(f"Student-t df={d:>4}: int4 relative error {r.rel_error:.4f}")
print(f"Gaussian:           int4 relative error {r4.rel_error:.4f}")
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.semilogx(dfs, [r.rel_error for r in errs_t], "o-", label="Student-t")
ax.axhline(r4.rel_error, color="k", ls=":", label="Gaussian (df = infinity)")
ax.set(xlabel="degrees of freedom (smaller = heavier tails)", ylabel="int4 relative error")
ax.legend(fontsize=8)
plt.show()

# %%
# Check: heavier tails (smaller df), larger int4 error; every t is worse than the Gaussian.
e = [r.rel_error for r in errs_t]
assert all(a > b for a, b in zip(e, e[1:])) and e[-1] > r4.rel_error
print("error grows as the tails get heavier")

# %% [markdown]
# Now inject outliers. `ToyWeights(outliers=k, outlier_scale=x, outlier_axis=...)`
# multiplies `k` randomly chosen *input rows* (`"input"`: one input feature, large in
# every output channel, like an outlier dimension of a residual stream) or *output
# columns* (`"output"`: one whole channel) by `x`.
#
# **Exercise 2 (prediction: a loud channel).** Multiply three whole output channels by 50
# (`outlier_axis="output"`). At int4, by what factor does the relative error
# $\|w_j - \hat w_j\|^2 / \|w_j\|^2$ *of those three channels* change? Give one number
# (to within 1%).

# %%
my_loud_channel_factor = 1.0  # ANSWER: new relative error / old, for a scaled channel

# %%
loud = ToyWeights(shape=SHAPE, outliers=3, outlier_scale=50, outlier_axis="output")
r_loud = explore(Setting(bits=4), loud)
answers.check_channel_factor(
    "Exercise 2 (a loud channel)",
    my_loud_channel_factor,
    r_loud.channel_rel_error,
    r4.channel_rel_error,
    loud.outlier_index(),
    hint="the scale of channel j is max_i |w_ij| / qmax; what happens to w / s when the "
    "whole column is multiplied by 50?",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: the scaled channels' scales, integer codes and relative errors.
cols = loud.outlier_index()
_, q_before = compress.prune_then_quantize(gauss.sample(), "int4")
_, q_after = compress.prune_then_quantize(loud.sample(), "int4")
print("scale ratio on those channels:", np.asarray(q_after.scale / q_before.scale)[0, cols])
same = np.mean(np.asarray(q_after.values)[:, cols] == np.asarray(q_before.values)[:, cols])
print(f"integer codes unchanged: {same:.2%}")
print(
    "relative error before:", r4.channel_rel_error[cols], "after:", r_loud.channel_rel_error[cols]
)

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** Per-channel quantization is invariant to scaling a whole channel: the
# scale grows by 50, $w/s$ is unchanged, the integer codes are the same (up to float32
# rounding at a tie, a handful of weights at most) and the error grows by the same factor
# as the weights, so the channel's *relative* error stays put: factor 1. Those channels'
# squared error is 2,500 times larger, but so is their energy: the whole layer's relative
# error, dominated by the loud channels, hardly moves either. Channels of very different
# magnitude cost nothing under per-channel scales (§3.2, Eq. 2). Outliers that *do*
# hurt are the ones that share a scale with ordinary weights: an input row, next.

# %%
quiet = explore(Setting(bits=4), gauss)
rowwise = ToyWeights(shape=SHAPE, outliers=1, outlier_scale=20)
r_row = explore(Setting(bits=4), rowwise)
r_row_g = explore(Setting(bits=4, groups=8), rowwise)
others = np.ones(SHAPE[0], bool)
others[rowwise.outlier_index()] = False


def err_of_others(r):
    """Relative error of the ordinary weights (every row but the outlier's)."""
    return float(np.sum((r.w - r.w_hat)[others] ** 2) / np.sum(r.w[others] ** 2))


print("one input row x20, int4, ordinary weights' relative error:")
print(f"  no outlier              {err_of_others(quiet):.4f}")
print(f"  with it, per channel    {err_of_others(r_row):.4f}")
print(f"  with it, 8 groups       {err_of_others(r_row_g):.4f}")
fig = explorer.draw(r_row)
plt.show()

# %%
# Check: an input outlier coarsens every channel's step; groups confine it to one group.
assert err_of_others(r_row) > 10 * err_of_others(quiet)
assert err_of_others(r_row_g) < err_of_others(r_row) / 2
print("input outliers hurt every channel; sub-channel groups contain them")

# %% [markdown]
# That is the mechanism of the outlier experiment in `results/ptq_outliers/` (`scripts/ptq_outliers.py`):
# B0 has no such rows, but rows scaled by 16 (with the float function unchanged) make int4
# PTQ of B0 fail as the paper's 2B model does, and groups of 24 inputs limit the damage.
#
# ## 3. Clipping: a trade-off with a minimum
#
# A clip ratio $\gamma < 1$ shrinks the range to $\gamma \max|w|$: the step gets finer
# for every weight, and the few weights beyond the range are clipped (error larger than
# half a step). On heavy tails at int2 the sum has a minimum inside $(0, 1)$; where it
# lies depends on the layer (the larger the channel, the larger its maximum relative to
# its spread, the lower the best ratio), so the sweep reaches down to 0.1.

# %%
heavy = ToyWeights(shape=SHAPE, dist="student_t", df=3)
gammas = np.round(np.arange(0.1, 1.0001, 0.05), 2)
sweep = [explore(Setting(bits=2, symmetric=False, clip=float(g)), heavy) for g in gammas]
parts = {
    k: np.array([np.sum(getattr(r, k)) / np.sum(r.channel_power) for r in sweep])
    for k in ("mse", "mse_round", "mse_clip")
}
best = gammas[np.argmin(parts["mse"])]
fig, ax = plt.subplots(figsize=(5.5, 3.4))
ax.plot(gammas, parts["mse"], "k-o", ms=3, label="total")
ax.plot(gammas, parts["mse_round"], "C0--", label="rounding")
ax.plot(gammas, parts["mse_clip"], "C3--", label="clipping")
ax.axvline(best, color="gray", ls=":", label=f"best clip ratio {best}")
ax.set(xlabel=r"clip ratio $\gamma$", ylabel="relative error", title="int2 asym, Student-t df=3")
ax.legend(fontsize=8)
plt.show()

# %%
# Check: the optimum is inside the range (a U shape), rounding falls and clipping rises.
assert gammas[0] < best < gammas[-1], best
assert (
    parts["mse_round"][0] < parts["mse_round"][-1] and parts["mse_clip"][0] > parts["mse_clip"][-1]
)
print(
    f"best clip ratio {best}: relative error {parts['mse'].min():.3f} vs {parts['mse'][-1]:.3f} unclipped"
)

# %% [markdown]
# ## 4. Sizes, in two conventions
#
# The paper's size column (§5) counts `bits/32` per kept weight, one bit per weight for an
# N:M mask, and one float32 per sub-channel group; the exact accounting
# (`usmlite_edu.core.sizes`, convention `"exact"`) stores what a packed file needs: also the
# per-channel scales, the zero points of an asymmetric grid, and N:M positions as
# `n * ceil(log2 m)` bits per group of `m`.
#
# **Exercise 3 (prediction: an int2 layer's bytes).** B0's first feed-forward layer is
# $144 \times 576$. Quantize it to asymmetric int2 with 6 sub-channel groups per channel
# (groups of 24 inputs, the paper's E7 group size). What is its *exact* size, in percent of
# its float32 size? (Within 0.1%: count values, scales and zero points.)

# %%
my_exact_size = 100 * (2 / 32 + 6 / 144 + 2 * 6 / (32 * 144))  # ANSWER: exact size in %

# %%
answers.check_size_ratio(
    "Exercise 3 (an int2 layer's bytes)",
    my_exact_size,
    "int2/g6",
    [ParamInfo("ffn1", (144, 576), "dense")],
    "exact",
    rel_tol=0.001,
    hint="per weight: 2 bits of value; per group and channel: one float32 scale and one "
    "2-bit zero point; divide everything by 32 bits per float32 weight",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: the exact breakdown, component by component (usmlite_edu.core.sizes.model_size).
b = sizes.model_size("int2/g6", [ParamInfo("ffn1", (144, 576), "dense")])
total = 32 * 144 * 576
for part in ("values", "scales", "zero_points", "index"):
    print(f"{part:>12}: {getattr(b, part):>9,.0f} bits = {100 * getattr(b, part) / total:.3f}%")
print(f"{'total':>12}: {b.total:>9,.0f} bits = {b.ratio:.3f}%")

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** Values: $2/32 = 6.25\%$. Scales: 6 float32 per channel of 144 weights,
# $6/144 = 4.17\%$ (the paper's $g/1536$ with $1536$ replaced by this layer's width).
# Zero points: 6 two-bit integers per channel, $2 \cdot 6/(32 \cdot 144) = 0.26\%$, which
# the paper's convention leaves out; so do per-channel scales when there are no groups.
# For the whole B0 the float layers (convolutions, softmax, norms, biases) come on top:
# section 5 below prints both figures for the whole model.

# %% [markdown]
# ## 5. A real layer, and the whole B0 under PTQ
#
# `B0Layer(name)` explores a dense kernel of the committed B0 (`results/cpu/b0`, a 2M
# parameter Conformer-CTC trained on FSDD). `ptq_wer` then quantizes *every* dense kernel
# of B0 at the setting (post-training: no fine-tuning; N:M masks one-shot; groups become a
# group size, `in_dim / groups`, for layers of different widths) and transcribes a few
# utterances of `data_small/fsdd_sample`, real FSDD test speech. A few utterances give a
# rough number (one word is several WER points); the main job (`make run`) scores all 56.

# %%
if HAVE_B0:
    setting = Setting(bits=2, symmetric=False, groups=6)
    r_b0 = explore(setting, B0Layer())
    print(r_b0.summary())
    # FAST skips the float reference run (one compile fewer); the full run shows it.
    ptq = explorer.ptq_wer(r_b0.model_spec, utterances=PTQ_UTTERANCES, reference=not FAST)
    print(
        f"B0 as {ptq['spec']}: WER {ptq['wer']:.1f}% ({ptq['errors']} of {ptq['words']} words, "
        f"{ptq['utterances']} utterances)"
        + ("" if FAST else f"; float B0 {ptq['float_wer']:.1f}% on the same utterances")
    )
    for t in ptq["transcripts"][:3]:
        print(f"  ref: {t['ref']}\n  hyp: {t['hyp']}")
else:
    print("the committed B0 is not in this checkout: skipping the B0 layer and PTQ")

# %%
# Check: the layer is B0's 144 x 576 kernel; the whole-model spec uses groups of 24; the
# sizes are those of usmlite_edu.core.sizes; the WER is a percentage of the words decoded.
if HAVE_B0:
    assert r_b0.w.shape == (144, 576) and r_b0.model_spec == "int2/gs24"
    layer = [ParamInfo("ffn1", (144, 576), "dense")]  # the layer of exercise 3
    assert r_b0.size_exact == sizes.size_ratio("int2/g6", layer, "exact")
    assert r_b0.model_size_exact > r_b0.model_size_paper  # float layers, scales, zero points
    assert 0 <= ptq["wer"] and ptq["utterances"] == PTQ_UTTERANCES and ptq["words"] > 0
    print("B0 checks passed")

# %% [markdown]
# ## 6. The explorer
#
# Every control updates the four panels at once: the chosen channel's weights against its
# grid (top left), the error of every channel split into rounding, clipping and pruning
# against the $\Delta^2/12$ prediction (top right), measured against predicted rounding
# error per channel (bottom left), and the size ratios (bottom right). With "a layer of the
# committed B0" as the source, the button runs PTQ of the whole B0 at the setting.
#
# Things to try: int2 symmetric vs asymmetric on the Gaussian; one input outlier x30 at
# int4, then raise the groups; Student-t df=2.5 at int2 with the clip ratio from 1 down to
# 0.5 (watch clipping take over from rounding); 2:4 then 1:4 (pruning dominates); a B0
# attention kernel at int4 and int2, then the WER button.

# %%
ui = explorer.build_explorer(toy_shape=SHAPE, utterances=PTQ_UTTERANCES, reference=not FAST)
display(ui)  # the live controls; saved or rendered without a kernel, a picture of this state

# %%
# Check (what the test command runs headless), on an explorer of its own: moving a control
# recomputes and redraws, and the figure shows the numbers of the exploration. The one
# above stays as you left it.
probe = explorer.build_explorer(toy_shape=SHAPE, utterances=PTQ_UTTERANCES, reference=not FAST)
before = probe.result.rel_error
probe.controls["bits"].value = 3
after = probe.result
assert probe.result.spec == "int3" and after.rel_error > before
np.testing.assert_allclose(probe.figure.axes[1].lines[0].get_ydata(), np.sqrt(after.mse))
np.testing.assert_allclose(probe.figure.axes[0].get_lines()[0].get_xdata()[0], after.grid_levels[0])
probe.controls["nm"].value = "2:4"
assert probe.result.pruned_fraction == 0.5 and probe.result.rel_error > after.rel_error
heights = [p.get_height() for p in probe.figure.axes[3].patches]
assert heights == [probe.result.size_paper, probe.result.size_exact]
probe.controls["nm"].value = "none"
if HAVE_B0:  # the B0 layer of section 5 and the button (its PTQ result is cached)
    probe.controls["source"].value = "b0"
    probe.controls["grid"].value = "asymmetric"
    probe.controls["bits"].value = 2
    probe.controls["groups"].value = 6
    assert probe.result.model_spec == "int2/gs24" and probe.result.rel_error == r_b0.rel_error
    probe.ptq_button.click()
    assert probe.ptq["wer"] == ptq["wer"] and f"{ptq['wer']:.2f}</b>%" in probe.ptq_out.value
    probe.controls["source"].value = "gaussian"
    probe.controls["groups"].value = 1
    probe.controls["grid"].value = "symmetric"
probe.controls["bits"].value = 4
assert probe.result.spec == "int4" and probe.result.rel_error == before
print(
    f"explorer: {probe.updates} updates; now {probe.result.spec}, relative error {probe.result.rel_error:.4g}"
)

# %% [markdown]
# ## Summary
#
# * Rounding error follows the step: $\Delta^2/12$ per weight (§3.2, Eq. 2) predicts it
#   well from 4 bits up; Exercise 1 asks what happens with only three levels.
# * The step is set by each channel's largest weight: heavy tails and outlier *input* rows
#   inflate every channel's error, while a whole loud *output* channel costs nothing under
#   per-channel scales. Sub-channel groups (the 2-bit Conformer paper, the paper's E5-E7)
#   confine an outlier to its group; clipping trades a few clipped weights for a finer
#   step, with an optimum inside the range.
# * The paper's size column (§5) and the exact stored bytes differ by per-channel scales,
#   zero points, index bits and the float layers: both are shown for every setting.
# * PTQ of the whole B0 at your setting shows which of these errors the recognizer
#   tolerates; notebook 07 shows what fine-tuning (Algorithm 1) recovers when it does not.

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# *Instructor's summary of Exercise 1:* with three levels $\Delta^2/12$ overestimates the
# error, because most of a Gaussian's weights round to zero and sit much nearer to it
# than $s/2$.
