"""The committed reproductions (``results/cpu``, ``results/an4``) are complete, consistent
and recomputable.

What the tables' readers rely on, checked on the files as committed (no training):
every row of the plan ran every seed; every row keeps every utterance's reference and
hypothesis for dev, test and unseen, and jiwer on them gives the WER the row reports;
``results.json``'s claims are what :func:`usmlite_edu.training.claims.judge` gives on the rows;
``claims.md`` shows each claim with its interval and verdict; the run's commit is on this
branch. ``USMLITE_TEST_RESULTS=DIR`` checks another reproduction's output instead.

Both tables hold three seeds (``MIN_SEEDS``): ``results/an4`` landed seed by seed across
sessions, and its README says how; a table committed with fewer seeds or a missing row fails.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import jiwer
import pytest

from usmlite_edu.training import claims, reproduce

REPO = Path(__file__).resolve().parents[1]
TABLES = (
    [Path(os.environ["USMLITE_TEST_RESULTS"])]
    if os.environ.get("USMLITE_TEST_RESULTS")
    else [REPO / "results" / "cpu", REPO / "results" / "an4"]
)
#: seeds a committed table must hold, by preset
MIN_SEEDS = {"cpu": 3, "an4": 3}


@pytest.fixture(scope="module", params=TABLES, ids=lambda p: p.name)
def table(request) -> Path:
    return request.param


@pytest.fixture(scope="module")
def results(table) -> dict:
    path = table / "results.json"
    if not path.exists():
        pytest.skip(f"no reproduction at {table}")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def rows(table) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((table / "rows").glob("*.json"))]


def test_every_row_of_the_plan_ran_every_seed(results, rows):
    preset = results["preset"]
    seeds = tuple(results["config"]["seeds"])
    assert seeds and len(seeds) >= MIN_SEEDS.get(preset, 2), seeds
    have = {(r["exp"], r["seed"]) for r in rows}
    want = {(r.exp, r.seed) for r in reproduce.plan(preset) if r.seed in seeds}
    assert have == want, (sorted(want - have), sorted(have - want))
    assert {r["key"] for r in results["runs"]} == {f"{e}_s{s}" for e, s in have}


def test_every_row_keeps_its_transcripts_and_jiwer_gives_its_wer(results, rows):
    splits = {"dev", "test"} | ({"unseen"} if results["preset"] == "cpu" else set())
    checked = 0
    for rec in rows:
        res = rec["results"]
        assert splits <= set(res), (rec["key"], sorted(res))
        for split in splits:
            utts = res[split]["utterances"]
            assert len(utts) == res[split]["n_utterances"] > 0, (rec["key"], split)
            assert all(set(u) >= {"id", "ref", "hyp"} for u in utts)
            assert len({u["id"] for u in utts}) == len(utts), "utterance ids are unique"
            refs = [u["ref"] if u["ref"].strip() else "<empty>" for u in utts]
            wer = 100.0 * jiwer.wer(refs, [u["hyp"] for u in utts])
            assert wer == pytest.approx(res[split]["wer"], abs=1e-9), (rec["key"], split)
            checked += 1
    print(f"{checked} row/seed/split WERs recomputed with jiwer")


def test_rows_of_a_seed_are_scored_on_the_same_utterances(rows):
    ids: dict = {}
    for rec in rows:
        for split, r in rec["results"].items():
            if isinstance(r, dict) and "utterances" in r:
                key = (rec["seed"], split)
                got = [u["id"] for u in r["utterances"]]
                assert ids.setdefault(key, got) == got, (rec["key"], split)


def test_claims_are_the_library_judgement_of_the_rows(table, results, rows):
    stored = {c["key"]: c for c in results["claims"]}
    assert set(stored) == {c.key for c in claims.CLAIMS}
    text = (table / "claims.md").read_text()
    for j in claims.judge(rows):
        c = stored[j.claim.key]
        assert c["verdicts"] == j.verdicts, j.claim.key
        for split, iv in j.differences.items():
            d = c["differences"][split]
            assert (d["estimate"], d["lo"], d["hi"]) == pytest.approx(
                (iv.estimate, iv.lo, iv.hi), abs=1e-9
            ), (j.claim.key, split)
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {j.claim.key} "))
        judged = j.verdicts.get("test")
        assert judged and f"**{judged}**" in line, line
        iv = j.differences["test"]
        assert f"{iv.estimate:+.2f} [{iv.lo:+.2f}, {iv.hi:+.2f}]" in line, line


def test_the_run_names_a_commit_of_this_branch(results):
    commits = results.get("git_commits") or [results["git_commit"]]
    assert all(c and not c.endswith("-dirty") for c in commits), commits
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    for c in commits:
        ok = subprocess.run(
            ["git", "merge-base", "--is-ancestor", c, "HEAD"], cwd=REPO, capture_output=True
        )
        if ok.returncode == 128 and b"shallow" in ok.stderr + ok.stdout:
            pytest.skip("shallow clone")
        assert ok.returncode == 0, f"{c} is not an ancestor of HEAD: {ok.stderr.decode()}"


def test_published_b0_is_seed_0(table, results):
    meta = json.loads((table / "b0" / "config.json").read_text())
    rec = next(r for r in results["runs"] if r["exp"] == "B0" and r["seed"] == 0)
    assert meta["spec"] == "float" and meta.get("heldout_speaker") == rec["heldout_speaker"]
    assert (table / "b0" / "params").is_dir() and (table / "b0" / "tokenizer").is_dir()


def test_results_readme_shows_the_committed_table(table, results):
    # the table's README shows table.md as committed (no hand-edited numbers).
    if table.parent != REPO / "results":
        pytest.skip("checking another reproduction")
    lines = [ln for ln in (table / "table.md").read_text().splitlines() if ln.startswith("|")]
    readme = (table / "README.md").read_text()
    start, end = "<!-- results-table:start -->", "<!-- results-table:end -->"
    assert start in readme and end in readme
    shown = readme.split(start, 1)[1].split(end, 1)[0]
    assert [ln for ln in shown.splitlines() if ln.startswith("|")] == lines
