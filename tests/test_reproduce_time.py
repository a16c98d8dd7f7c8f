"""scripts/reproduce_time.py splits a row's wall time from what its run wrote (synthetic
records and metrics; no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_loader import load_script

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    return load_script("reproduce_time")


def _row(table: Path, key: str, wall: float, steps: int, lines: list[dict]) -> None:
    (table / "rows").mkdir(parents=True, exist_ok=True)
    rec = {"key": key, "seed": int(key.split("_s")[1]), "steps": steps, "wall_time_s": wall}
    rec["machine"] = {"processor": "test cpu"}
    (table / "rows" / f"{key}.json").write_text(json.dumps(rec))
    run = table / "runs" / key
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def _log(first_elapsed: float, s_per_step: float, steps: range) -> list[dict]:
    # the first logged interval holds 40 s of compiling; the rest run at s_per_step
    return [{"step": s, "elapsed_s": first_elapsed + (s - steps[0]) * s_per_step} for s in steps]


def test_a_row_splits_into_steps_startup_and_decoding(script, tmp_path):
    lines = _log(40 + 50 * 0.5, 0.5, range(50, 301, 50))
    lines.append({"final": {"step": 300, "train_time_s": 40 + 300 * 0.5 + 3}})
    _row(tmp_path, "E12_s0", 200.0, 300, lines)
    (t,) = script.table_times(tmp_path)
    assert t.steps == 300 and t.median_s_per_step == pytest.approx(0.5)
    assert t.step_s == pytest.approx(150) and t.startup_s == pytest.approx(43)
    assert t.decode_s == pytest.approx(200 - 193) and t.earlier_steps == 0


def test_a_resumed_row_reports_its_earlier_segment(script, tmp_path):
    # killed after step 1100 (logged at 574 s), resumed from the 1,000-step checkpoint
    first = _log(60, 0.5, range(50, 1101, 50))
    second = _log(30, 0.4, range(1050, 2001, 50))
    second.append({"final": {"step": 2000, "train_time_s": 30 + 950 * 0.4}})
    _row(tmp_path, "W1_s0", 420.0, 2000, [*first, *second])
    (t,) = script.table_times(tmp_path)
    assert t.steps == 1000 and t.earlier_steps == 1000
    assert t.earlier_s == pytest.approx(first[-1]["elapsed_s"])
    assert t.median_s_per_step == pytest.approx(0.4) and t.step_s == pytest.approx(400)
    text = script.report([t], "test cpu")
    assert "| W1_s0 | 1000 | 420 |" in text and "1000 steps," in text


def test_a_row_interrupted_before_its_first_checkpoint_reports_the_lost_segment(script, tmp_path):
    # killed after step 150 (no checkpoint yet), trained again from step 0
    first = _log(60, 1.5, range(50, 151, 50))
    second = _log(40, 1.6, range(50, 301, 50))
    second.append({"final": {"step": 300, "train_time_s": 40 + 250 * 1.6}})
    _row(tmp_path, "E7_s2", 470.0, 300, [*first, *second])
    (t,) = script.table_times(tmp_path)
    assert t.steps == 300 and t.earlier_steps == 0
    assert t.earlier_s == pytest.approx(first[-1]["elapsed_s"])
    text = script.report([t], "test cpu")
    assert f"| lost, {first[-1]['elapsed_s']:.0f} s |" in text
    assert text.splitlines()[-1].endswith(f"| {first[-1]['elapsed_s'] / 3600:.2f} h |")


def test_an_unfinished_row_and_an_empty_table_are_one_line(script, tmp_path, capsys):
    _row(tmp_path, "B0_s0", 10.0, 300, [{"step": 50, "elapsed_s": 9.0}])  # no final
    assert script.main(["--table", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "metrics.jsonl" in err and "finished" in err
    assert script.main(["--table", str(tmp_path / "nowhere")]) == 2
    assert "no rows" in capsys.readouterr().err
