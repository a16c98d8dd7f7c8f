"""The notebook runner's handling of stalls (usmlite_edu.course.notebook_runner.run_all): a cell past
its time limit or a dead kernel is reported and the notebook retried once in a fresh kernel;
a failing cell is never retried. Tiny generated notebooks, a few kernel starts each."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

from usmlite_edu.course import notebook_runner
from usmlite_edu.course.notebook_runner import CELL_TIMEOUT_S, NotebookStalled

REPO = Path(__file__).resolve().parents[1]
LIMIT = 6  # seconds per cell in these tests: the cells that should finish take milliseconds


def _notebook(directory: Path, name: str, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_markdown_cell("A generated test notebook")]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    nbformat.write(nb, path)
    return path


# Runs in the notebook's folder (the kernel's working directory): counts its executions in
# a file, so that a test can tell the first run from the retry.
COUNT = """from pathlib import Path
runs = Path("runs.txt")
n = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(n))
print("execution", n)"""


def _outputs(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_a_cell_that_hangs_once_is_retried_in_a_fresh_kernel(tmp_path, capsys):
    d = tmp_path / "nb"
    _notebook(d, "01_hangs_once.ipynb", COUNT, "import time\nif n == 1:\n    time.sleep(600)")
    assert notebook_runner.run_all(None, directory=d, out_dir=tmp_path / "out", timeout=LIMIT) == 0
    out = capsys.readouterr().out
    # reported with the notebook, the cell (1-based, the markdown cell is 1) and its code
    assert (
        "STALLED 01_hangs_once.ipynb: a cell ran past the 6 s limit at cell 3 (`import time`" in out
    )
    assert "had reported the cell busy" in out  # the kernel was computing, not lost
    assert "retrying 01_hangs_once.ipynb in a fresh kernel" in out
    assert "executed 01_hangs_once.ipynb in" in out and "(on try 2)" in out
    assert "stalled once and passed on retry: 01_hangs_once.ipynb" in out
    assert (d / "runs.txt").read_text() == "2"  # the retry ran from the top, once
    assert "execution 2" in _outputs(tmp_path / "out" / "01_hangs_once.ipynb")


def test_a_dead_kernel_is_retried_and_a_notebook_that_stalls_twice_fails_clearly(tmp_path, capsys):
    d = tmp_path / "nb"
    _notebook(d, "01_dies_once.ipynb", COUNT, "import os\nif n == 1:\n    os._exit(1)")
    _notebook(d, "02_always_dies.ipynb", "import os\nos._exit(1)")
    with pytest.raises(NotebookStalled) as e:
        notebook_runner.run_all(None, directory=d, out_dir=tmp_path / "out", timeout=LIMIT)
    out = capsys.readouterr().out
    assert "STALLED 01_dies_once.ipynb: the kernel died at cell 3 (`import os`" in out
    assert "executed 01_dies_once.ipynb in" in out and (d / "runs.txt").read_text() == "2"
    assert out.count("STALLED 02_always_dies.ipynb: the kernel died at cell 2") == 1
    msg = str(e.value)
    assert msg.startswith("02_always_dies.ipynb: the kernel died at cell 2 (`import os` ...)")
    assert msg.endswith("gave up after 2 tries)")
    assert e.value.cell == 2 and e.value.path.name == "02_always_dies.ipynb"


def test_a_failing_cell_is_not_retried(tmp_path, capsys):
    d = tmp_path / "nb"
    _notebook(d, "01_fails.ipynb", COUNT, "assert n == 0, 'a check cell fails'")
    _notebook(d, "02_never_reached.ipynb", COUNT)
    with pytest.raises(CellExecutionError, match="a check cell fails"):
        notebook_runner.run_all(None, directory=d, out_dir=tmp_path / "out", timeout=LIMIT)
    out = capsys.readouterr().out
    assert (d / "runs.txt").read_text() == "1"  # neither retried nor the next one run
    assert "STALLED" not in out and "retrying" not in out and "executed" not in out


def test_cell_time_limits_leave_room_over_the_recorded_run_times():
    """A cell may run at least 3x the slowest notebook's *whole* recorded run time (2 shared
    cores) in each mode: a slow machine is not mistaken for a stall."""
    times = json.loads((REPO / "notebooks" / "run_times.json").read_text())["notebooks"]
    for mode, fast in (("fast", True), ("full", False)):
        slowest = max(t[mode] for t in times.values())
        assert CELL_TIMEOUT_S[fast] >= 3 * slowest, (mode, slowest)


def test_two_at_a_time_runs_every_notebook_with_the_kernel_env(tmp_path, capfd):
    """jobs=2 (the main job's setting): every notebook is executed, each kernel sees
    USMLITE_FAST and kernel_env, and this process's environment is left as it was."""
    d = tmp_path / "nb"
    show = "import os\nprint('env', os.environ['USMLITE_FAST'], os.environ.get('USMLITE_TEST_VAR'))"
    for name in ("01_a.ipynb", "02_b.ipynb", "03_c.ipynb"):
        _notebook(d, name, show)
    before = dict(os.environ)
    out_dir = tmp_path / "out"
    assert (
        notebook_runner.run_all(
            None,
            directory=d,
            out_dir=out_dir,
            timeout=LIMIT * 5,
            jobs=2,
            kernel_env={"USMLITE_TEST_VAR": "yes"},
        )
        == 0
    )
    out = capfd.readouterr().out  # printed by the worker processes
    for name in ("01_a.ipynb", "02_b.ipynb", "03_c.ipynb"):
        assert f"executed {name} in" in out, out
        assert "env 1 yes" in _outputs(out_dir / name)
    assert dict(os.environ) == before


def test_two_at_a_time_a_failing_cell_stops_the_queue(tmp_path):
    d = tmp_path / "nb"
    _notebook(d, "01_fails.ipynb", COUNT, "assert n == 0, 'a check cell fails'")
    _notebook(d, "02_fails_too.ipynb", "assert False, 'the second one fails too'")
    _notebook(d, "03_never_reached.ipynb", "open('reached', 'w').close()")
    with pytest.raises(CellExecutionError, match="fails"):
        notebook_runner.run_all(None, directory=d, out_dir=tmp_path / "out", timeout=LIMIT, jobs=2)
    assert not (d / "reached").exists()  # no notebook starts after a failure
    assert (d / "runs.txt").read_text() == "1"  # never retried


def test_recorded_seconds_reads_run_times():
    nb = REPO / "notebooks" / "07_compression_aware_finetuning.ipynb"
    times = json.loads((REPO / "notebooks" / "run_times.json").read_text())["notebooks"]
    assert notebook_runner.recorded_seconds(nb, True) == times["07"]["fast"]
    assert notebook_runner.recorded_seconds(Path("/nowhere/99_x.ipynb"), True) == 0.0


def test_a_stall_reported_by_a_worker_process_keeps_its_fields():
    import pickle

    e = NotebookStalled(Path("01_x.ipynb"), 3, "`import time`", "busy", "a cell ran past")
    e.args = (f"{e} (gave up after 2 tries)",)
    back = pickle.loads(pickle.dumps(e))
    assert (back.cell, back.source, back.path, str(back)) == (3, e.source, e.path, str(e))
