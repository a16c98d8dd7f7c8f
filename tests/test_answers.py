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
