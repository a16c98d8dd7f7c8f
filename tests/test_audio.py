"""usmlite_edu.speech.audio: resampling keeps frequencies, mixdown, broken files name themselves."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from usmlite_edu.speech.audio import AudioError, load_audio, resample, write_audio


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


def _sine(hz: float, sr: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * hz * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


@pytest.mark.parametrize("src,dst", [(8000, 16000), (22050, 16000), (16000, 8000)])
def test_resampling_keeps_frequency_and_level(tmp_path, src, dst):
    path = tmp_path / "sine.wav"
    sf.write(path, _sine(1000.0, src), src, subtype="PCM_16")
    y = load_audio(path, dst)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == dst  # one second, exact rational factor
    assert abs(_peak_hz(y, dst) - 1000.0) <= 1.0
    mid = y[dst // 10 : -dst // 10]  # away from the filter's edge transients
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 400),
    rates=st.sampled_from([(8000, 16000), (16000, 8000), (22050, 16000), (44100, 16000)]),
)
def test_resample_length_is_exact_ratio(n, rates):
    src, dst = rates
    y = resample(np.zeros(n, np.float32), src, dst)
    assert len(y) == -(-n * dst // src)  # ceil(n * dst / src)


def test_stereo_is_mixed_down_by_mean(tmp_path):
    left, right = _sine(440, 16000), np.full(16000, 0.25, np.float32)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="PCM_24")
    y = load_audio(path, 16000)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-4)


def test_same_rate_is_unchanged_and_float_is_clipped(tmp_path):
    x = _sine(300, 16000)
    write_audio(tmp_path / "a.wav", x, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(tmp_path / "a.wav", 16000), x)
    sf.write(tmp_path / "loud.wav", 3 * x, 16000, subtype="FLOAT")
    y = load_audio(tmp_path / "loud.wav", 16000)
    assert y.max() <= 1.0 and y.min() >= -1.0


@pytest.mark.parametrize("suffix", [".flac", ".wav"])
def test_write_audio_round_trip(tmp_path, suffix):
    x = _sine(700, 8000, amp=1.5)  # over full scale: must be clipped, not wrapped
    path = write_audio(tmp_path / "sub" / f"x{suffix}", x, 8000)
    info = sf.info(path)
    assert info.format == suffix[1:].upper() and info.samplerate == 8000
    y = load_audio(path, 8000)
    np.testing.assert_allclose(y, np.clip(x, -1, 1), atol=2 / 32768)


def test_write_audio_rejects_unknown_suffix_and_nan(tmp_path):
    with pytest.raises(ValueError, match=r"\.mp3"):
        write_audio(tmp_path / "x.mp3", np.zeros(10), 8000)
    with pytest.raises(ValueError, match="NaN"):
        write_audio(tmp_path / "x.wav", np.full(10, np.nan), 8000)


def _corrupt(path):
    path.write_bytes(b"RIFF not really a wav file" * 20)


def _empty(path):
    path.write_bytes(b"")


def _no_frames(path):
    sf.write(path, np.zeros(0, np.float32), 8000)


def _nan(path):
    sf.write(path, np.full(100, np.nan, np.float32), 8000, subtype="FLOAT")


@pytest.mark.parametrize(
    "make,reason",
    [(_corrupt, "unreadable"), (_empty, "empty"), (_no_frames, "no samples"), (_nan, "NaN")],
)
def test_broken_files_raise_audio_error_naming_the_file(tmp_path, make, reason):
    path = tmp_path / "broken_7.wav"
    make(path)
    with pytest.raises(AudioError, match=reason) as info:
        load_audio(path, 16000)
    assert isinstance(info.value, ValueError)
    assert "broken_7.wav" in str(info.value) and info.value.path == str(path)


def test_truncated_flac_and_missing_file(tmp_path):
    good = write_audio(
        tmp_path / "good.flac",
        _sine(500, 16000) + 0.01 * np.random.default_rng(0).normal(size=16000).astype(np.float32),
        16000,
    )
    data = good.read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="cut.flac"):
        load_audio(tmp_path / "cut.flac", 16000)
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "absent.flac", 16000)


def test_truncated_wav_reports_both_frame_counts(tmp_path):
    # libsndfile alone loads a WAV cut to 100 bytes as a 28-sample clip, without a word
    sf.write(tmp_path / "full.wav", _sine(440, 8000), 8000, subtype="PCM_16")
    (tmp_path / "cut.wav").write_bytes((tmp_path / "full.wav").read_bytes()[:100])
    assert sf.info(tmp_path / "cut.wav").frames == 28
    with pytest.raises(AudioError, match="promises 8000 frames .* but only 28") as info:
        load_audio(tmp_path / "cut.wav", 8000)
    assert "cut.wav" in str(info.value)


def test_streamed_wav_of_unknown_length_loads(tmp_path):
    # A WAV written to a pipe cannot go back to fill in its sizes: 0xFFFFFFFF is "unknown",
    # not a promise, so it is not reported as truncated.
    sf.write(tmp_path / "a.wav", _sine(440, 8000), 8000, subtype="PCM_16")
    raw = bytearray((tmp_path / "a.wav").read_bytes())
    assert raw[36:40] == b"data"
    raw[40:44] = b"\xff\xff\xff\xff"
    (tmp_path / "s.wav").write_bytes(bytes(raw))
    np.testing.assert_array_equal(
        load_audio(tmp_path / "s.wav", 8000), load_audio(tmp_path / "a.wav", 8000)
    )


def test_flat_signals_are_refused_and_clipping_is_reported(tmp_path, caplog):
    for value, says in ((0.0, "digital silence"), (1.0, "full scale"), (-0.5, "constant")):
        sf.write(tmp_path / "flat.wav", np.full(800, value, np.float32), 8000, subtype="FLOAT")
        with pytest.raises(AudioError, match=says):
            load_audio(tmp_path / "flat.wav", 8000)
    sf.write(tmp_path / "loud.wav", np.clip(5 * _sine(300, 8000), -1, 1), 8000)
    with caplog.at_level("WARNING", logger="usmlite_edu.speech.audio"):
        assert load_audio(tmp_path / "loud.wav", 8000).size == 8000
    assert "loud.wav" in caplog.text and "clipped" in caplog.text
