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
# # 12 · Which layer gets which bits: sensitivity, allocation and a Gumbel-softmax supernet
#
# USM-Lite compresses every dense weight of the model with one spec: int8, int4, int2
# with sub-channels, 2:4, or int4 + 2:4 (Tables 1-3). Layers are not equally fragile,
# though, and the size column only counts bits. Given a size budget, which layer should
# get which spec? This notebook answers it twice on the committed B0: by measuring each
# layer's sensitivity and solving a knapsack, and by letting a Gumbel-softmax supernet
# learn a choice per layer (Xu et al., ICASSP 2025, arXiv 2501.03643), which you can
# watch evolve step by step.
#
# **After this notebook you will be able to**
#
# * measure one layer's *loss sensitivity* to each candidate spec (that layer alone
#   compressed, post-training) and read a whole model's sensitivities as a heatmap;
# * compute a per-layer spec map's size in the paper's convention, by hand and with
#   `usmlite_edu.search.sensitivity`;
# * allocate specs under a budget with the exact multiple-choice knapsack, and compare
#   the result with the uniform spec of the same size, paired, with a 95% interval;
# * write the supernet's expected size and size penalty, follow its temperature and
#   choice probabilities during a search, and read the committed `cpu` results.
#
# `BUDGET` (in the next code cell but one) is the model size you allow, in % of the
# float32 B0 (the paper's convention); change it and run everything again.

# %% [markdown] tags=["header"]
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/usmlite-edu/usmlite_edu/blob/main/notebooks/12_mixed_precision_search.ipynb) [![Launch on Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/usmlite-edu/usmlite_edu/main?labpath=notebooks%2F12_mixed_precision_search.ipynb)
#
# * **Before you start:** Notebooks 01-05 (specs and the size column) and 07 (B0); paired comparisons: 13 (optional).
# * **Reading time:** about 30 min (its text at 120 words a minute, 5 min an exercise).
# * **Running time:** 34 s in fast mode; 7 min in full mode (AMD EPYC (cpu family 25, model 17, stepping 1), 2 cores shared with other jobs; `python scripts/time_notebooks.py`). Fast mode (`USMLITE_FAST=1`) uses tiny sizes; full mode is what the figures in the text describe.

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
import math
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

from usmlite_edu.core import stats
from usmlite_edu.core.specs import SpecMap
from usmlite_edu.course import answers
from usmlite_edu.course.exercises import check_answer
from usmlite_edu.search import sensitivity as S
from usmlite_edu.search import supernet
from usmlite_edu.speech import batching, model, runs
from usmlite_edu.speech.corpora import CorpusSplit, load_corpus
from usmlite_edu.speech.presets import get_preset
from usmlite_edu.speech.tokenizer import Tokenizer
from usmlite_edu.training import train

# The size you allow: % of the float32 B0, paper convention (section 5 of the paper).
# 9.375 is uniform int4 + 2:4 (E12); try 7.64 (int2/gs72, E5) or 12.5 (int4, E3).
BUDGET = 9.375

LAYER = "b0.mhsa.value"  # the layer of section 1 (names as printed in section 2)
# candidates for B0 (every one valid for its 144-, 288- and 576-wide inputs)
B0_SPECS = ("float", "int8", "int4", "int4+2:4", "int2/gs24", "int2/gs72")
if not FAST:
    B0_SPECS += ("2:4", "1:4")
BATCH_UTTS = 4 if FAST else 16  # utterances of the fixed batch (sensitivity)
EVAL_UTTS = 16 if FAST else 32  # other utterances, for the WER comparison
SEARCH_STEPS = 40 if FAST else 200  # supernet steps on the tiny model (section 4)
START_STEPS = 0 if FAST else 60  # training steps of the tiny model's start (0: random)
B0_DIR = (env.results / "cpu" / "b0") if env.results else None
SAMPLE_DIR = (env.data_small / "fsdd_sample") if env.data_small else None
HAVE_B0 = bool(B0_DIR and (B0_DIR / "config.json").exists() and SAMPLE_DIR and SAMPLE_DIR.is_dir())
print(f"budget {BUDGET}% of B0; committed B0 and the FSDD sample found: {HAVE_B0}")

# %% [markdown]
# ## 1. One layer's sensitivity
#
# Compress *one* weight with spec $k$, keep every other weight float, and measure how much
# the CTC loss on a fixed batch goes up:
#
# $$S_{l,k} = \mathcal{L}(W \text{ with } W_l \to C_k(W_l)) - \mathcal{L}(W),$$
#
# where $C_k$ is Algorithm 1 with spec $k$ (one-shot N:M mask from the weight, Eq. 2
# quantization, back to float): post-training, no fine-tuning. One forward pass per
# (layer, spec). `sensitivity.loss_sensitivity` does exactly this.
#
# **The data, said plainly.** On a fresh clone the only FSDD speech is
# `data_small/fsdd_sample`: 56 connected-digit utterances of FSDD's *test* split. This
# notebook uses the 48 of them by speakers B0 was trained on, split in two disjoint
# sets: `BATCH_UTTS` form the fixed batch of the sensitivities, `EVAL_UTTS` others score
# the models of section 3. That is test speech used to *illustrate*; nothing reported
# by the project is chosen on it. The committed measurement (`results/sensitivity`,
# `scripts/sensitivity_b0.py`) uses 16 dev utterances; section 5's
# sensitivity-allocated `cpu` models were built from it.

# %%
if HAVE_B0:
    b0 = runs.load_run(B0_DIR)
    cfg, tcfg, meta = runs.read_config(B0_DIR)
    tok = b0.tokenizer
    sample = load_corpus("fsdd_sample", SAMPLE_DIR, "test", sample_rate=cfg.sample_rate)
    seen = [u for u in sample.utterances if u.speaker != meta.get("heldout_speaker")]
    # evenly spaced through the sample (it is ordered by speaker): several speakers each
    pick = set(np.round(np.linspace(0, len(seen) - 1, BATCH_UTTS)).astype(int).tolist())
    batch_utts = [u for i, u in enumerate(seen) if i in pick]
    rest = [u for i, u in enumerate(seen) if i not in pick]
    eval_utts = [rest[i] for i in np.round(np.linspace(0, len(rest) - 1, EVAL_UTTS)).astype(int)]
    longest = max(u.load(cfg.sample_rate).size for u in seen) / cfg.sample_rate
    tcfg = tcfg.replace(bucket_seconds=(float(math.ceil(longest)),), eval_batch_size=EVAL_UTTS)

    def prepared(utts):
        return batching.prepare(
            CorpusSplit("fsdd_sample", utts, [], cfg.sample_rate),
            tok,
            cfg,
            tcfg.bucket_seconds,
            keep_long=True,
        )

    batch_ds, eval_ds = prepared(batch_utts), prepared(eval_utts)
    batch = jax.tree.map(jnp.asarray, S.fixed_batch(batch_ds, range(len(batch_ds.examples))))
    trainer = train.get_trainer(cfg, "float", tcfg)
    loss_fn = jax.jit(lambda p: trainer.loss(p, None, batch, key, deterministic=True))

    names = S.compressible_names(cfg)
    groups = S.group_layers(names, "layer")  # every weight its own group
    specs = S.check_specs(
        B0_SPECS, {n: w.shape for n, w in S.get_weights(b0.params, names).items()}
    )
    t0 = time.time()
    base, s_one = S.loss_sensitivity(loss_fn, b0.params, {LAYER: groups[LAYER]}, specs)
    print(f"fixed batch: {len(batch_utts)} utterances; float CTC loss {base:.4f} per token")
    print(f"{LAYER} ({groups[LAYER][0]}), {time.time() - t0:.1f} s:")
    for s, v in zip(specs, s_one[0]):
        print(f"  {s:10s} loss {v:+.4f}")
else:
    print("the committed B0 or data_small/fsdd_sample is not in this checkout: sections 1-3 skip")

# %%
if HAVE_B0:
    one_sizes = S.spec_sizes(cfg, {LAYER: groups[LAYER]}, specs, "paper")[0]
    one_pct = 100 * one_sizes / one_sizes[specs.index("float")]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
    ax[0].bar(specs, s_one[0], color=["C0" if v >= 0 else "C2" for v in s_one[0]])
    ax[0].axhline(0, color="k", lw=0.8)
    ax[0].set(ylabel="CTC loss increase", title=f"{LAYER} alone compressed")
    ax[0].tick_params(axis="x", rotation=45)
    ax[1].scatter(one_pct, s_one[0])
    for s, x, y in zip(specs, one_pct, s_one[0]):
        ax[1].annotate(s, (x, y), fontsize=8)
    ax[1].set(xscale="log", xlabel="layer size, % of float32 (paper)", ylabel="loss increase")
    plt.tight_layout()
    plt.show()

# %%
# Check: float changes nothing; int8 costs less than any 2-bit spec on this layer; the
# paper sizes are those of the size column (int8 25%, int4 12.5%, int4+2:4 9.375%).
if HAVE_B0:
    assert s_one[0][specs.index("float")] == 0.0
    assert abs(s_one[0][specs.index("int8")]) < max(
        abs(s_one[0][specs.index("int2/gs24")]), abs(s_one[0][specs.index("int2/gs72")])
    )
    np.testing.assert_allclose(
        [one_pct[specs.index(s)] for s in ("int8", "int4", "int4+2:4")], [25, 12.5, 9.375]
    )
    print("one-layer checks passed")

# %% [markdown]
# A sensitivity can be *negative*: compressing a layer can lower one batch's loss (the
# rounding acts like a small random perturbation, and a few utterances do not average it
# out). It is a measurement on one batch, with noise, not a property of the layer.
#
# ## 2. Every layer, every candidate
#
# The same measurement for all compressible weights of B0 (`1 + layers x specs` forward
# passes, one compiled loss), and each candidate's size for each layer: the bits it
# would store in the paper's convention (`sensitivity.spec_sizes`: `bits/32` per kept
# weight, 1 bit per weight for an N:M mask, one float32 per sub-channel group).

# %%
if HAVE_B0:
    t0 = time.time()
    base, S_loss = S.loss_sensitivity(loss_fn, b0.params, groups, specs)
    bits = S.spec_sizes(cfg, groups, specs, "paper")
    layers = list(groups)
    print(f"{len(layers)} layers x {len(specs) - 1} specs in {time.time() - t0:.0f} s")
    fig, ax = plt.subplots(figsize=(7, 0.2 * len(layers) + 1.5))
    lim = np.abs(S_loss).max()
    im = ax.imshow(S_loss, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_xticks(range(len(specs)), specs, rotation=45, fontsize=8)
    ax.set_yticks(range(len(layers)), layers, fontsize=7)
    fig.colorbar(im, label="CTC loss increase")
    ax.set_title("Loss sensitivity of B0, one layer compressed at a time", fontsize=10)
    plt.tight_layout()
    plt.show()
    print(f"{'layer':22s} {'shape':>10s} {'weights':>8s}  kbit under " + " ".join(specs))
    for g, row in zip(layers, bits):
        w = S.get_weights(b0.params, groups[g])[groups[g][0]]
        print(
            f"{g:22s} {'x'.join(map(str, w.shape)):>10s} {w.size:8d}  "
            + " ".join(f"{b / 1000:.0f}" for b in row)
        )

# %%
# Check: one row per layer, float's column is zero and its size is 32 bits a weight;
# int4 stores exactly 4 bits a weight in the paper's convention.
if HAVE_B0:
    n_w = np.array([S.get_weights(b0.params, groups[g])[groups[g][0]].size for g in layers])
    assert S_loss.shape == (len(layers), len(specs)) and not S_loss[:, 0].any()
    np.testing.assert_allclose(bits[:, specs.index("float")], 32 * n_w)
    np.testing.assert_allclose(bits[:, specs.index("int4")], 4 * n_w)
    print(f"{n_w.sum():,} compressible weights in {len(layers)} layers")

# %% [markdown]
# How much of that ranking is the batch? The committed measurement used other utterances
# (16 of FSDD's dev split). Spearman's rank correlation between the two, spec by spec,
# says how far one can trust a ranking from a handful of utterances.

# %%
COMMITTED = (env.results / "sensitivity" / "sensitivity.json") if env.results else None
if HAVE_B0 and COMMITTED and COMMITTED.exists():
    ref = json.loads(COMMITTED.read_text())
    ref_S = np.array(ref["loss_sensitivity"])
    assert list(ref["groups"]) == layers, "the committed measurement's layers differ"
    rho = {
        s: S.spearman(S_loss[:, specs.index(s)], ref_S[:, ref["specs"].index(s)])
        for s in specs
        if s != "float" and s in ref["specs"]
    }
    print("Spearman, this batch vs the committed dev measurement, per spec:")
    print("  " + ", ".join(f"{s} {r:+.2f}" for s, r in rho.items()))

# %% [markdown]
# Read the correlations before trusting either ranking. B0 transcribes these test
# utterances of its own speakers almost perfectly, so the batch's loss is small (printed
# in section 1) and so are most loss increases: differences of a few ten-thousandths
# between layers are within what another batch would change. In fast mode the batch has
# only `BATCH_UTTS = 4` utterances; full mode uses 16, as the committed measurement did.
# The committed measurement also has HAWQ-V2's Hessian-trace sensitivity and its rank
# correlation with the loss sensitivity (`results/sensitivity/README.md`).
#
# ## 3. Allocation under the budget, against uniform
#
# Choose one spec $k_l$ per layer to minimise the summed sensitivity within the budget:
#
# $$\min_{k} \sum_l S_{l,k_l} \quad \text{subject to} \quad \sum_l \text{bits}_{l,k_l} \le B,$$
#
# a multiple-choice knapsack. `sensitivity.allocate_exact` solves it by dynamic
# programming over sizes in units of a quantum (each item's size rounded up, so the
# answer always fits); in the paper's convention every size here is a whole number of
# bits, and with a quantum that divides all of them the answer is optimal, not just
# feasible. Adding the sensitivities of layers assumes they do not interact: the model
# behind the knapsack, to be checked by compressing them all at once.
#
# Two allocations: one from the sensitivities measured above (this batch), and one from
# the committed dev measurement (`results/sensitivity`, when present), whose choice saw
# none of the utterances scored below. The comparison: the *uniform* model of the
# largest candidate spec that fits the same budget (for the default budget, uniform
# int4 + 2:4, E12's spec, exactly 9.375%).

# %%
if HAVE_B0:
    uniform_sizes = {s: S.size_of(cfg, {n: s for n in names}, "paper") for s in specs}
    fitting = [s for s in specs if uniform_sizes[s] <= BUDGET + 1e-9]
    if not fitting:
        raise ValueError(
            f"BUDGET = {BUDGET}%: no uniform candidate fits (smallest "
            f"{min(uniform_sizes.values()):.2f}%); raise BUDGET"
        )
    UNIFORM = max(fitting, key=uniform_sizes.get)
    cap = S.budget_bits(cfg, groups, BUDGET, "paper")

    def allocate(costs: np.ndarray, cands: list[str]) -> dict:
        """The exact allocation of `costs` (layers x cands) within the budget."""
        b = S.spec_sizes(cfg, groups, cands, "paper")
        excess = np.round(b - b.min(axis=1, keepdims=True)).astype(np.int64)
        assert np.allclose(excess, b - b.min(axis=1, keepdims=True))  # whole bits
        # a quantum that divides every size difference: the dynamic programme is exact
        q = int(np.gcd.reduce(np.append(excess.ravel(), 1 << 40)))
        a = S.allocate_exact(costs, b, cap, quantum=float(q))
        chosen = a.specs(cands)
        assign = {n: s for g, s in zip(layers, chosen) for n in groups[g]}
        return dict(
            alloc=a,
            bits=b,
            quantum=q,
            chosen=chosen,
            assignment=assign,
            size=S.size_of(cfg, assign, "paper"),
            uniform_cost=float(costs[:, cands.index(UNIFORM)].sum()),
            greedy=S.allocate_greedy(costs, b, cap),
        )

    sources = {"this batch": (S_loss, specs)}
    if COMMITTED and COMMITTED.exists():
        sources["committed dev"] = (ref_S, ref["specs"])
    allocs = {name: allocate(c, list(cands)) for name, (c, cands) in sources.items()}
    print(f"budget {BUDGET}% = {cap / 1e3:.0f} kbit for the compressible weights")
    print(f"uniform {UNIFORM}: {uniform_sizes[UNIFORM]:.3f}% of B0")
    for name, r in allocs.items():
        counts = {s: r["chosen"].count(s) for s in sources[name][1] if r["chosen"].count(s)}
        print(
            f"allocation from {name}: {r['size']:.3f}% of B0, summed sensitivity "
            f"{r['alloc'].cost:+.4f} (uniform {r['uniform_cost']:+.4f}); {counts}"
        )
    fig, ax = plt.subplots(figsize=(10, 2.8))
    for j, (name, r) in enumerate(allocs.items()):
        pct = [
            100 * r["bits"][i, sources[name][1].index(s)] / (32 * n_w[i])
            for i, s in enumerate(r["chosen"])
        ]
        ax.bar(np.arange(len(layers)) + 0.4 * j, pct, width=0.4, label=name)
    ax.axhline(uniform_sizes[UNIFORM], color="C3", ls="--", label=f"uniform {UNIFORM}")
    ax.set_xticks(np.arange(len(layers)) + 0.2 * (len(allocs) - 1), layers, rotation=90, fontsize=6)
    ax.set(ylabel="% of float32", yscale="log", title="Each layer's size under the allocations")
    ax.legend(fontsize=8)
    plt.show()

# %%
# Check: each allocation fits the budget, and no assignment within it has a smaller summed
# sensitivity (by the same measurement): not the greedy one, nor the uniform one.
if HAVE_B0:
    for name, r in allocs.items():
        assert r["size"] <= BUDGET + 1e-9 and r["alloc"].size <= cap + 1e-6, name
        assert r["alloc"].cost <= r["uniform_cost"] + 1e-12, name
        assert r["alloc"].cost <= r["greedy"].cost + 1e-12, name
        print(
            f"{name}: exact {r['alloc'].cost:+.4f} <= greedy {r['greedy'].cost:+.4f}, "
            f"uniform {r['uniform_cost']:+.4f} (quantum {r['quantum']} bits)"
        )

# %% [markdown]
# Both allocations beat uniform on their own measurement by construction. Their summed
# sensitivity is also *optimistic*: among many noisy numbers, the knapsack picks those
# that happen to be low (the winner's curse; a spec with a negative measured cost is a
# bargain it cannot refuse). A smaller summed sensitivity is a prediction, on the batch
# it was measured on. The test
# is the recognizer: compress *all* layers at once (PTQ, no fine-tuning) under each
# allocation and under the uniform spec, transcribe the `EVAL_UTTS` other utterances,
# and compare on the same utterances (`stats.paired_difference`: paired bootstrap, 95%
# interval). A few dozen utterances hold a few hundred words at most, so one word is
# about half a point or more: expect wide intervals, and call a difference
# *inconclusive* when its interval contains zero. Illustrative: test speech, few
# utterances, one B0.

# %%
if HAVE_B0:
    b0_weights = S.get_weights(b0.params, names)

    def ptq_scored(assign: dict) -> stats.Scored:
        p = S.with_weights(b0.params, S.compress_layers(b0_weights, assign))
        return stats.score(trainer.evaluate(p, None, eval_ds, tok)["transcripts"])

    t0 = time.time()
    scored = {
        "float": ptq_scored({}),
        f"uniform {UNIFORM}": ptq_scored({n: UNIFORM for n in names}),
    }
    for name, r in allocs.items():
        scored[f"from {name}"] = ptq_scored(r["assignment"])
    print(
        f"{len(eval_ds.examples)} utterances, {int(scored['float'].words.sum())} words, "
        f"{time.time() - t0:.0f} s"
    )
    for name, sc in scored.items():
        print(f"  {name:22s} WER {sc.wer:6.2f}%")
    readings = {}
    for name in allocs:
        iv = stats.paired_difference([scored[f"from {name}"]], [scored[f"uniform {UNIFORM}"]])
        readings[name] = (iv, "better" if iv.hi < 0 else "worse" if iv.lo > 0 else "inconclusive")
        print(
            f"from {name} - uniform: {iv.estimate:+.2f} points "
            f"[{iv.lo:+.2f}, {iv.hi:+.2f}]: {readings[name][1]}"
        )

# %%
# Check: every system scored on the same utterances; each interval contains its estimate.
if HAVE_B0:
    ids = {sc.ids for sc in scored.values()}
    assert len(ids) == 1 and len(next(iter(ids))) == len(eval_utts)
    assert not {u.uid for u in batch_utts} & set(next(iter(ids)))  # disjoint from the batch
    for iv, _ in readings.values():
        assert iv.lo <= iv.estimate <= iv.hi
    print("paired on", len(eval_utts), "utterances, none of them in the sensitivity batch")

# %% [markdown]
# ## 4. A Gumbel-softmax supernet: learn the choice
#
# The knapsack trusts sensitivities measured one layer at a time, post-training. The
# supernet (`usmlite_edu.search.supernet`, after Xu et al.) learns the choice *while training*,
# all layers together. Each compressible layer $l$ keeps one float weight $W_l$ and
# logits $\alpha_l$ over the $K$ candidates; every step uses the mixture
#
# $$W_l^{\text{mix}} = \sum_k \pi_{lk}\, C_k(W_l), \qquad
# \pi_l = \operatorname{softmax}\big((\alpha_l + g_l)/\tau\big),$$
#
# with Gumbel noise $g_l$ drawn afresh each step (so that $\pi_l$ is a soft *sample* of a
# choice distributed as $\operatorname{softmax}(\alpha_l)$), and a temperature $\tau$
# annealed geometrically from `tau_start` to `tau_end` (cold: nearly one-hot). A dense
# layer is linear in its weight, so mixing weights is mixing the candidates' outputs.
# The loss is
#
# $$\mathcal{L} = \text{CTC} + \lambda_{\text{KL}}\,\text{KL}(p_{\text{teacher}} \| p_{\text{student}})
#  + \lambda_{\text{size}} \Big(\frac{E[\text{bits}] - B}{B}\Big)^2, \qquad
# E[\text{bits}] = \sum_l \sum_k \pi_{lk}\, \text{bits}_{lk},$$
#
# two-sided: it pulls the expected size *to* the budget $B$, since a smaller model gives
# away accuracy for nothing. At the end each layer takes its most probable candidate
# (`supernet.select`; the most probable assignment that fits when that one does not).
#
# **The model here** is a tiny Conformer (one block of width 32, the test suite's) on
# `data_small`, trained for `START_STEPS` steps (in fast mode none: its random
# initialisation) and then searched for `SEARCH_STEPS` steps, with its start as the
# float teacher: a search you can run in a minute and watch, not a recognizer. Its
# candidates differ from B0's: groups of 24 or 72 inputs do not divide a width of 32, so
# int2 uses groups of 8 (full mode; fast mode keeps four candidates). Section 5 has the
# real `cpu` searches.

# %%
TINY = {
    "model.model_dim": 32,
    "model.num_heads": 2,
    "model.num_layers": 1,
    "model.subsample_channels": (4, 4),
    "train.batch_size": 8,
    "train.bucket_seconds": (2.5, 4.5),
}
work = Path(tempfile.mkdtemp(prefix="usmlite_nb12_"))
t0 = time.time()
CI = get_preset("ci")
train_split = load_corpus(
    "data_small", env.data_small, "train", seed=SEED, sample_rate=CI.model.sample_rate
)
if START_STEPS:  # a start trained briefly on data_small (a run directory, as the CLI makes)
    train.train(
        "ci",
        "data_small",
        env.data_small,
        work / "start",
        steps=START_STEPS,
        seed=SEED,
        overrides=TINY,
        eval_splits=(),
    )
    start = runs.load_run(work / "start")
    t_cfg, t_tcfg, _ = runs.read_config(work / "start")
    start_params, t_tok = start.params, start.tokenizer
else:  # FAST: the randomly initialised model itself (one compiled training step fewer)
    t_tok = Tokenizer.train([u.text for u in train_split], 32, None, seed=SEED)
    t_cfg = CI.model.replace(
        **{k.removeprefix("model."): v for k, v in TINY.items() if k.startswith("model.")},
        vocab_size=t_tok.vocab_size,
    )
    t_tcfg = CI.train.replace(batch_size=8, bucket_seconds=(4.5,))  # one compiled step
    start_params = model.init_params(t_cfg, "float", seed=SEED)
assert train_split.sample_rate == t_cfg.sample_rate
train_ds = batching.prepare(train_split, t_tok, t_cfg, t_tcfg.bucket_seconds)
# fast mode: four candidates (the search's compiled step grows with their number)
TINY_CANDIDATES = ("float", "int8", "int4+2:4", "int2")
if not FAST:
    TINY_CANDIDATES = ("float", "int8", "int4", "int4+2:4", "int2/gs8", "int2")
scfg = supernet.SearchConfig(
    budget=BUDGET,
    candidates=TINY_CANDIDATES,
    steps=SEARCH_STEPS,
    logit_lr=0.1,
    size_weight=5.0,
    log_every=1 if FAST else 2,
    checkpoint_every=SEARCH_STEPS,
)
prob = supernet.problem(t_cfg, scfg)
result = supernet.search(
    start_params, start_params, t_cfg, t_tcfg, train_ds, scfg, work / "search", seed=SEED
)
hist = result["history"]
P = np.array([h["probs"] for h in hist])  # (records, layers, candidates)
steps_rec = np.array([h["step"] for h in hist])
print(f"start ({START_STEPS} steps) and search ({SEARCH_STEPS} steps) in {time.time() - t0:.0f} s")
print(f"{len(prob.names)} layers x {len(prob.candidates)} candidates; budget {BUDGET}%")
print(
    f"selected ({result['selected_by']}): paper {result['size_paper']:.2f}%, "
    f"exact {result['size_exact']:.2f}%"
)

# %%
L = len(result["layers"])
cols = 4
fig, axes = plt.subplots(
    math.ceil(L / cols), cols, figsize=(12, 2.0 * math.ceil(L / cols)), sharex=True, sharey=True
)
for i, ax in enumerate(axes.ravel()):
    if i >= L:
        ax.axis("off")
        continue
    for k, c in enumerate(result["candidates"]):
        ax.plot(steps_rec, P[:, i, k], label=c)
    ax.set_title(result["layers"][i].replace("encoder/blocks/", "b"), fontsize=8)
axes.ravel()[0].legend(fontsize=6)
for ax in axes[-1]:
    ax.set_xlabel("search step")
fig.suptitle(r"Choice probabilities softmax($\alpha_l$) per layer over the search", fontsize=10)
plt.tight_layout()
plt.show()

fig, ax = plt.subplots(1, 3, figsize=(12, 3))
ax[0].plot(steps_rec, [h["tau"] for h in hist])
ax[0].set(xlabel="step", ylabel=r"$\tau$", yscale="log", title="Temperature")
for name in ("sampled_percent", "expected_percent", "argmax_percent"):
    ax[1].plot(steps_rec, [h[name] for h in hist], label=name.replace("_percent", ""))
ax[1].axhline(BUDGET, color="k", ls=":", label="budget")
ax[1].set(xlabel="step", ylabel="% of B0 (paper)", yscale="log", title="Size")
ax[1].legend(fontsize=7)
for name in ("ctc", "kl", "size_penalty"):
    ax[2].plot(steps_rec, [h[name] for h in hist], label=name)
ax[2].set(xlabel="step", yscale="log", title="Loss terms")
ax[2].legend(fontsize=7)
plt.tight_layout()
plt.show()

# %%
# Check: the probabilities are distributions; the temperature ends at tau_end; the
# expected size moved from the uniform start towards the budget; the selection fits.
np.testing.assert_allclose(P.sum(-1), 1.0, atol=1e-4)
assert math.isclose(hist[-1]["tau"], scfg.tau_end, rel_tol=1e-5)
# size is linear in the bits: the uniform start's expected size is the mean of the
# candidates' uniform sizes
uniform_start = np.mean(
    [prob.size_percent([k] * len(prob.names), t_cfg) for k in range(len(prob.candidates))]
)
assert abs(hist[-1]["expected_percent"] - BUDGET) < abs(uniform_start - BUDGET)
assert result["size_paper"] <= BUDGET + 1e-6
print(
    f"expected size: {uniform_start:.1f}% at the uniform start, "
    f"{hist[-1]['expected_percent']:.2f}% at the end (budget {BUDGET}%)"
)

# %% [markdown]
# What to read in the plots: early on, with $\tau$ near 1 and the logits near 0, every
# candidate has a similar probability and the expected size sits far above the budget
# (float, at 100%, is one of the candidates). The size penalty's gradient pushes probability from
# large candidates to small ones, in each layer in proportion to how many bits its
# choice moves; Adam then rescales every logit's update to about `logit_lr`, so small
# layers move as fast as large ones. The CTC and KL terms push back where compression
# hurts. The *argmax* size jumps in steps (one layer's choice flips), the *expected* size
# moves smoothly, and the *sampled* one (this step's noisy mixture) scatters around it.
#
# ## 5. The committed `cpu` results
#
# `scripts/search_cpu.py` ran the search on the `cpu` reproduction (three seeds, three
# budgets: E5's, E12's and E3's sizes), fine-tuned each searched map and the knapsack
# allocation of `results/sensitivity` exactly as the uniform rows were fine-tuned, and
# compared them with the uniform rows on the same utterances. The cell prints its table
# from `results/search/results.json` and shows the chosen spec of every layer.

# %%
SEARCH_DIR = (env.results / "search") if env.results else None
HAVE_SEARCH = bool(SEARCH_DIR and (SEARCH_DIR / "results.json").exists())
if HAVE_SEARCH:
    committed = json.loads((SEARCH_DIR / "results.json").read_text())
    print(
        f"{'budget':>16s} {'arm':12s} {'size %':>7s} {'split':7s} {'WER':>6s} "
        f"{'uniform':>7s} {'difference [95%]':>22s}  reading"
    )
    for e in committed["table"]:
        for split, v in e["splits"].items():
            print(
                f"{e['uniform_size_paper']:6.2f}% ({e['budget_row']:>3s}) {e['arm']:12s} "
                f"{np.mean(e['size_paper']):7.2f} {split:7s} {v['wer']:6.2f} "
                f"{v['uniform_wer']:7.2f} {v['difference']:+7.2f} [{v['lo']:+6.2f}, {v['hi']:+6.2f}]"
                f"  {v['reading']}"
            )
            if "search_minus_sensitivity" in v:  # the two per-layer arms, paired
                d, lo, hi = v["search_minus_sensitivity"]
                print(f"{'':>17s} searched - sensitivity map: {d:+.2f} [{lo:+.2f}, {hi:+.2f}]")
    for png in ("layers.png", "probs.png"):
        if (SEARCH_DIR / png).exists():
            display(Image(filename=str(SEARCH_DIR / png)))
else:
    print("results/search is not in this checkout (scripts/search_cpu.py writes it): skipped")

# %%
# Check: every committed comparison's interval contains its estimate, and its reading is
# the one the interval gives.
if HAVE_SEARCH:
    for e in committed["table"]:
        for v in e["splits"].values():
            assert v["lo"] <= v["difference"] <= v["hi"]
            assert (v["reading"] == "better") == (v["hi"] < 0)
            assert (v["reading"] == "worse") == (v["lo"] > 0)
    print(f"{sum(len(e['splits']) for e in committed['table'])} committed comparisons read")

# %% [markdown]
# Read each row as its interval says: *better* or *worse* only when the whole 95%
# interval lies on one side of zero; *equivalent* when it lies within a point of it;
# otherwise *inconclusive*. The intervals pool three seeds and resample utterances; the
# test and unseen splits were scored once, after the search's settings were fixed.
#
# ## Exercises
#
# Each exercise has answer slots, variables marked `# ANSWER` that hold `...` until you
# write your answer in their place, and a check cell. The check prints `[skipped]` while a
# slot still holds `...`, `[correct]` when your answer agrees with what the code
# measures, and fails with a hint when it does not. In the instructor edition a worked
# solution (collapsed) follows each check.
#
# **Exercise 1 (the size of a hand-made map).** In B0, give every feed-forward weight
# (`ffn1`, `ffn2`) int4 + 2:4, the input projection (`frontend.proj`) float, and every
# other compressible weight (attention, convolution) int8. What is the model's size in
# the paper's convention, in % of B0 (within 0.01 points)? The table of section 2 has
# every layer's number of weights; the paper's convention counts only the compressible
# weights.

# %%
my_map_size = 100 * (41472 * 1.0 + 663552 * 0.25 + 1327104 * 0.09375) / 2032128  # ANSWER: %

# %%
if HAVE_B0:

    def map_spec(layer: str) -> str:
        if layer == "frontend.proj":
            return "float"
        return "int4+2:4" if ".ffn" in layer else "int8"

    hand_map = SpecMap.from_assignment({n: map_spec(g) for g in layers for n in groups[g]}, "float")
    answers.check_size_ratio(
        "Exercise 1 (the size of a hand-made map)",
        my_map_size,
        hand_map,
        cfg,
        abs_tol=0.01,
        hint="a weighted average: each weight counts 100% (float), 25% (int8) or 9.375% "
        "(int4+2:4), weighted by its number of weights over all compressible weights",
    )
else:
    print("[skipped] Exercise 1 needs the committed B0")

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: weights per kind of layer, and the weighted average.
if HAVE_B0:
    count = {"float": 0, "int8": 0, "int4+2:4": 0}
    for g, n in zip(layers, n_w):
        count[map_spec(g)] += int(n)
    pct = {"float": 100.0, "int8": 25.0, "int4+2:4": 9.375}
    print(count)
    print(sum(count[s] * pct[s] for s in count) / sum(count.values()))

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** The paper's convention is a weighted average of each spec's fraction of
# float32, weighted by the layers' numbers of weights: 100% for the float input
# projection, 25% for int8, 9.375% for int4 + 2:4 ($4/32$ for half the weights plus one
# mask bit per weight). The feed-forward layers hold about two thirds of B0's
# compressible weights (two $144 \times 576$ kernels per module, two modules a block),
# so compressing them hard matters most for the size; leaving the small input projection
# float costs little.

# %% [markdown]
# **Exercise 2 (the size penalty).** Write the supernet's size penalty from the formula
# of section 4: given the choice probabilities `probs` (layers x candidates), the bits
# `bits` of each candidate for each layer (same shape) and the budget `budget_bits`,
# return $\big((E[\text{bits}] - B)/B\big)^2$. Use `jnp` so that it can be
# differentiated.


# %%
def my_size_penalty(probs, bits, budget_bits):
    return ((jnp.sum(probs * bits) - budget_bits) / budget_bits) ** 2  # ANSWER


# %%
ex_logits = jax.random.normal(jax.random.fold_in(key, 2), (5, 4))
ex_probs = jax.nn.softmax(ex_logits, axis=-1)
ex_bits = jnp.array(np.random.default_rng(2).integers(1, 100, (5, 4)), jnp.float32)


def agrees_with_the_library(value):
    want = supernet.size_penalty(supernet.expected_bits(ex_probs, ex_bits), 150.0)
    assert np.isclose(float(value), float(want), rtol=1e-5), f"{float(value)} != {float(want)}"
    g_mine = jax.grad(lambda a: my_size_penalty(jax.nn.softmax(a, -1), ex_bits, 150.0))(ex_logits)
    g_lib = jax.grad(
        lambda a: supernet.size_penalty(
            supernet.expected_bits(jax.nn.softmax(a, -1), ex_bits), 150.0
        )
    )(ex_logits)
    assert np.allclose(g_mine, g_lib, rtol=1e-4, atol=1e-7), "the gradients differ"
    return True


check_answer(
    "Exercise 2 (the size penalty)",
    my_size_penalty(ex_probs, ex_bits, 150.0),
    accept=agrees_with_the_library,
    hint="E[bits] sums probs * bits over layers *and* candidates; the penalty is the "
    "squared relative distance of that sum from the budget",
    correct="equal to supernet.size_penalty(supernet.expected_bits(...)), gradients too",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: the penalty's gradient with respect to one layer's logits.
g = jax.grad(lambda a: my_size_penalty(jax.nn.softmax(a, -1), ex_bits, 150.0))(ex_logits)
print("E[bits] =", float(jnp.sum(ex_probs * ex_bits)), "budget 150")
print("d penalty / d alpha, layer 0:", np.asarray(g[0]).round(4))
print("bits of layer 0's candidates:  ", np.asarray(ex_bits[0]))

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** $E[\text{bits}]$ is linear in the probabilities; the penalty is zero
# exactly at the budget and grows quadratically on both sides. Through the softmax, its
# gradient on $\alpha_{lk}$ is $2(E-B)/B^2 \cdot \pi_{lk}(\text{bits}_{lk} - \bar b_l)$,
# $\bar b_l$ the layer's expected bits: over budget, it lowers the logits of candidates
# larger than the layer's average and raises the smaller ones, most in the layers whose
# candidates differ by the most bits (the large layers). The search's Adam then
# normalises each logit's step, which is why that scale shows in the gradient and much
# less in the updates.

# %% [markdown]
# **Exercise 3 (the most and least decided layers).** A layer whose final probabilities
# are concentrated on one candidate has decided; one whose probabilities are spread has
# not. Measure it by the entropy $H_l = -\sum_k \pi_{lk} \ln \pi_{lk}$ (nats) of each
# layer's final probabilities `result["final_probs"]`. Give every layer's entropy (an
# array, in the order of `result["layers"]`), and the name of the layer with the
# smallest entropy.

# %%
final = np.array(result["final_probs"])
my_entropies = -np.sum(final * np.log(final), axis=1)  # ANSWER: one entropy per layer
my_most_decided = result["layers"][int(np.argmin(my_entropies))]  # ANSWER: a layer name

# %%
answers.check_entropies(
    "Exercise 3 (the most and least decided layers)",
    (my_entropies, my_most_decided),
    final,
    result["layers"],
    hint="np.log of the probabilities, multiplied by them, summed over the candidates "
    "(axis 1) with a minus sign; then the layer at the smallest value",
)

# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution: each layer's entropy, its most probable candidate and that candidate's bits.
H = answers.entropies(final)
order = np.argsort(H)
for i in order:
    k = int(final[i].argmax())
    print(
        f"{result['layers'][i]:34s} H = {H[i]:.3f}  top {result['candidates'][k]:9s} "
        f"p = {final[i, k]:.2f}  its bits {prob.bits[i, k]:9.0f}"
    )

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# **Discussion.** The raw size-penalty gradient on a layer's logits scales with how many
# bits its choice moves, but Adam divides each logit's gradient by its own running
# magnitude: every logit moves by about `logit_lr` a step whatever its layer's size. A
# layer decides when its gradient keeps the *same sign* step after step; the Gumbel
# noise and the changing batches make the CTC and KL parts of it fluctuate, so layers
# where those parts are small next to the size penalty (or agree with it) decide first.
# Compare the table above with the plot of section 4: whichever layers lead in this
# run, the reason is in that sign consistency, not in the layer's size alone. Entropy
# summarises the whole distribution: a layer can have a clear favourite and still a
# sizeable entropy when the rest of its probability is spread over several candidates.
# In fast mode the search is short (`SEARCH_STEPS`) and starts from random weights, so
# every entropy stays well above zero.
#
# ## Summary
#
# * A layer's *loss sensitivity* to a spec is the loss increase with that layer alone
#   compressed, post-training; it is a noisy, batch-dependent measurement (compare two
#   batches' rankings), and can be negative.
# * Under a size budget in the paper's convention (section 5's size column, layer by
#   layer), the exact multiple-choice knapsack gives the allocation with the smallest
#   summed sensitivity; the uniform spec of the same size is one of the allocations it
#   considered. Whether the recognizer agrees is a paired comparison on utterances the
#   sensitivities were not measured on.
# * The Gumbel-softmax supernet learns logits per layer with the task loss, a
#   distillation term and a two-sided size penalty on the expected bits, with an
#   annealed temperature; its choice is the argmax (or the most probable fitting choice).
# * The paper uses one spec for the whole model (Tables 1-3); per-layer choices are
#   beyond it. The committed `cpu` results (`results/search`) say, with intervals,
#   whether they beat uniform specs at this scale.
