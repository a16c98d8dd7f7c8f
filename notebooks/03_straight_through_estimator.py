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
# # 03 · The straight-through estimator and quantization-aware training (USM-Lite §3.2)
#
# Rounding is flat almost everywhere, so gradient descent cannot see it. USM-Lite
# trains through it with the straight-through estimator (STE): pretend in the backward
# pass that `round` is the identity.
#
# **After this notebook you will be able to**
#
# * show that `jax.grad` of `jnp.round` is zero, and why that stalls training;
# * check that `usmlite_edu.core.quant.fake_quant` passes gradients straight through
#   inside the grid's range and blocks them where weights are clipped;
# * compare post-training quantization (PTQ) with quantization-aware training (QAT) on
#   a small regression problem at int4 and int2;
# * verify that the native forward pass (`quant.qat_matmul`, int8 weights inside the
#   matmul) gives the same gradients as the fake-quantization path.

# %% [markdown] tags=["header"]
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/usmlite-edu/usmlite_edu/blob/main/notebooks/03_straight_through_estimator.ipynb) [![Launch on Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/usmlite-edu/usmlite_edu/main?labpath=notebooks%2F03_straight_through_estimator.ipynb)
#
# * **Before you start:** Notebooks 01-02; gradients and the chain rule (any deep-learning course's first weeks).
# * **Reading time:** about 35 min (its text at 120 words a minute, 5 min an exercise).
# * **Running time:** 27 s in fast mode; 47 s in full mode (AMD EPYC (cpu family 25, model 17, stepping 1), 2 cores shared with other jobs; `python scripts/time_notebooks.py`). Fast mode (`USMLITE_FAST=1`) uses tiny sizes; full mode is what the figures in the text describe.

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
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from usmlite_edu.core import compress, quant, sizes
from usmlite_edu.course import answers, labs
from usmlite_edu.course.exercises import check_answer

D_IN, D_TEACHER, D_HID, D_OUT = 16, 16, 128, 4
N_TRAIN, N_TEST, BATCH = (1024, 512, 128) if FAST else (4096, 2048, 256)
FLOAT_STEPS, QAT_STEPS = (400, 300) if FAST else (1500, 1500)

# %% [markdown]
# ## 1. `round` has no useful gradient
#
# $\operatorname{round}(x)$ is piecewise constant: its derivative is $0$ everywhere
# except at the half-integers, where it does not exist. Automatic differentiation
# returns $0$. A loss that depends on $W$ only through $\operatorname{round}(W/s)$
# therefore has zero gradient with respect to $W$ (§3.2: "zero derivative almost
# everywhere"), and training would never move the weights.

# %%
xs = jnp.linspace(-2.5, 2.5, 501)
d_round = jax.vmap(jax.grad(jnp.round))(xs)
# what the STE pretends in the backward pass: the identity's gradient (how to build an
# STE in JAX is Exercise 3, and section 2's fake_quant holds one)
d_ste = jax.vmap(jax.grad(lambda x: x))(xs)

fig, axes = plt.subplots(1, 2, figsize=(9, 3))
axes[0].plot(xs, jnp.round(xs), label="round(x)")
axes[0].plot(xs, xs, ":", label="identity (what the STE pretends)")
axes[0].set(xlabel="x", title="forward")
axes[0].legend(fontsize=8)
axes[1].plot(xs, d_round, label="d round / dx (autodiff)")
axes[1].plot(xs, d_ste, "--", label="STE gradient")
axes[1].set(xlabel="x", title="backward", ylim=(-0.2, 1.2))
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()
print("distinct autodiff gradients of round:", np.unique(np.asarray(d_round)))

# %%
assert bool(jnp.all(d_round == 0.0))
assert bool(jnp.all(d_ste == 1.0))
print("round's gradient is zero everywhere we sampled; the STE's is one")

# %% [markdown]
# ## 2. The STE inside `fake_quant`
#
# `quant.fake_quant(w, bits)` returns $\hat w = s\,\mathrm{clip}(\mathrm{round}(w/s))$
# in float (forward), and in the backward pass uses $\partial \hat w/\partial w = 1$
# where $w$ lies inside the grid's range (half a step beyond the end levels) and $0$
# where it was clipped away. With the default `clip=1.0` the range covers every
# weight, so the gradient is exactly the identity; with `clip<1` the largest weights
# fall outside and receive no gradient. (No gradient flows through the scale, as in
# the paper.)

# %%
w = jax.random.normal(jax.random.fold_in(key, 1), (64, 8))
g_full = jax.grad(lambda w: jnp.sum(quant.fake_quant(w, 4)))(w)
CLIP = 0.7
g_clip = jax.grad(lambda w: jnp.sum(quant.fake_quant(w, 4, clip=CLIP)))(w)
print(
    "gradient values, clip=1.0:",
    np.unique(np.asarray(g_full)),
    f"  clip={CLIP}:",
    np.unique(np.asarray(g_clip)),
    f"({int((g_clip == 0).sum())} of {w.size} weights blocked)",
)

# %%
# Checks: forward = dequantize(quantize(w)); backward = identity inside the range.
np.testing.assert_array_equal(
    np.asarray(quant.fake_quant(w, 4)), np.asarray(quant.dequantize(quant.quantize(w, 4)))
)
assert bool(jnp.all(g_full == 1.0))
# Reference for the clipped range: s = clip * max|w| / 7 per channel; the grid ends at
# +-7 s and a weight still rounds onto it up to half a step further out.
s = CLIP * jnp.abs(w).max(axis=0) / 7
inside = jnp.abs(w) <= 7.5 * s
np.testing.assert_array_equal(np.asarray(g_clip == 1.0), np.asarray(inside))
assert set(np.unique(np.asarray(g_clip))) <= {0.0, 1.0}
print("STE checks passed")

# %% [markdown]
# ## 3. PTQ versus QAT on a toy regression
#
# A teacher network $y = \tanh(x W_1^\star) W_2^\star$ generates the data; a wider
# student of the same form learns it in float. Then we compress the student two ways:
#
# * **PTQ** (post-training quantization): quantize the trained float weights, no
#   further training (the paper's E0, E2);
# * **QAT**: continue training with the quantizer in the forward pass and the STE in
#   the backward pass (E1, E3, E4). We use `compress.compress_weight(w, spec)`, the
#   library's fake-quantization path, for both layers.
#
# For a fair comparison we also continue the *float* training for the same number of
# steps. Quantization uses the paper's grids: symmetric per-channel int4, asymmetric
# int2.

# %%
kt1, kt2, kx, kxt, ks1, ks2 = jax.random.split(jax.random.fold_in(key, 2), 6)
teacher = {
    "w1": 2 * jax.random.normal(kt1, (D_IN, D_TEACHER)) / np.sqrt(D_IN),
    "w2": jax.random.normal(kt2, (D_TEACHER, D_OUT)) / np.sqrt(D_TEACHER),
}
net = lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]
X_tr = jax.random.normal(kx, (N_TRAIN, D_IN))
Y_tr = net(teacher, X_tr)
X_te = jax.random.normal(kxt, (N_TEST, D_IN))
Y_te = net(teacher, X_te)
student0 = {
    "w1": jax.random.normal(ks1, (D_IN, D_HID)) / np.sqrt(D_IN),
    "w2": jax.random.normal(ks2, (D_HID, D_OUT)) / np.sqrt(D_HID),
}


def forward(p, x, spec=None):
    # spec=None: float. Otherwise every weight goes through the library's quantizer.
    if spec is not None:
        p = {k: compress.compress_weight(v, spec) for k, v in p.items()}
    return net(p, x)


def mse(p, x, y, spec=None):
    return jnp.mean((forward(p, x, spec) - y) ** 2)


def train(p, spec, steps, lr):
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))
    state = opt.init(p)

    @jax.jit
    def step(p, state, i):
        idx = jax.random.randint(jax.random.fold_in(key, i), (BATCH,), 0, N_TRAIN)
        loss, g = jax.value_and_grad(mse)(p, X_tr[idx], Y_tr[idx], spec)
        updates, state = opt.update(g, state, p)
        return optax.apply_updates(p, updates), state, loss

    losses = []
    for i in range(steps):
        p, state, loss = step(p, state, i)
        losses.append(float(loss))
    return p, np.array(losses)


t0 = time.time()
p_float, curve_float = train(student0, None, FLOAT_STEPS, 1e-2)
test_float = float(mse(p_float, X_te, Y_te))
print(
    f"float student: test MSE {test_float:.2e}  (target variance {float(jnp.var(Y_te)):.3f}), "
    f"{time.time() - t0:.1f} s"
)

# %%
t0 = time.time()
results, curves = {}, {}
p_cont, curves["float"] = train(p_float, None, QAT_STEPS, 1e-2)
results["float (continued)"] = float(mse(p_cont, X_te, Y_te))
for spec in ("int4", "int2"):
    results[f"{spec} PTQ"] = float(mse(p_float, X_te, Y_te, spec))
    p_qat, curves[spec] = train(p_float, spec, QAT_STEPS, 1e-2)
    results[f"{spec} QAT"] = float(mse(p_qat, X_te, Y_te, spec))
    if spec == "int2":
        p_qat_int2 = p_qat
for name, v in results.items():
    print(f"{name:18s} test MSE {v:.2e}")
print(f"({time.time() - t0:.1f} s)")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
smooth = lambda c: np.convolve(c, np.ones(20) / 20, mode="valid")
for name, c in curves.items():
    axes[0].semilogy(smooth(c), label=f"{name} training" + (" (QAT)" if name != "float" else ""))
for spec, color in (("int4", "C1"), ("int2", "C2")):
    axes[0].axhline(results[f"{spec} PTQ"], color=color, ls="--", lw=1, label=f"{spec} PTQ (test)")
axes[0].set(xlabel="fine-tuning step", ylabel="MSE", title="QAT loss curves vs PTQ level")
axes[0].legend(fontsize=7)
# Right: what QAT does to each width's PTQ error. The errors span orders of magnitude, so
# the axis is logarithmic; points and arrows (not bars, whose length means nothing on a
# log axis) show the factor by which QAT divides the error.
for x, (spec, color) in enumerate((("int4", "C1"), ("int2", "C2"))):
    ptq, qat = results[f"{spec} PTQ"], results[f"{spec} QAT"]
    axes[1].plot([x, x], [ptq, qat], "o", color=color, ms=7)
    axes[1].annotate("", (x, qat), (x, ptq), arrowprops=dict(arrowstyle="->", color=color, lw=1.5))
    axes[1].annotate(
        f"PTQ {ptq:.1e}", (x, ptq), xytext=(8, 0), textcoords="offset points", fontsize=8
    )
    axes[1].annotate(
        f"QAT {qat:.1e}\n(÷{ptq / qat:.0f})",
        (x, qat),
        xytext=(8, -4),
        textcoords="offset points",
        fontsize=8,
    )
axes[1].axhline(results["float (continued)"], color="C0", ls="--", lw=1, label="float, same steps")
axes[1].set_yscale("log")
axes[1].set_xlim(-0.5, 1.9)
axes[1].set_xticks([0, 1], ["int4", "int2"])
axes[1].set(ylabel="test MSE (log scale)", title="PTQ -> QAT, test error")
axes[1].legend(fontsize=8, loc="upper left")
plt.tight_layout()
plt.show()
var_te = float(jnp.var(Y_te))
for spec in ("int4", "int2"):
    print(
        f"{spec}: QAT lowers the PTQ test error by a factor "
        f"{results[f'{spec} PTQ'] / results[f'{spec} QAT']:.1f}; error as a fraction of the "
        f"target variance: PTQ {results[f'{spec} PTQ'] / var_te:.1%}, QAT {results[f'{spec} QAT'] / var_te:.1%}"
    )

# %%
# Checks: QAT beats PTQ at both widths, by a wide margin at int2; the trained
# weights really are on the int2 grid (at most 4 distinct values per channel).
assert results["int4 QAT"] < results["int4 PTQ"]
assert results["int2 QAT"] < 0.5 * results["int2 PTQ"]
w1_q = np.asarray(compress.compress_weight(p_qat_int2["w1"], "int2"))
assert max(len(np.unique(w1_q[:, j])) for j in range(D_HID)) <= 4
print("QAT vs PTQ checks passed")

# %% [markdown]
# QAT lets the other weights compensate for each weight's rounding error; PTQ cannot.
# The paper sees the same ordering at scale (Table 1, printed below from
# `sizes.PAPER_ROWS`): int4 PTQ (E2) is far from the float WER while int4 QAT (E3) is
# close to it; at int2, QAT alone was not enough for the 2B model (E4), which is why
# notebook 04 adds sub-channels.

# %%
B0_WER = 4.1  # Table 1, float32 dense 2B model (not a row of PAPER_ROWS)
print(f"B0 float32: WER {B0_WER}")
for r in sizes.PAPER_ROWS:
    if r.exp in ("E0", "E1", "E2", "E3", "E4"):
        print(f"{r.exp:3s} {r.description:10s} WER {r.paper_wer:5.1f}   size {r.paper_ratio}%")

# %% [markdown]
# ## 4. Native QAT: integer forward, STE backward
#
# The paper casts the quantized weight to a real integer type in the forward pass
# (Eq. 1) instead of keeping $\hat w$ in float. `quant.qat_matmul(x, w, bits)` does
# this with a custom VJP whose backward pass is the STE. Its gradients should equal
# those of the fake path `x @ fake_quant(w, bits)` (to float rounding), for any grid,
# including asymmetric int2 with sub-channels and clipping.

# %%
x = jax.random.normal(jax.random.fold_in(key, 3), (32, 64))
w = jax.random.normal(jax.random.fold_in(key, 4), (64, 16)) * 0.05
y_target = jax.random.normal(jax.random.fold_in(key, 5), (32, 16))


def loss_native(x, w, **kw):
    return jnp.mean((quant.qat_matmul(x, w, **kw) - y_target) ** 2)


def loss_fake(x, w, **kw):
    return jnp.mean((x @ quant.fake_quant(w, **kw) - y_target) ** 2)


SETTINGS = [dict(bits=8), dict(bits=4), dict(bits=2, symmetric=False, sub_channels=4, clip=0.8)]
diffs = []
for kw in SETTINGS:
    gn = jax.grad(loss_native, argnums=(0, 1))(x, w, **kw)
    gf = jax.grad(loss_fake, argnums=(0, 1))(x, w, **kw)
    d = [float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for a, b in zip(gn, gf)]
    diffs.append(d)
    print(f"{kw}: relative gradient difference dx {d[0]:.1e}, dw {d[1]:.1e}")
jaxpr = jax.make_jaxpr(lambda x, w: quant.qat_matmul(x, w, 4))(x, w).pretty_print(use_color=False)
print("int8 appears in the forward pass:", "i8[" in jaxpr)

# %%
for kw, (dx, dw) in zip(SETTINGS, diffs):
    assert dx < 1e-5 and dw < 1e-5, kw
np.testing.assert_allclose(
    np.asarray(quant.qat_matmul(x, w, 4)),
    np.asarray(x @ quant.fake_quant(w, 4)),
    rtol=1e-4,
    atol=1e-6,
)
assert "i8[" in jaxpr
print("native and fake QAT agree in value and gradient")

# %% [markdown]
# ## Exercises
#
# Each exercise has answer slots, variables marked `# ANSWER` that hold `...` until you
# write your answer in their place, and a check cell. The check prints `[skipped]` while a
# slot still holds `...`, `[correct]` when your answer agrees with what the code
# measures, and fails with a hint when it does not. Answer before running anything. In
# the instructor edition a worked solution (collapsed) follows each check.
#
# **Exercise 1 (prediction: where clipping starts to block).** At `clip=1.0` no weight
# loses its gradient (section 2); at `clip=0.7` some do. What is the largest clip ratio
# $\gamma^*$ at which *some* gradient is blocked at int4, i.e. above $\gamma^*$ nothing is
# blocked and just below it the largest weight of every channel is? It does not depend
# on the weights. The check measures the gradients 0.1% above and below your ratio.

# %%
my_gamma_star = 7 / 7.5  # ANSWER: a ratio in (0, 1]

# %%
w_ex = jax.random.normal(jax.random.fold_in(key, 1), (64, 8))


def blocked(clip):
    """How many of the 512 weights of w_ex get a zero gradient from int4 fake_quant."""
    g = jax.grad(lambda w: jnp.sum(quant.fake_quant(w, 4, clip=clip)))(w_ex)
    return int((g == 0).sum())


def blocking_starts_at(gamma):
    above, below = blocked(min(1.0, gamma * 1.001)), blocked(gamma * 0.999)
    assert above == 0, f"{above} gradients are blocked at {gamma * 1.001:.4f}: go higher"
    assert below > 0, f"nothing is blocked at {gamma * 0.999:.4f} either: go lower"
    return True


check_answer(
    "Exercise 1 (where clipping starts to block)",
    my_gamma_star,
    accept=blocking_starts_at,
    hint="section 2's check says which weights keep a gradient, in terms of the step s; "
    "write s for a given clip and ask when the largest |w| stops passing",
    correct="just below it, the largest weight of every channel loses its gradient",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: gamma* = 7 / 7.5 = 14 / 15, and the number blocked as the ratio falls.
gamma_star = 7 / 7.5
print(f"gamma* = 7 / 7.5 = {gamma_star:.4f}")
for c in (1.0, gamma_star * 1.001, gamma_star * 0.999, 0.8, 0.7, 0.5, 0.3):
    print(f"clip {c:.4f}: {blocked(c):3d} of {w_ex.size} gradients blocked")
assert blocked(gamma_star * 1.001) == 0 and blocked(gamma_star * 0.999) == w_ex.shape[1]

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** With clipping the scale is $s = \gamma\max|w|/7$; the grid's end level
# is $7s$, and a weight still rounds onto it up to half a step further out, so the
# gradient survives while $|w| \le 7.5\,s = \tfrac{7.5}{7}\gamma\max|w|$. The largest
# weight crosses that line when $\gamma < 7/7.5 = 14/15 \approx 0.933$, for every channel
# at once, whatever the weights (one blocked gradient per channel just below). So clip
# ratios between $14/15$ and 1 change the step without blocking anything: the end level
# simply moves inside the range. Below it, each smaller ratio blocks more of the tail,
# and those weights stop learning from the loss while they stay outside.

# %% [markdown]
# **Exercise 2 (prediction: sub-channels or bits?).** Both give int2 more precision:
# `int2/g4` gives every channel of the student 4 scales (groups of 4 rows of `w1`, 32 of
# `w2`), `int4` gives every weight 2 more bits. After QAT from the same float student,
# which one reaches the lower test error?
#
# Answer with a pair: your choice, and the number it follows from, the median over the
# float student's `w1` of the step a weight gets under `int2/g4` divided by the step it
# gets under `int4` (the grids below as `(bits, symmetric, sub_channels)`;
# `answers.median_step_ratio` reads the steps off `quant.quantize`'s scales).

# %%
INT2_G4, INT4 = (2, False, 4), (4, True, 1)  # the asymmetric int2 grid, symmetric int4
my_better = ("int4", answers.median_step_ratio(p_float["w1"], INT2_G4, INT4))  # ANSWER

# %%
ptq_g4 = float(mse(p_float, X_te, Y_te, "int2/g4"))
p_g4, _ = train(p_float, "int2/g4", QAT_STEPS, 1e-2)
qat_g4 = float(mse(p_g4, X_te, Y_te, "int2/g4"))
answers.check_grid_choice(
    "Exercise 2 (sub-channels or bits?)",
    my_better,
    p_float["w1"],
    {"int2/g4": INT2_G4, "int4": INT4},
    {"int2/g4": qat_g4, "int4": results["int4 QAT"]},
    measure="QAT test MSE",
    hint="count the levels each weight can take, and how far a weight is from its level",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: PTQ and QAT for int2, int2/g4 and int4.
for name, ptq, qat in (
    ("int2", results["int2 PTQ"], results["int2 QAT"]),
    ("int2/g4", ptq_g4, qat_g4),
    ("int4", results["int4 PTQ"], results["int4 QAT"]),
):
    print(f"{name:8s} PTQ {ptq:.2e}   QAT {qat:.2e}   (÷{ptq / qat:.1f})")
paper = {r.exp: r for r in sizes.PAPER_ROWS}
for e in ("E3", "E4", "E5", "E6", "E7"):
    print(f"paper {e}: {paper[e].description:27s} WER {paper[e].paper_wer}")
assert ptq_g4 < results["int2 PTQ"] and qat_g4 < results["int2 QAT"]  # g4 helps int2 ...
assert results["int4 QAT"] < qat_g4  # ... but two more bits help more
step_ratio = answers.median_step_ratio(p_float["w1"], INT2_G4, INT4)
print(f"median int2/g4 step / int4 step over w1: {step_ratio:.2f}")

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** Sub-channels shrink int2's step wherever a group's range is smaller
# than its channel's, so int2/g4 beats plain int2 before and after QAT. But each weight
# still has only four levels. int4's step is $\max|w|/7$; asymmetric int2 splits the
# range $[\min, \max]$ into 3 steps, about $2\max|w|/3$ for weights spread around zero:
# $14/3 \approx 4.7$ times coarser, and a group of a quarter of the rows narrows the range
# by much less than that: the median ratio printed above is the step int2/g4 gives a
# weight of `w1` in units of the step int4 gives it. QAT moves weights between levels; it cannot add levels. The
# paper's Table 1 (printed above) orders them the same way: int4 QAT (E3) is close to
# float, while int2 QAT needs sub-channels, and more of them, to come down (E4 to E7)
# and still ends well above E3.

# %% [markdown]
# **Exercise 3 (write your own STE).** Replace `...` in `my_round_ste` by an expression
# whose forward value is `round(x)` and whose gradient is 1 everywhere. Two tools do it:
# `jax.lax.stop_gradient` (its argument is a constant to autodiff) and `jax.custom_vjp`.


# %%
def my_round_ste(x):
    return x + jax.lax.stop_gradient(jnp.round(x) - x)  # ANSWER: forward round(x), gradient 1


# %%
xs_ex = jnp.linspace(-3, 3, 97)


def is_an_ste(y):
    np.testing.assert_array_equal(np.asarray(y), np.asarray(jnp.round(xs_ex)), "forward != round")
    grads = jax.vmap(jax.grad(my_round_ste))(xs_ex)
    assert bool(jnp.all(grads == 1.0)), f"gradients {np.unique(np.asarray(grads))}, not all 1"
    return True


check_answer(
    "Exercise 3 (write your own STE)",
    my_round_ste(xs_ex),
    accept=is_an_ste,
    hint="jnp.round alone has gradient 0; autodiff differentiates only what is not "
    "inside stop_gradient, so split the expression into a part that carries the gradient "
    "and a part that carries the forward value",
    correct="forward rounds, gradient passes straight through",
)


# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: the stop_gradient trick (the answer above) and the same STE with custom_vjp.
@jax.custom_vjp
def round_ste_vjp(x):
    return jnp.round(x)


round_ste_vjp.defvjp(lambda x: (jnp.round(x), None), lambda _, g: (g,))

for name, f in (("stop_gradient", my_round_ste), ("custom_vjp", round_ste_vjp)):
    y, g = f(xs_ex), jax.vmap(jax.grad(f))(xs_ex)
    assert bool(jnp.all(y == jnp.round(xs_ex))) and bool(jnp.all(g == 1.0))
    print(f"{name:13s}: forward = round(x), gradient values {np.unique(np.asarray(g))}")

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** In `x + stop_gradient(round(x) - x)` the bracket's value turns $x$ into
# $\operatorname{round}(x)$, while autodiff sees only the first $x$ (the bracket is a
# constant to it), so the derivative is 1. `custom_vjp` says the same thing explicitly:
# the forward function is `round`, the backward function passes the incoming gradient
# through unchanged. The library's `fake_quant` uses the same idea, with the gradient
# masked to zero outside the clipped range (section 2).

# %% [markdown]
# ## Lab (implement it): the straight-through estimator
#
# Write fake quantization with the STE yourself: `my_fake_quant(w, bits, clip=1.0)`
# returns `w_hat`, whose *value* is the quantize-dequantize of section 2 (a symmetric
# per-channel grid whose range is `clip` times each channel's largest `|w|`) and whose
# *gradient* is 1 for a weight that rounds onto the grid and 0 for one clipped away.
# The check compares the value and `jax.grad` of `sum(w_hat)` with `quant.fake_quant`'s on
# 12 random weights. The **core** level uses `clip=1`, where no weight is clipped; the
# **stretch** level passes `clip < 1`, where the largest weights must lose their gradient.
# (No gradient flows through the scale, as in the paper.)


# %%
def my_fake_quant(w, bits, clip=1.0):
    qmax = 2 ** (bits - 1) - 1
    scale = jax.lax.stop_gradient(jnp.max(jnp.abs(w), axis=0) * clip / qmax)  # ANSWER: per channel
    w_hat = jnp.clip(jnp.round(w / scale), -qmax, qmax) * scale  # ANSWER: quantize-dequantize
    w_in = jnp.clip(w, -(qmax + 0.5) * scale, (qmax + 0.5) * scale)  # ANSWER: what keeps a gradient
    return w_in + jax.lax.stop_gradient(w_hat - w_in)  # ANSWER: value w_hat, gradient of w_in


# %%
labs.check_ste(my_fake_quant)
labs.check_ste(my_fake_quant, "stretch")

# %% [markdown]
# ## Summary
#
# * `round` has a zero derivative almost everywhere; the STE (Bengio et al., ref. [27]
#   of the paper) replaces it by the identity in the backward pass, and blocks the
#   gradient only for clipped weights.
# * On the toy regression, QAT ends well below PTQ at both widths (section 3 prints
#   the factors); at int2 PTQ leaves an error that is a sizeable fraction of the
#   target's variance, and QAT cuts it severalfold. The paper's Table 1 shows the same split: int8
#   survives PTQ (E0), int4 needs QAT (E2 vs E3).
# * Native QAT (§3.2) stores the weight as a real int8 array in the forward pass (Eq. 1)
#   and uses the same STE backward pass; its values and gradients equal the fake path's
#   (section 4), so going native changes nothing that is learned. What it does not
#   change is the arithmetic: on this CPU the int8 weight is converted to float inside a
#   float dot, so training and a float-activation deployment compute the same product
#   only in that sense (the same quantized weights, float arithmetic). An integer engine
#   that also quantizes the activations (int8 x int8 -> int32, notebook 01 section 6)
#   computes a different product, with its own activation rounding, which this training
#   never saw.
