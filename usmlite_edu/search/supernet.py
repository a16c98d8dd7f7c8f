"""A bit width (and N:M pattern) per layer, learned in one stage: a Gumbel-softmax supernet.

After Xu et al., "Effective and Efficient Mixed Precision Quantization of Speech
Foundation Models" (ICASSP 2025, arXiv 2501.03643) and its predecessor (arXiv
2111.14479): every compressible layer ``l`` holds one float weight ``W_l`` (shared by all
candidates, as in the seed) and learnable logits ``alpha_l`` over ``K`` candidate specs.
Each training step uses the mixture

    W_l_mix = sum_k pi_lk * C_k(W_l),    pi_l = softmax((alpha_l + g_l) / tau),

where ``C_k`` is Algorithm 1 with spec ``k`` (:func:`usmlite_edu.core.compress.compress_weight`:
N:M mask from the current weight, Eq. 2 quantization, straight-through gradient), ``g_l``
Gumbel noise drawn per step and ``tau`` a temperature annealed geometrically from
``tau_start`` to ``tau_end``. A dense layer is linear in its weight, so mixing the weights
is the same as mixing the candidates' outputs (DARTS-style), at the cost of one forward.

The loss (:func:`search_loss`) is

    CTC(student) + kl_weight * KL(teacher || student) + size_weight * ((E[bits] - B) / B)^2,

with the KL per output frame against a frozen float teacher's posteriors (the seed's
distillation term), ``E[bits] = sum_l sum_k pi_lk * bits_lk`` the expected stored bits of
the compressible weights (:func:`usmlite_edu.search.sensitivity.spec_sizes`, paper or exact
convention) and ``B`` the bits a model of ``budget`` percent of B0 leaves them
(:func:`usmlite_edu.search.sensitivity.budget_bits`). The penalty is two-sided: it pulls the
expected size *to* the budget (a model smaller than allowed gives away accuracy for
nothing), as a knapsack allocation also spends its budget. Weights and logits train
together with two Adam optimizers.

After the search (:func:`select`), each layer takes its most probable candidate
(``argmax alpha_l``); when that assignment exceeds the budget, the most probable one that
fits instead: the exact multiple-choice knapsack of :mod:`usmlite_edu.search.sensitivity` with
cost ``-log softmax(alpha_l)``. The result is a :class:`~usmlite_edu.core.specs.SpecMap`;
Two ways to a model follow (:mod:`usmlite_edu.search.pipeline` runs both): **one-stage**,
the seed's own method: the supernet's jointly learned weights, compressed under the map,
are the model (Pass 1), optionally fine-tuned under it with Algorithm 1 (Pass 2); and
**two-stage**, the baseline the seed compares with: only the map is kept and the original
start is fine-tuned under it, for the same steps as the uniform rows of the reproduction,
so that searched and uniform models differ only in their specs.

The search runs deterministically from ``seed`` (Gumbel noise, batch order) and
checkpoints its whole state (weights, logits, both optimizer states, the batch stream's
position) every ``checkpoint_every`` steps, so an interrupted search resumes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from usmlite_edu.core import compress
from usmlite_edu.core.specs import SpecMap, as_spec, layer_name
from usmlite_edu.deploy.forward import Forward, get_forward
from usmlite_edu.search import sensitivity
from usmlite_edu.speech import batching, model, runs
from usmlite_edu.speech.configs import ConformerConfig, TrainConfig
from usmlite_edu.training.train import ctc_per_token

__all__ = [
    "CANDIDATES",
    "SearchConfig",
    "Problem",
    "problem",
    "gumbel_probs",
    "temperature",
    "mix_weights",
    "expected_bits",
    "size_penalty",
    "kl_to_teacher",
    "search_loss",
    "select",
    "search",
]

#: Candidates valid for every compressible layer of the ``cpu`` preset (inputs 144, 288,
#: 576 wide): the issue's set {float, int8, int4, int2 with groups, 2:4, int4 + 2:4} and
#: int2 without groups (E4), so that budgets below int4 + 2:4's size can be met.
CANDIDATES = ("float", "int8", "int4", "2:4", "int4+2:4", "int2/gs24", "int2/gs72", "int2")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """The search's settings (defaults: those of the committed ``cpu`` results).

    Attributes:
      budget: the model's size target, % of the float32 B0 in ``convention``.
      convention: ``"paper"`` (the paper's estimate; compressible weights only) or
        ``"exact"`` (stored bits of the whole model; :mod:`usmlite_edu.core.sizes`).
      candidates: the specs each layer chooses from (checked against every layer).
      steps: search steps (one batch each).
      tau_start, tau_end: the Gumbel-softmax temperature, annealed geometrically.
      kl_weight: weight of the distillation term.
      size_weight: weight of the size penalty.
      logit_lr, weight_lr: Adam learning rates of the logits and of the float weights
        (``weight_lr = 0`` freezes the weights: a search over the start's weights only).
        Every logit starts at 0: a uniform choice.
      log_every, checkpoint_every: how often the choice probabilities are recorded and
        the state is saved.
    """

    budget: float = 9.375
    convention: str = "paper"
    candidates: tuple[str, ...] = CANDIDATES
    steps: int = 100
    tau_start: float = 1.0
    tau_end: float = 0.1
    kl_weight: float = 1.0
    size_weight: float = 5.0
    logit_lr: float = 0.05
    weight_lr: float = 1e-4
    log_every: int = 5
    checkpoint_every: int = 50

    def __post_init__(self):
        if self.convention not in ("paper", "exact"):
            raise ValueError(f"convention must be 'paper' or 'exact', got {self.convention!r}")
        for name in ("steps", "log_every", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"search {name} must be >= 1, got {getattr(self, name)!r}")
        if not (0 < self.tau_end <= self.tau_start):
            raise ValueError(
                f"need 0 < tau_end <= tau_start, got {self.tau_start} -> {self.tau_end}"
            )
        for name in ("kl_weight", "size_weight", "logit_lr", "weight_lr"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"search {name} must be >= 0, got {getattr(self, name)!r}")
        if len(self.candidates) < 2:
            raise ValueError("a search needs at least two candidate specs")


@dataclasses.dataclass(frozen=True)
class Problem:
    """What the search chooses among: ``names[l]`` (compressible weights, model order),
    ``candidates[k]`` (canonical spec names), ``bits[l, k]`` (stored bits of weight ``l``
    under candidate ``k``) and ``budget_bits`` (what the budget leaves them)."""

    names: tuple[str, ...]
    candidates: tuple[str, ...]
    bits: np.ndarray
    budget_bits: float
    budget: float
    convention: str

    def size_percent(self, choice: Sequence[int], cfg: ConformerConfig) -> float:
        """The model's size (% of B0, this problem's convention) for ``choice``."""
        return sensitivity.size_of(
            cfg,
            {n: self.candidates[k] for n, k in zip(self.names, choice)},
            self.convention,
        )


def problem(cfg: ConformerConfig, scfg: SearchConfig) -> Problem:
    """The search problem of ``cfg`` under ``scfg``; refuses (``ValueError``) a candidate
    some layer cannot take and a budget below the smallest model the candidates allow."""
    names = sensitivity.compressible_names(cfg)
    shapes = {w.name: w.shape for w in model.param_table(cfg)}
    cands = tuple(sensitivity.check_specs(scfg.candidates, {n: shapes[n] for n in names}))
    groups = {n: [n] for n in names}
    bits = sensitivity.spec_sizes(cfg, groups, cands, scfg.convention)
    budget_bits = sensitivity.budget_bits(cfg, groups, scfg.budget, scfg.convention)
    smallest = sensitivity.size_of(
        cfg, {n: cands[int(np.argmin(bits[i]))] for i, n in enumerate(names)}, scfg.convention
    )
    if budget_bits < bits.min(axis=1).sum() - 1e-6:
        raise ValueError(
            f"budget {scfg.budget}% ({scfg.convention}) is below the smallest model these "
            f"candidates allow ({smallest:.2f}%); raise the budget or add smaller candidates"
        )
    return Problem(tuple(names), cands, bits, float(budget_bits), scfg.budget, scfg.convention)


# --------------------------------------------------------------------------- the maths
def temperature(step: jax.Array | int, scfg: SearchConfig) -> jax.Array:
    """``tau_start * (tau_end / tau_start) ** (step / (steps - 1))``: geometric annealing."""
    frac = jnp.asarray(step, jnp.float32) / max(scfg.steps - 1, 1)
    return scfg.tau_start * (scfg.tau_end / scfg.tau_start) ** jnp.clip(frac, 0.0, 1.0)


def gumbel_probs(logits: jax.Array, key: jax.Array | None, tau: jax.Array | float) -> jax.Array:
    """``softmax((logits + g) / tau)`` over the last axis, ``g`` standard Gumbel noise
    (``key=None``: no noise, the plain tempered softmax)."""
    if key is not None:
        logits = logits + jax.random.gumbel(key, logits.shape, logits.dtype)
    return jax.nn.softmax(logits / tau, axis=-1)


def mix_weights(
    weights: dict[str, jax.Array], probs: jax.Array, names: Sequence[str], candidates: Sequence[str]
) -> dict[str, jax.Array]:
    """``{name: sum_k probs[l, k] * C_k(W_l)}``; ``C_k`` is Algorithm 1 with candidate ``k``
    (one-shot N:M mask from the current weight, min/max quantization, STE gradient)."""
    specs = [as_spec(c) for c in candidates]
    out = {}
    for i, n in enumerate(names):
        w = weights[n]
        versions = [w if s.is_float else compress.compress_weight(w, s) for s in specs]
        out[n] = jnp.tensordot(probs[i].astype(w.dtype), jnp.stack(versions), axes=1)
    return out


def expected_bits(probs: jax.Array, bits: jax.Array) -> jax.Array:
    """``sum_l sum_k probs[l, k] * bits[l, k]``."""
    return jnp.sum(probs * bits)


def size_penalty(expected: jax.Array, budget_bits: float) -> jax.Array:
    """``((expected - budget) / budget) ** 2``: zero exactly at the budget."""
    return ((expected - budget_bits) / budget_bits) ** 2


def kl_to_teacher(
    student_logits: jax.Array, teacher_logits: jax.Array, mask: jax.Array
) -> jax.Array:
    """Mean over valid output frames of ``KL(p_teacher || p_student)`` (nats)."""
    t = jax.nn.log_softmax(teacher_logits.astype(jnp.float32), axis=-1)
    s = jax.nn.log_softmax(student_logits.astype(jnp.float32), axis=-1)
    kl = jnp.sum(jnp.exp(t) * (t - s), axis=-1)
    m = mask.astype(jnp.float32)
    return jnp.sum(kl * m) / jnp.maximum(jnp.sum(m), 1.0)


def search_loss(
    state: dict[str, Any],
    teacher: Any,
    batch: batching.Batch,
    key: jax.Array,
    tau: jax.Array,
    *,
    forward: Forward,
    prob: Problem,
    scfg: SearchConfig,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The supernet's loss (module doc) and its parts, for ``state = {"params", "logits"}``.

    ``forward`` is the float :class:`usmlite_edu.deploy.forward.Forward` of the model (its
    features and graphdef); ``teacher`` the teacher's parameters (not differentiated)."""
    params, logits = state["params"], state["logits"]
    probs = gumbel_probs(logits, key, tau)
    weights = sensitivity.get_weights(params, prob.names)
    mixed = sensitivity.with_weights(
        params, mix_weights(weights, probs, prob.names, prob.candidates)
    )
    feats, mask = forward.features(batch.waveforms, batch.lengths)
    s_logits, omask = model.forward(forward.graphdef, mixed, feats, mask)
    t_logits, _ = model.forward(forward.graphdef, jax.lax.stop_gradient(teacher), feats, mask)
    ctc = ctc_per_token(s_logits, omask, batch)
    kl = kl_to_teacher(s_logits, jax.lax.stop_gradient(t_logits), omask)
    e_bits = expected_bits(probs, jnp.asarray(prob.bits, jnp.float32))
    pen = size_penalty(e_bits, prob.budget_bits)
    total = ctc + scfg.kl_weight * kl + scfg.size_weight * pen
    return total, {"ctc": ctc, "kl": kl, "size_penalty": pen, "expected_bits": e_bits}


def select(logits: np.ndarray, prob: Problem) -> tuple[list[int], str]:
    """Each layer's most probable candidate, or (when that assignment is over the budget)
    the most probable assignment within it (exact knapsack on ``-log softmax``); returns
    ``(choice, "argmax" | "knapsack")``."""
    logits = np.asarray(logits, np.float64)
    choice = [int(k) for k in np.argmax(logits, axis=1)]
    if sum(prob.bits[i, k] for i, k in enumerate(choice)) <= prob.budget_bits + 1e-6:
        return choice, "argmax"
    top = logits.max(1, keepdims=True)
    logp = logits - top - np.log(np.sum(np.exp(logits - top), 1, keepdims=True))
    alloc = sensitivity.allocate_exact(-logp, prob.bits, prob.budget_bits)
    return list(alloc.choice), "knapsack"


# --------------------------------------------------------------------------- the loop
def _optimizers(scfg: SearchConfig, clip_norm: float):
    weights = optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(scfg.weight_lr))
    logits = optax.adam(scfg.logit_lr)
    return weights, logits


def search(
    init_params: Any,
    teacher_params: Any,
    cfg: ConformerConfig,
    tcfg: TrainConfig,
    train_set: batching.Dataset,
    scfg: SearchConfig,
    out_dir: str | Path,
    *,
    seed: int = 0,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) the search; returns and writes ``out_dir/search.json``.

    The record holds the problem (layers, candidates, bits, budget), the history (every
    ``log_every`` steps: the noise-free choice probabilities ``softmax(alpha)`` per layer,
    the expected size, the losses and the temperature), the final logits, the selected
    assignment with its size in both conventions, and ``out_dir/spec_map.json`` the map;
    ``out_dir/params`` holds the supernet's final float weights (shared by all candidates),
    which one-stage Pass 1 quantizes under the map.
    ``stop_after``: return after that many steps of this call (tests: an interruption).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prob = problem(cfg, scfg)
    forward = get_forward(cfg, "float", tcfg)
    tx_w, tx_a = _optimizers(scfg, tcfg.clip_norm)
    state = {
        "params": jax.tree.map(lambda x: jnp.array(x, copy=True), init_params),  # donated below
        "logits": jnp.zeros((len(prob.names), len(prob.candidates)), jnp.float32),
    }
    opt = {"params": tx_w.init(state["params"]), "logits": tx_a.init(state["logits"])}
    key = jax.random.key(seed)

    def step_fn(state, opt, teacher, batch, step):
        k = jax.random.fold_in(key, step)
        tau = temperature(step, scfg)
        (loss, parts), g = jax.value_and_grad(search_loss, has_aux=True)(
            state, teacher, batch, k, tau, forward=forward, prob=prob, scfg=scfg
        )
        uw, ow = tx_w.update(g["params"], opt["params"], state["params"])
        ua, oa = tx_a.update(g["logits"], opt["logits"], state["logits"])
        new = {
            "params": optax.apply_updates(state["params"], uw),
            "logits": optax.apply_updates(state["logits"], ua),
        }
        return new, {"params": ow, "logits": oa}, loss, parts, tau

    step_jit = jax.jit(step_fn, donate_argnums=(0, 1))

    history: list[dict] = []
    step, position = 0, (0, 0)
    mngr = runs.checkpoint_manager(out)
    hist_path = out / "history.jsonl"
    like = {
        "state": state,
        "opt": opt,
        "position": np.zeros(2, np.int64),
        "step": np.zeros((), np.int64),
    }
    resumed = runs.restore_latest(mngr, like)
    if resumed is not None:
        _, restored = resumed
        state, opt = restored["state"], restored["opt"]
        position = tuple(int(v) for v in restored["position"])
        step = int(restored["step"])
        if hist_path.exists():  # drop records the restored state has not reached
            history = [
                r for r in map(json.loads, hist_path.read_text().splitlines()) if r["step"] <= step
            ]
        print(f"search resumed from {out / 'checkpoints'} at step {step}", flush=True)
    hist_path.write_text("".join(json.dumps(r) + "\n" for r in history))
    stream = batching.BatchStream(train_set, tcfg.batch_size, seed, position)
    # a copy: the start's arrays are donated to the step, and the teacher may be the start
    teacher = jax.tree.map(lambda x: jnp.array(x, copy=True), teacher_params)

    def record(step_, loss, parts, tau):
        p = np.asarray(jax.nn.softmax(state["logits"], axis=-1))
        rec = {
            "step": step_,
            "loss": float(loss),
            **{k: float(v) for k, v in parts.items()},
            "tau": float(tau),
            # this step's (Gumbel-noised, tempered) mixture, and the noise-free choice
            "sampled_percent": _percent(float(parts["expected_bits"]), prob, cfg),
            "expected_percent": _percent(float(np.sum(p * prob.bits)), prob, cfg),
            "argmax_percent": _percent(
                float(prob.bits[np.arange(len(p)), p.argmax(1)].sum()), prob, cfg
            ),
            "probs": np.round(p, 5).tolist(),
        }
        history.append(rec)
        with hist_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")

    t0, ran = time.time(), 0
    while step < scfg.steps:
        batch = batching.Batch(*(jnp.asarray(x) for x in next(stream)))
        state, opt, loss, parts, tau = step_jit(state, opt, teacher, batch, jnp.int32(step))
        step += 1
        ran += 1
        if not np.isfinite(float(loss)):
            raise RuntimeError(
                f"search step {step}: the loss is not finite; lower --logit-lr / the weight "
                f"learning rate. The last good state is in {out / 'checkpoints'}"
            )
        if step % scfg.log_every == 0 or step == scfg.steps:
            record(step, loss, parts, tau)
        if step % scfg.checkpoint_every == 0 or step == scfg.steps:
            runs.save_checkpoint(
                mngr,
                step,
                {
                    "state": state,
                    "opt": opt,
                    "position": np.asarray(stream.position, np.int64),
                    "step": np.asarray(step, np.int64),
                },
            )
        if stop_after is not None and ran >= stop_after:
            return {"stopped_at": step}
    smap, result = _result(
        np.asarray(state["logits"]), prob, cfg, scfg, seed, history, time.time() - t0, step
    )
    smap.save(out / "spec_map.json")
    # the supernet's own weights: one-stage Pass 1 is these under the map
    # (usmlite_edu.search.pipeline); saved after the map, read only once search.json exists
    runs.save_params(out / "params", state["params"])
    runs.write_json(out / "search.json", result)
    return result


def _result(
    logits: np.ndarray,
    prob: Problem,
    cfg: ConformerConfig,
    scfg: SearchConfig,
    seed: int,
    history: list[dict],
    seconds: float,
    steps: int,
) -> tuple[SpecMap, dict[str, Any]]:
    """``(map, search.json record)`` of a finished search: the selected assignment
    (:func:`select`) as a :class:`~usmlite_edu.core.specs.SpecMap`, and the record of
    :func:`search`'s docstring."""
    choice, how = select(logits, prob)
    assignment = {n: prob.candidates[k] for n, k in zip(prob.names, choice)}
    smap = SpecMap.from_assignment(assignment, "float")
    result = {
        "search_config": dataclasses.asdict(scfg),
        "seed": seed,
        "layers": [layer_name(n) for n in prob.names],
        "candidates": list(prob.candidates),
        "bits": prob.bits.tolist(),
        "budget_bits": prob.budget_bits,
        "final_logits": logits.tolist(),
        "final_probs": np.asarray(jax.nn.softmax(logits, axis=-1)).tolist(),
        "choice": choice,
        "selected_by": how,
        "assignment": {layer_name(n): s for n, s in assignment.items()},
        "size_paper": sensitivity.size_of(cfg, assignment, "paper"),
        "size_exact": sensitivity.size_of(cfg, assignment, "exact"),
        "history": history,
        "search_time_s": seconds,
        "steps": steps,
    }
    return smap, result


def _percent(bits: float, prob: Problem, cfg: ConformerConfig) -> float:
    """Size (% of B0, the problem's convention) when the compressible weights take ``bits``."""
    denom, fixed = sensitivity._denominator_and_fixed(cfg, prob.names, prob.convention)
    return 100.0 * (bits + fixed) / denom
