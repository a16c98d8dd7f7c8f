"""The library-side exercise checks (``usmlite_edu.course.answers``): a (choice, number)
pair is right only when both are, and the helpers compute what their docstrings say."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usmlite_edu.course import answers


@pytest.fixture(autouse=True)
def _lenient(monkeypatch):
    monkeypatch.delenv("USMLITE_STRICT_CHECKS", raising=False)


def _check(answer):
    return answers.check_choice_and_number(
        "Ex", answer, "grows", 2.5, choices=("grows", "shrinks"), rel_tol=0.1
    )


def test_a_pair_is_right_only_when_choice_and_number_are(capsys):
    assert _check(("grows", 2.6)).status == "correct"
    capsys.readouterr()
    assert _check(("grows", 3.5)).status == "wrong"  # a guessed choice, a wrong number
    assert "2.5" not in capsys.readouterr().out  # the expected number is never printed
    assert _check(("shrinks", 2.5)).status == "wrong"  # the number, the wrong choice
    bare = _check("grows")  # the choice alone is not an answer
    assert bare.status == "wrong" and "pair" in bare.message
    assert _check(...).status == "skipped"


def test_median_step_ratio_of_symmetric_grids_is_the_ratio_of_their_levels():
    w = np.random.default_rng(0).standard_normal((48, 8)).astype(np.float32)
    # per channel, the symmetric step is max|w| / qmax: int4 over int8 is 127 / 7
    assert answers.median_step_ratio(w, (4, True, 1), (8, True, 1)) == pytest.approx(127 / 7)
    assert answers.median_step_ratio(w, (2, False, 4), (2, False, 4)) == pytest.approx(1.0)
    # shorter groups never widen a group's range: the finer grid's ratio is at most 1
    assert answers.median_step_ratio(w, (2, False, 12), (2, False, 1)) <= 1.0


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**16), st.floats(1e-3, 1e3))
def test_median_step_ratio_does_not_depend_on_the_weights_scale(seed, c):
    w = np.random.default_rng(seed).standard_t(4, (24, 6)).astype(np.float32)
    a, b = (2, True, 4), (2, False, 2)
    assert answers.median_step_ratio(c * w, a, b) == pytest.approx(
        answers.median_step_ratio(w, a, b), rel=1e-4
    )


def test_nm_mask_answer_takes_the_mask_and_not_its_complement(capsys):
    w = np.array([[0.1, -0.9, 0.3, 0.2, 0.5, 0.0, -0.6, 0.4]])
    right = [[0, 1, 0, 0, 0, 0, 1, 0]]
    assert answers.check_nm_mask_answer("Ex", right, w, 1, 4).status == "correct"
    assert answers.check_nm_mask_answer("Ex", [[1, 0, 1, 1, 1, 1, 0, 1]], w, 1, 4).status == "wrong"
    assert answers.check_nm_mask_answer("Ex", right, w, 2, 4).status == "wrong"  # not 2:4


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**16), st.floats(0.01, 0.5))
def test_top_energy_share_is_at_least_the_fraction_and_scale_free(seed, fraction):
    w = np.random.default_rng(seed).standard_normal(400)
    share = answers.top_energy_share(w, fraction)
    # the largest weights hold at least their count's share of the energy
    assert int(400 * fraction) / 400 - 1e-12 <= share <= 1.0
    assert answers.top_energy_share(3.0 * w, fraction) == pytest.approx(share)


def test_tail_gap_change_needs_the_direction_and_the_share():
    w = np.random.default_rng(0).standard_t(3, 2000)
    share = answers.top_energy_share(w)
    check = lambda a: answers.check_tail_gap_change("Ex", a, w, 0.03, 0.06).status  # noqa: E731
    assert check(("shrinks", share + 0.03)) == "correct"
    assert check(("grows", share)) == "wrong"
    assert check(("shrinks", share + 0.1)) == "wrong"


def test_rises_counts_the_steps_up():
    assert answers.rises([5.0, 1.0, 0.8, 0.9, 0.85]) == 1
    assert answers.rises([3, 2, 1]) == 0 and answers.rises([1]) == 0


def test_longer_phase_always_better_reads_the_sweep_in_phase_order():
    loss = {1: 5.5, 100: 1.4, 200: 0.83, 250: 0.95, 300: 0.90}
    phases, final = list(loss)[::-1], list(loss.values())[::-1]  # unsorted on purpose

    def check(a):
        return answers.check_longer_phase_always_better("Ex", a, phases, final, 300).status

    assert check(("not always", 2 / 3)) == "correct"
    assert check(("always", 2 / 3)) == "wrong"
    assert check(("not always", 1.0)) == "wrong"  # the longest phase is not the best
    mono = answers.check_longer_phase_always_better("Ex", ("always", 1.0), [1, 2, 3], [3, 2, 1], 3)
    assert mono.status == "correct"
