"""The Gumbel-softmax supernet (usmlite_edu.search.supernet) and ``usmlite-edu search``
(usmlite_edu.search.pipeline)."""

from __future__ import annotations

import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_model import TINY, TINY_CFG

from usmlite_edu import cli
from usmlite_edu.core import compress
from usmlite_edu.core.specs import SpecMap
from usmlite_edu.search import pipeline as search
from usmlite_edu.search import sensitivity, supernet
from usmlite_edu.speech import batching, runs
from usmlite_edu.speech.corpora import load_corpus
from usmlite_edu.speech.model import resolve_specs as resolve
from usmlite_edu.speech.presets import get_preset
from usmlite_edu.speech.tokenizer import Tokenizer
from usmlite_edu.training import train

CFG = get_preset("ci").model
SMALL = ("float", "int8", "int4", "int4+2:4", "int2/gs8", "int2")


# ---------------------------------------------------------------------------- the maths
def test_temperature_anneals_geometrically_from_start_to_end():
    s = supernet.SearchConfig(steps=11, tau_start=2.0, tau_end=0.02)
    taus = np.array([float(supernet.temperature(t, s)) for t in range(11)])
    assert taus[0] == pytest.approx(2.0) and taus[-1] == pytest.approx(0.02)
    np.testing.assert_allclose(taus[1:] / taus[:-1], 0.01 ** (1 / 10), rtol=1e-5)


def test_gumbel_probs_are_distributions_and_sharpen_with_temperature():
    logits = jnp.array([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]])
    p = supernet.gumbel_probs(logits, None, 1.0)
    np.testing.assert_allclose(p, jax.nn.softmax(logits, -1), rtol=1e-6)
    noisy = supernet.gumbel_probs(logits, jax.random.key(0), 0.05)
    np.testing.assert_allclose(noisy.sum(-1), 1.0, rtol=1e-6)
    assert float(noisy.max(-1).min()) > 0.9  # cold: nearly one-hot
    # the noise makes the sampled choice follow softmax(logits): frequency of the argmax
    keys = jax.random.split(jax.random.key(1), 4000)
    picks = jax.vmap(lambda k: supernet.gumbel_probs(logits[0], k, 1.0).argmax())(keys)
    freq = np.bincount(np.asarray(picks), minlength=3) / 4000
    np.testing.assert_allclose(freq, jax.nn.softmax(logits[0]), atol=0.03)


def test_mixing_is_linear_in_the_probabilities_and_one_hot_gives_the_candidate():
    w = {"a": jax.random.normal(jax.random.key(2), (64, 16))}
    cands = ("float", "int4", "int4+2:4", "int2/gs8")
    for k, c in enumerate(cands):
        one = jnp.eye(len(cands))[k][None]
        got = supernet.mix_weights(w, one, ["a"], cands)["a"]
        want = w["a"] if c == "float" else compress.compress_weight(w["a"], c)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # d W_mix / d p_k = C_k(W)
    probs = jnp.full((1, 4), 0.25)
    jac = jax.jacobian(lambda p: supernet.mix_weights(w, p, ["a"], cands)["a"])(probs)
    np.testing.assert_allclose(
        jac[:, :, 0, 2], compress.compress_weight(w["a"], "int4+2:4"), rtol=1e-5, atol=1e-6
    )


def test_size_penalty_and_kl():
    assert float(supernet.size_penalty(jnp.float32(100.0), 100.0)) == 0.0
    assert float(supernet.size_penalty(jnp.float32(150.0), 100.0)) == pytest.approx(0.25)
    a = jax.random.normal(jax.random.key(3), (2, 7, 5))
    mask = jnp.ones((2, 7), bool).at[1, 4:].set(False)
    assert float(supernet.kl_to_teacher(a, a, mask)) == pytest.approx(0.0, abs=1e-6)
    b = a.at[1, 5:].add(10.0)  # changes only masked frames
    assert float(supernet.kl_to_teacher(b, a, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(supernet.kl_to_teacher(a * 2, a, mask)) > 0.01


def _problem(bits, budget):
    n = len(bits)
    return supernet.Problem(
        tuple(f"l{i}" for i in range(n)),
        tuple(f"s{k}" for k in range(len(bits[0]))),
        np.asarray(bits, float),
        float(budget),
        0.0,
        "paper",
    )


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 4).flatmap(
        lambda L: st.tuples(
            st.lists(st.lists(st.integers(1, 9), min_size=3, max_size=3), min_size=L, max_size=L),
            st.lists(
                st.lists(st.floats(-3, 3, allow_nan=False), min_size=3, max_size=3),
                min_size=L,
                max_size=L,
            ),
            st.floats(0.0, 1.0),
        )
    )
)
def test_select_is_argmax_when_it_fits_else_the_most_probable_fitting_choice(case):
    bits, logits, t = case
    bits, logits = np.array(bits, float), np.array(logits)
    lo, hi = bits.min(1).sum(), bits.max(1).sum()
    prob = _problem(bits, lo + t * (hi - lo))
    choice, how = supernet.select(logits, prob)
    used = sum(bits[i, k] for i, k in enumerate(choice))
    assert used <= prob.budget_bits + 1e-9
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    best = max(
        (
            c
            for c in itertools.product(range(3), repeat=len(bits))
            if sum(bits[i, k] for i, k in enumerate(c)) <= prob.budget_bits + 1e-9
        ),
        key=lambda c: sum(logp[i, k] for i, k in enumerate(c)),
    )
    score = lambda c: sum(logp[i, k] for i, k in enumerate(c))
    assert score(choice) == pytest.approx(score(best), abs=1e-9)
    if how == "argmax":
        assert list(choice) == list(np.argmax(logits, 1))


def test_problem_checks_candidates_and_budget():
    prob = supernet.problem(CFG, supernet.SearchConfig(budget=9.4, candidates=SMALL))
    assert prob.candidates == SMALL and prob.bits.shape == (len(prob.names), len(SMALL))
    # a uniform choice's bits give the spec's own size
    k = SMALL.index("int4+2:4")
    uniform = sensitivity.size_of(CFG, {n: "int4+2:4" for n in prob.names}, "paper")
    assert prob.size_percent([k] * len(prob.names), CFG) == pytest.approx(uniform)
    with pytest.raises(ValueError, match="below the smallest model"):
        supernet.problem(CFG, supernet.SearchConfig(budget=5.0, candidates=SMALL))
    with pytest.raises(ValueError, match="group size 72 does not divide"):
        supernet.problem(CFG, supernet.SearchConfig(budget=9.4, candidates=("int8", "int2/gs72")))
    for bad, says in [
        (dict(tau_start=0.1, tau_end=1.0), "tau_end"),
        (dict(steps=0), "steps"),
        (dict(convention="bytes"), "convention"),
        (dict(candidates=("int4",)), "two candidate"),
        (dict(size_weight=-1.0), "size_weight"),
    ]:
        with pytest.raises(ValueError, match=says):
            supernet.SearchConfig(**bad)


# ---------------------------------------------------------------------------- the loop
@pytest.fixture(scope="module")
def tiny():
    """A tiny model's parameters, the ci training config and data_small's train split."""
    split = load_corpus("data_small", None, "train", seed=0, sample_rate=CFG.sample_rate)
    tok = Tokenizer.train([u.text for u in split], 32, None, seed=0)
    cfg = CFG.replace(**TINY_CFG, vocab_size=tok.vocab_size)
    tcfg = get_preset("ci").train.replace(batch_size=8, bucket_seconds=(2.5, 4.5))
    from usmlite_edu.speech import model

    params = model.init_params(cfg, "float", seed=0)
    ds = batching.prepare(split, tok, cfg, tcfg.bucket_seconds)
    return cfg, tcfg, params, ds


def test_search_is_deterministic_resumable_and_writes_a_map_within_budget(tiny, tmp_path):
    cfg, tcfg, params, ds = tiny
    scfg = supernet.SearchConfig(
        budget=12.0, candidates=SMALL, steps=6, log_every=2, checkpoint_every=2
    )
    a = supernet.search(params, params, cfg, tcfg, ds, scfg, tmp_path / "a", seed=1)
    supernet.search(params, params, cfg, tcfg, ds, scfg, tmp_path / "b", seed=1, stop_after=3)
    b = supernet.search(params, params, cfg, tcfg, ds, scfg, tmp_path / "b", seed=1)
    np.testing.assert_array_equal(np.array(a["final_logits"]), np.array(b["final_logits"]))
    assert [h["step"] for h in b["history"]] == [2, 4, 6] and a["history"] == b["history"]
    assert np.abs(np.array(a["final_logits"])).max() > 0  # the logits moved
    smap = SpecMap.load(tmp_path / "a" / "spec_map.json")
    got = {n: str(s) for n, s in resolve(smap, cfg).items()}
    assert set(got.values()) <= set(SMALL)
    assert a["size_paper"] <= 12.0 + 1e-6
    c = supernet.search(params, params, cfg, tcfg, ds, scfg, tmp_path / "c", seed=2)
    assert c["final_logits"] != a["final_logits"]  # another seed, other noise and batches


def test_the_size_penalty_pulls_the_expected_size_down(tiny, tmp_path):
    cfg, tcfg, params, ds = tiny
    kw = dict(budget=10.0, candidates=("float", "int4+2:4", "int2"), steps=8, log_every=8)
    heavy = supernet.search(
        params,
        params,
        cfg,
        tcfg,
        ds,
        supernet.SearchConfig(size_weight=20.0, logit_lr=0.2, **kw),
        tmp_path / "h",
    )
    none = supernet.search(
        params,
        params,
        cfg,
        tcfg,
        ds,
        supernet.SearchConfig(size_weight=0.0, logit_lr=0.2, **kw),
        tmp_path / "n",
    )
    start = 100.0 / 3 + (9.375 + 6.25) / 3  # uniform over the three candidates (paper)
    assert heavy["history"][-1]["expected_percent"] < start - 5
    assert heavy["history"][-1]["expected_percent"] < none["history"][-1]["expected_percent"]


# ---------------------------------------------------------------------------- the command
def _row(tmp_path, exp, seed, heldout, utts):
    rows = tmp_path / "rows"
    rows.mkdir(exist_ok=True)
    rec = {
        "spec": "int4+2:4",
        "heldout_speaker": heldout,
        "results": {"test": {"wer": 0.0, "utterances": utts}},
    }
    (rows / f"{exp}_s{seed}.json").write_text(json.dumps(rec))
    return rows


def test_compare_rows_pairs_utterances_and_refuses_another_speaker(tmp_path):
    mine = [
        {"id": f"u{i}", "ref": "one two", "hyp": "one two" if i % 2 else "one"} for i in range(10)
    ]
    theirs = [{"id": f"u{i}", "ref": "one two", "hyp": "one two"} for i in range(10)]
    result = {"heldout_speaker": None, "splits": {"test": {"wer": 25.0, "utterances": mine}}}
    rows = _row(tmp_path, "E12", 0, None, theirs)
    c = search.compare_rows(result, rows, ["E12"], 0)["E12"]["splits"]["test"]
    assert c["difference"] == pytest.approx(25.0) and c["low"] > 0
    _row(tmp_path, "E3", 0, "theo", theirs)
    with pytest.raises(ValueError, match="held out 'theo'"):
        search.compare_rows(result, rows, ["E3"], 0)
    with pytest.raises(FileNotFoundError, match="E9_s0"):
        search.compare_rows(result, rows, ["E9"], 0)


@pytest.mark.slow
def test_search_command_at_the_ci_preset(tmp_path, capsys):
    """``usmlite-edu search`` end to end: start, search, fine-tune under the map, score."""
    start = tmp_path / "start"
    train.train(
        "ci",
        "data_small",
        None,
        start,
        steps=4,
        eval_splits=(),
        overrides={**TINY, "train.batch_size": 8},
    )
    out = tmp_path / "search"
    args = [
        "search",
        "--preset",
        "ci",
        "--budget",
        "12",
        "--out",
        str(out),
        "--init",
        str(start),
        "--candidates",
        *SMALL,
        "--search-steps",
        "4",
        "--finetune-steps",
        "2",
    ]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    r = json.loads((out / "result.json").read_text())
    assert set(r["splits"]) == {"dev", "test"} and r["size_paper"] <= 12.0 + 1e-6
    assert f"paper {r['size_paper']:.2f}%" in printed
    smap = SpecMap.load(out / "spec_map.json")
    assert compress.as_spec(json.loads((out / "run" / "config.json").read_text())["spec"]) == smap
    assert all(0 <= v["low"] <= v["wer"] <= v["high"] for v in r["splits"].values())
    # the three models share the map; Pass 1 holds the supernet's weights, not the start's,
    # and Pass 2 fine-tuned them (other weights again); each has its compression time
    assert list(r["methods"]) == ["two_stage", "one_stage_pass1", "one_stage_pass2"]
    assert r["methods"]["two_stage"]["splits"] == r["splits"]
    for m in ("pass1", "pass2"):
        assert compress.as_spec(json.loads((out / m / "config.json").read_text())["spec"]) == smap
    w = {d: runs.load_run(out / d).params for d in ("pass1", "pass2")}
    w["start"] = runs.load_run(start).params
    w["search"] = runs.load_params(out / "search" / "params", w["start"])

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    assert same(w["pass1"], w["search"]) and not same(w["pass1"], w["start"])
    assert not same(w["pass2"], w["pass1"])
    t = {m: v["compression_s"] for m, v in r["methods"].items()}
    assert 0 < t["one_stage_pass1"] < t["one_stage_pass2"] and t["one_stage_pass1"] < t["two_stage"]
    assert "one-stage Pass 1" in printed and "one-stage Pass 2" in printed
    # a second call finds every stage done and gives the same result
    assert cli.main(args) == 0
    again = json.loads((out / "result.json").read_text())
    assert again["splits"]["test"]["wer"] == r["splits"]["test"]["wer"]
    for m in r["methods"]:
        assert again["methods"][m]["splits"] == r["methods"][m]["splits"]
    assert cli.main([*args[:-4], "--budget", "1"]) == 2
    assert "below the smallest model" in capsys.readouterr().err
