"""What the 2B recipe needs to fit (issue 13, item 2): block rematerialisation and
gradient accumulation compute the step they replace; bad settings are refused."""

import jax
import numpy as np
import pytest

from usmlite_edu.speech import presets
from usmlite_edu.speech.batching import Batch
from usmlite_edu.speech.configs import TrainConfig
from usmlite_edu.training import train


def _batch(b: int = 8, samples: int = 6000, labels: int = 5, filler: int = 0) -> Batch:
    rng = np.random.default_rng(1)
    lengths = rng.integers(samples // 2, samples + 1, b).astype(np.int32)
    weights = np.ones(b, np.float32)
    if filler:
        weights[-filler:] = 0.0  # padding rows of a last batch weigh nothing
    return Batch(
        (0.1 * rng.standard_normal((b, samples))).astype(np.float32),
        lengths,
        rng.integers(1, 30, (b, labels)).astype(np.int32),
        rng.integers(2, labels + 1, b).astype(np.int32),
        weights,
    )


def _loss_and_grads(spec: str, filler: int = 0, **train_fields):
    p = presets.get_preset("ci")
    cfg = p.model.replace(num_layers=1)
    tcfg = p.train.replace(batch_size=8, **train_fields)
    t = train.Trainer(cfg, spec, tcfg)
    params = t.init_params(0)
    state = t.setup_optimizer(params)
    masks = train.sparsity.masks_from_state(state)
    key = jax.random.key(0)
    batch = Batch(*(jax.numpy.asarray(x) for x in _batch(filler=filler)))

    @jax.jit
    def f(params):
        if t.tcfg.grad_accum == 1:
            return jax.value_and_grad(t.loss)(params, masks, batch, key, step=0)
        return t._accumulated_grads(params, masks, batch, key, 0)

    return f(params)


def _assert_close(a, b, rtol):
    (la, ga), (lb, gb) = a, b
    np.testing.assert_allclose(float(la), float(lb), rtol=rtol)
    # Relative to the largest gradient: some leaves' gradients are zero in exact
    # arithmetic (e.g. a bias just before a LayerNorm) and only rounding noise here.
    scale = max(float(np.max(np.abs(np.asarray(y)))) for y in jax.tree.leaves(gb))
    for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb), strict=True):
        assert float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) <= rtol * scale


@pytest.mark.parametrize("spec", ["float", "int4+2:4"])
def test_remat_computes_the_same_loss_and_gradient(spec):
    ref = _loss_and_grads(spec)
    for policy in ("block", "dots"):
        # the same operations, recomputed: equal up to fusion-order rounding
        _assert_close(_loss_and_grads(spec, remat=policy), ref, rtol=1e-5)


@pytest.mark.parametrize("k, filler", [(2, 0), (4, 3)])
def test_gradient_accumulation_gives_the_full_batch_gradient(k, filler):
    # Micro-batches sum the same per-token terms in another order: float32 rounding of a
    # sum of ~1e2 terms, far below 1e-5 of the largest gradient. With filler rows (weight
    # 0) one micro-batch of k=4 holds no tokens at all and must contribute nothing.
    ref = _loss_and_grads("float", filler=filler)
    _assert_close(_loss_and_grads("float", filler=filler, grad_accum=k), ref, rtol=1e-5)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"remat": "everything"}, "train.remat must be one of"),
        ({"grad_accum": 3}, "grad_accum=3 does not divide train.batch_size=16"),
        ({"grad_accum": 0}, "grad_accum must be an integer >= 1"),
    ],
)
def test_bad_memory_settings_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(batch_size=16, **fields)
