"""Execute the teaching notebooks headless (``usmlite-edu notebooks``).

Each notebook reads ``USMLITE_FAST`` (through :func:`usmlite_edu.course.notebook_setup.setup`):
``1`` swaps in tiny sizes so the whole series runs in the test command; ``0`` (the default
for this runner's ``--full``) runs the sizes a learner sees in JupyterLab.

The notebooks are not part of the installed package: they live in ``notebooks/`` of a clone
of the repository. A wheel install therefore finds them only from a clone's working
directory or with an explicit directory.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from usmlite_edu.speech.paths import find_checkout


def default_directory() -> Path:
    """``./notebooks`` of the working directory if present, else ``notebooks/`` of the clone
    the working directory is in, else ``./notebooks`` (which then holds nothing to run)."""
    here = Path.cwd() / "notebooks"
    if here.is_dir():
        return here
    root = find_checkout()
    return root / "notebooks" if root is not None else here


def list_notebooks(directory: Path | str | None = None) -> list[Path]:
    """The series' notebooks (``NN_name.ipynb``) in ``directory``, in order; may be empty."""
    directory = Path(directory) if directory is not None else default_directory()
    return sorted(directory.glob("[0-9][0-9]_*.ipynb"))


#: Seconds one cell may run before the runner gives up on it (see :func:`run_all`). Fast
#: mode: the slowest cell takes 63 s (07's fine-tuning, 76 s for the whole notebook;
#: notebooks/run_times.json, 2 cores) and runs 5-7x slower when the cores are shared with
#: training (the main job saw 61 s for 01's 9 s), so 10 min. Full mode: the slowest
#: notebook takes 2050 s whole (11, mostly one training cell), so 3 hours, as the book
#: build allows.
CELL_TIMEOUT_S = {True: 600, False: 3 * 3600}


class NotebookStalled(RuntimeError):
    """A notebook whose kernel timed out on a cell or died (not a failing cell: that raises
    ``nbclient.exceptions.CellExecutionError``). ``cell`` is the 1-based index of the cell
    in the notebook (``None``: while starting the kernel); ``state`` what the kernel had
    reported about that cell; the ``nbclient`` error is the ``__cause__``."""

    def __init__(self, path: Path, cell: int | None, source: str, state: str, what: str):
        self.path, self.cell, self.source, self.state, self.what = path, cell, source, state, what
        where = "while starting its kernel" if cell is None else f"at cell {cell} ({source})"
        super().__init__(f"{path.name}: {what} {where}; {state}")

    def __reduce__(self):  # pickled back from a worker process of run_all(jobs > 1)
        return _stalled_again, (self.path, self.cell, self.source, self.state, self.what, self.args)


def _stalled_again(path, cell, source, state, what, args) -> NotebookStalled:
    e = NotebookStalled(path, cell, source, state, what)
    e.args = args
    return e


_STATE = {
    None: "the kernel was given no cell yet",
    "sent": "the kernel never acknowledged the cell (no 'busy' status: the request was lost)",
    "busy": "the kernel had reported the cell busy (still running, or stuck in it)",
    "idle": "the kernel had reported the cell finished (idle) but its execute_reply never came",
}


def _first_line(source: str) -> str:
    """The cell's first line of code (its first line if all are comments), shortened."""
    lines = [ln.strip() for ln in source.splitlines() if ln.strip()]
    code = [ln for ln in lines if not ln.startswith("#")] or lines or [""]
    more = " ..." if len(code[0]) > 70 or len(lines) > 1 else ""
    return f"`{code[0][:70]}`{more}"


def execute(
    path: Path,
    out_dir: Path | None = None,
    fast: bool = True,
    timeout: int = 900,
    *,
    kernel_env: dict[str, str] | None = None,
) -> Path:
    """Run every cell of ``path`` top to bottom in a fresh kernel; write the executed copy
    to ``out_dir``. ``timeout``: seconds each cell may run. ``kernel_env``: variables set
    for the kernel on top of this process's environment (e.g. ``XLA_FLAGS``).

    Raises ``nbclient.exceptions.CellExecutionError`` (with the failing cell's traceback)
    if any cell fails, including a check cell's ``assert``, and :class:`NotebookStalled`
    (naming the cell and what the kernel had reported about it) if a cell runs past
    ``timeout`` (``nbclient``'s ``CellTimeoutError``), the kernel dies (``DeadKernelError``)
    or does not start.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    # Which cell the kernel is on and the statuses it reported for it, timed: a timeout
    # then says whether the kernel was computing or never saw the request (the intermittent
    # stall of notebook 10 had the kernel idle, waiting). Timed, because nbclient shuts
    # the kernel down before raising, and that can still bring the cell's "idle".
    now: dict = {"cell": None, "states": [(0.0, None)]}

    def on_execute(cell, cell_index, **_) -> None:
        now.update(cell=cell_index, states=[(time.monotonic(), "sent")])

    class Client(NotebookClient):
        def process_message(self, msg, cell, cell_index):
            if msg["msg_type"] == "status":
                now["states"].append((time.monotonic(), msg["content"]["execution_state"]))
            return super().process_message(msg, cell, cell_index)

    # The kernel's own environment: this process's is left as it was.
    # strict checks: in what this runner executes (the tests, the main job, the book) a
    # wrong answer is a bug and stops the run; a caller's environment may say otherwise
    env = {"MPLBACKEND": "Agg", "USMLITE_STRICT_CHECKS": "1", **os.environ, **(kernel_env or {})}
    env["USMLITE_FAST"] = "1" if fast else "0"
    try:
        Client(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
            on_cell_execute=on_execute,
        ).execute(env=env)
    except (CellTimeoutError, DeadKernelError, RuntimeError) as e:
        started = isinstance(e, (CellTimeoutError, DeadKernelError))
        # jupyter_client's RuntimeErrors for a kernel that never answered kernel_info
        if not started and not any(m in str(e) for m in ("didn't respond", "died before")):
            raise
        i = now["cell"] if started else None
        states = now["states"]
        if isinstance(e, CellTimeoutError):  # what the kernel had said when time ran out
            states = [st for st in states if st[0] <= states[0][0] + timeout] or states
        state = states[-1][1]
        what = (
            f"a cell ran past the {timeout} s limit"
            if isinstance(e, CellTimeoutError)
            else "the kernel died"
            if isinstance(e, DeadKernelError)
            else f"the kernel failed ({e})"
        )
        raise NotebookStalled(
            path,
            None if i is None else i + 1,
            "" if i is None else _first_line(nb.cells[i].source),
            _STATE.get(state, f"its last status: {state}"),
            what,
        ) from e
    out_dir = out_dir or path.parent / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / path.name
    nbformat.write(nb, out)
    return out


def select(names: list[str] | None, directory: Path | str | None = None) -> list[Path]:
    """The notebooks of ``directory`` whose file name contains one of ``names`` (all if none).

    Raises ``FileNotFoundError`` when the directory holds no notebook (a wheel install run
    outside a clone must not report success having run nothing) and ``ValueError`` when
    ``names`` match none of them.
    """
    directory = Path(directory) if directory is not None else default_directory()
    paths = list_notebooks(directory)
    if not paths:
        raise FileNotFoundError(
            f"no notebook (NN_name.ipynb) in {directory.resolve()}: the notebooks are not "
            "installed with the package; pass --dir DIR (the notebooks/ folder of a clone of "
            "the repository) or run from a clone of the repository"
        )
    if names:
        chosen = [p for p in paths if any(n in p.name for n in names)]
        if not chosen:
            raise ValueError(
                f"no notebook in {directory.resolve()} matches {names}; "
                f"available: {', '.join(p.stem for p in paths)}"
            )
        paths = chosen
    return paths


def recorded_seconds(path: Path, fast: bool) -> float:
    """The notebook's recorded run time (``run_times.json`` beside it), 0 if none."""
    try:
        times = json.loads((path.parent / "run_times.json").read_text())["notebooks"]
        return float(times[path.name[:2]]["fast" if fast else "full"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def _run_one(
    p: Path,
    fast: bool,
    out_dir: Path | None,
    timeout: int,
    retries: int,
    kernel_env: dict[str, str] | None,
) -> bool:
    """Execute ``p``, retrying a stall in a fresh kernel up to ``retries`` times; whether
    it stalled (and passed on a retry)."""
    for attempt in range(retries + 1):
        t0 = time.time()
        try:
            out = execute(p, out_dir=out_dir, fast=fast, timeout=timeout, kernel_env=kernel_env)
        except NotebookStalled as e:
            took = f"after {time.time() - t0:.0f} s"
            if attempt == retries:
                e.args = (f"{e} ({took}; gave up after {attempt + 1} tries)",)
                raise
            print(f"STALLED {e} ({took}); retrying {p.name} in a fresh kernel", flush=True)
            continue
        retried = f" (on try {attempt + 1})" if attempt else ""
        print(f"executed {p.name} in {time.time() - t0:.0f} s{retried} -> {out}", flush=True)
        return attempt > 0
    raise AssertionError("unreachable")  # the last attempt returns or raises


def run_all(
    names: list[str] | None = None,
    fast: bool = True,
    directory: Path | str | None = None,
    out_dir: Path | None = None,
    *,
    timeout: int | None = None,
    retries: int = 1,
    jobs: int = 1,
    kernel_env: dict[str, str] | None = None,
) -> int:
    """Execute the selected notebooks (see :func:`select`); returns 0.

    ``timeout``: seconds one cell may run (default :data:`CELL_TIMEOUT_S` of the mode). A
    notebook that stalls (:class:`NotebookStalled`: a cell past ``timeout``, a dead or
    unresponsive kernel) is reported and run again from the top in a fresh kernel, up to
    ``retries`` times; if it stalls every time, raises :class:`NotebookStalled` (the last
    one, its message saying how many tries). A cell that fails (``CellExecutionError``, e.g.
    a check cell's ``assert``) is a real error, never retried: no further notebook starts
    and it propagates (with ``jobs > 1``, once the notebooks already running have ended).

    ``jobs``: notebooks run at once, each in its own kernel (and, with more than one, its
    own client process); with more than one they start longest first
    (:func:`recorded_seconds`) so the last to finish is a short one. The client processes
    are spawned (a script calling this needs ``if __name__ == "__main__":``) and print
    their own "executed ..." lines. Why processes: one process driving two kernels from two
    threads lost a kernel's reply once (notebook 10 idle, the client waiting).
    ``kernel_env``: extra environment of every kernel (see :func:`execute`).
    """
    timeout = CELL_TIMEOUT_S[fast] if timeout is None else timeout
    paths = select(names, directory)
    args = (fast, out_dir, timeout, retries, kernel_env)
    if jobs <= 1:
        stalled = [p.name for p in paths if _run_one(p, *args)]
    else:
        order = sorted(paths, key=lambda p: -recorded_seconds(p, fast))
        stalled = _run_parallel(order, jobs, args)
    if stalled:
        print(f"note: stalled once and passed on retry: {', '.join(stalled)}", flush=True)
    return 0


def _run_parallel(paths: list[Path], jobs: int, args: tuple) -> list[str]:
    """:func:`_run_one` on ``paths``, ``jobs`` at a time, each in a fresh child process
    (its own kernel client: one process never drives two kernels); the names of those that
    stalled and passed on a retry. After the first error no notebook starts; it is raised
    once the running ones end."""
    stalled, error, queue = [], None, list(paths)
    spawn = multiprocessing.get_context("spawn")  # no fork of a process holding threads
    with ProcessPoolExecutor(jobs, mp_context=spawn, max_tasks_per_child=1) as pool:
        running: dict = {}
        while queue or running:
            # submitted one by one as workers free up: the pool would queue ahead otherwise
            while queue and error is None and len(running) < jobs:
                p = queue.pop(0)
                running[pool.submit(_run_one, p, *args)] = p
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                p = running.pop(f)
                try:
                    if f.result():
                        stalled.append(p.name)
                except Exception as e:
                    error = error or e
    if error is not None:
        raise error
    return stalled
