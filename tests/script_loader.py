"""Load one of ``scripts/*.py`` as a module, for the tests of its functions.

The scripts are run by path, not installed, so a test imports one from its file. The
module is registered in ``sys.modules`` while it executes: a dataclass defined in it looks
its module up while being built.
"""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` executed as the module ``name`` (the same object on a reload)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod
