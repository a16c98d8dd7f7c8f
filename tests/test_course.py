"""The series as a course: every notebook has a plan, measured run times, and a header
with working badges and a Colab install cell; the README's lecture map is the plan's."""

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from usmlite_edu.course import notebook_runner
from usmlite_edu.course import plan as course

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = notebook_runner.list_notebooks(ROOT / "notebooks")


def test_every_notebook_has_a_plan_and_a_measured_run_time():
    times = course.run_times()
    for path in NOTEBOOKS:
        number = path.name[:2]
        assert number in course.PLAN, f"{path.name}: add it to usmlite_edu.course.plan.PLAN"
        assert "fast" in times["notebooks"].get(number, {}), (
            f"{path.name}: no fast-mode time; run python scripts/time_notebooks.py --mode fast {number}"
        )
    assert set(course.PLAN) == {p.name[:2] for p in NOTEBOOKS}, "a plan for a missing notebook"
    assert times["machine"], "run times say where they were measured"


def test_headers_are_up_to_date():
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "notebook_header.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_header_links_to_this_notebook(path):
    nb = nbformat.read(path, as_version=4)
    url = course.repository_url()
    gh = url.removeprefix("https://github.com/")
    (header,) = [c for c in nb.cells if "header" in c.metadata.get("tags", [])]
    assert nb.cells.index(header) == 1, "the header follows the title"
    assert (
        f"colab.research.google.com/github/{gh}/blob/main/notebooks/{path.name})" in header.source
    )
    assert f"mybinder.org/v2/gh/{gh}/main?labpath=notebooks%2F{path.name})" in header.source
    for field in ("Before you start:", "Reading time:", "Running time:"):
        assert field in header.source
    (colab,) = [c for c in nb.cells if "colab" in c.metadata.get("tags", [])]
    following = nb.cells[nb.cells.index(colab) + 1]
    assert "from usmlite_edu.course.notebook_setup import setup" in following.source
    assert colab.source == course.colab_cell(url)


def test_colab_cell_does_nothing_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    exec(compile(course.colab_cell(course.repository_url()), "colab", "exec"), {})
    assert Path.cwd() == tmp_path and sys.path == before and not list(tmp_path.iterdir())


def test_badges_refuse_a_repository_off_github():
    with pytest.raises(ValueError, match="not on github.com"):
        course.badges_markdown("01_x.ipynb", "https://gitlab.com/a/b")


def test_readme_lecture_map_is_the_plan():
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- lecture-map:start -->\n(.*?)\n<!-- lecture-map:end -->", readme, re.S)
    assert m, "README lacks the lecture map markers"
    assert m.group(1).strip() == course.lecture_map().strip(), (
        "README's lecture map is stale: paste usmlite_edu.course.plan.lecture_map()"
    )


def test_readme_shows_the_badges_of_the_first_notebook():
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- badges:start -->\n(.*?)\n<!-- badges:end -->", readme, re.S)
    assert m, "README lacks the badges markers"
    assert m.group(1).strip() == course.badges_markdown(NOTEBOOKS[0].name, course.repository_url())


def test_binder_builds_from_the_environment_file():
    assert (ROOT / "environment.yml").exists()
    post = (ROOT / "postBuild").read_text()
    assert "pip install --no-deps -e ." in post
    assert not (ROOT / "binder").exists(), (
        "a binder/ folder would make Binder ignore the root files"
    )


def test_find_corpus_takes_the_first_complete_copy(tmp_path, monkeypatch):
    from usmlite_edu.course.notebook_setup import find_corpus

    monkeypatch.delenv("USMLITE_DATA", raising=False)
    repo = tmp_path / "clone"
    repo.mkdir()
    assert find_corpus("an4", None, "None", tmp_path / "nowhere", repo=repo) is None
    shared = tmp_path / "shared" / "corpora" / "an4" / "etc"
    shared.mkdir(parents=True)
    assert find_corpus("an4", repo=repo) is None  # a folder without the transcription
    (shared / "an4_train.transcription").write_text("")
    assert find_corpus("an4", repo=repo) == shared.parent
    other = tmp_path / "data" / "an4" / "etc"
    other.mkdir(parents=True)
    (other / "an4_train.transcription").write_text("")
    monkeypatch.setenv("USMLITE_DATA", str(tmp_path / "data"))  # the env wins, DIR/an4 found
    assert find_corpus("an4", repo=repo) == other.parent


def test_a_header_names_the_machine_of_each_running_time():
    # run_times.json keeps each figure's machine: a re-timed notebook must not relabel the
    # others, and a header whose two figures come from different machines names both.
    url = "https://github.com/usmlite-edu/usmlite_edu"
    one = {"machine": "AMD, 2 cores", "notebooks": {"07": {"fast": 43.0, "full": 362.0}}}
    h = course.header_markdown("07_compression_aware_finetuning.ipynb", url, one, 45)
    assert "43 s in fast mode; 6 min in full mode (AMD, 2 cores;" in h
    two = {
        "machine": "AMD, 2 cores",
        "notebooks": {"07": {"fast": 43.0, "full": 362.0, "machine": {"full": "Intel, 2 cores"}}},
    }
    h = course.header_markdown("07_compression_aware_finetuning.ipynb", url, two, 45)
    assert "43 s in fast mode (AMD, 2 cores); 6 min in full mode (Intel, 2 cores)" in h
