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


def test_size_ratio_check_takes_the_paper_size_and_the_scales_price():
    # int4 + 2:4 in the paper's convention: half the weights at 4 bits and a 1-bit mask
    assert answers.check_size_ratio("Ex", 9.375, "int4+2:4", abs_tol=0.01).status == "correct"
    assert answers.check_size_ratio("Ex", 6.25, "int4+2:4", abs_tol=0.01).status == "wrong"
    # 128 float32 scales per column of the paper's 1536 inputs: 100 * 128 / 1536 points more
    check = answers.check_size_ratio
    assert check("Ex", 100 * 128 / 1536, "int2/g128", relative_to="int2").status == "correct"
    assert check("Ex", 100 / 128, "int2/g128", relative_to="int2", abs_tol=0.005).status == "wrong"


def test_frontier_leavers_is_a_set_difference_of_frontiers():
    a = [{"spec": "x", "frontier": True}, {"spec": "y", "frontier": True}]
    b = [{"spec": "x", "frontier": True}, {"spec": "y", "frontier": False}]
    assert answers.frontier_leavers(a, b) == {"y"} and answers.frontier_leavers(b, a) == set()
    assert answers.check_frontier_leavers("Ex", ["y"], a, b).status == "correct"
    assert answers.check_frontier_leavers("Ex", set(), a, b).status == "wrong"


def test_size_excess_of_a_narrow_model_is_larger():
    cpu, big = answers.size_excess("int4+2:4", "cpu"), answers.size_excess("int4+2:4", "usm_2b")
    assert cpu > big > 0
    check = answers.check_size_excess
    assert check("Ex", ("larger", cpu), "int4+2:4", "cpu", "usm_2b").status == "correct"
    assert check("Ex", ("smaller", cpu), "int4+2:4", "cpu", "usm_2b").status == "wrong"
    assert check("Ex", ("larger", cpu + 0.2), "int4+2:4", "cpu", "usm_2b").status == "wrong"


def test_size_part_ratio_of_values_and_index():
    check = answers.check_size_part_ratio
    assert check("Ex", 4.0, "values", "int8", "int4+2:4", "cpu").status == "correct"
    assert check("Ex", 2.0, "values", "int8", "int4+2:4", "cpu").status == "wrong"


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**16))
def test_one_of_four_always_sits_inside_two_of_four(seed):
    ws = [np.random.default_rng(seed).standard_normal((16, 6)).astype(np.float32)]
    inside, kept, lost = answers.nm_nesting(ws)
    assert inside == 1.0 and kept == 0.5 and 0.0 < lost < 0.5
    assert answers.check_nested_masks("Ex", ("nested", 1.0), ws).status == "correct"
    assert answers.check_nested_masks("Ex", ("not nested", 0.5), ws).status == "wrong"
    assert answers.check_kept_fraction("Ex", 0.5, ws).status == "correct"
    assert answers.check_kept_fraction("Ex", 0.25, ws).status == "wrong"


def test_error_factor_is_the_ratio_of_the_two_widths_errors():
    errors = {4: 0.18, 8: 0.01}
    assert answers.check_error_factor("Ex", 18.0, errors, 4, 8).status == "correct"
    assert answers.check_error_factor("Ex", 16.0, errors, 4, 8).status == "wrong"


def test_an_outlier_changes_one_channel_and_the_per_tensor_scale():
    w = np.random.default_rng(0).standard_normal((32, 6)).astype(np.float32) * 0.1
    w_new = w.copy()
    w_new[5, 3] = 1.0
    assert answers.changed_channels(w, w_new, 4) == [3]
    assert answers.check_changed_channels("Ex", 1, w, w_new).status == "correct"
    assert answers.check_changed_channels("Ex", 6, w, w_new).status == "wrong"
    others = np.arange(6) != 3
    ratio = 1.0 / np.abs(w).max()  # the new largest |w| sets the one scale
    check = answers.check_per_tensor_others
    assert check("Ex", ("up", ratio), w, w_new, others).status == "correct"
    assert check("Ex", ("down", ratio), w, w_new, others).status == "wrong"
    assert check("Ex", ("unchanged", 1.0), w, w, others).status == "correct"


def test_grid_choice_takes_the_more_accurate_grid_and_the_step_ratio():
    w = np.random.default_rng(1).standard_t(4, (64, 8)).astype(np.float32)
    grids = {"sym g=4": (2, True, 4), "asym g=1": (2, False, 1)}
    errs = {k: answers.quantization_error(w, g) for k, g in grids.items()}
    best = min(errs, key=errs.get)
    ratio = answers.median_step_ratio(w, grids["sym g=4"], grids["asym g=1"])
    assert answers.check_grid_choice("Ex", (best, ratio), w, grids).status == "correct"
    other = next(k for k in grids if k != best)
    assert answers.check_grid_choice("Ex", (other, ratio), w, grids).status == "wrong"
    # measured errors, when given, decide the choice instead
    flipped = {best: 1.0, other: 0.5}
    assert answers.check_grid_choice("Ex", (other, ratio), w, grids, flipped).status == "correct"


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**16), st.floats(1e-2, 1e2))
def test_tail_ratio_and_zero_share_do_not_depend_on_the_scale(seed, c):
    w = np.random.default_rng(seed).standard_t(3, (64, 4))
    assert answers.tail_ratio(c * w, 8) == pytest.approx(answers.tail_ratio(w, 8), rel=1e-9)
    # the max over a group is at least its RMS and at most sqrt(n) times it
    assert 1.0 <= answers.tail_ratio(w, 8) <= np.sqrt(8)
    assert answers.zero_share(c * w) == pytest.approx(answers.zero_share(w))
    assert 0.0 <= answers.zero_share(w) < 1.0  # a column's largest never rounds to 0


def test_three_levels_and_channel_factor():
    w = np.random.default_rng(2).standard_normal((256, 8))
    share = answers.zero_share(w)
    check = answers.check_three_levels
    assert check("Ex", ("smaller", share), 0.8, w).status == "correct"
    assert check("Ex", ("about equal", share), 0.8, w).status == "wrong"
    assert check("Ex", ("about equal", share), 1.03, w).status == "correct"
    errs, ref = np.array([0.1, 0.2, 0.3]), np.array([0.1, 0.1, 0.3])
    assert answers.check_channel_factor("Ex", 1.0, errs, ref, [0, 2]).status == "correct"
    assert answers.check_channel_factor("Ex", 2.0, errs, ref, [0, 2]).status == "wrong"


def test_group_clipping_check():
    w = np.random.default_rng(3).standard_t(3, (128, 8)).astype(np.float32)
    grid = tuple(float(c) for c in np.linspace(0.5, 1.0, 6))
    ratio = answers.tail_ratio(w, 16)
    outcomes = {
        c: answers.check_group_clipping("Ex", (c, ratio), w, grid, 16).status
        for c in ("larger", "smaller")
    }
    assert sorted(outcomes.values()) == ["correct", "wrong"]
    assert answers.check_group_clipping("Ex", ("larger", 2 * ratio), w, grid, 16).status == "wrong"


def test_frames_and_ctc_repeats_of_the_cpu_model():
    from usmlite_edu.speech import presets

    cfg = presets.get_preset("cpu").model
    # 1 s: 1 + (16000 - 512) // 160 = 97 frames of 80 bins; 3 s: 297 frames, then /2 /2
    assert answers.feature_shape(cfg, 80, 1.0) == (1, 97, 80)
    assert answers.check_feature_shape("Ex", (1, 100, 80), cfg, 80, 1.0).status == "wrong"
    assert answers.encoder_frames(3.0, cfg) == 75
    assert answers.check_encoder_frames("Ex", 74, 3.0, cfg).status == "wrong"
    # k equal labels need k frames and k - 1 blanks: 2k - 1 <= 75
    assert answers.max_repeats([7], 75) == 38 and answers.max_repeats([7, 8], 3) == 1
    assert answers.max_repeats([7], 0) == 0
    assert answers.check_max_repeats("Ex", 38, [7], 3.0, cfg).status == "correct"
    assert answers.check_max_repeats("Ex", 75, [7], 3.0, cfg).status == "wrong"


def test_shards_copies_and_train_state():
    layout = {"shape": [64, 256], "shard_shape": [16, 256]}
    assert answers.check_shard_shape("Ex", (16, 256), layout).status == "correct"
    assert answers.check_shard_shape("Ex", (64, 64), layout).status == "wrong"
    assert answers.check_copies("Ex", 2, layout, 8).status == "correct"
    assert answers.check_copies("Ex", 4, layout, 8).status == "wrong"
    gib = answers.train_state_bytes("int4+2:4", "usm_2b") / 2**30
    assert 20 < gib < 25  # 12 bytes for each of about 1.84B parameters, a byte per mask
    assert answers.check_train_state_gib("Ex", gib / 128, 128).status == "correct"
    assert answers.check_train_state_gib("Ex", gib, 128).status == "wrong"


def _plan(args, temps, memory=16 * 2**30):
    return {"argument_bytes": args, "temp_bytes": temps, "device_memory_bytes": memory}


def test_straight_line_peak_extrapolates_the_slopes():
    G = 2**30
    plans = {(2, "none"): _plan(1 * G, 4 * G), (2, "block"): _plan(1 * G, 2 * G),
             (4, "block"): _plan(1.2 * G, 2.4 * G)}  # fmt: skip
    # with remat: 1 + 30 * 0.1 arguments, 2 + 30 * 0.2 temporaries
    assert answers.straight_line_peak(plans, 32, "block") / G == pytest.approx(12.0)
    # without: each block also keeps what remat saves, (4 - 2) / 2 = 1 GiB
    assert answers.straight_line_peak(plans, 32, "none") / G == pytest.approx(42.0)
    check = answers.check_fits_without_remat
    assert check("Ex", ("does not fit", 42.0), plans).status == "correct"
    assert check("Ex", ("fits", 42.0), plans).status == "wrong"
    assert check("Ex", ("does not fit", 12.0), plans).status == "wrong"


def test_srste_learned_step_and_lsq_init_checks():
    w = np.arange(10.0)
    base = {"losses": np.array([2.0, 1.0]), "w": w}
    same = {"losses": np.array([2.0, 1.0 + 1e-6]), "w": np.where(w < 5, w, w + 1)}
    check = answers.check_frozen_mask_srste
    assert answers.differing_share(base["w"], same["w"]) == 0.5
    assert check("Ex", ("equal", 0.5), base, same).status == "correct"
    assert check("Ex", ("lower", 0.5), base, same).status == "wrong"
    assert check("Ex", ("equal", 0.0), base, same).status == "wrong"
    wt = np.array([[0.1, 1.0], [0.2, -0.1], [1.0, 0.05], [0.3, 0.2]])
    s0, s1 = np.log(np.array([1.0, 1.0])), np.log(np.array([0.5, 0.8]))
    # at the start the step is 1: 6 of the 8 weights are below 1/2
    assert answers.check_learned_step("Ex", ("smaller", 6 / 8), wt, s0, s1).status == "correct"
    assert answers.check_learned_step("Ex", ("larger", 6 / 8), wt, s0, s1).status == "wrong"
    assert answers.check_learned_step("Ex", ("smaller", 5 / 8), wt, s0, s1).status == "wrong"
    wl = np.random.default_rng(4).standard_t(3, (256, 4)).astype(np.float32)
    reach = 2 * 127**0.5  # Q_P s = 2 mean|w| sqrt(Q_P) / ... over mean|w|
    assert answers.check_lsq_init("Ex", ("paper", reach), wl, 8).status == "correct"
    assert answers.check_lsq_init("Ex", ("minmax", reach), wl, 8).status == "wrong"
    assert answers.lsq_init_error(wl, 8, "paper") > answers.lsq_init_error(wl, 8, "minmax")


def test_entropies_and_the_most_decided_layer():
    p = np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    h = answers.entropies(p)
    np.testing.assert_allclose(h, [np.log(4), 0.0, np.log(2)], atol=1e-12)
    layers = ["a", "b", "c"]
    assert answers.check_entropies("Ex", (h, "b"), p, layers).status == "correct"
    assert answers.check_entropies("Ex", (h, "a"), p, layers).status == "wrong"


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(1, 100), st.floats(0, 50)), min_size=1, max_size=12))
def test_pareto_rows_hold_the_smallest_and_the_most_accurate_row(rows):
    summary = {f"E{i}": {"size_paper": s, "wer_test": w} for i, (s, w) in enumerate(rows)}
    summary["W0"] = {"size_paper": 0.0, "wer_test": 0.0}  # a pre-trained start: left out
    front = answers.pareto_rows(summary)
    rows_e = [(r["size_paper"], r["wer_test"], e) for e, r in summary.items() if e != "W0"]
    assert min(rows_e)[2] in front and min(rows_e, key=lambda r: (r[1], r[0]))[2] in front
    # no row on the frontier is dominated by another row
    for e in front:
        s, w = summary[e]["size_paper"], summary[e]["wer_test"]
        assert not any(s2 <= s and w2 <= w and (s2, w2) != (s, w) for s2, w2, _ in rows_e)
    assert answers.check_pareto_frontier("Ex", sorted(front), summary).status == "correct"


def test_word_points_and_margin_changes():
    utts = [{"ref": "one two"}, {"ref": ""}, {"ref": "three"}]  # an empty ref is one word
    assert answers.reference_words(utts) == 4
    assert answers.check_word_points("Ex", 25.0, utts).status == "correct"
    assert answers.check_word_points("Ex", 100 / 3, utts).status == "wrong"
    claims = {"c": {"kind": "same", "reasons": {}, "verdicts": {}, "differences": {}}}
    for split, lo, hi in (("test", -0.5, 0.5), ("unseen", -1.5, 1.5)):
        claims["c"]["differences"][split] = {"lo": lo, "hi": hi}
        claims["c"]["verdicts"][split] = answers.stats.verdict(lo, hi, "same", 1.0)
    changed, judged = answers.margin_changes(claims, 1.0)
    assert changed == [] and judged == 2
    wide, _ = answers.margin_changes(claims, 2.0)
    assert answers.check_margin_changes("Ex", len(wide), claims, 2.0).status == "correct"
    assert answers.check_margin_changes("Ex", len(wide) + 1, claims, 2.0).status == "wrong"
