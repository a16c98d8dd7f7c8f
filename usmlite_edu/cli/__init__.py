"""The ``usmlite-edu`` command line: sizes, data, training, evaluation, packed export,
the reproduction of USM-Lite's Tables 1-3, the notebooks, and the project's main job.

Every training-related command takes ``--preset NAME`` and any number of
``--set SECTION.FIELD=VALUE`` overrides (``train.peak_lr=1e-3``, ``model.dropout=0.1``,
``reproduce.finetune_steps=50``); see ``usmlite_edu.speech.presets``.

Exit codes:

* 0: everything asked for was done, every input used.
* 2 (:data:`EXIT_REFUSED`): refused before or during the work, one line on stderr
  (a bad setting or spec, missing data, a run directory that holds another run, ...).
* 3 (:data:`EXIT_INPUTS_FAILED`): ``transcribe`` or ``eval`` finished, but at least one
  input failed (an unreadable, truncated, flat or too-short file, an utterance skipped);
  the last line on stderr counts them ("2 of 5 files failed").
* 4 (:data:`EXIT_TOO_MANY_SKIPPED`): ``train`` or ``reproduce`` finished and wrote its
  outputs, but skipped more than ``usmlite_edu.training.train.MAX_SKIP_SHARE`` (5%) of a split;
  stderr names each such split.
* 5 (:data:`EXIT_DOES_NOT_COMPILE`): ``plan`` printed its plan, but the step did not
  compile for that mesh (the compiler's message, e.g. out of memory, is printed).
* 0 also when stdout's reader closed the pipe (``usmlite-edu transcribe ... | head``):
  the command stops quietly at the first write that fails.
* 130: interrupted (a training run resumes when started again with the same ``--out``).
"""

from __future__ import annotations

import argparse
import os
import sys

from usmlite_edu import enable_compilation_cache

# One module per command: each has add_parser(sub) and run(args); importing them is cheap
# (what needs jax is imported in run), so --help stays fast.
from usmlite_edu.cli import (
    book,
    data,
    evaluate,
    export,
    grade,
    main_job,
    notebooks,
    plan,
    reproduce,
    search,
    sizes,
    slides,
    train,
    transcribe,
)
from usmlite_edu.cli.common import (
    EXIT_DOES_NOT_COMPILE,
    EXIT_INPUTS_FAILED,
    EXIT_REFUSED,
    EXIT_TOO_MANY_SKIPPED,
)

__all__ = [
    "main",
    "build_parser",
    "EXIT_REFUSED",
    "EXIT_INPUTS_FAILED",
    "EXIT_TOO_MANY_SKIPPED",
    "EXIT_DOES_NOT_COMPILE",
]

#: in the order `usmlite-edu --help` lists them
COMMANDS = (
    sizes,
    notebooks,
    book,
    slides,
    grade,
    train,
    export,
    evaluate,
    transcribe,
    reproduce,
    search,
    plan,
    data,
    main_job,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="usmlite-edu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    enable_compilation_cache()  # a global JAX setting: the CLI opts in, importing does not
    try:
        return args.func(args)
    except BrokenPipeError:  # the reader of stdout went away (`... | head`): stop quietly
        _silence_stdout()
        return 0
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # bad input: one clear line
        print(f"usmlite-edu: error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print(
            "usmlite-edu: interrupted; a training run resumes from its last checkpoint "
            "when started again with the same --out",
            file=sys.stderr,
        )
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's flush at exit does not hit
    the closed pipe again (and print "Exception ignored ... BrokenPipeError")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file behind stdout: nothing to do
        pass


if __name__ == "__main__":
    raise SystemExit(main())
