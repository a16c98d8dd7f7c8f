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
# # 02 · N:M structured sparsity (USM-Lite §3.3, Eqs. 3-4, Fig. 1)
#
# N:M sparsity keeps at most $N$ non-zero weights in every group of $M$ consecutive
# weights: 2:4 halves a matrix, 1:4 keeps a quarter. Hardware (sparse tensor cores)
# skips the zeros, so the pattern saves both memory and compute.
#
# **After this notebook you will be able to**
#
# * compute an N:M magnitude mask (Eq. 3) with `usmlite_edu.core.sparsity.nm_mask` and
#   apply it (Eq. 4), reproducing the paper's Fig. 1 exactly;
# * compare what 2:4 and 1:4 keep with unstructured magnitude pruning at the same
#   density;
# * explain why the groups run along the *input* dimension;
# * run one-shot and few-shot mask schedules inside an optax optimizer with
#   `sparsity.nm_masked`, and verify that pruned weights stay exactly zero.

# %% [markdown] tags=["header"]
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/usmlite-edu/usmlite_edu/blob/main/notebooks/02_nm_sparsity.ipynb) [![Launch on Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/usmlite-edu/usmlite_edu/main?labpath=notebooks%2F02_nm_sparsity.ipynb)
#
# * **Before you start:** Notebook 01.
# * **Reading time:** about 40 min (its text at 120 words a minute, 5 min an exercise).
# * **Running time:** 14 s in fast mode; 28 s in full mode (AMD EPYC (cpu family 25, model 17, stepping 1), 2 cores shared with other jobs; `python scripts/time_notebooks.py`). Fast mode (`USMLITE_FAST=1`) uses tiny sizes; full mode is what the figures in the text describe.

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

from usmlite_edu.core import sparsity
from usmlite_edu.course import answers, labs

I, J = (256, 64) if FAST else (1536, 256)  # weight for the statistics
TOY_I, TOY_J, TOY_N = (32, 8, 256) if FAST else (64, 16, 1024)  # least squares
STEPS, T_P = (120, 40) if FAST else (300, 100)  # training steps, few-shot T_p

# %% [markdown]
# ## 1. Fig. 1 of the paper, exactly
#
# The paper's figure takes a $2\times 8$ weight, reshapes it into groups of $M=4$
# consecutive entries ($V = \mathrm{Reshape}(W) \in \mathbb{R}^{K\times M}$), finds in
# each group the $N$-th largest magnitude $\phi_k$ and keeps
#
# $$ \mathbf{M}_{km} = \begin{cases} 1 & |V_{km}| \ge \phi_k \\ 0 & \text{otherwise}\end{cases}\quad (3), \qquad \mathrm{Prune}(V) = V \odot \mathbf{M}\quad (4).$$
#
# The figure groups consecutive entries of a *row*, so we pass `axis=1` here. (For the
# library's `(in, out)` weights the default is `axis=0`; section 3 explains why.)

# %%
W_fig = jnp.array([[1, 2, 3, 4, -3, -4, 1, 2], [3, 1, -4, 2, -3, 1, 2, -4]], jnp.float32)
# Mask and sparse weight as printed in the paper's Fig. 1.
FIG1_MASK = np.array([[0, 0, 1, 1, 1, 1, 0, 0], [1, 0, 1, 0, 1, 0, 0, 1]], bool)
FIG1_SPARSE = np.array([[0, 0, 3, 4, -3, -4, 0, 0], [3, 0, -4, 0, -3, 0, 0, -4]], np.float32)

mask_fig = sparsity.nm_mask(W_fig, 2, 4, axis=1)
sparse_fig = sparsity.apply_mask(W_fig, mask_fig)
print("mask:\n", mask_fig.astype(int))
print("pruned weight:\n", sparse_fig)
print("the figure's reshaped view V (K x M = 4 x 4):\n", W_fig.reshape(4, 4))

# %%
# Checks: the figure's mask and sparse weight, and the same mask on the reshaped view.
assert mask_fig.dtype == jnp.bool_ and mask_fig.shape == (2, 8)
np.testing.assert_array_equal(np.asarray(mask_fig), FIG1_MASK)
np.testing.assert_array_equal(np.asarray(sparse_fig), FIG1_SPARSE)
np.testing.assert_array_equal(
    np.asarray(sparsity.nm_mask(W_fig.reshape(4, 4), 2, 4, axis=1)), FIG1_MASK.reshape(4, 4)
)
assert sparsity.sparsity_of(sparse_fig) == 0.5
print("Fig. 1 reproduced")

# %% [markdown]
# **Ties.** Read literally, Eq. (3) keeps *every* weight with $|w| \ge \phi_k$, so a
# group such as $[2, -2, 2, 1]$ would keep three weights under 2:4 and break the
# pattern. `nm_mask` keeps exactly $N$ and breaks ties towards the lower index.

# %%
tie = jnp.array([[2.0, -2.0, 2.0, 1.0]])
tie_mask = sparsity.nm_mask(tie, 2, 4, axis=1)
print("group [2, -2, 2, 1] under 2:4 ->", tie_mask.astype(int))
assert int(tie_mask.sum()) == 2 and tie_mask[0, :2].all()

# %% [markdown]
# ## 2. What survives: N:M versus unstructured pruning
#
# Unstructured magnitude pruning at 50% keeps the largest half of *all* weights; 2:4
# keeps the largest half of every group of four. The constraint costs something: a
# group holding three large weights must drop one of them, while a group of small
# weights keeps two small ones. We compare the kept fraction of total magnitude
# ($\sum|w|$) and of energy ($\sum w^2$) on a Gaussian weight. (The unstructured
# threshold is a one-line quantile: it is only the reference here.)

# %%
W = jax.random.normal(jax.random.fold_in(key, 2), (I, J)) * 0.02
absW = jnp.abs(W)


def unstructured(w, density):  # reference: keep the top `density` of all |w|
    return jnp.abs(w) >= jnp.quantile(jnp.abs(w), 1 - density)


masks = {
    "2:4": sparsity.nm_mask(W, 2, 4),  # axis=0: groups along the input
    "1:4": sparsity.nm_mask(W, 1, 4),
    "unstructured 50%": unstructured(W, 0.50),
    "unstructured 25%": unstructured(W, 0.25),
}
kept = {}
for name, m in masks.items():
    kept[name] = dict(
        density=float(m.mean()),
        magnitude=float(jnp.sum(absW * m) / jnp.sum(absW)),
        energy=float(jnp.sum(W**2 * m) / jnp.sum(W**2)),
    )
    print(
        f"{name:17s} density {kept[name]['density']:.3f}   magnitude kept "
        f"{kept[name]['magnitude']:.3f}   energy kept {kept[name]['energy']:.3f}"
    )

fig, ax = plt.subplots(figsize=(7, 3.5))
bins = np.linspace(0, float(absW.max()), 60)
for name, m in masks.items():
    ax.hist(np.asarray(absW[m]), bins=bins, histtype="step", lw=1.5, label=name)
ax.set(xlabel="|w| of kept weights", ylabel="count", title="Which magnitudes survive")
ax.legend(fontsize=8)
plt.show()

# %%
# Checks: exact N:M densities; within every group the kept magnitudes are the
# largest; at equal density unstructured keeps at least as much (it is optimal).
assert kept["2:4"]["density"] == 0.5 and kept["1:4"]["density"] == 0.25
for n, name in ((2, "2:4"), (1, "1:4")):
    g_abs = absW.reshape(I // 4, 4, J)
    g_m = masks[name].reshape(I // 4, 4, J)
    assert bool(jnp.all(g_m.sum(axis=1) == n))
    min_kept = jnp.where(g_m, g_abs, jnp.inf).min(axis=1)
    max_pruned = jnp.where(g_m, -jnp.inf, g_abs).max(axis=1)
    assert bool(jnp.all(min_kept >= max_pruned))
assert kept["unstructured 50%"]["energy"] >= kept["2:4"]["energy"]
assert kept["unstructured 25%"]["energy"] >= kept["1:4"]["energy"]
gap24 = kept["unstructured 50%"]["energy"] - kept["2:4"]["energy"]
gap14 = kept["unstructured 25%"]["energy"] - kept["1:4"]["energy"]
assert gap14 > gap24
print("N:M keeps the largest in each group; unstructured keeps at least as much overall")
print(f"energy given up for the N:M structure: 2:4 {gap24:.3f}, 1:4 {gap14:.3f}")

# %% [markdown]
# The energy given up for the structure (last line above) is larger for 1:4 than for
# 2:4: with one survivor per group, every group holding two large weights loses one,
# and 1:4 also starts from a lower density. The ordering points the same way as the
# paper's Table 2 (2:4 nearly free, 1:4 not: E8 vs E10), but it is a statement about
# one Gaussian matrix's energy before any training, not a measurement of word error
# rate: Exercise 2 shows the gap changes with the weights' distribution, and
# fine-tuning moves the kept weights (notebook 07, section 3).
#
# ## 3. Why the groups run along the input dimension
#
# With $W$ stored as `(in, out)`, output $j$ is the dot product
# $Y_j = \sum_i X_i W_{ij}$ over the *input* index $i$. A sparse tensor core speeds up
# that dot product by skipping zero operands inside every run of 4 consecutive $i$.
# So the 2-of-4 guarantee must hold along $i$, i.e. `axis=0` (the default). Grouping
# along the output dimension (`axis=1`) produces a valid-looking 50% mask, but the
# dot products it leaves behind have no fixed pattern.

# %%
m_in = sparsity.nm_mask(W, 2, 4, axis=0)  # groups along inputs (the default)
m_out = sparsity.nm_mask(W, 2, 4, axis=1)  # groups along outputs
per_dot_in = m_in.reshape(I // 4, 4, J).sum(axis=1)  # kept per 4 inputs, per output j
per_dot_out = m_out.reshape(I // 4, 4, J).sum(axis=1)
print("kept among 4 consecutive inputs of a dot product:")
for name, counts in (("axis=0", per_dot_in), ("axis=1", per_dot_out)):
    values, freq = np.unique(np.asarray(counts), return_counts=True)
    print(
        f"  {name}: "
        + ", ".join(f"{int(v)} kept in {int(f)} dot-product groups" for v, f in zip(values, freq))
    )

# %%
# Checks: axis=0 gives exactly 2 of every 4 inputs for each output; axis=1 does not.
# A framework that stores (out, in) weights (e.g. PyTorch Linear) uses axis=1 on W.T.
assert bool(jnp.all(per_dot_in == 2))
assert not bool(jnp.all(per_dot_out == 2))
np.testing.assert_array_equal(np.asarray(sparsity.nm_mask(W.T, 2, 4, axis=1).T), np.asarray(m_in))
print("axis=0 is the hardware-friendly layout for (in, out) weights")

# %% [markdown]
# ## 4. Mask schedules live in the optimizer
#
# During fine-tuning the paper uses two schedules (§3.3; Algorithm 1, lines 4-6: the
# masks are updated while $t < T_p$, and line 7 prunes through them at every step):
#
# * **one-shot**: compute the mask once from the starting weights, freeze it;
# * **few-shot**: recompute it for the first $T_p$ steps (1k of 200k in the paper),
#   then freeze it.
#
# Only unpruned weights are updated. `sparsity.nm_masked(optax.adam(...), n, m,
# update_steps=T_p)` wraps an optimizer: its state holds the step counter and the
# current masks (read them with `sparsity.masks_from_state`), it zeroes the updates of
# pruned weights, and it refreshes the masks while the counter is below $T_p$. The
# forward pass uses `apply_mask(params, masks)`.
#
# The toy: least squares $\min_W \|XW - Y\|^2$ whose true $W^\star$ is itself 2:4
# sparse. We start from a noisy copy of $W^\star$ (our "pre-trained" weights), so the
# one-shot mask taken from the start gets some positions wrong.

# %%
k1, k2, k3 = jax.random.split(jax.random.fold_in(key, 3), 3)
X_toy = jax.random.normal(k1, (TOY_N, TOY_I))
W_dense = jax.random.normal(k2, (TOY_I, TOY_J))
support = sparsity.nm_mask(W_dense, 2, 4)
W_star = sparsity.apply_mask(W_dense, support)  # the 2:4 truth
Y_toy = X_toy @ W_star
params0 = {"w": W_star + 0.6 * jax.random.normal(k3, (TOY_I, TOY_J))}


def toy_loss(params, masks):
    pruned = jax.tree.map(sparsity.apply_mask, params, masks)  # forward: W * M (Eq. 4)
    return jnp.mean((X_toy @ pruned["w"] - Y_toy) ** 2)


def run_schedule(update_steps, steps=STEPS, lr=0.01):
    opt = sparsity.nm_masked(optax.adam(lr), 2, 4, update_steps=update_steps)
    state = opt.init(params0)

    @jax.jit
    def step(params, state):
        masks = sparsity.masks_from_state(state)
        loss, grads = jax.value_and_grad(toy_loss)(params, masks)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    params, used, losses, snapshots = params0, [], [], {}
    for t in range(steps):
        used.append(np.asarray(sparsity.masks_from_state(state)["w"]))  # mask of step t
        snapshots[t] = params
        params, state, loss = step(params, state)
        losses.append(float(loss))
    return dict(
        params=params,
        state=state,
        used=np.stack(used),
        losses=np.array(losses),
        snapshots=snapshots,
    )


t0 = time.time()
one = run_schedule(1)
few = run_schedule(T_P)
for name, r in (("one-shot", one), (f"few-shot T_p={T_P}", few)):
    changes = (r["used"][1:] != r["used"][:-1]).sum(axis=(1, 2))
    agree = float((r["used"][-1] == np.asarray(support)).mean())
    print(
        f"{name:18s} final loss {r['losses'][-1]:.4f}   mask updates with a change: "
        f"{int((changes > 0).sum())}   agreement with the true support {agree:.3f}"
    )
print(
    f"starting mask agrees with the true support on {float((one['used'][0] == np.asarray(support)).mean()):.3f}"
    f" of entries   ({time.time() - t0:.1f} s)"
)

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].semilogy(one["losses"], label="one-shot")
axes[0].semilogy(few["losses"], label=f"few-shot, T_p={T_P}")
axes[0].set(xlabel="step", ylabel="training loss", title="Least squares under a 2:4 mask")
axes[0].legend()
changes_few = (few["used"][1:] != few["used"][:-1]).sum(axis=(1, 2))
axes[1].plot(np.arange(1, STEPS), changes_few, label="few-shot")
axes[1].plot(
    np.arange(1, STEPS), (one["used"][1:] != one["used"][:-1]).sum(axis=(1, 2)), label="one-shot"
)
axes[1].axvline(T_P, color="gray", ls=":", label="T_p")
axes[1].set(xlabel="step t", ylabel="mask entries changed", title="Mask changes between steps")
axes[1].legend()
plt.tight_layout()
plt.show()

# %%
# Checks for both schedules.
init_mask = np.asarray(sparsity.nm_mask(params0["w"], 2, 4))
assert np.all(one["used"] == init_mask)  # one-shot: never changes
assert np.all(few["used"][T_P:] == few["used"][T_P - 1])  # few-shot: frozen from step T_p on
assert (few["used"][1:T_P] != few["used"][: T_P - 1]).any()  # ... and it did move before
for r in (one, few):
    assert np.all(r["used"].reshape(STEPS, TOY_I // 4, 4, TOY_J).sum(axis=2) == 2)  # valid 2:4
    mask = sparsity.masks_from_state(r["state"])["w"]
    w_eff = sparsity.apply_mask(r["params"]["w"], mask)
    assert bool(jnp.all(w_eff[~mask] == 0.0))  # pruned: exactly zero
    frozen = r["snapshots"][T_P]["w"] if r is few else params0["w"]
    assert bool(jnp.all(r["params"]["w"][~mask] == frozen[~mask]))  # never updated
    assert int(r["state"].count) == STEPS  # counter in the state
assert few["losses"][-1] < one["losses"][-1]
support_np = np.asarray(support)
assert (few["used"][-1] == support_np).mean() > (one["used"][-1] == support_np).mean()
print("schedule checks passed")

# %% [markdown]
# With a noisy start, the frozen one-shot mask keeps some wrong positions for ever;
# the few-shot schedule lets the weights move first and then re-ranks them, which
# repairs part of the mask (compare the agreement numbers printed above). This is the
# effect the paper reports for 1:4 (Table 2, E10 vs E11); for 2:4 the difference was
# small. Notice also how much the mask churns until $T_p$: freezing it lets the kept
# weights settle.
#
# ## Exercises
#
# Each exercise has answer slots, variables marked `# ANSWER` that hold `...` until you
# write your answer in their place, and a check cell. The check prints `[skipped]` while a
# slot still holds `...`, `[correct]` when your answer agrees with what the code
# measures, and fails with a hint when it does not. Answer before running anything. In
# the instructor edition a worked solution (collapsed) follows each check.
#
# **Exercise 1 (prediction: 1:4 on Fig. 1).** Write down the 1:4 mask of the Fig. 1
# matrix `W_fig`, groups of 4 along each row as in section 1, as two rows of eight 0s
# and 1s.

# %%
my_mask_1_4 = [[0, 0, 0, 1, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0, 0, 1]]  # ANSWER: 2 rows of 0/1

# %%
answers.check_nm_mask_answer(
    "Exercise 1 (1:4 on Fig. 1)",
    my_mask_1_4,
    W_fig,
    1,
    4,
    axis=1,
    hint="in every group of 4 consecutive entries of a row keep only the largest |w|; "
    "W_fig has 2 rows of 2 groups",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: the largest magnitude of each group of four, and the 2:4 mask it sits in.
groups = np.asarray(W_fig).reshape(2, 2, 4)
for r in range(2):
    for k in range(2):
        print(
            f"row {r}, group {k}: {groups[r, k].tolist()} -> keep {groups[r, k][np.argmax(np.abs(groups[r, k]))]}"
        )
mask_1_4 = np.asarray(sparsity.nm_mask(W_fig, 1, 4, axis=1)).astype(int)
print("1:4 mask:\n", mask_1_4)
print("contained in Fig. 1's 2:4 mask:", bool(np.all(FIG1_MASK | (mask_1_4 == 0))))

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** 1:4 keeps the single largest magnitude of each group, and the largest of
# a group is always among its two largest, so the 1:4 mask sits inside the 2:4 mask:
# going from 2:4 to 1:4 drops, in every group, the second-largest weight. Try 1:2, 3:4
# or 2:8 the same way (`sparsity.nm_mask(W_fig, n, m, axis=1)`): $m$ must divide the row
# length 8.

# %% [markdown]
# **Exercise 2 (prediction: heavier tails).** Trained weights often have heavier tails
# than a Gaussian. Draw the weight from a Student-t with `df` degrees of freedom
# (smaller = heavier tails; 3 is heavy) and predict: compared with the Gaussian weight of
# section 2, does the energy given up by 2:4 against unstructured 50% pruning (the gap
# printed there) grow or shrink? Answer with a pair: your choice, and the reason as a
# number: the share of `W_t`'s energy ($\sum w^2$) held by its largest 5% of weights
# (within 0.04).

# %%
df = 3.0  # EXERCISE: Student-t degrees of freedom; try 2.5, 5, 30 after answering
W_t = jax.random.t(jax.random.fold_in(key, 4), df, (I, J))

# %%
my_gap_change = ("shrinks", 0.55)  # ANSWER: ("grows" or "shrinks", top-5% energy share)


# %%
def energy_gap(w):
    """Energy kept by unstructured 50% minus energy kept by 2:4 (fractions of the total)."""
    kept_by = lambda m: float(jnp.sum(w**2 * m) / jnp.sum(w**2))
    return kept_by(unstructured(w, 0.5)) - kept_by(sparsity.nm_mask(w, 2, 4))


answers.check_tail_gap_change(
    "Exercise 2 (heavier tails)",
    my_gap_change,
    W_t,
    energy_gap(W_t),
    gap24,
    hint="with heavy tails a few weights hold most of the energy; how often does a group "
    "of four hold three of them?",
)


# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: the gap, the energy share of the largest 5% of weights, and the share of
# groups of four holding three or more of the top half, from light to heavy tails.
def tail_stats(w):
    e = np.sort(np.asarray(w).ravel() ** 2)[::-1]
    top_half = np.asarray(unstructured(w, 0.5)).reshape(I // 4, 4, J).sum(axis=1)
    return energy_gap(w), e[: e.size // 20].sum() / e.sum(), float((top_half >= 3).mean())


print(f"{'weight':>14} {'2:4 gap':>8} {'top-5% energy':>14} {'groups with 3+ of top half':>27}")
for name, w in [("Gaussian", W)] + [
    (f"t, df={d}", jax.random.t(jax.random.fold_in(key, 4), d, (I, J))) for d in (30, 5, 3, 2.5)
]:
    g, top5, crowded = tail_stats(w)
    print(f"{name:>14} {g:8.3f} {top5:14.2f} {crowded:27.3f}")
gaps = [tail_stats(jax.random.t(jax.random.fold_in(key, 4), d, (I, J)))[0] for d in (30, 5, 3, 2.5)]
assert all(a > b for a, b in zip(gaps, gaps[1:]))  # heavier tails, smaller gap

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** The gap *shrinks* as the tails get heavier. 2:4 loses against
# unstructured pruning only in groups that hold three or four of the matrix's top-half
# weights; it must drop one of them and keep a small one elsewhere. Which weights are in
# the top half does not depend on the tails (it is half of them either way), but *how much
# energy* those dropped weights carry does: with heavy tails the energy sits in a few very
# large weights (the top-5% column), and such a weight is almost always the largest of
# its group, which 2:4 keeps. The weights 2:4 drops are mid-sized ones, a small share of a
# heavy-tailed matrix's energy. So on weights with heavy tails, as trained weights often
# have, the structure costs even less than the Gaussian of section 2 suggests.

# %% [markdown]
# **Exercise 3 (prediction: the length of the few-shot phase).** Section 4 compared
# one-shot ($T_p = 1$) with $T_p =$ `T_P`. Does a longer few-shot phase *always* give a
# lower final training loss on the toy? The check runs the schedule for a few more
# $T_p$, up to the whole run (`STEPS`, a mask that never freezes), and prints the final
# loss of each. Answer with a pair: `"always"` or `"not always"`, and the number your
# choice follows from: the $T_p$ of the sweep with the lowest final loss, as a fraction of
# `STEPS` (1.0 is the mask that never freezes; within 2%). Predict, then run and correct.

# %%
my_longer_always_better = ("not always", 2 / 3)  # ANSWER: (choice, best T_p / STEPS)

# %%
# One-shot and T_p = T_P ran in section 4; three longer phases, the last never frozen.
sweep = {1: one, T_P: few} | {
    tp: run_schedule(tp) for tp in (2 * STEPS // 3, 5 * STEPS // 6, STEPS)
}
TP_SWEEP = sorted(sweep)
final_loss = np.array([sweep[tp]["losses"][-1] for tp in TP_SWEEP])
agreement = np.array([(sweep[tp]["used"][-1] == support_np).mean() for tp in TP_SWEEP])
for tp, loss, agree in zip(TP_SWEEP, final_loss, agreement):
    print(f"T_p={tp:4d}: final loss {loss:.4f}, mask agrees with the true support on {agree:.3f}")
answers.check_longer_phase_always_better(
    "Exercise 3 (the length of the few-shot phase)",
    my_longer_always_better,
    TP_SWEEP,
    final_loss,
    STEPS,
    hint="a step spent re-ranking the mask is a step the final mask's weights do not "
    "train under that mask; look at the last steps of a mask that is never frozen",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: final loss and mask quality against T_p.
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].plot(TP_SWEEP, final_loss, "o-")
axes[0].set(
    xlabel="T_p", ylabel="final training loss", yscale="log", title="Loss after STEPS steps"
)
axes[1].plot(TP_SWEEP, agreement, "o-")
axes[1].set(xlabel="T_p", ylabel="agreement with true support", title="Final mask")
plt.tight_layout()
plt.show()
worse = [
    (a, b) for a, b, la, lb in zip(TP_SWEEP, TP_SWEEP[1:], final_loss, final_loss[1:]) if lb > la
]
print("longer but worse:", ", ".join(f"T_p={b} after T_p={a}" for a, b in worse))
assert worse and agreement[-1] > agreement[0]

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** No. Over the sweep the mask gets better as $T_p$ grows (its agreement
# with the true support rises overall), but the final loss is not monotone: some longer
# phases end worse than shorter ones (printed above). Two effects pull against each
# other. Re-ranking on weights that have trained longer repairs more of the one-shot
# mask's mistakes. But every re-ranking step is a step the *final* mask's weights do not
# spend training under that mask, and a weight that re-enters the mask late returns with
# the stale value it had when it was pruned (pruned weights are never updated). A mask
# that changes until the very end has had no time to settle at all. The paper's
# few-shot phase is short, $T_p$ = 1k of 200k steps (0.5%); whether its length was
# tuned is not reported.

# %% [markdown]
# ## Lab (implement it): the N:M mask
#
# Write Eq. (3) yourself: `my_nm_mask(w, n, m)` returns a boolean mask of `w`'s shape
# `(I, J)` that keeps, in every group of `m` consecutive *inputs* of each output channel
# (down a column, along the reduction axis of section 3), the `n` weights of largest
# magnitude. Fill in the lines marked `# ANSWER`; the check compares your mask with
# `sparsity.nm_mask(w, n, m, axis=0)` on 12 random weights and patterns. The **stretch**
# level adds a group of equal magnitudes, where any `n` of them may be kept.


# %%
def my_nm_mask(w, n, m):
    groups = jnp.abs(w).reshape(-1, m, w.shape[1])  # ANSWER: (I/m, m, J): a group per column
    order = jnp.argsort(-groups, axis=1, stable=True)  # ANSWER: largest first, within each group
    rank = jnp.argsort(order, axis=1, stable=True)  # ANSWER: each weight's place in its group
    return (rank < n).reshape(w.shape)  # ANSWER: keep the n best of each group


# %%
labs.check_nm_mask(my_nm_mask)
labs.check_nm_mask(my_nm_mask, "stretch")

# %% [markdown]
# ## Summary
#
# * Eq. (3) keeps the $N$ largest magnitudes of each group of $M$; Eq. (4) multiplies by
#   the mask. `nm_mask` reproduces Fig. 1 and keeps exactly $N$ even with ties.
# * At the same density, N:M keeps less of a weight's energy than unstructured pruning;
#   on a Gaussian weight the loss is small for 2:4 and larger for 1:4 (section 2);
#   Exercise 2 asks what heavy tails do to it. Table 2 points the same way after
#   fine-tuning (E8/E9 near the float WER, E10/E11 far from it), but energy kept before
#   training is not WER.
# * Groups run along the input (contraction) dimension, `axis=0` for `(in, out)`
#   weights, because that is the dot product sparse hardware accelerates.
# * The schedule (one-shot, or few-shot with $T_p$) lives in the optimizer state;
#   pruned weights are never updated and stay exactly zero (§3.3, Algorithm 1).
#   Notebook 05 combines the mask with quantization.

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# *Instructor's summary of Exercise 2:* with heavy tails the gap between 2:4 and
# unstructured 50% pruning shrinks: a few weights hold most of the energy, and a group of
# four rarely holds three of them.
