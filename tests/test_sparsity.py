"""Property tests for usmlite_edu.core.sparsity (Eqs. 3-4, mask schedules, SR-STE)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usmlite_edu.core import sparsity

SETTINGS = settings(max_examples=20, deadline=None)

FIG1_DENSE = np.array([[1, 2, 3, 4, -3, -4, 1, 2], [3, 1, -4, 2, -3, 1, 2, -4]], np.float32)
FIG1_SPARSE = np.array([[0, 0, 3, 4, -3, -4, 0, 0], [3, 0, -4, 0, -3, 0, 0, -4]], np.float32)


def test_paper_figure_1():
    mask = sparsity.nm_mask(jnp.asarray(FIG1_DENSE), 2, 4, axis=1)
    np.testing.assert_array_equal(sparsity.apply_mask(jnp.asarray(FIG1_DENSE), mask), FIG1_SPARSE)


@SETTINGS
@given(
    st.integers(0, 2**31 - 1),
    st.sampled_from([(1, 4), (2, 4), (3, 4), (4, 4), (2, 8), (1, 2)]),
    st.sampled_from([0, 1]),
    st.booleans(),
)
def test_every_group_keeps_exactly_n_of_the_largest(seed, nm, axis, ties):
    n, m = nm
    rng = np.random.default_rng(seed)
    shape = [8, 8]
    w = rng.normal(size=shape).astype(np.float32)
    if ties:  # many equal magnitudes: the tie-break must still keep exactly n
        w = np.round(w).astype(np.float32)
    mask = np.asarray(sparsity.nm_mask(jnp.asarray(w), n, m, axis=axis))
    wm, mm = np.moveaxis(w, axis, -1), np.moveaxis(mask, axis, -1)
    groups_w = np.abs(wm.reshape(-1, m))
    groups_m = mm.reshape(-1, m)
    assert (groups_m.sum(-1) == n).all()
    for gw, gm in zip(groups_w, groups_m):
        # every kept magnitude >= every pruned magnitude
        if n < m:
            assert gw[gm].min() >= gw[~gm].max()
        # ties broken towards the lower index: among equal magnitudes at the boundary,
        # a pruned one never precedes a kept one
        if n < m:
            phi = gw[gm].min()
            eq = np.flatnonzero(gw == phi)
            kept_eq = [k for k in eq if gm[k]]
            pruned_eq = [k for k in eq if not gm[k]]
            if kept_eq and pruned_eq:
                assert max(kept_eq) < min(pruned_eq)


@pytest.mark.parametrize(
    "n, m, shape, match",
    [
        (3, 2, (8, 4), "n=3 > m=2"),
        (0, 4, (8, 4), "positive"),
        (2, 4, (6, 4), "does not divide"),
    ],
)
def test_invalid_patterns_are_refused(n, m, shape, match):
    with pytest.raises(ValueError, match=match):
        sparsity.nm_mask(jnp.ones(shape), n, m)


def _toy_problem(seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = {"w": jax.random.normal(k1, (16, 4)), "b": jnp.zeros(4)}
    x = jax.random.normal(k2, (64, 16))
    y = x @ jax.random.normal(k3, (16, 4))
    return params, x, y


def _train(tx, steps, seed=0, straight_through=False):
    params, x, y = _toy_problem(seed)
    state = tx.init(params)

    def loss(p, masks):
        w = sparsity.apply_mask(p["w"], masks["w"])
        if straight_through:
            w = p["w"] + jax.lax.stop_gradient(w - p["w"])
        return jnp.mean((x @ w + p["b"] - y) ** 2)

    @jax.jit
    def step(params, state):
        masks = sparsity.masks_from_state(state)
        g = jax.grad(loss)(params, masks)
        upd, state = tx.update(g, state, params)
        return optax.apply_updates(params, upd), state

    history = [(params, sparsity.masks_from_state(state))]
    for _ in range(steps):
        params, state = step(params, state)
        history.append((params, sparsity.masks_from_state(state)))
    return history, state


def test_masked_weights_stay_zero_through_optimizer_steps():
    tx = sparsity.nm_masked(optax.adam(0.05), 2, 4, update_steps=1)
    history, _ = _train(tx, 10)
    (p0, m0), (p_end, m_end) = history[0], history[-1]
    assert int(m0["w"].sum()) == 16 * 4 // 2
    pruned = ~m0["w"]
    # the update of a pruned weight is exactly zero (Adam momentum included) ...
    np.testing.assert_array_equal(p_end["w"][pruned], p0["w"][pruned])
    # ... so the weight the forward pass sees stays exactly zero
    assert bool(jnp.all(sparsity.apply_mask(p_end["w"], m_end["w"])[pruned] == 0))
    # and the kept ones did train
    assert not np.allclose(p_end["w"][~pruned], p0["w"][~pruned])


def test_one_shot_mask_never_changes():
    tx = sparsity.nm_masked(optax.adam(0.3), 1, 4, update_steps=1)
    history, state = _train(tx, 15)
    for _, m in history:
        np.testing.assert_array_equal(m["w"], history[0][1]["w"])
    assert int(state.count) == 15


@pytest.mark.parametrize("t_p", [2, 5])
def test_few_shot_mask_stops_changing_after_t_p_steps(t_p):
    # SR-STE lets pruned weights move, so a recomputed mask really can change
    tx = sparsity.nm_masked(optax.sgd(0.5), 1, 4, update_steps=t_p, sr_ste_decay=0.0)
    history, _ = _train(tx, 12, straight_through=True)
    masks = [m["w"] for _, m in history]
    changed = [not np.array_equal(masks[t], masks[t - 1]) for t in range(1, len(masks))]
    assert any(changed[: t_p - 1]) or t_p == 1
    assert not any(changed[t_p - 1 :])  # masks used at steps >= T_p equal the one at T_p-1
    # the masks recomputed during the first T_p steps follow the weights
    for t in range(t_p):
        np.testing.assert_array_equal(masks[t], sparsity.nm_mask(history[t][0]["w"], 1, 4))


def test_few_shot_without_sr_ste_can_swap_weights_back_in():
    """Plain gradient masking (the paper's few-shot): a pruned weight keeps its value,
    so it can re-enter the mask when a kept neighbour shrinks below it."""
    w = jnp.array([[1.0], [0.9], [0.1], [0.05]])
    params = {"w": w}
    tx = sparsity.nm_masked(optax.sgd(1.0), 1, 4, update_steps=3)
    state = tx.init(params)
    assert bool(sparsity.masks_from_state(state)["w"][0, 0])
    g = {"w": jnp.array([[0.5], [0.0], [0.0], [0.0]])}  # shrink the kept weight to 0.5
    upd, state = tx.update(g, state, params)
    params = optax.apply_updates(params, upd)
    mask = sparsity.masks_from_state(state)["w"]
    assert bool(mask[1, 0]) and not bool(mask[0, 0])  # 0.9 now beats 0.5


def test_sr_ste_decays_pruned_weights():
    params = {"w": jnp.array([[1.0], [0.5], [0.2], [0.1]])}
    tx = sparsity.nm_masked(optax.sgd(1.0), 1, 4, update_steps=1, sr_ste_decay=0.1)
    state = tx.init(params)
    upd, _ = tx.update({"w": jnp.zeros((4, 1))}, state, params)
    np.testing.assert_allclose(upd["w"][:, 0], [0.0, -0.05, -0.02, -0.01], rtol=1e-6)


def test_where_selects_leaves_and_deterministic():
    params, _, _ = _toy_problem(3)
    tx = sparsity.nm_masked(optax.adam(0.1), 2, 4, where={"w": True, "b": False})
    s1, s2 = tx.init(params), tx.init(params)
    m = sparsity.masks_from_state(s1)
    assert m["b"].shape == () and bool(m["b"])
    np.testing.assert_array_equal(m["w"], sparsity.masks_from_state(s2)["w"])


def test_masks_from_state_none_without_masks():
    assert sparsity.masks_from_state(optax.adam(0.1).init({"w": jnp.ones(2)})) is None


def test_invalid_schedule_refused():
    with pytest.raises(ValueError, match="update_steps"):
        sparsity.nm_masked(optax.adam(0.1), 2, 4, update_steps=0)
