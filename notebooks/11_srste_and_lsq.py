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
# # 11 · The paper's future work: SR-STE and learned step sizes (LSQ)
#
# USM-Lite ends (section 5) with techniques it did not try: a straight-through estimator
# for pruning (SR-STE, Zhou et al. 2021) and learned quantization scales (LSQ, Esser et
# al. 2019). The library has both as spec options, `2:4/srste` and `int4/lsq`. This
# notebook puts each against the paper's own choice, first on toys where every mask flip
# and every step size can be watched, then on the `cpu` Conformer-CTC, compared on the
# same utterances with the library's paired statistics.
#
# **After this notebook you will be able to**
#
# * say what SR-STE changes in a training step (the gradient passes the mask, pruned
#   weights decay) and why it only matters while the mask is still recomputed;
# * count mask flips under one-shot, few-shot and SR-STE schedules;
# * write LSQ's step-size gradient (Esser et al., Eq. 3) and its scale $g$, and check it
#   against `usmlite_edu.core.quant.lsq_step_gradient`;
# * fine-tune with `int4/lsq` and compare it with min/max scales, paired, with a 95%
#   interval, and say "inconclusive" when the interval allows both readings.

# %% [markdown] tags=["header"]
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/usmlite-edu/usmlite_edu/blob/main/notebooks/11_srste_and_lsq.ipynb) [![Launch on Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/usmlite-edu/usmlite_edu/main?labpath=notebooks%2F11_srste_and_lsq.ipynb)
#
# * **Before you start:** Notebooks 01-03 (grids, N:M masks, the STE) and 07 (fine-tuning).
# * **Reading time:** about 30 min (its text at 120 words a minute, 5 min an exercise).
# * **Running time:** 38 s in fast mode; 34 min in full mode (AMD EPYC (cpu family 25, model 17, stepping 1), 2 cores shared with other jobs; `python scripts/time_notebooks.py`). Fast mode (`USMLITE_FAST=1`) uses tiny sizes; full mode is what the figures in the text describe.

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
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from usmlite_edu.core import quant, sparsity, stats
from usmlite_edu.course import answers
from usmlite_edu.speech import runs
from usmlite_edu.training import train

REPO = env.repo or Path.cwd()
TOY_STEPS = 150 if FAST else 600  # optimizer steps of the toys
I, J = (64, 16) if FAST else (256, 64)  # toy weight (in, out)

# %% [markdown]
# ## 1. SR-STE on a toy: what moves, and when the mask flips
#
# A student weight `w` learns to reproduce a teacher $Y = X W^\star$ whose $W^\star$ is
# exactly 2:4 sparse. The student starts at $W^\star$ plus noise, as a pre-trained model
# starts away from the weights that will suit the pruned network: its initial 2:4 mask
# is partly wrong. Five schedules (`sparsity.nm_masked`, the optimizer wrapper the
# training loop uses):
#
# * **one-shot** (`2:4`): the mask of the initial weights, frozen; pruned weights get a
#   zero gradient and never move (the paper's rows);
# * **few-shot** (`2:4/fs<T>`): the mask is recomputed from the current weights for the
#   first $T$ steps, then frozen (Table 2, E9/E11);
# * **SR-STE one-shot** (`2:4/srste`): the forward pass is the same $W \odot M$, but the
#   gradient passes the mask (straight through), so pruned weights move too, and a decay
#   $\lambda (1-M) \odot W$ pulls them towards zero. The library adds the decay to the
#   gradient *before* Adam (`sparsity.nm_masked` wraps the optimizer), so Adam's
#   per-weight normalisation rescales it: the pull is not $\lambda w$ per step, as it
#   would be with plain SGD;
# * **never frozen** (`2:4/fs<STEPS>`): the mask recomputed every step, without SR-STE;
# * **SR-STE dynamic** (`2:4/fs<STEPS>/srste`): SR-STE with a mask recomputed every step,
#   Zhou et al.'s setting.
#
# A *mask flip* is an entry whose mask value changed from one step to the next.

# %%
kt, kx, kn = jax.random.split(jax.random.fold_in(key, 1), 3)
W_dense = jax.random.normal(kt, (I, J))
W_star = W_dense * sparsity.nm_mask(W_dense, 2, 4)  # the teacher: exactly 2:4
X = jax.random.normal(kx, (4 * I, I))
Y = X @ W_star
W_init = W_star + 0.6 * jax.random.normal(kn, (I, J))  # a "pre-trained" start
true_support = np.asarray(W_star != 0)
print(
    f"initial 2:4 mask agrees with the teacher's support on "
    f"{(np.asarray(sparsity.nm_mask(W_init, 2, 4)) == true_support).mean():.3f} of the entries"
)

SR_DECAY = 2e-4  # the lambda train.make_optimizer uses for /srste
T_FEW = TOY_STEPS // 3


def run_mask_schedule(update_steps: int, sr_ste: bool, steps: int = TOY_STEPS) -> dict:
    """Adam (lr 1e-2) on the toy under one mask schedule: losses, mask flips per step,
    the final mask and weights."""
    tx = sparsity.nm_masked(
        optax.adam(1e-2), 2, 4, update_steps=update_steps, sr_ste_decay=SR_DECAY if sr_ste else None
    )

    def loss(w, mask):
        return jnp.mean((X @ sparsity.apply_mask(w, mask, straight_through=sr_ste) - Y) ** 2)

    @jax.jit
    def step(w, state):
        value, g = jax.value_and_grad(loss)(w, state.masks)
        updates, state = tx.update(g, state, w)
        return optax.apply_updates(w, updates), state, value

    w, state = W_init, tx.init(W_init)
    losses, flips, masks = [], [], [np.asarray(state.masks)]
    for _ in range(steps):
        w, state, value = step(w, state)
        losses.append(float(value))
        masks.append(np.asarray(state.masks))
        flips.append(int((masks[-1] != masks[-2]).sum()))
    return {"losses": np.array(losses), "flips": np.array(flips), "mask": masks[-1], "w": w}


SCHEDULES = {
    "one-shot (2:4)": (1, False),
    f"few-shot (2:4/fs{T_FEW})": (T_FEW, False),
    f"never frozen (2:4/fs{TOY_STEPS})": (TOY_STEPS, False),
    "SR-STE one-shot (2:4/srste)": (1, True),
    f"SR-STE dynamic (2:4/fs{TOY_STEPS}/srste)": (TOY_STEPS, True),
}
toy = {name: run_mask_schedule(*args) for name, args in SCHEDULES.items()}
print(f"{'schedule':40s} {'final loss':>11s} {'flips':>6s} {'mask = true support':>20s}")
for name, r in toy.items():
    agree = (r["mask"] == true_support).mean()
    print(f"{name:40s} {r['losses'][-1]:11.5f} {r['flips'].sum():6d} {agree:20.3f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for name, r in toy.items():
    axes[0].plot(r["losses"], label=name)
    axes[1].plot(np.cumsum(r["flips"]), label=name)
axes[0].set(xlabel="step", ylabel="training loss", yscale="log", title="Loss")
axes[1].set(xlabel="step", ylabel="mask flips so far", title="Cumulative mask flips")
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %%
one, few = toy["one-shot (2:4)"], toy[f"few-shot (2:4/fs{T_FEW})"]
sr_one, sr_dyn = (
    toy["SR-STE one-shot (2:4/srste)"],
    toy[f"SR-STE dynamic (2:4/fs{TOY_STEPS}/srste)"],
)
assert one["flips"].sum() == 0 and sr_one["flips"].sum() == 0  # frozen masks never flip
assert few["flips"][T_FEW:].sum() == 0  # few-shot freezes after T
# with a frozen mask, SR-STE moves the pruned weights, which the forward pass never reads
moved = np.abs(np.asarray(sr_one["w"] - W_init))[~one["mask"]].max()
assert moved > 0 and np.abs(np.asarray(one["w"] - W_init))[~one["mask"]].max() == 0
print(f"largest move of a pruned weight: SR-STE one-shot {moved:.3f}, one-shot 0")

# %% [markdown]
# What the run shows (the numbers above are this run's; the checks assert only what
# must hold by construction): frozen masks never flip, few-shot stops flipping at $T$,
# and SR-STE with a frozen mask moves pruned weights that the forward pass never reads.
# The two never-frozen schedules differ only in SR-STE: without it a pruned weight never
# moves, so the mask changes only when a kept weight shrinks below it; compare their
# flips and final losses above (one toy, one seed: an illustration, not a measurement).
# With a dynamic mask those moved weights are what lets a pruned entry come back:
# SR-STE's dense gradient keeps a pruned weight's value informative, so the mask can be
# re-ranked on weights that trained, not on stale ones.
#
# ## 2. LSQ: a learned step size and its gradient
#
# Min/max quantization (Eq. 2) fixes each channel's step at $s = \max|w| / Q_P$. LSQ
# makes $s$ a parameter. With $v = w/s$ and $Q_P = 2^{b-1}-1$ (the library's symmetric
# grid, so $Q_N = Q_P$):
#
# $$\hat w = s\,\operatorname{clip}(\operatorname{round}(v), -Q_P, Q_P), \qquad
# \frac{\partial \hat w}{\partial s} = \begin{cases} -v + \operatorname{round}(v) & -Q_P < v < Q_P \\ -Q_P & v \le -Q_P \\ Q_P & v \ge Q_P \end{cases}$$
#
# (Esser et al., Eq. 3: the STE for `round`, the clip bound outside), and the step's
# gradient, summed over its $N_W$ weights, is scaled by $g = 1/\sqrt{N_W Q_P}$. Inside
# the range, the gradient says "the rounding residual": weights just below a level pull
# the step one way, weights just above it the other; outside, every clipped weight pushes
# the step up with force $Q_P$. `quant.lsq_step_gradient` is that formula.
#
# Mind one difference from notebook 03's STE. There, a weight keeps its gradient while it
# rounds onto the grid, $|w| \le (Q_P + \tfrac12)\,s$ (7.5 s at int4); LSQ, following
# Esser et al., passes the weight's gradient only strictly inside $-Q_P < v < Q_P$, so a
# weight with $Q_P \le |v| < Q_P + \tfrac12$ (one that rounds to the largest level) gets a
# gradient under min/max QAT and none under LSQ. Section 3's comparison starts both from
# the same weights and the same step, so its first losses agree; from the first update on,
# the two differ in this boundary as well as in the learned step.

# %%
v = jnp.linspace(-9, 9, 721)
fig, ax = plt.subplots(figsize=(7, 3))
for bits in (2, 4):
    grad = quant.lsq_step_gradient(v[:, None], jnp.ones((1, 1)), bits)[:, 0]
    ax.plot(v, grad, label=f"int{bits} (Q_P = {2 ** (bits - 1) - 1})")
ax.set(xlabel="v = w / s", ylabel="d w^ / d s", title="LSQ's step-size gradient per weight")
ax.legend()
plt.show()
g4 = quant.lsq_step_gradient(jnp.array([[0.3], [7.5], [-9.0]]), jnp.ones((1, 1)), 4)[:, 0]
assert np.allclose(np.asarray(g4), [-0.3, 7.0, -7.0])
print("dw^/ds at v = 0.3, 7.5, -9 (int4):", np.asarray(g4).round(3).tolist())

# %% [markdown]
# **Initialisation.** The LSQ paper (Esser et al. 2019; the library calls this start
# `"paper"`) starts from $s = 2\,\overline{|w|}/\sqrt{Q_P}$, chosen for training from
# scratch. The library's `/lsq` specs start from Eq. 2's min/max scale
# instead (`quant.lsq_init_step(..., method="minmax")`): a fine-tuned model then starts
# *exactly* where min/max quantization puts it, and any difference between the two is
# what learning the step did. The cell compares the two starts on a heavy-tailed weight.

# %%
W_t = jax.random.t(jax.random.fold_in(key, 2), 3.0, (I, J))


def rel_error(w, step, bits):
    return float(jnp.sum((quant.lsq_fake_quant(w, step, bits) - w) ** 2) / jnp.sum(w**2))


print(f"{'bits':>4s} {'min/max init':>13s} {'paper init':>11s}   relative squared error")
init_err = {}
for bits in (2, 4, 8):
    e_mm = rel_error(W_t, quant.lsq_init_step(W_t, bits), bits)
    e_pp = rel_error(W_t, quant.lsq_init_step(W_t, bits, method="paper"), bits)
    init_err[bits] = (e_mm, e_pp)
    print(f"{bits:4d} {e_mm:13.5f} {e_pp:11.5f}")

# %% [markdown]
# ## 3. LSQ against min/max scales on a toy (QAT)
#
# Quantization-aware training of the same teacher-student regression, now with a dense,
# heavy-tailed teacher: the student (starting at the teacher) trains its weights through
# the quantizer, with min/max scales (`quant.fake_quant`, the STE) or with LSQ
# (`quant.lsq_fake_quant`, weights and log-step sizes trained together, as the model's
# layers do). Same start, same optimizer, same steps.

# %%
W_teach = W_t
Y_t = X @ W_teach
QAT_LR = 3e-4


def qat(bits: int, lsq: bool, steps: int = TOY_STEPS) -> np.ndarray:
    """Losses of Adam (lr 3e-4) QAT on the toy, min/max or LSQ scales."""
    params = {"w": W_teach, "log_s": jnp.log(quant.lsq_init_step(W_teach, bits))}
    tx = optax.adam(QAT_LR)

    def loss(p):
        if lsq:
            w_hat = quant.lsq_fake_quant(p["w"], jnp.exp(p["log_s"]), bits)
        else:
            w_hat = quant.fake_quant(p["w"], bits)
        return jnp.mean((X @ w_hat - Y_t) ** 2) / jnp.mean(Y_t**2)

    @jax.jit
    def step(p, s):
        value, g = jax.value_and_grad(loss)(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, value

    state, out = tx.init(params), []
    for _ in range(steps):
        params, state, value = step(params, state)
        out.append(float(value))
    return np.array(out)


qat_runs = {(b, lsq): qat(b, lsq) for b in (2, 4) for lsq in (False, True)}
for b in (2, 4):
    mm, ls = qat_runs[(b, False)], qat_runs[(b, True)]
    print(
        f"int{b}: relative output error at step 1 {mm[0]:.4f} (min/max) {ls[0]:.4f} (LSQ); "
        f"after {TOY_STEPS} steps {mm[-1]:.5f} (min/max) {ls[-1]:.5f} (LSQ)"
    )

fig, ax = plt.subplots(figsize=(7, 3))
for (b, lsq), r in qat_runs.items():
    ax.plot(r, label=f"int{b} {'LSQ' if lsq else 'min/max'}", ls="-" if lsq else "--")
ax.set(xlabel="step", ylabel="relative output error", yscale="log", title="QAT on the toy")
ax.legend()
plt.show()

# %%
for b in (2, 4):  # the first step is taken from the same point: min/max = LSQ at init
    assert np.isclose(qat_runs[(b, False)][0], qat_runs[(b, True)][0], rtol=1e-5)
assert all(np.all(np.isfinite(r)) for r in qat_runs.values())

# %% [markdown]
# ## 4. On the `cpu` Conformer-CTC
#
# The same comparisons on the speech model, through `train.train` (Algorithm 1 with the
# spec) and `train.evaluate_run` (every transcript), then `stats.paired_difference`: the
# WER difference on the *same* utterances with a 95% paired-bootstrap interval, and
# `stats.verdict` on it. The pairs:
#
# * SR-STE against plain few-shot masks, both with the mask recomputed for the first
#   $T$ steps: `1:4/fs<T>/srste` against `1:4/fs<T>` (1:4, where the paper saw masks
#   matter);
# * LSQ against min/max scales: `int4/lsq` against `int4`, and (full mode) `int2/sym/lsq`
#   against `int2/sym`.
#
# **Full mode** fine-tunes the committed B0 (`results/cpu/b0`) on FSDD for `STEPS` steps
# per spec (a few minutes each on 2 cores) and scores the FSDD test utterances of B0's
# speakers and of the speaker it held out. **FAST mode** (what the test command runs) is a plumbing check: a tiny
# Conformer (one block of width 32) trained from scratch for a few steps on
# `data_small`; it does not recognise speech and its comparisons are expected to be
# inconclusive.

# %%
B0_DIR = (env.results or REPO / "results") / "cpu" / "b0"
FSDD = next(
    (
        Path(c)
        for c in (os.environ.get("USMLITE_DATA"), REPO.parent / "shared" / "corpora" / "fsdd")
        if c and (Path(c) / "recordings").is_dir()
    ),
    None,
)
if FAST or FSDD is None or not (B0_DIR / "config.json").exists():
    if not FAST:
        print("NOTE: FSDD or results/cpu/b0 not found: running the FAST set-up instead")
    MODEL_FAST = True
    # the checkout's data_small (None outside a clone: load_corpus then tries $USMLITE_DATA)
    CORPUS, DATA_DIR, INIT, HELDOUT, STEPS = "data_small", env.data_small, None, None, 4
    OVERRIDES = {
        "model.model_dim": 32,
        "model.num_heads": 2,
        "model.num_layers": 1,
        "model.subsample_channels": (4, 4),
        "train.batch_size": 4,
        "train.bucket_seconds": (4.5,),
        "train.log_every": 1,
    }
else:
    MODEL_FAST = False
    b0_meta = runs.load_run(B0_DIR).meta
    CORPUS, DATA_DIR, INIT, STEPS = "fsdd", FSDD, B0_DIR, 100
    HELDOUT = b0_meta.get("heldout_speaker")
    OVERRIDES = {"train.log_every": 10}
T_P = max(STEPS // 4, 2)  # >= 2: fs1 would be one-shot, where SR-STE changes nothing
RUN_ROOT = Path(tempfile.mkdtemp(prefix="usmlite_nb11_")) if MODEL_FAST else REPO / "runs" / "nb11"
# FAST keeps one pair, LSQ's (the check below reads its run): each run is two compiles
MODEL_SPECS = ["int4", "int4/lsq"]
if not MODEL_FAST:
    MODEL_SPECS = (
        [f"1:4/fs{T_P}", f"1:4/fs{T_P}/srste"] + MODEL_SPECS + ["int2/sym", "int2/sym/lsq"]
    )
print(f"corpus {CORPUS}, init {INIT}, {STEPS} steps per spec, runs in {RUN_ROOT}")


def finetune_and_score(spec: str) -> stats.Scored:
    """Train (or fine-tune B0) under `spec`, transcribe the test split, score every utterance."""
    out = RUN_ROOT / spec.replace("/", "_").replace(":", "-")
    train.train(
        "cpu",
        CORPUS,
        DATA_DIR,
        out,
        spec=spec,
        init=INIT,
        steps=STEPS,
        seed=SEED,
        heldout_speaker=HELDOUT,
        overrides=OVERRIDES,
        eval_splits=(),
    )
    r = train.evaluate_run(
        out,
        CORPUS,
        DATA_DIR,
        "test",
        seed=SEED,
        overrides={k: v for k, v in OVERRIDES.items() if k == "train.bucket_seconds"},
    )
    return stats.score(r["transcripts"])


t0 = time.time()
scored = {spec: finetune_and_score(spec) for spec in MODEL_SPECS}
print(f"{len(MODEL_SPECS)} runs in {time.time() - t0:.0f} s")
for spec, s in scored.items():
    print(f"{spec:20s} WER {s.wer:6.2f}%  ({len(s)} utterances, {int(s.words.sum())} words)")

# %%
PAIRS = [
    (f"1:4/fs{T_P}/srste", f"1:4/fs{T_P}"),
    ("int2/sym/lsq", "int2/sym"),
    ("int4/lsq", "int4"),
]
print(f"{'new':18s} {'base':12s} {'WER diff':>9s} {'95% interval':>18s}  reading")
readings = {}
for new, base in [p for p in PAIRS if p[0] in scored]:
    iv = stats.paired_difference([scored[new]], [scored[base]])
    if iv.hi < 0:
        reading = f"{new} better"
    elif iv.lo > 0:
        reading = f"{new} worse"
    else:
        reading = "inconclusive"
    readings[(new, base)] = reading
    print(f"{new:18s} {base:12s} {iv.estimate:+9.2f} [{iv.lo:+7.2f}, {iv.hi:+7.2f}]  {reading}")

# %%
for s in scored.values():
    assert len(s) == len(scored[MODEL_SPECS[0]]) and np.isfinite(s.wer)
lsq_run = runs.load_run(RUN_ROOT / "int4_lsq")
assert "log_step" in lsq_run.params["frontend"]["proj"]  # the trained step sizes are saved
print("every run scored on the same", len(scored[MODEL_SPECS[0]]), "utterances")

# %% [markdown]
# The table's last column comes from the interval alone: *better* or *worse* when the
# whole 95% interval lies on one side of zero, *inconclusive* otherwise. The interval
# covers the sampling of the test utterances given these trained models, one training
# seed each; another seed moves both systems, which the interval does not include. In FAST mode the
# tiny model transcribes nothing useful and every reading should be taken as a pipeline
# check. In full mode, read the interval's width too: with about 200 test words, one word
# is half a WER point, and differences of a word or two are not results.
#
# ## Exercises
#
# Each exercise has answer slots, variables marked `# ANSWER` that hold `...` until you
# write your answer in their place, and a check cell. The check prints `[skipped]` while a
# slot still holds `...`, `[correct]` when your answer agrees with what the code
# measures, and fails with a hint when it does not. Answer before running anything. In
# the instructor edition a worked solution (collapsed) follows each check.
#
# **Exercise 1 (prediction: SR-STE with a frozen mask).** On the toy of section 1, plain
# one-shot (`2:4`) and SR-STE one-shot (`2:4/srste`) start from the same weights and
# mask and use the same Adam. Compared with one-shot, does SR-STE one-shot end with a
# `"lower"`, `"higher"` or `"equal"` training loss? Answer with a pair: your choice, and
# the number it follows from, the share of the toy weight's entries whose final values
# differ between the two runs (by more than float32 rounding).

# %%
my_srste_frozen = ("equal", 0.5)  # ANSWER: (choice, share of the weights that differ)

# %%
answers.check_frozen_mask_srste(
    "Exercise 1 (SR-STE with a frozen mask)",
    my_srste_frozen,
    one,
    sr_one,
    hint="which weights does the forward pass read when the mask never changes, and does "
    "Adam's update of a kept weight depend on the pruned ones?",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: the kept weights follow the same trajectory; only pruned ones differ.
kept = one["mask"]
w_a, w_b = np.asarray(one["w"]), np.asarray(sr_one["w"])
print("largest difference of a kept weight:", float(np.abs(w_a - w_b)[kept].max()))
print("largest difference of a pruned weight:", float(np.abs(w_a - w_b)[~kept].max()))
print(
    "largest relative difference of the losses:",
    float(np.max(np.abs(one["losses"] - sr_one["losses"]) / one["losses"])),
)
assert np.allclose(one["losses"], sr_one["losses"], rtol=1e-4, atol=0)

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** *Equal*, up to float32 rounding (the two compiled steps are different
# programs, so their sums can round differently in the last bits). With a frozen mask the forward pass reads only
# the kept weights; their gradient is the same with or without the straight-through mask,
# and Adam updates every coordinate on its own, so the kept weights follow the same
# trajectory. SR-STE's dense gradient and decay reach only pruned weights, which nothing
# reads. So `2:4/srste` alone is one-shot pruning with extra work; SR-STE needs a mask that
# is recomputed (`2:4/fs<T>/srste`) to change anything. (In the model's training loop the
# global-norm gradient clipping sees the pruned weights' gradients too, so there the two
# can differ slightly whenever clipping is active.)

# %% [markdown]
# **Exercise 2 (prediction: the learned int2 step).** In section 3, LSQ trained the
# step sizes of symmetric int2 (three levels, $-s, 0, s$) on the heavy-tailed toy weight,
# starting from min/max. At the end, is the average learned step `"larger"` or
# `"smaller"` than the min/max step it started from? Answer with a pair: your choice, and
# the number it follows from, the share of `W_teach`'s weights that round to 0 at the
# min/max start.

# %%
my_int2_step = ("smaller", float(np.mean(np.abs(W_teach) < np.abs(W_teach).max(0) / 2)))  # ANSWER


# %%
def learned_log_steps(bits: int, steps: int = TOY_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """Initial and final log step sizes of the LSQ QAT run of section 3, replayed."""
    params = {"w": W_teach, "log_s": jnp.log(quant.lsq_init_step(W_teach, bits))}
    tx = optax.adam(QAT_LR)

    def loss(p):
        w_hat = quant.lsq_fake_quant(p["w"], jnp.exp(p["log_s"]), bits)
        return jnp.mean((X @ w_hat - Y_t) ** 2) / jnp.mean(Y_t**2)

    @jax.jit
    def step(p, s):
        u, s = tx.update(jax.grad(loss)(p), s, p)
        return optax.apply_updates(p, u), s

    start, state = np.asarray(params["log_s"]), tx.init(params)
    for _ in range(steps):
        params, state = step(params, state)
    return start, np.asarray(params["log_s"])


s0, s1 = learned_log_steps(2)
answers.check_learned_step(
    "Exercise 2 (the learned int2 step)",
    my_int2_step,
    W_teach,
    s0,
    s1,
    hint="with three levels, where does min/max put the step for a heavy-tailed channel, "
    "and how many weights then round to zero?",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: the share of weights that round to 0 at the start and at the end.
_, qmax = quant.int_range(2, True)
for name, ls in (("min/max", s0), ("learned", s1)):
    zeros = float(jnp.mean(jnp.abs(W_teach / jnp.exp(ls)) < 0.5))
    print(f"{name:8s} step: {zeros:.2f} of the weights round to 0")
ratio = float(np.exp(np.mean(s1 - s0)))  # geometric mean over the channels
print(
    f"learned / min-max step {ratio:.3f}; Adam's bound exp(-TOY_STEPS * QAT_LR) = "
    f"{np.exp(-TOY_STEPS * QAT_LR):.3f}"
)

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** *Smaller.* Min/max sets $s = \max|w|$ for three levels: on a
# heavy-tailed channel almost every weight is below $s/2$ and rounds to 0, so the
# quantized layer keeps only its outliers. The loss improves when more weights reach the
# levels $\pm s$, which takes a smaller step, against the few outliers that a smaller
# step clips (each pushes back with force $Q_P = 1$): the trade clipping makes by
# search in notebook 04, here followed by gradient descent on the task's loss. How far
# it gets is another matter: Adam moves $\log s$ by at most about its learning rate per
# step, so `TOY_STEPS` steps at `QAT_LR` can shrink the step by a factor of at most about
# $e^{-\text{TOY\_STEPS} \cdot \text{QAT\_LR}}$ (printed by the solution cell); where the
# ratio sits near that bound, the direction is learned and the distance is limited by the
# optimizer. The
# model's LSQ layers train $\log s$ with Adam for the same reason (see `QDense`).

# %% [markdown]
# **Exercise 3 (prediction: the LSQ paper's initialisation at int8).** In section 2, which
# start gave the larger int8 reconstruction error: `"minmax"` (Eq. 2 of USM-Lite) or
# `"paper"` (Esser et al.'s $2\,\overline{|w|}/\sqrt{Q_P}$)? Answer with a pair: your
# choice, and the number it follows from, the largest value the paper's int8 grid reaches,
# $Q_P s$, as a multiple of $\overline{|w|}$.

# %%
my_int8_worse_init = ("paper", 2 * 127**0.5)  # ANSWER: (choice, Q_P * s / mean|w|)

# %%
answers.check_lsq_init(
    "Exercise 3 (the LSQ paper's initialisation at int8)",
    my_int8_worse_init,
    W_t,
    8,
    hint="compare Q_P * s, the largest value each grid reaches, with max|w| for Q_P = 127",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: the range each start covers, as a multiple of max|w|.
for bits in (2, 4, 8):
    qp = 2 ** (bits - 1) - 1
    reach = qp * quant.lsq_init_step(W_t, bits, method="paper") / jnp.max(jnp.abs(W_t), axis=0)
    print(f"int{bits}: paper start reaches {float(jnp.mean(reach)):.2f} x max|w| on average")

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** *Paper.* Esser et al.'s $2\overline{|w|}/\sqrt{Q_P}$ falls like
# $1/\sqrt{Q_P}$, more slowly than min/max's $\max|w|/Q_P$, which falls like $1/Q_P$: the
# largest value it reaches, $Q_P s = 2\overline{|w|}\sqrt{Q_P}$, grows like $\sqrt{Q_P}$.
# At $Q_P = 127$ that grid reaches far beyond the largest weight and wastes most of its
# levels, so the step is several times coarser than needed. At int2 that start clips and
# wins. For training from
# scratch that matters little (the step is learned quickly); for fine-tuning a trained
# model from a min/max starting point, it is why the library starts from Eq. 2.
#
# ## Summary
#
# * SR-STE (`/srste`) lets gradients through the mask and decays pruned weights; with a
#   frozen mask it changes nothing the forward pass reads, so use it with a recomputed
#   mask (`fs<T>`). The paper lists it as future work (section 5).
# * LSQ (`/lsq`) trains a step size per (group, channel) with Esser et al.'s Eq. 3
#   gradient scaled by $1/\sqrt{N_W Q_P}$; the library starts it at Eq. 2's min/max scale,
#   trains its logarithm with Adam, stores it in the checkpoint, and counts it in the
#   model size exactly like a min/max scale (one float32 per group and channel). A packed
#   export of an LSQ model is refused for now.
# * On the speech model the comparisons are paired on the same utterances; read the
#   interval, and call a difference it does not exclude *inconclusive*.
