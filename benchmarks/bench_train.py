"""Training-step speed of the `cpu` preset on this machine, and where the time goes
(printed, never asserted).

Prints, from one run (ratios are measured side by side because these machines are noisy:
the matmul peaks and the specs' training steps are each timed interleaved, one call of
each per round for ``--steps`` rounds, the fastest call kept):

* steps per second of dense float training (batch 32, one bucket);
* model FLOPs per step from XLA's cost analysis, achieved FLOP/s, and that as a fraction
  of a float32 matmul peak measured in the same run (1024x1024 matmul; also bf16 and
  int8 x int8 -> int32 for reference);
* the step time of int4 + 2:4 QAT relative to dense float;
* peak memory: XLA's temp allocation of the step, and the process's max RSS;
* with ``--profile`` (default on), for the first spec:

  - phases, each a separately jitted function timed on the same batch: log-mel features,
    the model's forward pass (features precomputed), the subsampler alone and the CTC
    loss alone (each forward, and forward + backward), the training loss (features +
    forward + CTC), loss + gradient, the optimizer update, and the whole step;
  - a ``jax.profiler`` trace of ``--profile-steps`` steps, parsed with
    ``jax.profiler.ProfileData``: XLA:CPU runs a compiled step as a sequence of thunks
    (one per fusion, dot, convolution, loop, ...), each recorded with its instruction's
    name. Their self time (nested events, e.g. a while loop's body, subtracted from the
    loop) is summed per instruction and per category, and the top instructions are listed
    with the bytes they read and write (from the optimized HLO's shapes) and the jax
    operation they come from (the HLO ``op_name`` metadata). These are thread times:
    thunks that run at the same time compete for the cores, so a thunk's share can
    overstate what removing it would save; the A/B below is the measure of a saving;

* with ``--rewrites`` (default on), for the first spec: the model's ``rel_shift`` (slices)
  and depthwise convolution (shifted sums) against the operations they replaced
  (:func:`rel_shift_gather`, :func:`depthwise_grouped`): one op forward + backward at the
  step's shapes, and the whole step with each previous op patched back in (same loss and
  gradients asserted), plus the step with the log-mel features precomputed; all
  interleaved, fastest of 7 rounds.

* with ``--sizes B0 B3 ...``, only: the whole step of each dense size (B1-B3 are the
  widths and depths that the reproduction's W1-W3 train), interleaved across sizes, and
  each size's phases as above, side by side.

    .venv/bin/python benchmarks/bench_train.py [--steps 20] [--seconds 3.5] [--dtype bfloat16]
        [--no-profile] [--profile-steps 5] [--top 25] [--no-rewrites] [--sizes B0 B3]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import os
import re
import resource
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from usmlite_edu.core import quant, sparsity
from usmlite_edu.deploy.infer import interleaved_min, matmul_peaks
from usmlite_edu.speech import batching, frontend, model, presets, runs
from usmlite_edu.training import reproduce, train


def fake_batch(cfg, batch_size, seconds, label_len=16, seed=0) -> batching.Batch:
    rng = np.random.default_rng(seed)
    n = int(seconds * cfg.sample_rate)
    wav = (0.1 * rng.standard_normal((batch_size, n))).astype(np.float32)
    lengths = rng.integers(n // 2, n + 1, batch_size).astype(np.int32)
    labels = rng.integers(1, cfg.vocab_size, (batch_size, label_len)).astype(np.int32)
    return batching.Batch(
        wav,
        lengths,
        labels,
        np.full(batch_size, label_len, np.int32),
        np.ones(batch_size, np.float32),
    )


def compiled_step(spec: str, cfg, tcfg, batch):
    """The training step of ``spec`` compiled for ``batch``, its arguments (the initial
    parameters and optimizer state, step 0), XLA's FLOPs per call and temp memory.
    Called again with the same arguments it repeats the same work, which is what
    :func:`interleaved_min` times."""
    tr = train.Trainer(cfg, spec, tcfg)
    params = tr.init_params(0)
    state = tr.setup_optimizer(params)
    key = jax.random.key(0)
    b = batching.Batch(*(jnp.asarray(x) for x in batch))
    s0 = jnp.asarray(0, jnp.int32)
    compiled = jax.jit(tr._step_impl).lower(params, state, b, key, s0).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    mem = compiled.memory_analysis()
    flops = float(cost.get("flops", float("nan")))
    return compiled, (params, state, b, key, s0), flops, getattr(mem, "temp_size_in_bytes", None)


# --------------------------------------------------------------------------- profile
def phase_times(tr, params, state, batch, key, reps: int = 7) -> dict[str, float]:
    """Seconds per call (fastest of ``reps`` interleaved rounds) of separately jitted
    pieces of one training step.

    ``features``: log-mel + normalisation; ``model forward``: the model on precomputed
    features (dropout on, as in training); ``subsampler fwd`` / ``fwd+bwd``: the model's
    front (two stride-2 convolutions and the projection to the model width) on the same
    features, and the gradient of its output's sum; ``CTC fwd`` / ``CTC fwd+bwd``: ``optax.ctc_loss``
    on precomputed logits, and its gradient; ``loss``: the training loss (features +
    forward + CTC); ``loss + grad``: ``jax.value_and_grad`` of it; ``optimizer``: the
    optimizer update and ``apply_updates`` on given gradients; ``step``: the whole step
    (not donating its inputs, so it can be repeated).
    """
    masks = sparsity.masks_from_state(state)
    b = batching.Batch(*(jnp.asarray(x) for x in batch))
    feats_fn = jax.jit(tr.features)
    feats, fmask = feats_fn(b.waveforms, b.lengths)

    def fwd(p, feats, fmask, key):
        p = model.apply_masks(p, masks, straight_through=tr.spec.sr_ste)
        return model.forward(tr.graphdef, p, feats, fmask, deterministic=False, dropout_key=key)

    logits, omask = jax.jit(fwd)(params, feats, fmask, key)

    def subsample(p, feats, fmask):  # the convolutions and projection before the blocks
        x, _ = nnx.merge(tr.graphdef, p).frontend(feats, fmask)
        return jnp.sum(x)

    label_pad = (jnp.arange(b.labels.shape[1])[None, :] >= b.label_lengths[:, None]).astype(
        jnp.float32
    )

    def ctc(lg):
        pad = (~omask).astype(jnp.float32)
        return jnp.sum(optax.ctc_loss(lg, pad, b.labels, label_pad, blank_id=0))

    loss = lambda p, k: tr.loss(p, masks, b, k)  # noqa: E731
    grads = jax.jit(jax.grad(loss))(params, key)
    update = jax.jit(lambda g, s, p: optax.apply_updates(p, tr.tx.update(g, s, p)[0]))
    step = jax.jit(tr._step_impl)
    s0 = jnp.asarray(0, jnp.int32)
    return interleaved_min(
        {
            "features (log-mel)": (feats_fn, (b.waveforms, b.lengths)),
            "model forward": (jax.jit(fwd), (params, feats, fmask, key)),
            "subsampler fwd": (jax.jit(subsample), (params, feats, fmask)),
            "subsampler fwd+bwd": (jax.jit(jax.grad(subsample)), (params, feats, fmask)),
            "CTC fwd": (jax.jit(ctc), (logits,)),
            "CTC fwd+bwd": (jax.jit(jax.grad(ctc)), (logits,)),
            "loss (features+forward+CTC)": (jax.jit(loss), (params, key)),
            "loss + grad": (jax.jit(jax.value_and_grad(loss)), (params, key)),
            "optimizer update": (update, (grads, state, params)),
            "whole step": (step, (params, state, b, key, s0)),
        },
        reps,
    )


_INSTR = re.compile(
    r"^\s*(?:ROOT\s+)?%(?P<name>[\w.\-]+)\s*=\s*(?P<type>\S+)\s+(?P<op>[a-z][\w\-]*)"
    r"\((?P<args>[^)]*)\)(?P<rest>.*)$"
)
_ARRAY = re.compile(r"(pred|[a-z]+\d+)\[([\d,]*)\]")
_BITS = {"pred": 8}


def _type_bytes(t: str) -> int:
    """Bytes of an HLO type string (arrays, or tuples of them)."""
    total = 0
    for dt, dims in _ARRAY.findall(t):
        bits = _BITS.get(dt) or int(re.sub(r"\D", "", dt) or 8)
        total += int(np.prod([int(d) for d in dims.split(",") if d] or [1])) * bits // 8
    return total


def hlo_instructions(hlo_text: str) -> dict[str, dict]:
    """name -> {opcode, type, bytes (result + operands), kind, op_name} of every instruction
    of an optimized HLO module (all computations; names are unique in a module)."""
    instrs: dict[str, dict] = {}
    for line in hlo_text.splitlines():
        m = _INSTR.match(line)
        if not m:
            continue
        rest = m.group("rest")
        kind = re.search(r"kind=(\w+)", rest)
        op_name = re.search(r'op_name="([^"]*)"', rest)
        custom = re.search(r'"kind":"(\w+)"', rest)
        instrs[m.group("name")] = {
            "opcode": m.group("op"),
            "type": m.group("type"),
            "args": re.findall(r"%([\w.\-]+)", m.group("args")),
            "kind": (custom.group(1) if custom else kind.group(1) if kind else ""),
            "op_name": op_name.group(1) if op_name else "",
            "calls": re.findall(r"(?:calls|body|condition|to_apply)=%([\w.\-]+)", rest),
        }
    for ins in instrs.values():
        ins["bytes"] = _type_bytes(ins["type"]) + sum(
            _type_bytes(instrs[a]["type"]) for a in ins["args"] if a in instrs
        )
    return instrs


def _category(name: str, ins: dict | None) -> str:
    """A coarse class of an instruction for the summary, from its opcode, result rank and
    the jax operation in its ``op_name`` (forward and backward alike)."""
    if ins is None:  # thunks of control flow are named after it, not after an instruction
        base = name.split(".")[0]
        return (
            "while loop / cond (control flow)" if base in ("while", "cond") else f"other ({base})"
        )
    op, kind, opn = ins["opcode"], ins["kind"], ins["op_name"]
    last = opn.rsplit("/", 1)[-1]
    rank = len(_ARRAY.findall(ins["type"])[0][1].split(",")) if _ARRAY.findall(ins["type"]) else 0
    if op in ("while", "conditional") or "/while/" in opn:
        return "while loop / cond (control flow)"
    if "take_along_axis" in opn:
        return "rel_shift (take_along_axis)"
    if "log_mel" in opn:
        return "log-mel features"
    if op == "convolution" or last == "conv_general_dilated":
        return "depthwise conv (1-D)" if rank == 3 else "subsampler conv (2-D)"
    if op == "dot" or last == "dot_general" or "ynn" in kind:
        return "matmul (dot)"
    if op in ("gather", "scatter"):
        return "other gather / scatter"
    if op in ("copy", "transpose") or name.startswith(("copy", "transpose")):
        return "copy / transpose"
    if "reduce" in name or op in ("reduce", "reduce-window"):
        return "reduction"
    if op == "fusion":
        return "elementwise fusion"
    return "other (" + op + ")"


#: executor and thread-pool bookkeeping events, not instructions of the module (dropped
#: before nesting is resolved, so a pool's wait inside a thunk stays that thunk's time)
_NOT_THUNKS = ("end: ", "ThunkExecutor", "ThreadpoolListener", "SlinkyThreadPool")


def _self_times(events) -> dict[str, float]:
    """Per event name, total duration minus the durations of events nested inside it."""
    evs = sorted(events, key=lambda e: (e.start_ns, -e.duration_ns))
    out: dict[str, float] = collections.defaultdict(float)
    stack: list = []  # (end_ns, name)
    for e in evs:
        while stack and stack[-1][0] <= e.start_ns:
            stack.pop()
        if stack:
            out[stack[-1][1]] -= e.duration_ns
        out[e.name] += e.duration_ns
        stack.append((e.start_ns + e.duration_ns, e.name))
    return out


def profile_step(tr, params, state, batch, key, steps: int) -> tuple[dict, dict, float]:
    """Trace ``steps`` calls of the (non-donating) jitted step with ``jax.profiler``.

    Returns ``(self ns per instruction per step, summed over the threads that run thunks;
    the instructions of the optimized HLO; wall seconds per step)``. Thunks of one
    step may run concurrently on several threads, so the summed self time can exceed the
    wall time.
    """
    b = batching.Batch(*(jnp.asarray(x) for x in batch))
    s0 = jnp.asarray(0, jnp.int32)
    step = jax.jit(tr._step_impl)
    hlo = step.lower(params, state, b, key, s0).compile().as_text()
    jax.block_until_ready(step(params, state, b, key, s0))
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            t = time.perf_counter()
            for _ in range(steps):
                out = step(params, state, b, key, s0)
            jax.block_until_ready(out)
            wall = (time.perf_counter() - t) / steps
        pb = glob.glob(f"{d}/**/*.xplane.pb", recursive=True)[0]
        data = jax.profiler.ProfileData.from_file(pb)
        totals: dict[str, float] = collections.defaultdict(float)
        for plane in data.planes:
            for line in plane.lines:
                # thunks run on the client's threads and on the intra-op (Eigen) pool;
                # the Python thread only dispatches
                if not line.name.startswith(("tf_XLAPjRtCpuClient", "tf_XLAEigen")):
                    continue
                evs = [e for e in line.events if not e.name.startswith(_NOT_THUNKS)]
                for name, ns in _self_times(evs).items():
                    totals[name] += ns / steps
    return totals, hlo_instructions(hlo), wall


def print_profile(totals: dict, instrs: dict, wall: float, top: int) -> None:
    total = sum(totals.values())
    print(
        f"\nXLA:CPU thunk self time per step: {total / 1e6:.1f} ms summed over threads "
        f"(wall {wall * 1e3:.1f} ms per step while tracing)"
    )
    cats: dict[str, float] = collections.defaultdict(float)
    for name, ns in totals.items():
        cats[_category(name, instrs.get(name))] += ns
    print("  by category:")
    for c, ns in sorted(cats.items(), key=lambda kv: -kv[1]):
        print(f"    {c:32s} {ns / 1e6:8.1f} ms  {100 * ns / total:5.1f}%")
    print(f"  top {top} instructions (self time per step; bytes = result + operands):")
    for name, ns in sorted(totals.items(), key=lambda kv: -kv[1])[:top]:
        ins = instrs.get(name)
        if ins is None:
            print(f"    {ns / 1e6:7.2f} ms {100 * ns / total:5.1f}%  {name}")
            continue
        mb = ins["bytes"] / 2**20
        gbs = ins["bytes"] / ns if ns else float("nan")
        src = ins["op_name"]
        src = src if len(src) <= 90 else "..." + src[-87:]
        print(
            f"    {ns / 1e6:7.2f} ms {100 * ns / total:5.1f}%  {name:28s} {ins['opcode']}"
            f"{'/' + ins['kind'] if ins['kind'] else '':12s} {ins['type'][:28]:28s} "
            f"{mb:7.1f} MiB {gbs:6.2f} GB/s  {src}"
        )


# --------------------------------------------------------------------------- rewrites
# model.py computes rel_shift by slices and the depthwise convolution as shifted sums, two
# rewrites this benchmark measured against the operations they replaced (a gather and a
# grouped convolution), which stay here to keep measuring the difference.
def rel_shift_gather(x: jax.Array) -> jax.Array:
    """The previous ``model.rel_shift``: ``out[..., i, j] = x[..., i, (T-1) + i - j]`` by
    ``take_along_axis`` (a gather; its gradient is a scatter-add)."""
    t = x.shape[-2]
    idx = (t - 1) + jnp.arange(t)[:, None] - jnp.arange(t)[None, :]
    return jnp.take_along_axis(x, jnp.broadcast_to(idx, (*x.shape[:-1], t)), axis=-1)


def depthwise_grouped(x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
    """The previous depthwise convolution: ``conv_general_dilated`` with one group per
    channel, ``(B, T, C)`` by a ``(k, 1, C)`` kernel, stride 1."""
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        (1,),
        padding,
        dimension_numbers=("NWC", "WIO", "NWC"),
        feature_group_count=x.shape[-1],
    )


_native_matmul = quant.native_matmul  # the library's, restored after the patch


def native_matmul_grouped(x: jax.Array, q: quant.QuantizedArray, *, compute_dtype=None):
    """The previous float32 sub-channel forward of ``quant.native_matmul``: Eq. (1)
    literally, ``sum_g s_g (X_g @ q_g - z_g sum(X_g))``, as a dot batched over the ``g``
    groups whose ``(..., g, J)`` partial products are then scaled and summed. Per-channel
    weights and other compute dtypes go to the library's function."""
    g = q.sub_channels
    if g == 1 or jnp.dtype(compute_dtype or x.dtype) != jnp.float32:
        return _native_matmul(x, q, compute_dtype=compute_dtype)
    i, j = q.values.shape
    xg = x.reshape(*x.shape[:-1], g, i // g).astype(jnp.float32)
    vg = q.values.reshape(g, i // g, j).astype(jnp.float32)
    acc = jnp.einsum("...gi,gij->...gj", xg, vg, preferred_element_type=jnp.float32)
    if q.zero_point is not None:
        acc = acc - jnp.sum(xg, axis=-1)[..., None] * q.zero_point.astype(jnp.float32)
    return jnp.sum(acc * q.scale, axis=-2).astype(x.dtype)


@contextlib.contextmanager
def previous_ops(
    rel_shift: bool = False,
    depthwise: bool = False,
    subsampler: bool = False,
    grouped_matmul: bool = False,
):
    """Within the block, models traced use :func:`rel_shift_gather`, and/or
    :func:`depthwise_grouped` for depthwise convolutions, and/or XLA's own gradient for
    the subsampler's stride-2 convolutions (``model.conv_s2`` instead of
    ``model.conv3x3_stride2``), and/or :func:`native_matmul_grouped` for the QAT forward
    of sub-channel weights; restored afterwards."""
    old_shift, old_call = model.rel_shift, model.QConv.__call__

    def call(self, x):
        kernel = self.kernel[...]
        if self.spec is not None:
            kernel = model._maybe_fake_quant_kernel(kernel, self.spec)
        if depthwise and x.ndim == 3 and self.feature_group_count == x.shape[-1] > 1:
            return depthwise_grouped(x, kernel, self.padding) + self.bias[...]
        if subsampler and x.ndim == 4 and self.strides == (2, 2):
            return model.conv_s2(x, kernel) + self.bias[...]
        return old_call(self, x)

    try:
        if rel_shift:
            model.rel_shift = rel_shift_gather
        if depthwise or subsampler:
            model.QConv.__call__ = call
        if grouped_matmul:
            quant.native_matmul = native_matmul_grouped
        yield
    finally:
        model.rel_shift, model.QConv.__call__ = old_shift, old_call
        quant.native_matmul = _native_matmul


def variant_steps(cfg, tcfg, batch, spec: str, variants: dict) -> dict:
    """``name -> (compiled whole step, its arguments)`` for each variant (keywords of
    :func:`previous_ops`, or ``features=True``: the log-mel features precomputed and baked
    in as constants, what computing them once per utterance instead of once per step would
    save), after checking that every variant's loss and gradients are the first variant's
    (to float32 rounding)."""
    b = batching.Batch(*(jnp.asarray(x) for x in batch))
    key, s0 = jax.random.key(0), jnp.asarray(0, jnp.int32)
    feats = jax.jit(train.Trainer(cfg, spec, tcfg).features)(b.waveforms, b.lengths)
    steps, grads = {}, {}
    for name, kw in variants.items():
        kw = dict(kw)
        pre = kw.pop("features", False)
        with previous_ops(**kw):
            tr = train.Trainer(cfg, spec, tcfg)
            if pre:
                tr.features = lambda waveforms, lengths: feats
            params = tr.init_params(0)
            state = tr.setup_optimizer(params)
            masks = sparsity.masks_from_state(state)
            step = jax.jit(tr._step_impl).lower(params, state, b, key, s0).compile()
            g = jax.jit(
                jax.value_and_grad(lambda p, tr=tr, masks=masks: tr.loss(p, masks, b, key))
            )(params)
        steps[name] = (step, (params, state, b, key, s0))
        grads[name] = g
    ref_loss, ref_g = next(iter(grads.values()))
    gmax = max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(ref_g))
    for name, (loss, g) in grads.items():
        gdiff = max(
            float(jnp.max(jnp.abs(a - c)))
            for a, c in zip(jax.tree.leaves(g), jax.tree.leaves(ref_g))
        )
        assert abs(float(loss) - float(ref_loss)) <= 1e-4 * abs(float(ref_loss)), name
        assert gdiff <= 1e-3 * gmax, (name, gdiff, gmax)
    return steps


def compare_rewrites(cfg, tcfg, batch, spec: str, reps: int = 7) -> None:
    """Print op-level and whole-step times of the model's operations against the ones they
    replaced, interleaved in one run; checks that each variant computes the same
    loss and gradients (to float32 rounding). The last variant takes the log-mel features
    out of the step (precomputed, baked in as constants): the step time that computing
    features once per utterance instead of once per step would save."""
    b = batching.Batch(*(jnp.asarray(x) for x in batch))
    t = int(model.subsampled_lengths(frontend.num_frames(batch.waveforms.shape[1], cfg)))
    ks = jax.random.split(jax.random.key(1), 6)

    def vjp_time(f, x, *rest):
        """f's forward and its vjp with a fixed cotangent, jitted."""
        y = jax.eval_shape(f, x, *rest)
        ct = jax.random.normal(ks[5], y.shape, y.dtype)
        return jax.jit(lambda *a: jax.vjp(f, *a)[1](ct)), (x, *rest)

    xs = jax.random.normal(ks[0], (b.waveforms.shape[0], cfg.num_heads, t, 2 * t - 1))
    xd = jax.random.normal(ks[1], (b.waveforms.shape[0], t, cfg.model_dim))
    kd = jax.random.normal(ks[2], (cfg.conv_kernel, 1, cfg.model_dim))
    pad = ((cfg.conv_kernel // 2, cfg.conv_kernel // 2),)

    def shifted(x, k):  # the model's depthwise convolution, through QConv
        conv = model.QConv(
            x.shape[-1],
            x.shape[-1],
            (k.shape[0],),
            (1,),
            pad,
            feature_group_count=x.shape[-1],
            rngs=nnx.Rngs(0),
        )
        conv.kernel[...] = k
        return conv(x)

    np.testing.assert_array_equal(model.rel_shift(xs), rel_shift_gather(xs))
    np.testing.assert_allclose(depthwise_grouped(xd, kd, pad), shifted(xd, kd), atol=1e-4)
    ops = interleaved_min(
        {
            "rel_shift, model (slices) fwd+bwd": vjp_time(model.rel_shift, xs),
            "rel_shift, previous (gather) fwd+bwd": vjp_time(rel_shift_gather, xs),
            "depthwise, model (shifted sums) fwd+bwd": vjp_time(shifted, xd, kd),
            "depthwise, previous (grouped conv) fwd+bwd": vjp_time(
                lambda x, k: depthwise_grouped(x, k, pad), xd, kd
            ),
        },
        reps,
    )
    print(f"\n== model ops vs previous, {spec}: one op at the step's shapes (T' = {t}) ==")
    for name, sec in ops.items():
        print(f"  {name:40s} {sec * 1e3:8.2f} ms")
    variants = {
        "model as is": {},
        "previous rel_shift (gather)": {"rel_shift": True},
        "previous depthwise (grouped)": {"depthwise": True},
        "previous both": {"rel_shift": True, "depthwise": True},
        "previous subsampler gradient": {"subsampler": True},
        "log-mel precomputed (step without it)": {"features": True},
    }
    steps = variant_steps(cfg, tcfg, batch, spec, variants)
    times = interleaved_min(steps, reps)
    base = times["model as is"]
    print(f"== model ops vs previous, {spec}: whole training step (same loss and gradients) ==")
    for name, sec in times.items():
        print(f"  {name:30s} {sec * 1e3:8.1f} ms  {sec / base:5.2f}x")


def size_config(cfg, size: str):
    """``cfg`` (B0) or the width and depth of the reproduction's dense baseline ``size``
    (B1-B3: :func:`usmlite_edu.training.reproduce.dense_baseline_config`, what W1-W3
    train)."""
    if size == "B0":
        return cfg
    ratios = {exp: ratio for exp, ratio, _ in reproduce.DENSE_SIZES}
    over, _ = reproduce.dense_baseline_config(cfg, ratios[size])
    return cfg.replace(**over)


def compare_sizes(cfg, tcfg, batch, spec: str, sizes: list[str], reps: int) -> None:
    """The whole step of each size as is, with the log-mel features precomputed (what
    caching them would save) and with the subsampler's previous gradient (XLA's input
    gradient instead of ``model.conv3x3_stride2``'s), all interleaved in one run, and each
    size's phases (interleaved within the size): where a smaller model's step time goes."""
    variants = {
        "as is": {},
        "log-mel precomputed": {"features": True},
        "previous subsampler gradient (XLA's)": {"subsampler": True},
    }
    steps, phases = {}, {}
    for size in sizes:
        for name, step in variant_steps(
            size_config(cfg, size), tcfg, batch, spec, variants
        ).items():
            steps[size, name] = step
    timed = interleaved_min(steps, reps)
    whole = {size: timed[size, "as is"] for size in sizes}
    for size in sizes:
        tr = train.Trainer(size_config(cfg, size), spec, tcfg)
        params = tr.init_params(0)
        phases[size] = phase_times(tr, params, tr.setup_optimizer(params), batch, jax.random.key(0))
    print(f"\n== sizes, {spec}: whole step interleaved across sizes (fastest of {reps}) ==")
    for size in sizes:
        c = size_config(cfg, size)
        print(
            f"  {size}: model_dim {c.model_dim}, {c.num_layers} blocks, "
            f"{model.num_params(c):,} parameters, step {whole[size] * 1e3:7.1f} ms "
            f"({whole[size] / whole[sizes[0]]:.2f}x {sizes[0]})"
        )
    print("  whole step variants (same loss and gradients), x the size's step as is:")
    print("  " + " " * 34 + "".join(f"{s:>10s}" for s in sizes))
    for name in variants:
        print(f"  {name:34s}" + "".join(f"{timed[s, name] / whole[s]:9.2f}x" for s in sizes))
    print("  phases, ms (% of that size's whole step, timed with its phases):")
    print("  " + " " * 30 + "".join(f"{s:>16s}" for s in sizes))
    for name in phases[sizes[0]]:
        cells = "".join(
            f"{phases[s][name] * 1e3:8.1f} ({100 * phases[s][name] / phases[s]['whole step']:3.0f}%)"
            for s in sizes
        )
        print(f"  {name:30s}{cells}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=3.5, help="bucket length of the batch")
    ap.add_argument("--dtype", default=None, help="dense matmul dtype, e.g. bfloat16")
    ap.add_argument("--specs", nargs="+", default=["float", "int4+2:4"])
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--profile-steps", type=int, default=5)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument(
        "--rewrites",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the model's rel_shift and depthwise conv against the ops they replaced",
    )
    ap.add_argument(
        "--sizes",
        nargs="+",
        choices=["B0", *(exp for exp, _, _ in reproduce.DENSE_SIZES)],
        default=None,
        help="only compare the whole step and its phases of these dense sizes (B1-B3: the "
        "reproduction's W1-W3 widths) for the first spec, then stop",
    )
    args = ap.parse_args()

    preset = presets.get_preset(args.preset)
    cfg = preset.model.replace(vocab_size=32)
    tcfg = preset.train.replace(batch_size=args.batch_size, compute_dtype=args.dtype)
    batch = fake_batch(cfg, args.batch_size, args.seconds)
    print(f"machine: {runs.machine_info()}, load {os.getloadavg()[0]:.2f} at the start")
    print(
        f"preset {args.preset}: {model.num_params(cfg):,} parameters, batch "
        f"{args.batch_size} x {args.seconds} s, matmul dtype {args.dtype or 'float32'}"
    )

    if args.sizes:
        compare_sizes(cfg, tcfg, batch, args.specs[0], args.sizes, args.steps)
        return

    # every timing below: interleaved rounds, the fastest call of each kept (infer.interleaved_min)
    peaks = matmul_peaks(
        {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "int8->int32": jnp.int8},
        reps=args.steps,
    )
    for name, p in peaks.items():
        print(f"matmul peak (1024^3) {name:12s}: {p / 1e9:8.1f} GFLOP/s")

    steps, info = {}, {}
    for spec in args.specs:
        compiled, step_args, flops, temp = compiled_step(spec, cfg, tcfg, batch)
        steps[spec], info[spec] = (compiled, step_args), (flops, temp)
    results = interleaved_min(steps, args.steps)
    print(f"training steps, interleaved, fastest of {args.steps} rounds:")
    for spec, dt in results.items():
        flops, temp = info[spec]
        print(
            f"{spec:10s}: {1 / dt:6.2f} steps/s  ({dt * 1e3:7.1f} ms/step), "
            f"{flops / 1e9:7.2f} GFLOP/step -> {flops / dt / 1e9:6.1f} GFLOP/s = "
            f"{100 * flops / dt / peaks['float32']:5.1f}% of the float32 peak"
            + (f", XLA temp memory {temp / 2**20:.0f} MiB" if temp else "")
        )
    base = results.get("float")
    for spec, dt in results.items():
        if base and spec != "float":
            print(f"step time {spec} / float: {dt / base:.2f}x")
    if args.profile:
        spec = args.specs[0]
        tr = train.Trainer(cfg, spec, tcfg)
        params = tr.init_params(0)
        state = tr.setup_optimizer(params)
        key = jax.random.key(0)
        print(f"\n== where the time goes: {spec}, batch {args.batch_size} x {args.seconds} s ==")
        ph = phase_times(tr, params, state, batch, key)
        for name, t in ph.items():
            print(f"  {name:30s} {t * 1e3:8.1f} ms  {100 * t / ph['whole step']:5.1f}% of the step")
        bwd = ph["loss + grad"] - ph["loss (features+forward+CTC)"]
        print(
            f"  {'backward (loss+grad - loss)':30s} {bwd * 1e3:8.1f} ms  "
            f"{100 * bwd / ph['whole step']:5.1f}% of the step"
        )
        totals, instrs, wall = profile_step(tr, params, state, batch, key, args.profile_steps)
        print_profile(totals, instrs, wall, args.top)
    if args.rewrites:
        compare_rewrites(cfg, tcfg, batch, args.specs[0])
    print(
        f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
