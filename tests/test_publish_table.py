"""scripts/publish_table.py copies a reproduction's outputs and the rows its results.json
names, and writes the table into the README between its markers (synthetic files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_loader import load_script

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    return load_script("publish_table")


README = (
    "# t\n\nstatus\n\n<!-- results-table:start -->\n| old |\n<!-- results-table:end -->\n\nend\n"
)


def _table(d: Path) -> Path:
    (d / "rows").mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({"preset": "an4", "runs": [{"key": "B0_s0"}]}))
    for key in ("B0_s0", "B0_s1"):  # B0_s1: a seed still running, not in results.json
        (d / "rows" / f"{key}.json").write_text(json.dumps({"key": key}))
    for f in ("table.csv", "claims.md", "plot.png"):
        (d / f).write_text(f)
    (d / "table.md").write_text("Made by ...\n\n| exp | WER |\n|---|---|\n| B0 | 19.28 |\n")
    return d


def test_it_copies_the_named_rows_and_writes_the_table_into_the_readme(script, tmp_path):
    table, to = _table(tmp_path / "table"), tmp_path / "results"
    to.mkdir()
    (to / "README.md").write_text(README)
    assert script.main(["--table", str(table), "--to", str(to)]) == 0
    assert sorted(p.name for p in (to / "rows").iterdir()) == ["B0_s0.json"]
    assert (to / "claims.md").read_text() == "claims.md"
    text = (to / "README.md").read_text()
    assert "| old |" not in text and "| B0 | 19.28 |" in text and text.endswith("end\n")
    assert "Made by" not in text  # only the table's lines go between the markers


def test_a_missing_row_or_marker_copies_nothing(script, tmp_path, capsys):
    table, to = _table(tmp_path / "table"), tmp_path / "results"
    to.mkdir()
    (to / "README.md").write_text("# no markers\n")
    assert script.main(["--table", str(table), "--to", str(to)]) == 2
    assert "markers" in capsys.readouterr().err and not (to / "rows").exists()
    (to / "README.md").write_text(README)
    (table / "rows" / "B0_s0.json").unlink()
    assert script.main(["--table", str(table), "--to", str(to)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rows/B0_s0.json" in err
    assert (to / "README.md").read_text() == README and not (to / "rows").exists()
