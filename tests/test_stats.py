"""Paired statistics: per-utterance errors, the bootstraps, the detectable difference and
the verdict rules of usmlite_edu/core/stats.py."""

import jiwer
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usmlite_edu.core import stats
from usmlite_edu.speech.decoding import wer_cer

# A seed's utterances: (errors, words) per utterance, words >= 1.
utterance = st.tuples(st.integers(0, 6), st.integers(1, 8))
seed_data = st.lists(utterance, min_size=1, max_size=25)
systems = st.lists(seed_data, min_size=1, max_size=3)


def _scored(data, tag="u"):
    ids = tuple(f"{tag}{i:03d}" for i in range(len(data)))
    return stats.Scored(ids, [e for e, _ in data], [w for _, w in data])


FAST = dict(resamples=300)


def test_word_errors_sum_to_jiwer_and_decoding_wer():
    refs = ["one two three", "four five", "six", "", "seven eight"]
    hyps = ["one too three six", "five", "six", "zero", ""]
    errors, words = stats.word_errors(refs, hyps)
    assert errors.tolist() == [2, 1, 0, 1, 2] and words.tolist() == [3, 2, 1, 1, 2]
    s = stats.score(
        [{"id": str(i), "ref": r, "hyp": h} for i, (r, h) in enumerate(zip(refs, hyps))]
    )
    assert s.wer == pytest.approx(wer_cer(refs, hyps)[0])
    full = ["<empty>" if not r else r for r in refs]
    assert s.wer == pytest.approx(100 * jiwer.wer(full, hyps))


def test_scored_sorts_by_id_and_refuses_bad_input():
    s = stats.Scored(("b", "a"), [1, 0], [2, 3])
    assert s.ids == ("a", "b") and s.errors.tolist() == [0, 1] and s.words.tolist() == [3, 2]
    with pytest.raises(ValueError, match="repeat"):
        stats.Scored(("a", "a"), [0, 0], [1, 1])
    with pytest.raises(ValueError, match="length"):
        stats.Scored(("a",), [0, 0], [1, 1])


@settings(max_examples=25, deadline=None)
@given(systems, st.integers(0, 2**31))
def test_identical_systems_give_a_zero_interval(data, seed):
    a = [_scored(d) for d in data]
    iv = stats.paired_difference(a, a, seed=seed, **FAST)
    assert iv.estimate == 0 and iv.lo == 0 and iv.hi == 0 and iv.contains(0)
    assert stats.verdict(iv.lo, iv.hi, "same") == "reproduced"
    assert stats.verdict(iv.lo, iv.hi, "worse") == "not reproduced"


@settings(max_examples=25, deadline=None)
@given(systems, st.integers(1, 3), st.integers(0, 2**31))
def test_more_errors_on_every_utterance_gives_an_interval_above_zero(data, extra, seed):
    base = [_scored(d) for d in data]
    worse = [_scored([(e + extra, w) for e, w in d]) for d in data]
    iv = stats.paired_difference(worse, base, seed=seed, **FAST)
    assert iv.lo > 0 and iv.estimate > 0
    assert stats.verdict(iv.lo, iv.hi, "worse") == "reproduced"
    back = stats.paired_difference(base, worse, seed=seed, **FAST)
    assert back.hi < 0 and stats.verdict(back.lo, back.hi, "better") == "reproduced"


@settings(max_examples=25, deadline=None)
@given(systems, st.data(), st.integers(0, 2**31))
def test_invariant_to_utterance_order_and_deterministic(data, draw, seed):
    a = [_scored(d) for d in data]
    # the second system: other errors on the same utterances
    b = [_scored([(draw.draw(st.integers(0, 6)), w) for _, w in d]) for d in data]
    iv = stats.paired_difference(a, b, seed=seed, **FAST)
    assert stats.paired_difference(a, b, seed=seed, **FAST) == iv  # deterministic
    w = stats.wer_interval(a, seed=seed, **FAST)
    assert stats.wer_interval(a, seed=seed, **FAST) == w
    shuffled_a, shuffled_b = [], []
    for x, y in zip(a, b):
        order = draw.draw(st.permutations(range(len(x))))
        shuffled_a.append(stats.Scored([x.ids[i] for i in order], x.errors[order], x.words[order]))
        shuffled_b.append(stats.Scored([y.ids[i] for i in order], y.errors[order], y.words[order]))
    assert stats.paired_difference(shuffled_a, shuffled_b, seed=seed, **FAST) == iv
    assert stats.wer_interval(shuffled_a, seed=seed, **FAST) == w


def test_paired_needs_the_same_utterances():
    a = _scored([(1, 3), (0, 2)])
    b = stats.Scored(("u000", "x"), [0, 0], [3, 2])
    with pytest.raises(ValueError, match="same utterances"):
        stats.paired_difference([a], [b])
    with pytest.raises(ValueError, match="seeds"):
        stats.paired_difference([a], [a, a])


def test_paired_difference_is_the_mean_of_the_seeds_differences():
    a = [_scored([(2, 4), (1, 4)]), _scored([(0, 5), (3, 5)])]
    b = [_scored([(1, 4), (1, 4)]), _scored([(0, 5), (0, 5)])]
    iv = stats.paired_difference(a, b, **FAST)
    assert iv.per_seed == pytest.approx((12.5, 30.0))
    assert iv.estimate == pytest.approx(21.25) and iv.lo <= iv.hi


def test_wer_interval_covers_the_mean_and_narrows_with_more_utterances():
    rng = np.random.default_rng(0)
    small = [_scored([(int(rng.random() < 0.1), 1) for _ in range(50)]) for _ in range(3)]
    big = [_scored([(int(rng.random() < 0.1), 1) for _ in range(2000)]) for _ in range(3)]
    iv_s, iv_b = stats.wer_interval(small), stats.wer_interval(big)
    assert iv_s.lo <= iv_s.estimate <= iv_s.hi and iv_b.lo <= iv_b.estimate <= iv_b.hi
    assert iv_b.half_width < iv_s.half_width
    assert stats.detectable_difference(big) < stats.detectable_difference(small)


def test_detectable_difference_has_a_one_word_floor():
    perfect = [_scored([(0, 4)] * 50)]  # no errors: no spread, one word = 0.5 point
    assert stats.detectable_difference(perfect) == pytest.approx(100 / 200)
    noisy = [_scored([(i % 3, 4) for i in range(50)])]
    se = stats.standard_error(noisy)
    assert stats.detectable_difference(noisy) == pytest.approx(
        max(stats.Z95 * np.sqrt(2) * se, 0.5)
    )


@pytest.mark.parametrize(
    "lo,hi,kind,expected",
    [
        (0.2, 3.0, "worse", "reproduced"),
        (0.1, 0.6, "worse", "reproduced"),  # real, if smaller than the margin
        (-0.5, 0.9, "worse", "not reproduced"),
        (-3.0, -1.0, "worse", "not reproduced"),
        (-0.5, 1.5, "worse", "inconclusive"),
        (-2.0, -0.1, "better", "reproduced"),
        (-0.9, 0.4, "better", "not reproduced"),
        (-1.5, 0.4, "better", "inconclusive"),
        (-2.0, 0.9, "no_worse", "reproduced"),
        (1.0, 2.0, "no_worse", "not reproduced"),
        (0.5, 1.5, "no_worse", "inconclusive"),
        (-0.9, 0.9, "same", "reproduced"),
        (1.2, 2.0, "same", "not reproduced"),
        (-3.0, -1.0, "same", "not reproduced"),
        (-1.5, 0.5, "same", "inconclusive"),
    ],
)
def test_verdict_rules(lo, hi, kind, expected):
    assert stats.verdict(lo, hi, kind, margin=1.0) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.floats(-20, 20),
    st.floats(0, 20),
    st.sampled_from(stats.KINDS),
    st.floats(0.1, 5),
)
def test_a_verdict_never_says_both(lo, width, kind, m):
    hi = lo + width
    v = stats.verdict(lo, hi, kind, m)
    assert v in stats.VERDICTS
    # reproduced and not reproduced exclude each other only through the ordering for
    # "worse"/"better" (a real change smaller than the margin); equivalence kinds: never
    if kind in ("no_worse", "same") and v == "reproduced":
        assert hi < m
    if v == "inconclusive" and kind == "worse":
        assert lo <= 0 and hi >= m


def test_verdict_refuses_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        stats.verdict(0, 1, "bigger")
    with pytest.raises(ValueError, match="lo <= hi"):
        stats.verdict(1, 0, "worse")
