"""Where the tests find the full FSDD corpus, if this machine has it.

``$USMLITE_FSDD``, else ``$USMLITE_DATA``, else ``../shared/corpora/fsdd`` beside the clone,
each accepted when it (or its ``fsdd/`` subfolder) holds ``recordings/``. Tests that need
the corpus carry ``needs_fsdd`` and are skipped, saying how to get it, when none does.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def fsdd_dir() -> Path | None:
    for cand in (
        os.environ.get("USMLITE_FSDD"),
        os.environ.get("USMLITE_DATA"),
        REPO.parent / "shared" / "corpora" / "fsdd",
    ):
        if not cand:
            continue
        for d in (Path(cand), Path(cand) / "fsdd"):
            if (d / "recordings").is_dir():
                return d
    return None


FSDD = fsdd_dir()
needs_fsdd = pytest.mark.skipif(
    FSDD is None,
    reason="FSDD not found: set USMLITE_FSDD or put it at ../shared/corpora/fsdd "
    "(usmlite-edu data fetch fsdd --to DIR)",
)
