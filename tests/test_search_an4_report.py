"""scripts/search_an4.py's report: pooled WERs, paired verdicts and the lossless ratio,
computed from the transcripts it is given (synthetic records; no training)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from script_loader import load_script

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    return load_script("search_an4")


N = 60  # utterances per split
REF = "a b c d e"


def _utts(split: str, wrong: int) -> list[dict]:
    # the first `wrong` utterances lose one word of five
    return [
        {"id": f"{split}{i}", "ref": REF, "hyp": "a b c d" if i < wrong else REF} for i in range(N)
    ]


def _splits(wrong: int) -> dict:
    return {
        s: {"utterances": _utts(s, wrong), "wer": 100.0 * wrong / (5 * N)} for s in ("dev", "test")
    }


def _write(tmp: Path, seeds, wrong: dict[str, int]) -> argparse.Namespace:
    table, out = tmp / "table", tmp / "out"
    (table / "rows").mkdir(parents=True)
    for s in seeds:
        for exp, spec in (("B0", "float"), ("E12", "int4+2:4"), ("E2", "int4")):
            rec = {"exp": exp, "seed": s, "spec": spec, "results": _splits(wrong[exp])}
            (table / "rows" / f"{exp}_s{s}.json").write_text(json.dumps(rec))
        d = out / f"E12_s{s}"
        d.mkdir(parents=True)
        methods = {
            m: {"compression_s": 100.0 + k, "splits": _splits(wrong[m])}
            for k, m in enumerate(("two_stage", "one_stage_pass1", "one_stage_pass2"))
        }
        res = {
            "methods": methods,
            "size_paper": 9.0,
            "size_exact": 11.0,
            "layers": [{"spec": "int4"}, {"spec": "int2"}],
            "machine": {"processor": "test cpu"},
            "git_commit": "abc",
        }
        (d / "result.json").write_text(json.dumps(res))
        (d / "uniform_time.json").write_text(json.dumps({"train_time_s": 50.0}))
    return argparse.Namespace(table=str(table), out=str(out), seeds=list(seeds))


def test_report_reads_the_transcripts(tmp_path, script):
    # pass 2 is perfect, pass 1 far worse than uniform, two-stage equal to uniform
    wrong = {
        "B0": 0,
        "E12": 20,
        "E2": 40,
        "two_stage": 20,
        "one_stage_pass1": 50,
        "one_stage_pass2": 0,
    }
    args = _write(tmp_path, (0, 1, 2), wrong)
    rec = script.render(args)
    by = {m["model"]: m for m in rec["models"]}
    assert by["uniform"]["test"]["wer"] == pytest.approx(100 * 20 / 300)
    assert by["one_stage_pass2"]["dev"]["wer"] == 0.0
    assert (
        by["uniform"]["compression_s"] == 50.0 and by["one_stage_pass1"]["compression_s"] == 101.0
    )
    assert by["uniform"]["size_paper"] == pytest.approx(9.375)
    cmp = {(c["model"], c["baseline"]): c for c in rec["comparisons"]}
    same = cmp[("two_stage", "uniform")]["test"]
    assert same["difference"] == 0.0 and same["verdict"] == "not reproduced"  # better? no: equal
    p2 = cmp[("one_stage_pass2", "uniform")]["test"]
    assert p2["hi"] < 0 and p2["verdict"] == "reproduced"
    p1 = cmp[("one_stage_pass1", "two_stage")]["dev"]
    assert p1["lo"] > 1 and p1["verdict"] == "not reproduced"
    # lossless: the smallest model not worse than B0 is pass 2 (9.0% < E12's 9.375%)
    loose = [r for r in rec["largest_lossless"] if r["rule"] == "not significantly worse"]
    assert {r["row"] for r in loose} == {"one-stage Pass 2"}
    text = (Path(args.out) / "README.md").read_text()
    assert "| one-stage Pass 2 (Pass 1 fine-tuned) | 9.00 / 11.00 |" in text
    assert "**reproduced**" in text and "largest lossless" in text
    assert json.loads((Path(args.out) / "results.json").read_text())["seeds"] == [0, 1, 2]


def test_render_refuses_missing_seeds(tmp_path, script):
    args = _write(
        tmp_path,
        (0,),
        dict.fromkeys(("B0", "E12", "E2", "two_stage", "one_stage_pass1", "one_stage_pass2"), 0),
    )
    args.seeds = [0, 1]
    with pytest.raises(SystemExit, match="E12_s1"):
        script.render(args)


def test_render_waits_for_the_tables_rows(tmp_path, script):
    args = _write(
        tmp_path,
        (0,),
        dict.fromkeys(("B0", "E12", "E2", "two_stage", "one_stage_pass1", "one_stage_pass2"), 0),
    )
    (Path(args.table) / "rows" / "E12_s0.json").unlink()
    with pytest.raises(SystemExit, match="no row E12_s0"):
        script.render(args)
