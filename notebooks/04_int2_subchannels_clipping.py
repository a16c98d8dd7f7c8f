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
#   $g/I$ (1%, 2%, 4.1% for $g=16, 32, 64$ at $I=1536$, as in §5.1);
# * use the clip-ratio search `clip="search"` and see when it helps;
# * read an error-versus-overhead plot.

# %%
# %matplotlib inline
from usmlite_edu.notebook_setup import setup

# The same set-up cell opens every notebook of the series (usmlite_edu/notebook_setup.py):
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

from usmlite_edu import compress, quant, sizes

# I = 1536 as in USM (g/I then equals the paper's g/1536); FAST has fewer channels.
I, J = (1536, 32) if FAST else (1536, 256)
GROUPS = [1, 16, 32, 64]

# %% [markdown]
# ## 1. Symmetric int2 wastes a level
#
# Two bits give four codes, $\{-2,-1,0,1\}$. The symmetric grid of Eq. (2) uses
# $[-q_{\max}, q_{\max}]$ with $q_{\max} = 2^{b-1}-1 = 1$: only three levels
# $\{-1, 0, 1\}$ (§3.2: "only three values are used"). The asymmetric grid of the
# 2-bit paper maps $[\min(w,0), \max(w,0)]$ onto all four codes with an integer zero
# point $z$:
#
# $$ s = \frac{\max(w,0) - \min(w,0)}{2^b - 1},\qquad q = \mathrm{clip}(\mathrm{round}(w/s) + z),\qquad \hat w = s\,(q - z).$$
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
    q_gc = quant.quantize(W, 2, symmetric=False, sub_channels=g, clip="search")
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
# is g/1536 (1%, 2%, 4.1% for 16, 32, 64).
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
# into the middle levels. Shrinking the range by a ratio $\gamma<1$ clips those few
# but makes the step finer for everyone else. `clip="search"` tries the grid
# `quant.DEFAULT_CLIP_GRID` of $\gamma$ values for each (group, channel) and keeps the one with the lowest squared
# error; $\gamma = 1$ is always on the grid, so the search never does worse than no
# clipping. Below: the error of one channel as a function of $\gamma$, and the search's
# pick.

# %%
col = W[:, :1]  # one channel, shape (I, 1)
gammas = np.linspace(0.3, 1.0, 71)
curve = [
    float(
        jnp.sum(
            (col - quant.dequantize(quant.quantize(col, 2, symmetric=False, clip=float(c)))) ** 2
        )
    )
    for c in gammas
]
best = float(quant.search_clip(col, 2, symmetric=False)[0, 0])
err_best = float(
    jnp.sum((col - quant.dequantize(quant.quantize(col, 2, symmetric=False, clip="search"))) ** 2)
)
print(
    f"search picked gamma = {best:.2f}; squared error {err_best:.4f} vs {curve[-1]:.4f} without clipping"
)

fig, ax = plt.subplots(figsize=(5.5, 3.2))
ax.plot(gammas, curve, label="squared error of channel 0")
ax.axvline(best, color="C3", ls="--", label=f"search: gamma={best:.2f}")
ax.axvspan(min(quant.DEFAULT_CLIP_GRID), 1.0, color="gray", alpha=0.1, label="searched range")
ax.set(
    xlabel="clip ratio gamma", ylabel=r"$\|w-\hat w\|^2$", title="int2 (asymmetric), one channel"
)
ax.legend(fontsize=8)
plt.show()

# %%
# Checks: the pick is on the search grid, and per (group, channel) the search is never
# worse than no clipping.
assert min(quant.DEFAULT_CLIP_GRID) <= best <= 1.0 and err_best <= curve[-1] + 1e-9
g = 16
wg = W.reshape(g, I // g, J)
e_none = jnp.sum(
    (wg - quant.dequantize(quant.quantize(W, 2, symmetric=False, sub_channels=g)).reshape(wg.shape))
    ** 2,
    axis=1,
)
e_srch = jnp.sum(
    (
        wg
        - quant.dequantize(
            quant.quantize(W, 2, symmetric=False, sub_channels=g, clip="search")
        ).reshape(wg.shape)
    )
    ** 2,
    axis=1,
)
assert e_none.shape == (g, J) and bool(jnp.all(e_srch <= e_none * (1 + 1e-5) + 1e-12))
print(
    f"clip search never worse; it helps {int((e_srch < e_none * (1 - 1e-6)).sum())} of {e_none.size} groups at g={g}"
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

# %% [markdown]
# ## Exercises
#
# **Exercise 1 (any group count).** Set `g_ex` to any divisor of `I`. The check
# verifies what sub-channels guarantee for every such choice: one scale per group and
# channel, no group's step larger than its channel's, and each weight within half a
# step of its quantized value.

# %%
g_ex = 8  # EXERCISE: any divisor of I (1, 2, 4, ..., I)
q_ex = quant.quantize(W, 2, symmetric=False, sub_channels=g_ex)
q_ch = quant.quantize(W, 2, symmetric=False, sub_channels=1)

# %%
assert I % g_ex == 0 and q_ex.scale.shape == (g_ex, J)
assert bool(jnp.all(q_ex.scale <= q_ch.scale * (1 + 1e-6)))
step = jnp.repeat(q_ex.scale, I // g_ex, axis=0)  # the step of each weight's group
assert bool(jnp.all(jnp.abs(W - quant.dequantize(q_ex)) <= step / 2 * (1 + 1e-5)))
print(f"g={g_ex}: error {rel_err(W, quant.dequantize(q_ex)):.3f}, overhead {100 * g_ex / I:.2f}%")

# %% [markdown]
# **Exercise 2 (symmetric with sub-channels).** Is symmetric int2 with many groups a
# substitute for the asymmetric grid? Set `sym_groups` and compare with asymmetric at
# $g=16$. The check verifies, for any choice, that the symmetric grid still uses at
# most three codes.

# %%
sym_groups = 64  # EXERCISE: a divisor of I
q_sym_g = quant.quantize(W, 2, symmetric=True, sub_channels=sym_groups)

# %%
assert set(np.unique(np.asarray(q_sym_g.values)).tolist()) <= {-1, 0, 1}
print(
    f"symmetric g={sym_groups}: error {rel_err(W, quant.dequantize(q_sym_g)):.3f}   "
    f"asymmetric g=16: {rows[1]['err']:.3f}"
)

# %% [markdown]
# **Exercise 3 (your own clip grid).** Give `search_clip` a grid of your own (any
# ratios in $(0, 1]$). If the default search picked the edge of its range
# (`min(quant.DEFAULT_CLIP_GRID)`) in section 3, try ratios below it. The check verifies that every
# chosen ratio comes from your grid or is $1.0$, that it is the best of those for its
# channel, and that the result is never worse than no clipping.

# %%
my_grid = (0.6, 0.8)  # EXERCISE: any ratios in (0, 1]
picked = quant.search_clip(W, 2, symmetric=False, grid=my_grid)

# %%
allowed = sorted(set(float(c) for c in my_grid) | {1.0})
assert picked.shape == (1, J) and np.all(np.isin(np.asarray(picked), np.float32(allowed)))
# Squared error of every channel under every allowed ratio: shape (len(allowed), J).
per_ratio = jnp.stack(
    [
        jnp.sum((W - quant.dequantize(quant.quantize(W, 2, symmetric=False, clip=c))) ** 2, axis=0)
        for c in allowed
    ]
)
idx = np.searchsorted(np.float32(allowed), np.asarray(picked)[0])
err_picked = per_ratio[idx, jnp.arange(J)]
assert bool(jnp.all(err_picked <= per_ratio[-1] * (1 + 1e-5) + 1e-12))  # never worse than 1.0
assert bool(
    jnp.all(err_picked <= per_ratio.min(axis=0) * (1 + 1e-5) + 1e-12)
)  # the best of your grid
ratios, freq = np.unique(np.asarray(picked), return_counts=True)
print("ratios chosen:", ", ".join(f"{r:.2f} for {int(f)} channels" for r, f in zip(ratios, freq)))

# %% [markdown]
# ## Summary
#
# * Symmetric int2 uses three of the four codes; the asymmetric grid with an integer
#   zero point uses all four and keeps zero exact (§3.2).
# * Sub-channels shrink the error at an overhead of $g/I$ float32 per weight; the
#   paper's accounting, $g/1536$, gives 1%, 2% and 4.1% for $g = 16, 32, 64$ (§5.1),
#   and Table 1 (printed in section 4) shows the WER falling steadily from E4 to E7.
# * Clipping the range (the 2-bit Conformer paper's search, listed as future work in
#   §5.4) trades a few clipped outliers for a finer step and never increases the
#   per-group error.
# * Notebook 05 compares these int2 variants against int4 + 2:4, which the paper finds
#   smaller *and* more accurate (E12 vs E7).
