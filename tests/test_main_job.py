"""The main job's first result (usmlite_edu.course.main_job) and the sample it runs on
(data_small/fsdd_sample, scripts/make_fsdd_sample.py)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from usmlite_edu.speech.corpora import FSDD_SPLIT_INDICES, fsdd_recordings, load_corpus

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data_small" / "fsdd_sample"
B0 = REPO / "results" / "cpu" / "b0"
# One worker runs them all: the module's B0 fixture (about 25 s of compiles) runs once.
pytestmark = pytest.mark.xdist_group("main_job")


from fsdd_location import FSDD, needs_fsdd
from script_loader import load_script


def _script():
    return load_script("make_fsdd_sample")


def _sources() -> list[dict]:
    lines = (SAMPLE / "sources.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, line.split("\t"))) for line in lines[1:]]


# ---------------------------------------------------------------------------- the sample
def test_sample_uses_only_test_recordings():
    rows = _sources()
    make = _script()
    recs = [r for row in rows for r in row["recordings"].split(",")]
    assert recs and all(make.recording_index(r) in FSDD_SPLIT_INDICES["test"] for r in recs)
    # every transcript is the digits of its recordings, in order
    split = load_corpus("fsdd_sample", None, "test")
    text = {u.uid: u.text for u in split}
    digits = "zero one two three four five six seven eight nine".split()
    for row in rows:
        assert text[row["uid"]] == " ".join(digits[int(r[0])] for r in row["recordings"].split(","))
        assert all(f"_{row['speaker']}_" in r for r in row["recordings"].split(","))


def test_sample_loads_and_is_small():
    split = load_corpus("fsdd_sample", None, "test")
    assert 40 <= len(split) <= 80 and not split.skipped and split.sample_rate == 8000
    assert {u.speaker for u in split} >= {"jackson", "lucas", "nicolas", "yweweler", "theo"}
    assert sum(p.stat().st_size for p in SAMPLE.rglob("*")) < 4e6
    for split_name in ("train", "dev"):  # a test sample must never be trainable
        with pytest.raises(ValueError, match="only the split"):
            load_corpus("fsdd_sample", None, split_name)


@needs_fsdd
def test_sample_is_the_builders_test_split_and_deterministic(tmp_path):
    """Rebuilding gives the committed bytes; the seen-speaker part is the whole B0 "test"
    set of the reproduction (load_corpus("fsdd", ..., "test") minus the held-out speaker)."""
    make = _script()
    make.build(FSDD, tmp_path / "a")
    committed = sorted(p.relative_to(SAMPLE) for p in SAMPLE.rglob("*") if p.is_file())
    assert committed == sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    for rel in committed:
        assert (SAMPLE / rel).read_bytes() == (tmp_path / "a" / rel).read_bytes(), rel
    full = load_corpus("fsdd", FSDD, "test", seed=0)
    rows = _sources()
    text = {u.uid: u.text for u in load_corpus("fsdd_sample", SAMPLE, "test")}
    assert sorted(text[r["uid"]] for r in rows if r["b0"] == "seen") == sorted(
        u.text for u in full if u.speaker != "theo"
    )
    used = {r for row in rows for r in row["recordings"].split(",")}
    for split in ("train", "dev"):
        for heldout in (None, "theo"):
            assert not used & {
                r.path.name for r in fsdd_recordings(FSDD, split, heldout_speaker=heldout)
            }


# ------------------------------------------------------------------------- the main job
@pytest.fixture(scope="module")
def ptq(tmp_path_factory):
    from usmlite_edu.course.main_job import ptq_on_sample

    out = tmp_path_factory.mktemp("main_job")
    return out, ptq_on_sample(B0, SAMPLE, out, verbose=False)


def test_ptq_on_sample_writes_table_json_plot(ptq):
    out, res = ptq
    specs = ["float", "int8", "int4", "int2", "int4+2:4"]
    assert [r["spec"] for r in res["rows"]] == specs
    md = (out / "ptq_sample.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| `")]
    assert [line.split("`")[1] for line in table] == specs
    assert json.loads((out / "ptq_sample.json").read_text())["specs"] == specs
    assert (out / "ptq_sample.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "ptq_sample.png").stat().st_size > 10_000


def test_ptq_on_sample_float_b0_recognises_speech(ptq):
    _, res = ptq
    rows = {r["spec"]: r for r in res["rows"]}
    words = rows["float"]["all"]["words"]
    assert words == sum(len(t.split()) for t in res["references"].values()) > 150
    # A broken pipeline (features, tokenizer, decoding, checkpoint) gives 50-100%.
    assert rows["float"]["all"]["wer"] < 20
    # The seen-speaker part is B0's "test" set of results/cpu: same WER within one word
    # (the sample is 16-bit FLAC of the same audio).
    repro = json.loads((REPO / "results" / "cpu" / "results.json").read_text())
    b0 = next(r for r in repro["runs"] if r["exp"] == "B0" and r["seed"] == 0)
    seen = rows["float"]["seen"]
    assert abs(seen["wer"] - b0["results"]["test"]["wer"]) <= 100 / seen["words"] + 1e-9
    for r in res["rows"]:  # every number consistent with its counts
        a = r["all"]
        assert a["errors"] == round(a["wer"] * a["words"] / 100)
        assert set(res["hypotheses"][r["spec"]]) == set(res["references"])


def test_ptq_on_sample_sizes_in_order(ptq):
    _, res = ptq
    rows = {r["spec"]: r for r in res["rows"]}
    order = ["float", "int8", "int4", "int4+2:4", "int2"]  # largest to smallest
    for key in ("size_paper", "size_exact", "exact_bytes"):
        vals = [rows[s][key] for s in order]
        assert vals == sorted(vals, reverse=True) and len(set(vals)) == len(vals), key
    assert rows["float"]["size_paper"] == pytest.approx(100.0)
    assert rows["float"]["exact_bytes"] == 4 * res["params"]


@pytest.mark.slow
def test_main_job_notebook_step(tmp_path, capfd):
    """The main job's notebook step (usmlite_edu.course.main_job.run_notebooks, what `make run`
    ends with) on two real notebooks in fast mode, two at a time as the job runs them: 01,
    and 10 (the ipywidgets explorer and its PTQ button, the one that once stalled). Executed
    copies land in out/notebooks."""
    from usmlite_edu.course.main_job import run_notebooks

    assert run_notebooks(tmp_path, names=["01_", "10_"]) == 0
    out = capfd.readouterr().out  # "executed ..." comes from the worker processes
    assert "== Notebooks, executed headless (tiny sizes) ==" in out
    done = sorted(p.name for p in (tmp_path / "notebooks").glob("*.ipynb"))
    assert done == [
        "01_per_channel_quantization.ipynb",
        "10_quantization_error_explorer.ipynb",
    ], out
    for name in done:
        assert f"executed {name} in" in out, out
    nb = nbformat.read(tmp_path / "notebooks" / done[1], as_version=4)
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    # the set-up cell ran in fast mode; the explorer's check cell ran to its end
    assert "FAST=True" in text and "explorer: " in text


def test_main_job_ends_with_where_its_outputs_are(tmp_path, monkeypatch, capsys):
    """The job's last lines: one block naming each output and each step's time."""
    from usmlite_edu.course import main_job

    monkeypatch.setattr(main_job, "ptq_on_sample", lambda *a, **k: None)  # tested above
    assert main_job.run(tmp_path, notebooks=False) == 0
    out = capsys.readouterr().out
    block = out[out.index("== Main job done in") :]
    for name in ("sizes.md", "ptq_sample.md", "ptq_sample.json", "ptq_sample.png"):
        assert str(tmp_path / name) in block
    assert "step times: size table" in block and "PTQ" in block and "notebooks" not in block
    assert (tmp_path / "sizes.md").read_text().count("\n| ") == 18  # header + 17 rows


# ------------------------------------------------------------- the AN4 pair of the job
@pytest.fixture(scope="module")
def ptq_an4(tmp_path_factory):
    from usmlite_edu.course.main_job import ptq_on_sample

    out = tmp_path_factory.mktemp("main_job_an4")
    return out, ptq_on_sample(None, None, out, sample="an4", verbose=False)


def test_ptq_an4_float_row_is_b0s_test_wer_beside_espnet(ptq_an4):
    """The job's float row on the shipped test set is B0's committed test WER (the same
    130 utterances, within one word), and ESPnet's 7.6% stands beside it."""
    out, res = ptq_an4
    rows = {r["spec"]: r for r in res["rows"]}
    committed = json.loads((REPO / "results" / "an4" / "b0_test.json").read_text())
    assert rows["float"]["all"]["utterances"] == committed["utterances"] == 130
    words = rows["float"]["all"]["words"]
    assert words == 773  # AN4's test set, as ESPnet counts it
    assert abs(rows["float"]["all"]["wer"] - committed["wer"]) <= 100 / words + 1e-9
    md = (out / "ptq_an4.md").read_text()
    table = md.splitlines()
    i = next(k for k, line in enumerate(table) if line.startswith("| `float`"))
    assert "ESPnet" in table[i + 1] and "7.6" in table[i + 1]
    order = ["float", "int8", "int4", "int4+2:4", "int2"]
    sizes_ = [rows[s]["exact_bytes"] for s in order]
    assert sizes_ == sorted(sizes_, reverse=True)
