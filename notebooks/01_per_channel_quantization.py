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
# # 01 · Per-channel weight quantization (USM-Lite §3.2, Eqs. 1-2)
#
# USM-Lite stores every fully-connected weight of a 2B-parameter Conformer as int8 or
# int4 numbers plus one float scale per output channel. This notebook takes that
# recipe apart on a single weight matrix.
#
# **After this notebook you will be able to**
#
# * quantize an `(in, out)` weight per output channel with `usmlite_edu.core.quant.quantize`
#   and read its integer values and scales;
# * say where the rounding error comes from (the step size $s_j$) and check the bound
#   $|w - \hat w| \le s_j/2$;
# * explain why one scale per *channel* beats one scale per *tensor* when a single
#   outlier is present;
# * measure how the error grows as the bit width drops from 8 to 2;
# * run Eq. (1) "natively": int8 weights inside the matmul, the scale applied after
#   it, and the int8 x int8 -> int32 product an integer engine runs.

# %% [markdown] tags=["header"]
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/usmlite-edu/usmlite_edu/blob/main/notebooks/01_per_channel_quantization.ipynb) [![Launch on Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/usmlite-edu/usmlite_edu/main?labpath=notebooks%2F01_per_channel_quantization.ipynb)
#
# * **Before you start:** Python and NumPy; matrix products. No machine learning needed.
# * **Reading time:** about 40 min (its text at 120 words a minute, 5 min an exercise).
# * **Running time:** 9 s in fast mode; 17 s in full mode (AMD EPYC (cpu family 25, model 17, stepping 1), 2 cores shared with other jobs; `python scripts/time_notebooks.py`). Fast mode (`USMLITE_FAST=1`) uses tiny sizes; full mode is what the figures in the text describe.

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

from usmlite_edu.core import quant
from usmlite_edu.course import answers, labs
from usmlite_edu.course.exercises import check_answer
from usmlite_edu.speech import model, presets

# A weight the size of one USM projection (1536 inputs); tiny in FAST mode.
I, J = (128, 32) if FAST else (1536, 256)
BATCH = 8 if FAST else 64

# %% [markdown]
# ## 1. The symmetric grid
#
# A dense layer computes $Y = X W$ with $W \in \mathbb{R}^{I\times J}$ (input x output).
# The *j*-th output channel is the column $W_{:,j}$. Eq. (2) of the paper rounds each
# column on its own grid:
#
# $$ s_j = \frac{\max_i |W_{ij}|}{q_{\max}}, \qquad q_{ij} = \operatorname{round}\!\left(\frac{W_{ij}}{s_j}\right), \qquad \hat W_{ij} = s_j\, q_{ij},$$
#
# with $q_{\max} = 2^{b-1}-1$: the grid is $[-127, 127]$ for int8 and $[-7, 7]$ for
# int4 (§3.2). The grid is symmetric, so $0$ is represented exactly and the code
# $-2^{b-1}$ (e.g. $-128$) is never used.
#
# Let us quantize a tiny $6\times 3$ matrix to int4 and look inside.

# %%
w_small = jnp.array(
    [
        [0.10, -0.50, 2.0],
        [-0.70, 0.25, 0.0],
        [0.35, -0.05, -1.0],
        [0.00, 1.00, 0.5],
        [-0.20, 0.75, -0.3],
        [0.60, -0.90, 1.2],
    ]
)
q_small = quant.quantize(w_small, bits=4)  # symmetric, per output channel
print("integer range for int8, int4:", quant.int_range(8, True), quant.int_range(4, True))
print(f"values (dtype {q_small.values.dtype}):\n{q_small.values}")
print("scales, one per column:", q_small.scale)
print("dequantized:\n", np.round(quant.dequantize(q_small), 3))

# %%
# Check: int8 storage, one scale per column equal to max|w| / 7, zero stays zero.
assert q_small.values.dtype == jnp.int8 and q_small.values.shape == w_small.shape
assert q_small.scale.shape == (1, 3)
np.testing.assert_allclose(q_small.scale[0], np.abs(w_small).max(axis=0) / 7, rtol=1e-6)
assert int(jnp.abs(q_small.values).max()) <= 7
assert float(quant.dequantize(q_small)[1, 2]) == 0.0  # w = 0 is exact
print("grid checks passed")

# %% [markdown]
# ## 2. Where the error comes from
#
# Rounding moves a value by at most half a step, so each weight's error is bounded by
# its channel's step size:
#
# $$|W_{ij} - \hat W_{ij}| \le \tfrac{1}{2} s_j = \tfrac{1}{2}\,\frac{\max_i |W_{ij}|}{q_{\max}}.$$
#
# The bound depends on the *largest* weight of the channel. One large weight makes the
# step coarse for every other weight sharing its scale. To see this we build a
# weight with channels of different spread (as in a trained layer) and plant a single
# outlier in one channel.

# %%
channel_std = 0.02 * np.exp(0.5 * rng.standard_normal(J))  # channels differ in spread
W_np = (rng.standard_normal((I, J)) * channel_std).astype(np.float32)
OUTLIER_ROW, OUTLIER_COL = 5, 3
W_np[OUTLIER_ROW, OUTLIER_COL] = 0.25  # one large weight
W = jnp.asarray(W_np)
print(
    f"W: {W.shape}, typical |w| = {np.median(np.abs(W_np)):.4f}, "
    f"outlier = {W_np[OUTLIER_ROW, OUTLIER_COL]:.2f}"
)

q8 = quant.quantize(W, 8)
W8 = quant.dequantize(q8)
err = jnp.abs(W - W8)
print(
    f"int8 per-channel: max |error| = {float(err.max()):.2e}, "
    f"largest s/2 = {float(q8.scale.max()) / 2:.2e}"
)

# %%
# Check: every element obeys |w - w_hat| <= s_j / 2 (a float32 hair of slack).
half_step = q8.scale[0] / 2  # shape (J,), broadcasts over rows
assert W8.shape == W.shape and q8.scale.shape == (1, J)
assert bool(jnp.all(err <= half_step * (1 + 1e-5) + 1e-12))
assert int(jnp.abs(q8.values).max()) == 127  # every channel's max lands on +-127
print("error bound s/2 holds for all", W.size, "weights")


# %% [markdown]
# ## 3. Per-tensor versus per-channel
#
# The library always computes one scale per output column. To get a single scale for
# the *whole tensor*, flatten the matrix into one long column, quantize, and reshape
# back: `quantize(W.reshape(-1, 1))`. That is the "per-tensor" baseline the per-channel
# scheme improves on.


# %%
def per_tensor(w, bits):
    # One column holding every weight -> one scale for the whole matrix.
    q = quant.quantize(w.reshape(-1, 1), bits)
    return quant.dequantize(q).reshape(w.shape), q.scale


def per_channel(w, bits):
    q = quant.quantize(w, bits)
    return quant.dequantize(q), q.scale


def rel_err(w, w_hat):
    return float(jnp.linalg.norm(w - w_hat) / jnp.linalg.norm(w))


Wt4, s_tensor = per_tensor(W, 4)
Wc4, s_chan = per_channel(W, 4)
print(f"int4 relative error: per-tensor {rel_err(W, Wt4):.3f}, per-channel {rel_err(W, Wc4):.3f}")
print(
    f"per-tensor scale {float(s_tensor[0, 0]):.4f}; per-channel scales: "
    f"median {float(jnp.median(s_chan)):.4f}, outlier channel {float(s_chan[0, OUTLIER_COL]):.4f}"
)

rms_t = np.sqrt(np.mean(np.asarray(W - Wt4) ** 2, axis=0))
rms_c = np.sqrt(np.mean(np.asarray(W - Wc4) ** 2, axis=0))
fig, ax = plt.subplots(figsize=(8, 3))
ax.semilogy(rms_t, "o", ms=3, label="per-tensor (one scale)")
ax.semilogy(rms_c, "o", ms=3, label="per-channel (one scale per column)")
ax.axvline(OUTLIER_COL, color="gray", ls=":", label="channel with the outlier")
ax.set(xlabel="output channel j", ylabel="RMS error of column j", title="int4 error per channel")
ax.legend(fontsize=8)
plt.show()

# %%
# Checks: the per-tensor scale is the largest per-channel scale; per-channel wins
# overall and on every channel except possibly the outlier's own.
np.testing.assert_allclose(float(s_tensor[0, 0]), float(s_chan.max()), rtol=1e-6)
assert rel_err(W, Wc4) < rel_err(W, Wt4)
others = np.arange(J) != OUTLIER_COL
assert np.all(rms_c[others] <= rms_t[others] * (1 + 1e-6))
print("per-channel is never worse on a channel without the outlier")

# %% [markdown]
# ## 4. Error versus bit width
#
# Each bit removed halves the number of levels, so the step size roughly doubles.
# The cell below sweeps $b = 2,\dots,8$ for both schemes.

# %%
BITS = list(range(2, 9))
err_tensor = [rel_err(W, per_tensor(W, b)[0]) for b in BITS]
err_chan = [rel_err(W, per_channel(W, b)[0]) for b in BITS]
for b, et, ec in zip(BITS, err_tensor, err_chan):
    print(f"int{b}: per-tensor {et:7.4f}   per-channel {ec:7.4f}")
print(
    "per-channel error ratio between consecutive bit widths:",
    np.round(np.array(err_chan[:-1]) / np.array(err_chan[1:]), 2),
)

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.semilogy(BITS, err_tensor, "s-", label="per-tensor")
ax.semilogy(BITS, err_chan, "o-", label="per-channel")
ax.set(
    xlabel="bits",
    ylabel=r"relative error $\|W-\hat W\|_F / \|W\|_F$",
    title="Quantization error vs bit width",
)
ax.legend()
plt.show()

# %%
# Checks: more bits never hurt, and per-channel is better at every width.
assert np.all(np.diff(err_chan) < 0)
assert all(ec < et for ec, et in zip(err_chan, err_tensor))
print("monotone in bits; per-channel better at every bit width")

# %% [markdown]
# ### Try it: a slider for the bit width
#
# Move the slider to see one ordinary channel's quantized values against the originals
# (a staircase) for both schemes. The cell after it prints the same numbers without a
# widget, so the notebook also runs headless.

# %%
COL = (OUTLIER_COL + 1) % J  # an ordinary channel


def show_bits(bits=4):
    Wt, _ = per_tensor(W, bits)
    Wc, _ = per_channel(W, bits)
    order = np.argsort(np.asarray(W[:, COL]))
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(np.asarray(W[order, COL]), np.asarray(W[order, COL]), "k:", lw=1, label="w")
    ax.plot(np.asarray(W[order, COL]), np.asarray(Wt[order, COL]), label="per-tensor")
    ax.plot(np.asarray(W[order, COL]), np.asarray(Wc[order, COL]), label="per-channel")
    ax.set(xlabel="w", ylabel=r"$\hat w$", title=f"channel {COL}, int{bits}")
    ax.legend(fontsize=8)
    plt.show()
    print(
        f"int{bits}: relative error per-tensor {rel_err(W, Wt):.4f}, per-channel {rel_err(W, Wc):.4f}; "
        f"distinct values in channel {COL}: per-tensor {len(np.unique(np.asarray(Wt[:, COL])))}, "
        f"per-channel {len(np.unique(np.asarray(Wc[:, COL])))}"
    )


try:
    from ipywidgets import IntSlider, interact

    interact(show_bits, bits=IntSlider(value=4, min=2, max=8, step=1, description="bits"))
except ImportError:  # no widgets installed: the static call below still runs
    print("ipywidgets not available; showing a static result only")

# %%
show_bits(4)  # static result (what the slider shows at 4 bits)

# %% [markdown]
# ## 5. Eq. (1): the native integer matmul
#
# Because $s_j$ depends only on the output channel, it factors out of the sum over
# inputs:
#
# $$ Y_j = \sum_i X_i \hat W_{ij} = \sum_i X_i\, s_j q_{ij} = s_j \Big[\sum_i X_i\, q_{ij}\Big]. \qquad (1)$$
#
# The weight can therefore stay an `int8` array inside the product; the float scale is
# applied once per output. `quant.native_matmul` does exactly that; it should agree with
# the "fake" product $X \hat W$ to float rounding, and with the float product $XW$ up
# to the quantization error.

# %%
x = jax.random.normal(jax.random.fold_in(key, 1), (BATCH, I))
y_native = quant.native_matmul(x, q8)  # int8 weights in the dot, scale after
y_fake = x @ quant.dequantize(q8)  # float copy of w_hat
y_float = x @ W
rel = lambda a, b: float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))
print(
    f"native vs fake: {rel(y_native, y_fake):.2e}   native vs float: {rel(y_native, y_float):.2e}"
)
jaxpr = jax.make_jaxpr(quant.native_matmul)(x, q8).pretty_print(use_color=False)
print("native_matmul's inputs (the weight is i8 = int8):", jaxpr.splitlines()[0])

# %%
# Checks: Eq. (1) with int8 storage equals x @ w_hat; int8 is close to float.
assert q8.values.dtype == jnp.int8 and y_native.shape == (BATCH, J)
assert rel(y_native, y_fake) < 1e-5
assert rel(y_native, y_float) < 0.05
assert "i8[" in jaxpr
print("native matmul checks passed")

# %% [markdown]
# ## 6. Integer activations too: int8 x int8 -> int32
#
# An integer inference engine also quantizes the activations (here per row, i.e. per
# token) and accumulates the integer products in int32. `quant.int8_matmul` runs that
# path through `jax.lax.dot_general(..., preferred_element_type=int32)`; both scales
# are applied to the int32 result. Its reference is the float product of the two
# dequantized operands.

# %%
y_int = quant.int8_matmul(x, q8)
xq, xs = quant.quantize_activations(x)
y_ref = (xq.astype(jnp.float32) * xs) @ quant.dequantize(q8)
dots = [
    ln.strip()
    for ln in jax.make_jaxpr(quant.int8_matmul)(x, q8).pretty_print(use_color=False).splitlines()
    if "dot_general" in ln or "preferred_element_type" in ln
]
print("\n".join(dots))
print(
    f"int8 x int8 vs its reference: {rel(y_int, y_ref):.2e}   vs float x @ W: {rel(y_int, y_float):.2e}"
)

# %%
# Checks: integer operands, int32 accumulation, agreement with the reference.
assert xq.dtype == jnp.int8 and xs.shape == (BATCH, 1)
assert any("preferred_element_type=int32" in d for d in dots)
assert rel(y_int, y_ref) < 1e-5
assert rel(y_int, y_float) < 0.05
print("int8 x int8 -> int32 checks passed")

# %% [markdown]
# ## Exercises
#
# Each exercise has answer slots, variables marked `# ANSWER` that hold `...` until you
# write your answer in their place, and a check cell. The check prints `[skipped]` while a
# slot still holds `...`, `[correct]` when your answer agrees with what the code
# measures, and fails with a hint when it does not. Most are predictions: answer before
# you run anything. In the instructor edition a worked solution (collapsed) follows each
# check.
#
# **Exercise 1 (prediction: four bits fewer).** The rule of thumb "each bit halves the
# error" predicts that going from int8 to int4 multiplies the error by $2^4 = 16$. The step
# size of section 1 gives a sharper prediction. By what factor is the per-channel int4
# error of `W` larger than its int8 error? Predict it from the formula (within 5%), not
# from the table of section 4.

# %%
my_factor = 127 / 7  # ANSWER: relative error at int4 / relative error at int8

# %%
answers.check_error_factor(
    "Exercise 1 (four bits fewer)",
    my_factor,
    dict(zip(BITS, err_chan)),
    4,
    8,
    rel_tol=0.05,
    hint="each weight's error is at most half a step, and the step is max|w| / qmax with "
    "qmax = 2**(b-1) - 1: compare qmax at 4 and 8 bits, not 2**4 and 2**8",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: every channel's int4 step is exactly qmax(8) / qmax(4) = 127 / 7 times its int8
# step, and the error follows the step.
step_ratio = np.asarray(quant.quantize(W, 4).scale / quant.quantize(W, 8).scale)
factor = err_chan[BITS.index(4)] / err_chan[BITS.index(8)]
print(f"int4 step / int8 step, over all channels: {step_ratio.min():.4f} to {step_ratio.max():.4f}")
print(f"127 / 7 = {127 / 7:.4f}; measured error factor {factor:.3f}")
print(f"'one bit halves the error' (16) is off by {100 * (factor - 16) / factor:.0f}%")
assert np.allclose(step_ratio, 127 / 7, rtol=1e-5) and abs(factor / (127 / 7) - 1) < 0.05

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** The scale is $\max_i|W_{ij}|/q_{\max}$ and $q_{\max} = 2^{b-1}-1$, so the
# int4 step is $127/7 \approx 18.1$ times the int8 step in every channel (the first line
# above). A weight that is not at the end of the grid lands anywhere within half a step of
# a level, so its error scales with the step, and so does the relative error of the whole
# matrix. "Halving per bit" counts all $2^b$ codes; the symmetric grid uses
# $2q_{\max}+1 = 2^b - 1$ of them and its step is set by $q_{\max}$, which halves only
# approximately from one width to the next ($127 \to 63$, but $7 \to 3 \to 1$). The gap
# between the rule and the formula grows as the width drops.

# %% [markdown]
# **Exercise 2 (prediction: an outlier moves).** Set the planted weight `W[5, 3]` to
# `outlier_value` and predict, at int4: (a) how many of the `J` channels change their
# per-channel error, and (b) whether the mean per-tensor error of the *other* channels
# goes `"up"`, `"down"` or stays `"unchanged"`, with the reason as a number: the new
# per-tensor int4 scale divided by the old one (within 1%). Answer for 1.0 first; then
# try 0.05 and -100 and predict again.

# %%
outlier_value = 1.0  # EXERCISE: the new value of W[5, 3]
my_changed_channels = 1  # ANSWER: how many channels' per-channel int4 error change
my_per_tensor_others = ("up", abs(outlier_value) / float(jnp.abs(W).max()))  # ANSWER: (dir, ratio)

# %%
W_ex = W.at[OUTLIER_ROW, OUTLIER_COL].set(outlier_value)
answers.check_changed_channels(
    "Exercise 2a (per-channel)",
    my_changed_channels,
    W,
    W_ex,
    4,
    hint="which channels' scales does W[5, 3] enter? Section 3's check is the clue",
)
answers.check_per_tensor_others(
    "Exercise 2b (per-tensor)",
    my_per_tensor_others,
    W,
    W_ex,
    others,
    4,
    rel_tol=0.01,
    hint="with one scale for the whole matrix, what sets it, and does outlier_value change it?",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: the scales before and after, for both schemes.
largest_other = float(jnp.abs(W.at[OUTLIER_ROW, OUTLIER_COL].set(0.0)).max())
s_tensor_ex = per_tensor(W_ex, 4)[1]
changed = answers.changed_channels(W, W_ex, 4)
print(f"largest |w| of the matrix apart from W[5, 3]: {largest_other:.3f}")
print(f"per-tensor scale: {float(s_tensor[0, 0]):.4f} -> {float(s_tensor_ex[0, 0]):.4f}")
print(
    f"per-channel scale of column {OUTLIER_COL}: {float(s_chan[0, OUTLIER_COL]):.4f} -> "
    f"{float(quant.quantize(W_ex, 4).scale[0, OUTLIER_COL]):.4f}; every other column keeps its own"
)
print(f"per-channel errors that changed: columns {changed}")

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** (a) A per-channel scale is computed from its own column only, so
# changing `W[5, 3]` can change column 3's scale and its error and nothing else: one
# channel (none if `outlier_value` equals the old value). (b) The per-tensor scale is
# set by the largest $|w|$ of the *whole* matrix. If the new value is larger in magnitude
# than every other weight (1.0, -100), it sets a coarser step for all channels and their
# error goes up; at -100 nearly every ordinary weight rounds to zero. If it is smaller
# than the largest other weight, that weight sets the scale instead: the step gets finer
# when the old value used to be the maximum, or stays the same when it was not (the
# solution prints which case this matrix is in).

# %% [markdown]
# **Exercise 3 (prediction: is int32 wide enough?).** Section 6's integer product sums
# $I$ products of an int8 activation and an int8 weight, each in
# $[-127\cdot127,\ 127\cdot127]$ on the symmetric grid. What is the largest input width
# `max_I` for which an int32 accumulator can never overflow? The check runs the int8 x
# int8 -> int32 dot on the worst case at your width and at one more.

# %%
max_I = (2**31 - 1) // (127 * 127)  # ANSWER: the largest width that cannot overflow


# %%
def worst_case_dot(n):
    """int8 x int8 -> int32 dot of two length-n vectors of 127s (the largest sum)."""
    v = jnp.full((n,), 127, jnp.int8)
    dims = (((0,), (0,)), ((), ()))
    return int(jax.lax.dot_general(v, v, dims, preferred_element_type=jnp.int32))


def fits_exactly(n):
    assert isinstance(n, int) and n > 0, "give a positive whole number"
    assert worst_case_dot(n) == 127 * 127 * n, f"at I = {n} the int32 sum overflows"
    assert worst_case_dot(n + 1) != 127 * 127 * (n + 1), f"I = {n + 1} fits too: go higher"
    return True


check_answer(
    "Exercise 3 (int32 is wide enough)",
    max_I,
    accept=fits_exactly,
    hint="the largest int32 is 2**31 - 1",
    correct="the worst case fits at your width and overflows at one more",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: the largest width, the wrapped-around sum one past it, and USM's widest input.
limit = (2**31 - 1) // (127 * 127)
print(f"largest safe width: {limit}; sum there {worst_case_dot(limit)}")
print(f"at {limit + 1}: the int32 sum wraps around to {worst_case_dot(limit + 1)}")
widest = max(
    w.shape[0] for w in model.param_table(presets.get_preset("usm_2b").model) if w.role == "dense"
)
print(f"widest input of a dense layer in the 2B model: {widest} ({limit / widest:.0f}x below)")

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** $127^2 \cdot I \le 2^{31}-1$ gives the width printed above; one more
# input and the worst-case sum wraps around to a large negative number (XLA's int32
# arithmetic does not saturate). The 2B model's widest contraction is far below the limit,
# so int32 accumulation is safe for every dense layer. The bound uses $127^2$ because
# both the weights and the activations (`quant.quantize_activations`) use the symmetric
# grid, which never produces the code $-128$; a grid that did would allow products of
# $128^2$ and a slightly smaller width.

# %% [markdown]
# ## Lab (implement it): a per-channel quantizer
#
# Now write Eq. (2) yourself instead of calling `quant.quantize`. `my_quantize(w, bits)`
# takes a float weight `w` of shape `(I, J)` (inputs, output channels) and returns the
# pair `(q, scale)`: `scale` has one entry per output channel (shape `(J,)`), `q` holds
# integers on the symmetric grid of section 1, and `q * scale` is the dequantized weight.
# Fill in the four lines marked `# ANSWER`. The check runs your function and the library's
# on 12 random weights (the same ones every run) and names the first input where they
# disagree. The **core** level uses ordinary weights; the **stretch** level adds a channel
# of zeros and a weight exactly on the grid's end, the cases a library must not trip on.


# %%
def my_quantize(w, bits):
    qmax = 2 ** (bits - 1) - 1  # ANSWER: the largest code of the symmetric grid
    amax = jnp.max(jnp.abs(w), axis=0)  # ANSWER: each output channel's largest |w|
    scale = jnp.where(amax > 0, amax / qmax, 1.0)  # ANSWER: one scale per channel
    q = jnp.clip(jnp.round(w / scale), -qmax, qmax)  # ANSWER: integers on the grid
    return q, scale


# %%
labs.check_quantizer(my_quantize)
labs.check_quantizer(my_quantize, "stretch")

# %% [markdown]
# ## Summary
#
# * Eq. (2) with one scale per output channel: $s_j = \max_i|W_{ij}|/q_{\max}$, a
#   symmetric grid ($[-127,127]$, $[-7,7]$), and an error of at most $s_j/2$ per weight.
# * The scale is set by the channel's largest weight, so an outlier inflates the error
#   of everything that shares its scale. Per-channel scales confine the damage to one
#   column; per-tensor spreads it over the whole matrix (section 3's plot).
# * Eq. (1) lets the weight stay an int8 array inside the matmul; with int8 activations
#   the product accumulates in int32. This "native" arithmetic is what USM-Lite trains
#   and serves with (§3.2).
# * In the paper (Table 1), int8 keeps the float WER even without training (E0, E1),
#   while int4 needs QAT (E2 vs E3). Notebook 03 shows why training helps; notebook 04
#   takes the bit width down to 2.
