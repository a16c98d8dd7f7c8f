"""scripts/compare_rows.py: two row records paired on the same utterances (synthetic
records; no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_loader import load_script

N = 50  # utterances


@pytest.fixture(scope="module")
def script():
    return load_script("compare_rows")


def _record(path: Path, wrong: int, split: str = "dev", ids: range = range(N)) -> Path:
    """A row record whose first ``wrong`` utterances lose one word of four."""
    utts = [
        {"id": f"u{i}", "ref": "a b c d", "hyp": "a b c" if i < wrong else "a b c d"} for i in ids
    ]
    path.write_text(json.dumps({"results": {split: {"wer": 0.0, "utterances": utts}}}))
    return path


def test_identical_rows_differ_by_nothing(script, tmp_path, capsys):
    a = _record(tmp_path / "a.json", 5)
    assert script.main([str(a), str(a)]) == 0
    out = capsys.readouterr().out
    assert "| dev | 2.50 | 2.50 | +0.00 [+0.00, +0.00] | **reproduced** | 50 of 50 |" in out


def test_a_clearly_worse_row_is_not_no_worse(script, tmp_path):
    a, b = _record(tmp_path / "a.json", 30), _record(tmp_path / "b.json", 0)
    r = script.compare(script.load_row(a), script.load_row(b), "dev", ("a", "b"))
    assert r["diff"] == pytest.approx(15.0) and r["lo"] > 1.0
    assert r["verdict_no_worse"] == "not reproduced" and r["same_hypotheses"] == 20


def test_an_oversized_file_is_refused_before_it_is_read(script, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(script, "MAX_RECORD_BYTES", 100)
    a = _record(tmp_path / "a.json", 0)
    assert script.main([str(a), str(a)]) == 2
    assert "is not a row record (at most 100)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "make_b, words",
    [
        (lambda d: _record(d / "b.json", 0, ids=range(1, N + 1)), "needs the same utterances"),
        (
            lambda d: (
                (d / "b.json").write_text('{"results": {"dev": {"utterances": [{"id": 1}]}}}')
                and d / "b.json"
            ),
            "not an {'id', 'ref', 'hyp'} record",
        ),
        (lambda d: _record(d / "b.json", 0, split="test"), "no transcripts for split 'dev'"),
        (lambda d: (d / "b.json").write_text("{not json") and d / "b.json", "cannot read"),
        (lambda d: (d / "b.json").write_text("[]") and d / "b.json", "not a row record"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(script, tmp_path, capsys, make_b, words):
    a, b = _record(tmp_path / "a.json", 0), make_b(tmp_path)
    assert script.main([str(a), str(b)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err
