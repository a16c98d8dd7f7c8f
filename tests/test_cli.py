"""The command line prints the size table and refuses bad input with a clear message."""

import subprocess
import sys

from usmlite_edu import cli


def test_sizes_table(capsys):
    assert cli.main(["sizes"]) == 0
    out = capsys.readouterr().out
    assert "| E12 | int4 QAT + 2:4 one-shot | `int4+2:4` | 9.4% | 9.38% |" in out
    assert out.count("\n| ") == 18  # header + 17 rows


def test_sizes_spec_and_error(capsys):
    assert cli.main(["sizes", "--spec", "int2/g64"]) == 0
    assert "paper 10.42%" in capsys.readouterr().out
    assert cli.main(["sizes", "--spec", "3:2"]) == 2
    assert "n=3 > m=2" in capsys.readouterr().err


def test_entry_point_runs_as_module():
    r = subprocess.run(
        [sys.executable, "-m", "usmlite_edu", "sizes", "--spec", "int8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "paper 25.00%" in r.stdout
