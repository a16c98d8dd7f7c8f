# Two commands do everything on a fresh machine with Python 3.11:
#   make run    the project's main job (size table, executed notebooks, ...)
#   make test   the test suite (what .ci/run calls)
# Each creates .venv with the pinned versions of requirements.txt if it is missing.
# Another Python (3.11-3.13), in a venv of its own, on the fast subset (`-m "not slow"`):
#   make test-fast PYTHON=python3.13 VENV=.venv-3.13           # the pins of requirements.txt
#   make test-fast PYTHON=python3.13 VENV=.venv-3.13-new PINS=0 # pyproject's ranges, newest
#   PINS=lowest: pyproject's lower bounds (requirements-lowest.txt as constraints)
# The rendered book (docs/book.md): make book (notebooks in full mode, long) or
# make book-fast (fast mode, minutes); the site is build/book/html/index.html;
# make book-student: the student edition (no solutions), build/book-student.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PINS   ?= 1

.PHONY: run test test-fast venv lock notebooks lab book book-fast book-student slides clean

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
ifeq ($(PINS),1)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
else ifeq ($(PINS),lowest)
	$(BIN)/python -m pip install --quiet -e ".[dev]" -c requirements-lowest.txt
else
	$(BIN)/python -m pip install --quiet -e ".[dev]"
endif
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/usmlite-edu main

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

notebooks: $(STAMP)
	$(BIN)/usmlite-edu notebooks

book: $(STAMP)
	$(BIN)/usmlite-edu book --out build/book

book-fast: $(STAMP)
	$(BIN)/usmlite-edu book --fast --out build/book-fast

book-student: $(STAMP)
	$(BIN)/usmlite-edu book --edition student --out build/book-student

# a reveal.js deck per notebook (offline), build/slides/index.html (docs/book.md)
slides: $(STAMP)
	$(BIN)/usmlite-edu slides --out build/slides

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

lock:
	$(BIN)/python -m pip freeze --exclude-editable | sed '1i # Exact pins for Python 3.11 (pip freeze of a working environment). environment.yml lists the same pins;\n# tests/test_setup.py fails if the two drift apart. Update both with: make lock' > requirements.txt
	$(BIN)/python scripts/write_environment.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
