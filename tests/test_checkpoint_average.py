"""Checkpoint averaging (usmlite_edu.speech.runs.average_checkpoints)."""

import numpy as np
import pytest

from usmlite_edu.speech import runs


def _state(scale: float) -> dict:
    return {
        "params": {
            "encoder": {"0": {"kernel": np.full((3, 2), scale, np.float32)}},
            "bias": np.array([scale, -scale], np.float32),
        },
        "opt_state": {"mu": np.zeros(2, np.float32)},
        "step": np.asarray(int(scale), np.int64),
    }


def test_the_average_is_the_mean_of_the_params_only(tmp_path):
    mngr = runs.checkpoint_manager(tmp_path / "run")
    for step, scale in ((1, 1.0), (2, 2.0), (3, 6.0)):
        runs.save_checkpoint(mngr, step, _state(scale))
    ckpts = tmp_path / "run" / "checkpoints"
    # the manager keeps the last two; all three as copies would be kept by a watcher
    mean = runs.average_checkpoints([ckpts / "2", ckpts / "3"])
    assert set(mean) == {"encoder", "bias"}  # no optimizer state, no step
    np.testing.assert_array_equal(mean["encoder"]["0"]["kernel"], np.full((3, 2), 4.0))
    np.testing.assert_array_equal(mean["bias"], [4.0, -4.0])
    assert mean["bias"].dtype == np.float32
    runs.save_params(tmp_path / "params", mean)
    back = runs.load_params(tmp_path / "params")
    np.testing.assert_array_equal(back["bias"], mean["bias"])
    with pytest.raises(FileNotFoundError, match="is not a training checkpoint"):
        runs.average_checkpoints([ckpts / "2", tmp_path / "nowhere"])
    with pytest.raises(ValueError, match="no checkpoint given"):
        runs.average_checkpoints([])
    other = runs.checkpoint_manager(tmp_path / "other")
    state = _state(1.0)
    state["params"]["extra"] = np.zeros(1, np.float32)
    runs.save_checkpoint(other, 1, state)
    with pytest.raises(ValueError, match="another parameter tree"):
        runs.average_checkpoints([ckpts / "2", tmp_path / "other" / "checkpoints" / "1"])
