"""Model-size accounting against the paper's "Model Size Ratio" column (Tables 1-3)."""

import math

import pytest

from usmlite_edu.core import sizes
from usmlite_edu.speech import configs, model


@pytest.mark.parametrize("row", sizes.PAPER_ROWS, ids=lambda r: r.exp)
def test_paper_convention_reproduces_every_figure(row):
    table = {r["exp"]: r for r in sizes.size_table("usm_2b")}
    assert abs(table[row.exp]["estimate"] - row.paper_ratio) <= 0.1 + 1e-9, table[row.exp]


def test_size_ratio_api():
    assert sizes.size_ratio("int8") == pytest.approx(25.0)
    assert sizes.size_ratio("int4+2:4") == pytest.approx(9.375)
    assert sizes.size_ratio("int2/g64") == pytest.approx(6.25 + 100 * 64 / 1536)
    assert sizes.size_ratio("float") == pytest.approx(100.0)


def test_exact_is_larger_than_paper_for_quantized_and_explained():
    for spec in ["int8", "int4", "int2", "int4+2:4"]:
        assert sizes.size_ratio(spec, convention="exact") > sizes.size_ratio(spec)
    # 1:4 stores 2-bit indices per kept weight: 0.5 bit/weight, less than the paper's mask
    assert sizes.size_ratio("1:4", convention="exact") < sizes.size_ratio("1:4")


def test_exact_breakdown_by_hand():
    # a toy model: one 8x4 dense matrix and a 4-element float bias
    weights = [
        sizes.ParamInfo("d/kernel", (8, 4), "dense"),
        sizes.ParamInfo("d/bias", (4,), "other"),
    ]
    b = sizes.model_size("int2/g2+2:4", weights)
    assert b.values == 32 * 0.5 * 2  # 16 kept weights, 2 bits each
    assert b.scales == 32 * 2 * 4  # g=2 groups x 4 channels, float32
    assert b.zero_points == 2 * 2 * 4  # int2 zero point per group
    assert b.index == (32 / 4) * 2 * math.ceil(math.log2(4))  # 2 indices of 2 bits per group
    assert b.float_layers == 32 * 4
    assert b.float_total == 32 * 36
    assert b.ratio == pytest.approx(100 * (32 + 256 + 16 + 32 + 128) / (32 * 36))


def test_usm_2b_parameter_count_and_roles():
    n = model.num_params(configs.USM_2B)
    assert 1.6e9 <= n <= 2.1e9
    roles = {w.role for w in model.param_table(configs.USM_2B)}
    assert roles == {"dense", "conv", "softmax", "other"}
    dense = [w for w in model.param_table(configs.USM_2B) if w.role == "dense"]
    assert len(dense) == 1 + 32 * 11  # projection + 11 matrices per block


def test_invalid_spec_for_model_is_refused():
    with pytest.raises(ValueError, match="frontend/proj/kernel: 7 sub-channels do not divide"):
        sizes.model_size("int2/g7", "usm_2b")


def test_group_size_overhead():
    # groups of 24 inputs: one float32 per 24 weights = 1/24 of the float size (paper: 4.1%)
    assert sizes.size_ratio("int2/gs24") == pytest.approx(6.25 + 100 / 24)
    exact = sizes.model_size("int2/gs24", "cpu")
    cfg = configs.CPU
    expected_scales = sum(
        32 * (w.shape[0] // 24) * w.shape[1] for w in model.param_table(cfg) if w.role == "dense"
    )
    assert exact.scales == expected_scales
