"""Packed model files (usmlite_edu.deploy.export): the bit packers, every spec family packed and
read back bit for bit, file bytes equal to the exact size accounting, damaged or foreign
files refused, and `export` + `transcribe --model` giving the checkpoint's transcripts."""

import dataclasses
import functools
import hashlib
import json
import math
import struct
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usmlite_edu import cli
from usmlite_edu.core import compress, quant, sizes
from usmlite_edu.core.sizes import ParamInfo
from usmlite_edu.deploy import export
from usmlite_edu.speech import configs, model, runs
from usmlite_edu.speech.tokenizer import Tokenizer
from usmlite_edu.training import train

REPO = Path(__file__).resolve().parents[1]
B0 = REPO / "results" / "cpu" / "b0"
TOK = Tokenizer.load(B0 / "tokenizer")
# One block of width 36: sub-channel groups of 12 give 3 groups on 36 inputs, 5 on the
# projection's 60 and 12 on the 144 of the second feed-forward matrix.
CFG = configs.CI.replace(
    model_dim=36, num_heads=2, num_layers=1, subsample_channels=(4, 6), vocab_size=TOK.vocab_size
)
TCFG = configs.TrainConfig(bucket_seconds=(6.0,), eval_batch_size=32)
FAMILIES = [
    "float",
    "int8",
    "int4",
    "int2",
    "int2/gs12",
    "2:4",
    "1:4",
    "int4+2:4",
    "int2/gs12+2:4",
    "int8/clip0.9",
]
WAVS = sorted((REPO / "data_small" / "test").glob("*/*/*.flac"))[:3]


def _make_run(path: Path, spec: str = "float", masks=None, seed: int = 0) -> Path:
    """A run directory as `usmlite-edu train` leaves it (no training: fresh weights)."""
    path.mkdir(parents=True)
    runs.save_params(path / "params", model.init_params(CFG, seed=seed))
    if masks is not None:
        runs.save_params(path / "masks", masks)
    TOK.save(path / "tokenizer")
    runs.write_json(
        path / "config.json",
        {
            "model_config": dataclasses.asdict(CFG),
            "train_config": dataclasses.asdict(TCFG),
            "spec": spec,
        },
    )
    return path


@pytest.fixture(scope="module")
def float_run(tmp_path_factory):
    return _make_run(tmp_path_factory.mktemp("export") / "float")


def _nm_mask(shape, n: int, m: int, rng) -> np.ndarray:
    """A random N:M mask of an ``(in, out)`` weight (groups along the inputs), in NumPy."""
    i, j = shape
    rank = rng.random((i // m, m, j)).argsort(axis=1).argsort(axis=1)
    return (rank < n).reshape(i, j)


@pytest.fixture(scope="module")
def sparse_run(tmp_path_factory):
    """An int4 + 2:4 run with saved masks that are not the one-shot masks of its weights."""
    rng = np.random.default_rng(1)
    masks = {}
    for w in model.param_table(CFG):
        mask = _nm_mask(w.shape, 2, 4, rng) if w.role == "dense" else np.ones((), bool)
        export._set(masks, w.name, mask)
    return _make_run(tmp_path_factory.mktemp("export") / "sparse", "int4+2:4", masks)


@pytest.fixture(scope="module")
def packed_file(float_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "int4.safetensors"
    export.write_packed(float_run, "int4", path)
    return path


@functools.cache
def _jit(fn):
    return jax.jit(fn, static_argnums=1)


def _bits(a) -> np.ndarray:
    """float32 array as its bit patterns (so -0.0 != 0.0 and NaNs compare)."""
    return np.asarray(a, np.float32).view(np.uint32)


# --------------------------------------------------------------------------- bit packers
def test_pack_bits_layout():
    assert export.pack_bits([1, 2], 4).tolist() == [0x21]  # low nibble first
    assert export.pack_bits([0, 1, 2, 3], 2).tolist() == [0b11100100]
    assert export.pack_bits([0, 255, 7], 8).tolist() == [0, 255, 7]
    assert export.pack_bits([5, 3, 1], 4).tolist() == [0x35, 0x01]  # padded with zeros
    assert export.pack_bits([7, 1, 6], 3).tolist() == [0b10001111, 0b1]  # across bytes
    assert export.to_codes(np.array([-7, 0, 7], np.int8), 4).tolist() == [1, 8, 15]
    assert export.from_codes(np.array([0, 3]), 2).tolist() == [-2, 1]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.data())
def test_pack_unpack_bits_round_trip(bits, data):
    codes = np.array(data.draw(st.lists(st.integers(0, 2**bits - 1), max_size=70)), np.uint8)
    packed = export.pack_bits(codes, bits)
    assert packed.dtype == np.uint8 and packed.size == math.ceil(codes.size * bits / 8)
    assert np.array_equal(export.unpack_bits(packed, bits, codes.size), codes)
    # the whole-code-per-byte path writes the same little-endian bit stream as the general one
    planes = (codes[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    assert np.array_equal(packed, np.packbits(planes.ravel(), bitorder="little"))


def test_unpack_bits_refuses_wrong_sizes_and_padding():
    with pytest.raises(ValueError, match="need 2 bytes, got 1"):
        export.unpack_bits(np.array([1], np.uint8), 4, 3)
    with pytest.raises(ValueError, match="padding bits"):
        export.unpack_bits(np.array([0xF1], np.uint8), 4, 1)
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        export.pack_bits([4], 2)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 5), st.integers(1, 4), st.data())
def test_pack_unpack_nm_round_trip(m, n_raw, out_dim, groups, data):
    n = min(n_raw, m)
    seed = data.draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((out_dim, groups * m)).astype(np.float32)
    mask = _nm_mask(values.T.shape, n, m, rng).T
    kept, pos = export.pack_nm(values, mask, n, m)
    assert kept.size == pos.size == out_dim * groups * n
    dense = export.unpack_nm(kept, pos, values.shape, n, m, np.float32(0))
    assert np.array_equal(dense, np.where(mask, values, 0))
    # the positions fit the index width
    assert pos.size == 0 or int(pos.max()) < 2 ** max((m - 1).bit_length(), 1)


def test_nm_index_bits_and_enumeration():
    assert export.nm_index_bits(2, 4) == (4, 3) and export.enumeration_is_smaller(2, 4)
    assert export.nm_index_bits(1, 4) == (2, 2) and not export.enumeration_is_smaller(1, 4)
    assert export.nm_index_bits(4, 8) == (12, 7)  # C(8, 4) = 70 patterns
    assert export.nm_index_bits(1, 1) == (0, 0)


def test_pack_nm_refuses_a_mask_that_is_not_n_of_m():
    mask = np.array([[True, True, True, False]])
    with pytest.raises(ValueError, match="keeps 3 entries, not n=2"):
        export.pack_nm(np.ones((1, 4)), mask, 2, 4)


# --------------------------------------------------------------------------- one kernel
KERNEL_CASES = [
    ("int8", (5, 3)),
    ("int4", (15, 7)),
    ("int3", (9, 11)),
    ("int2", (7, 5)),
    ("int2/g3", (12, 5)),
    ("int2/gs4", (12, 7)),
    ("2:4", (24, 3)),
    ("1:4", (20, 9)),
    ("int4+2:4", (16, 5)),
    ("int2/gs4+2:4", (12, 7)),
    ("int8/clip0.8", (6, 5)),
]


@pytest.mark.parametrize("spec,shape", KERNEL_CASES, ids=[c[0] for c in KERNEL_CASES])
def test_kernel_round_trip_odd_shapes(spec, shape):
    w = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    w[0, 0] = 0.0  # an exact zero, and (sub-channel) groups of other ranges
    w[-1] *= 5
    pk = export.pack_kernel(w, spec)
    qa, dense = export.unpack_kernel(pk, shape, spec)
    mask, q = _jit(compress.prune_then_quantize)(w, spec, None)
    # bit for bit the fake-quantized (masked) weight, computed as the model computes it
    assert np.array_equal(_bits(dense), _bits(_jit(compress.compress_weight)(w, spec, mask)))
    if q is None:
        assert qa is None
    else:
        assert np.array_equal(qa.values, q.values) and np.array_equal(
            _bits(qa.scale), _bits(q.scale)
        )
        assert (qa.zero_point is None) == (q.zero_point is None)
        if q.zero_point is not None:
            assert np.array_equal(qa.zero_point, q.zero_point)
    # each array holds the exact accounting's bits of its component, padded to a byte
    e = sizes.model_size(spec, [ParamInfo("w", shape, "dense")])
    for got, bits in zip(pk, (e.values, e.scales, e.zero_points, e.index)):
        assert got.nbytes == math.ceil(bits / 8), (spec, got.nbytes, bits)


def test_pack_kernel_refuses_float_and_bad_shapes():
    with pytest.raises(ValueError, match="float spec"):
        export.pack_kernel(np.ones((4, 4)), "float")
    with pytest.raises(ValueError, match="does not divide"):
        export.pack_kernel(np.ones((10, 4)), "2:4")


# --------------------------------------------------------------------------- whole files
@pytest.mark.parametrize("spec", FAMILIES)
def test_file_round_trip_and_bytes_every_family(float_run, tmp_path, spec):
    run = runs.load_run(float_run)
    masks = runs.load_masks(float_run, run, spec)
    info = export.write_packed(float_run, spec, tmp_path / "m.safetensors")
    # tensor data is the exact accounting to the byte; the rest is the header
    assert info.data_bytes == info.exact_bytes == sizes.model_size(spec, CFG).total / 8
    assert info.file_bytes == info.header_bytes + info.data_bytes
    assert info.file_bytes == (tmp_path / "m.safetensors").stat().st_size
    assert all(f == e for _, f, e in info.by_component())
    assert info.header_bytes < 6000

    got = export.read_packed(tmp_path / "m.safetensors")
    assert got.config == CFG and got.spec == compress.as_spec(spec) and got.train_config == TCFG
    quantized = export.read_packed(tmp_path / "m.safetensors", dequantize=False).params
    # what a dense layer of the model computes (Eq. 1, jitted as the model runs it)
    layer_spec = model.ModelOptions(spec=compress.as_spec(spec)).quant_spec
    matmul = jax.jit(lambda x, w: compress.compressed_matmul(x, w, layer_spec))
    rng = np.random.default_rng(0)
    for w in model.param_table(CFG):
        orig = np.asarray(model.weight_at(run.params, w.name))
        back = model.weight_at(got.params, w.name)
        if w.role != "dense" or spec == "float":
            assert np.array_equal(_bits(back), _bits(orig)), w.name
            continue
        mask = None if masks is None else model.weight_at(masks, w.name)
        # dequantized: bit for bit the fake-quantized, masked weight
        want = _jit(compress.compress_weight)(orig, spec, mask)
        assert np.array_equal(_bits(back), _bits(want)), w.name
        qa = model.weight_at(quantized, w.name)
        assert isinstance(qa, quant.QuantizedArray) == compress.as_spec(spec).quantized
        if w.shape not in ((60, 36), (144, 36), (36, 144)):
            continue  # one layer per input width (5 and 12 groups of 12, N:M groups)
        # Eq. (1) from the stored integers: the checkpoint layer's output, bit for bit
        x = rng.standard_normal((2, 3, w.shape[0])).astype(np.float32)
        pruned = orig if mask is None else np.where(mask, orig, np.float32(0))
        assert np.array_equal(_bits(matmul(x, qa)), _bits(matmul(x, pruned))), w.name


def test_tokenizer_travels_in_a_few_hundred_bytes(packed_file):
    got = export.read_packed(packed_file)
    assert got.tokenizer._proto == TOK._proto and got.tokenizer.settings == TOK.settings
    tok = json.loads(got.meta["tokenizer"])
    assert tok["charsmap"] == "sentencepiece rule nmt_nfkc" and len(tok["model"]) < 1000
    assert got.tokenizer.decode(TOK.encode("seven three")) == "seven three"


@pytest.mark.parametrize("spec", ["int2/gs12+2:4", "1:4"])
def test_logits_from_the_file_equal_the_checkpoints(float_run, tmp_path, spec):
    """The whole forward pass from the file is the checkpoint's, bit for bit (an
    asymmetric grid with groups and N:M; float N:M values), ``int4+2:4`` in the CLI test."""
    run = runs.load_run(float_run)
    export.write_packed(float_run, spec, tmp_path / "m.safetensors")
    trainer, params = export.inference(
        export.read_packed(tmp_path / "m.safetensors", dequantize=False)
    )
    wav = np.random.default_rng(0).standard_normal((1, 16000)).astype(np.float32) * 0.1
    lengths = np.array([13000], np.int32)
    got, _ = trainer.logits(params, None, wav, lengths)
    ref = train.get_trainer(CFG, spec, TCFG)
    want, _ = ref.logits(run.params, runs.load_masks(float_run, run, spec), wav, lengths)
    assert np.array_equal(_bits(got), _bits(want))


def test_a_parameter_dict_packs_without_tokenizer(tmp_path):
    params = model.init_params(CFG, seed=3)
    info = export.write_packed(params, "int4+2:4", tmp_path / "p.safetensors", config=CFG)
    got = export.read_packed(info.path)
    assert got.tokenizer is None and got.train_config is None
    with pytest.raises(ValueError, match="no tokenizer"):
        export.inference(got)
    with pytest.raises(ValueError, match="needs config"):
        export.write_packed(params, "int4", tmp_path / "q.safetensors")


# --------------------------------------------------------------------------- refused files
def _rewrite(path: Path, out: Path, *, meta=None, tensors=None, resum: bool = True) -> Path:
    """A copy of ``path`` with edited metadata / tensors (checksums updated if ``resum``)."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(path), framework="np") as f:
        md = dict(f.metadata())
        ts = {k: f.get_tensor(k) for k in f.keys()}
    if tensors:
        tensors(ts)
    if meta:
        meta(md)
    if resum:
        md["sha256"] = json.dumps(
            {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in ts.items()}
        )
        md[export.HEADER_SUM] = export.header_checksum(md)
    save_file(ts, str(out), metadata=md)
    return out


def _edit_config(key: str, **changes):
    """A ``meta`` editor for :func:`_rewrite`: set ``changes`` in the JSON config ``key``."""

    def edit(md):
        d = json.loads(md[key])
        d.update(changes)
        md[key] = json.dumps(d)

    return edit


def _edit_header_bytes(path: Path, old: bytes, new: bytes) -> bytes:
    """The file's bytes with one occurrence of ``old`` in its header replaced by ``new``
    (same length: the data offsets stay valid), as a hex editor would."""
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    head = data[8 : 8 + n]
    assert len(old) == len(new) and head.count(old) == 1, head[:400]
    return data[:8] + head.replace(old, new) + data[8 + n :]


def _set_first(ts, name, value):
    ts[name] = ts[name].copy()
    ts[name][0] = value


def _write(out: Path, data: bytes) -> Path:
    out.write_bytes(data)
    return out


def _flip_data_byte(p: Path, o: Path) -> Path:
    data = bytearray(p.read_bytes())
    data[-3] ^= 0xFF
    return _write(o, bytes(data))


def _foreign(p: Path, o: Path) -> Path:
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(3, np.float32)}, str(o), metadata={"format": "pt"})
    return o


BAD_FILES = {
    "empty": (lambda p, o: _write(o, b""), "only 0 bytes"),
    "random bytes": (
        lambda p, o: _write(o, np.random.default_rng(0).bytes(3000)),
        "not a safetensors file",
    ),
    "a FLAC file": (lambda p, o: _write(o, WAVS[0].read_bytes()), "not a safetensors file"),
    "cut in the header": (lambda p, o: _write(o, p.read_bytes()[:200]), "truncated"),
    "cut in the data": (lambda p, o: _write(o, p.read_bytes()[:-7]), "truncated"),
    "bytes appended": (lambda p, o: _write(o, p.read_bytes() + b"\0"), "damaged"),
    "a flipped data byte": (_flip_data_byte, "does not match its checksum"),
    "header not JSON": (
        lambda p, o: _write(o, p.read_bytes()[:8] + b"\0" + p.read_bytes()[9:]),
        "not JSON",
    ),
    "foreign safetensors": (_foreign, "not a packed usmlite_edu model"),
    "another format version": (
        lambda p, o: _rewrite(p, o, meta=lambda m: m.update(format_version="99")),
        "format version '99'",
    ),
    "layout edited": (
        lambda p, o: _rewrite(p, o, meta=lambda m: m.update(spec="int8")),
        "layout does not match",
    ),
    "metadata unreadable": (
        lambda p, o: _rewrite(p, o, meta=lambda m: m.update(model_config="{")),
        "does not describe a model",
    ),
    "a missing tensor": (
        lambda p, o: _rewrite(p, o, tensors=lambda t: t.pop("index")),
        "holds tensors",
    ),
    "checksums edited away": (
        lambda p, o: _rewrite(p, o, tensors=lambda t: _set_first(t, "scales", 1.0), resum=False),
        "does not match its checksum",
    ),
    "codes off the symmetric grid": (
        lambda p, o: _rewrite(p, o, tensors=lambda t: _set_first(t, "values", 0)),
        "outside the int4 grid",
    ),
    "a negative scale": (
        lambda p, o: _rewrite(p, o, tensors=lambda t: _set_first(t, "scales", -1.0)),
        "finite and positive",
    ),
    "a damaged tokenizer": (
        lambda p, o: _rewrite(p, o, meta=lambda m: m.update(tokenizer=json.dumps({"x": 1}))),
        "tokenizer cannot be rebuilt",
    ),
    "a folder": (lambda p, o: o.mkdir() or o, "not a file"),
    "a header byte changed (hop_ms 10.0 -> 19.0)": (
        lambda p, o: _write(o, _edit_header_bytes(p, b'hop_ms\\": 10.0', b'hop_ms\\": 19.0')),
        "does not match its header checksum",
    ),
    "header checksum edited away": (
        lambda p, o: _rewrite(p, o, meta=lambda m: m.update(model_config="{}"), resum=False),
        "does not match its header checksum",
    ),
    # the checks behind the checksum: a file whose header was rewritten consistently
    "sample_rate 1e9 (checksum recomputed)": (
        lambda p, o: _rewrite(p, o, meta=_edit_config("model_config", sample_rate=10**9)),
        "model.sample_rate must be an integer in",
    ),
    "left_context -5 (checksum recomputed)": (
        lambda p, o: _rewrite(p, o, meta=_edit_config("model_config", left_context=-5)),
        "model.left_context must be None",
    ),
    "dropout 5 (checksum recomputed)": (
        lambda p, o: _rewrite(p, o, meta=_edit_config("model_config", dropout=5.0)),
        "model.dropout must be in [0, 1)",
    ),
    "window_ms below hop_ms (checksum recomputed)": (
        lambda p, o: _rewrite(p, o, meta=_edit_config("model_config", window_ms=1.0)),
        "0 < hop_ms <= window_ms",
    ),
    "bucket_seconds [1e6] (checksum recomputed)": (
        lambda p, o: _rewrite(p, o, meta=_edit_config("train_config", bucket_seconds=[1e6])),
        "longer than 600 s",
    ),
    "a batch that cannot fit in memory (checksum recomputed)": (
        lambda p, o: _rewrite(
            p,
            o,
            meta=_edit_config("train_config", bucket_seconds=[600.0], eval_batch_size=10**6),
        ),
        "needs at least",
    ),
    "a short tensor": (
        lambda p, o: _rewrite(p, o, tensors=lambda t: t.update(float32=t["float32"][:-1])),
        "shorter than its layout",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_damaged_or_foreign_files_are_refused(packed_file, tmp_path, case):
    make, says = BAD_FILES[case]
    bad = Path(make(packed_file, tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError) as e:
        export.read_packed(bad)
    assert str(bad) in str(e.value) and says in str(e.value), str(e.value)


def test_version_1_files_are_read_with_a_warning(packed_file, tmp_path, caplog):
    def to_v1(md):
        md.pop(export.HEADER_SUM)
        md["format_version"] = "1"

    old = _rewrite(packed_file, tmp_path / "v1.safetensors", meta=to_v1, resum=False)
    with caplog.at_level("WARNING", logger="usmlite_edu.deploy.export"):
        got = export.read_packed(old)
    assert str(old) in caplog.text and "no header checksum" in caplog.text
    want = export.read_packed(packed_file)
    assert got.config == want.config and got.spec == want.spec
    # a version 1 file is still validated: its configs go through the same checks
    edit = _edit_config("model_config", dropout=5.0)
    bad = _rewrite(old, tmp_path / "v1bad.safetensors", meta=edit, resum=False)
    with pytest.raises(ValueError, match=r"model.dropout must be in \[0, 1\)"):
        export.read_packed(bad)


def test_file_mode_follows_the_umask(float_run, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        export.write_packed(float_run, "int8", tmp_path / "a.safetensors")
        os.umask(0o077)
        export.write_packed(float_run, "int8", tmp_path / "b.safetensors")
    finally:
        os.umask(old)
    assert (tmp_path / "a.safetensors").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.safetensors").stat().st_mode & 0o777 == 0o600


def test_memory_estimate_grows_with_rate_and_bucket():
    small = export.batch_memory_bytes(CFG, TCFG)
    assert 0 < small < export.memory_limit_bytes()
    assert export.batch_memory_bytes(CFG.replace(sample_rate=768_000), TCFG) > 10 * small
    big = TCFG.replace(bucket_seconds=(600.0,), eval_batch_size=10**6)
    assert export.batch_memory_bytes(CFG, big) > 2**50


def test_bad_nm_positions_are_refused(sparse_run, tmp_path):
    good = tmp_path / "s.safetensors"
    export.write_packed(sparse_run, None, good)
    # positions 0,0 in the first group: not an N:M pattern
    bad = _rewrite(good, tmp_path / "bad.safetensors", tensors=lambda t: _set_first(t, "index", 0))
    with pytest.raises(ValueError, match="positions must increase"):
        export.read_packed(bad)


def test_cli_refuses_a_damaged_file_with_one_line(packed_file, tmp_path, capsys):
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(packed_file.read_bytes()[:-100])
    assert cli.main(["transcribe", "--model", str(bad), str(WAVS[0])]) == cli.EXIT_REFUSED
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "truncated" in err[0]
    assert cli.main(["eval", "--model", str(tmp_path / "none.safetensors")]) == cli.EXIT_REFUSED
    assert "no such file" in capsys.readouterr().err


# --------------------------------------------------------------------------- command line
def test_cli_export_then_transcribe_and_eval_equal_the_checkpoint(sparse_run, tmp_path, capsys):
    out = tmp_path / "tiny.safetensors"
    assert cli.main(["export", "--checkpoint", str(sparse_run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    exact = sizes.model_size("int4+2:4", CFG).total / 8
    assert f"{out.stat().st_size:,} bytes" in printed and f"{exact:,.0f} bytes" in printed
    assert "tensor data - exact = +0 bytes" in printed
    files = [str(p) for p in WAVS]
    assert cli.main(["transcribe", "--model", str(out), *files]) == 0
    from_file = capsys.readouterr().out
    assert cli.main(["transcribe", "--checkpoint", str(sparse_run), *files]) == 0
    assert from_file == capsys.readouterr().out and from_file.count("\n") == len(files)
    for src in (["--model", str(out)], ["--checkpoint", str(sparse_run)]):
        argv = ["eval", *src, "--corpus", "fsdd_sample", "--json", f"{tmp_path}/{src[0][2:]}.json"]
        assert cli.main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == printed[1] and "(56 utterances, 0 skipped, spec int4+2:4)" in printed[0]
    a, b = (json.loads((tmp_path / f"{k}.json").read_text()) for k in ("model", "checkpoint"))
    assert a["transcripts"] == b["transcripts"] and len(a["transcripts"]) == 56
    # a packed file holds one spec; --checkpoint and --model exclude each other
    assert cli.main(["transcribe", "--model", str(out), "--spec", "int8", *files]) == 2
    assert "export the run again with --spec int8" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["transcribe", "--model", str(out), "--checkpoint", str(sparse_run), *files])
    assert e.value.code == 2
    assert (
        cli.main(["export", "--checkpoint", str(sparse_run), "--out", str(tmp_path / "x.bin")]) == 2
    )
    assert "FILE.safetensors" in capsys.readouterr().err


def test_b0_int4_2_4_file_is_within_one_percent_and_transcribes_the_same(tmp_path, capsys):
    """The issue's criterion: the committed B0 packed with int4 + 2:4 is within 1% of the
    exact size column and transcribes FSDD test speech as the checkpoint does."""
    out = tmp_path / "b0.safetensors"
    argv = ["export", "--checkpoint", str(B0), "--spec", "int4+2:4", "--out", str(out)]
    assert cli.main(argv) == 0
    cfg = runs.load_run(B0).config
    exact = sizes.model_size("int4+2:4", cfg).total / 8
    assert abs(out.stat().st_size - exact) / exact < 0.01
    header = 8 + struct.unpack("<Q", out.read_bytes()[:8])[0]
    assert out.stat().st_size - header == exact
    files = [str(p) for p in sorted((REPO / "data_small" / "fsdd_sample").glob("*/0/*.flac"))[:4]]
    capsys.readouterr()
    assert cli.main(["transcribe", "--model", str(out), *files]) == 0
    from_file = capsys.readouterr().out
    assert cli.main(["transcribe", "--checkpoint", str(B0), "--spec", "int4+2:4", *files]) == 0
    assert from_file == capsys.readouterr().out
    assert len(from_file.splitlines()) == 4 and "<error" not in from_file
