"""Log-mel frontend (paper section 4.2: 128 log-mel bins, 32 ms window, 10 ms hop)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from usmlite_edu.speech.configs import CI, USM_2B
from usmlite_edu.speech.frontend import (
    LogMelConfig,
    hann_window,
    hz_to_mel,
    log_mel,
    mel_filterbank,
    mel_to_hz,
    normalize,
    num_frames,
)

librosa = pytest.importorskip("librosa")

PAPER = LogMelConfig.from_model(USM_2B)  # 16 kHz, 128 mel, 32/10 ms
MEL80 = LogMelConfig(16000, 80, 25.0, 10.0)  # 400-sample window, n_fft 512
NB8K = LogMelConfig(8000, 40, 32.0, 10.0)  # 256-sample window
BAND = LogMelConfig(16000, 80, 25.0, 10.0, fmin=20.0, fmax=7600.0, fft_size=1024)
CONFIGS = [PAPER, MEL80, NB8K, BAND]


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def test_config_lengths():
    assert (PAPER.win_length, PAPER.hop_length, PAPER.n_fft) == (512, 160, 512)
    assert (MEL80.win_length, MEL80.hop_length, MEL80.n_fft) == (400, 160, 512)
    assert (NB8K.win_length, NB8K.hop_length, NB8K.n_fft) == (256, 80, 256)
    assert BAND.n_fft == 1024
    assert LogMelConfig.from_model(CI).num_mels == CI.num_mels


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.sample_rate}Hz-{c.num_mels}mel")
def test_filterbank_matches_librosa_htk(cfg: LogMelConfig):
    ours = mel_filterbank(cfg)
    ref = librosa.filters.mel(
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        n_mels=cfg.num_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        htk=True,
        norm=None,
    ).T
    assert ours.shape == (cfg.n_fft // 2 + 1, cfg.num_mels)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)
    assert ours.max() <= 1.0 + 1e-6  # peak-1 triangles, no area norm


def test_mel_scale_round_trip():
    f = np.array([0.0, 700.0, 1000.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f)), f, atol=1e-9)
    assert hz_to_mel(1000.0) == pytest.approx(999.99, abs=0.01)  # HTK, not Slaney
    np.testing.assert_allclose(hann_window(8), np.hanning(9)[:8], atol=1e-7)  # periodic


def test_too_many_mels_refused():
    with pytest.raises(ValueError, match="num_mels=300.*257"):
        mel_filterbank(LogMelConfig(16000, 300, 32.0, 10.0))
    mel_filterbank(LogMelConfig(16000, 300, 32.0, 10.0, fft_size=1024))  # the fix works
    with pytest.raises(ValueError, match="fft_size"):
        LogMelConfig(16000, 80, 32.0, 10.0, fft_size=256)
    with pytest.raises(ValueError, match="fmax"):
        LogMelConfig(16000, 80, 25.0, 10.0, fmax=9000.0)


@pytest.mark.parametrize("cfg", [PAPER, MEL80, NB8K], ids=["paper", "mel80", "8k"])
def test_log_mel_matches_librosa_stft(cfg: LogMelConfig):
    n = cfg.sample_rate // 2
    t = np.arange(n) / cfg.sample_rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * _noise(n)).astype(np.float32)
    feats, mask = log_mel(x[None], np.array([n]), cfg)
    feats = np.asarray(feats[0])
    # librosa centres a win_length window inside each n_fft frame; pad the signal by that
    # offset so its frame t windows the same samples x[t*hop : t*hop + win] as ours.
    off = (cfg.n_fft - cfg.win_length) // 2
    xp = np.concatenate([np.zeros(off, np.float32), x, np.zeros(cfg.n_fft, np.float32)])
    spec = librosa.stft(
        xp.astype(np.float64),
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window="hann",
        center=False,
    )
    power = np.abs(spec.T[: feats.shape[0]]) ** 2
    ref = np.log(np.maximum(power @ mel_filterbank(cfg).astype(np.float64), cfg.log_floor))
    assert bool(mask.all()) and feats.shape == ref.shape
    np.testing.assert_allclose(feats, ref, rtol=1e-4, atol=1e-4)


def test_sine_energy_in_right_mel_bin():
    cfg = PAPER
    freq = 1000.0
    n = cfg.sample_rate // 4
    x = np.sin(2 * np.pi * freq * np.arange(n) / cfg.sample_rate).astype(np.float32)
    feats, _ = log_mel(x[None], np.array([n]), cfg)
    peak = np.asarray(feats[0]).mean(0).argmax()
    # The filter whose centre is nearest to 1 kHz (in mel) gets the energy.
    mels = np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.mel_fmax), cfg.num_mels + 2)
    expect = np.abs(mels[1:-1] - hz_to_mel(freq)).argmin()
    assert abs(int(peak) - int(expect)) <= 1
    assert np.asarray(feats[0])[:, peak].mean() > np.asarray(feats[0]).mean() + 5


def test_num_frames_formula_and_shape():
    cfg = PAPER
    win, hop = cfg.win_length, cfg.hop_length
    for length in [0, 1, win - 1, win, win + hop - 1, win + hop, 16000, 16001]:
        expect = 1 + (length - win) // hop if length >= win else 0
        assert num_frames(length, cfg) == expect
        assert isinstance(num_frames(length, cfg), int)
        if length in (win - 1, win, win + hop - 1, 16001):  # few shapes: each compiles
            feats, mask = log_mel(np.zeros((1, length), np.float32), np.array([length]), cfg)
            assert feats.shape == (1, expect, cfg.num_mels) and mask.shape == (1, expect)
    lengths = np.array([0, win - 1, win, 16000])
    np.testing.assert_array_equal(
        num_frames(lengths, cfg), [num_frames(int(v), cfg) for v in lengths]
    )
    out = num_frames(jnp.asarray(lengths), cfg)
    assert isinstance(out, jax.Array)
    np.testing.assert_array_equal(out, [num_frames(int(v), cfg) for v in lengths])
    assert num_frames(16000, USM_2B) == 97  # accepts a ConformerConfig


def test_padding_invariance_and_frame_mask():
    cfg = MEL80
    lengths = np.array([16000, 7777, 399, 0])
    n = int(lengths.max())
    batch = np.zeros((len(lengths), n), np.float32)
    for i, length in enumerate(lengths):
        batch[i, :length] = _noise(int(length), seed=i)
    feats, mask = jax.jit(log_mel, static_argnames="cfg")(batch, lengths, cfg)
    feats, mask = np.asarray(feats), np.asarray(mask)
    t = num_frames(n, cfg)
    assert feats.shape == (4, t, cfg.num_mels) and mask.dtype == bool
    for i, length in enumerate(lengths):
        valid = num_frames(int(length), cfg)
        np.testing.assert_array_equal(mask[i], np.arange(t) < valid)
        assert np.all(feats[i, valid:] == 0)
        # A valid frame never reads past the utterance: last sample index < length.
        if valid:
            assert (valid - 1) * cfg.hop_length + cfg.win_length <= length
            alone, alone_mask = log_mel(batch[i : i + 1, :length], lengths[i : i + 1], cfg)
            assert bool(alone_mask.all()) and alone.shape[1] == valid
            np.testing.assert_allclose(feats[i, :valid], np.asarray(alone[0]), atol=1e-5)
    # garbage in the padding must not leak into the features
    dirty = batch + (np.arange(n)[None] >= lengths[:, None]) * 3.0
    feats2, _ = log_mel(dirty.astype(np.float32), lengths, cfg)
    np.testing.assert_allclose(np.asarray(feats2), feats, atol=1e-5)


def test_silence_gives_log_floor_and_normalize():
    cfg = NB8K
    feats, mask = log_mel(np.zeros((1, 4000), np.float32), np.array([4000]), cfg)
    np.testing.assert_allclose(np.asarray(feats), np.log(cfg.log_floor), rtol=1e-6)
    x = np.stack([_noise(4000, 1), np.pad(_noise(2000, 2), (0, 2000))])
    feats, mask = log_mel(x, np.array([4000, 2000]), cfg)
    norm = np.asarray(normalize(feats, mask))
    m = np.asarray(mask)
    for i in range(2):
        v = norm[i][m[i]]
        np.testing.assert_allclose(v.mean(0), 0.0, atol=1e-4)
        np.testing.assert_allclose(v.std(0), 1.0, atol=1e-2)
        assert np.all(norm[i][~m[i]] == 0)
