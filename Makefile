# Two commands from a fresh clone: `make lab` (set up and start JupyterLab) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8888
LAB_ARGS ?=
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TRL_EXPERIMENTAL_SILENCE := 1

.PHONY: venv lab lab-setup test test-fast build check-build clean help sandbox-tool

help:
	@echo "make lab        create .venv, install everything, build the lessons, start JupyterLab on lessons/"
	@echo "make test       the whole test suite (under 20 minutes on 2 cores)"
	@echo "make test-fast  a fast subset (under 3 minutes)"
	@echo "make build      rebuild lessons/ from solutions/ (course build)"
	@echo "make venv       only create .venv and install the package and its dependencies"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 not found"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

lab-setup: venv
	@# nbgrader's server extensions are enabled by its install (etc/jupyter/jupyter_server_config.d/nbgrader.json);
	@# its JupyterLab extensions (assignments, formgrader, create/validate assignment) are enabled here.
	$(BIN)/jupyter labextension enable --level=sys_prefix @jupyter/nbgrader
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (course)" >/dev/null

lab: lab-setup
	$(BIN)/jupyter lab --ServerApp.root_dir=lessons --port=$(PORT) $(ROOT_FLAG) $(LAB_ARGS)

build: venv
	$(BIN)/course build

check-build: venv
	$(BIN)/course build --check

# Two pytest-xdist workers (the suite is sized for 2 cores). Expensive shared setup must not assume one
# process: see the `graded` fixture in tests/test_authoring.py (a file lock in the shared temp folder).
PYTEST_JOBS ?= 2
PYTEST_XDIST = -n $(PYTEST_JOBS) --dist worksteal

# `course grade` runs each student's notebook in a bubblewrap sandbox, and the grading tests need it: install it
# (root with apt-get, as on a fresh CI machine) or stop with the command to run. Never skipped.
BWRAP_INSTALL := apt-get install -y bubblewrap
sandbox-tool:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing bubblewrap (the grading sandbox)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(BWRAP_INSTALL) -qq >/dev/null; \
	  else \
	    echo "the grading sandbox needs bubblewrap: sudo $(BWRAP_INSTALL)  (Fedora: sudo dnf install -y bubblewrap)"; \
	    exit 1; \
	  fi; }
	@command -v bwrap >/dev/null 2>&1 || { echo "bubblewrap did not install: sudo $(BWRAP_INSTALL)"; exit 1; }

test: venv sandbox-tool
	$(BIN)/python -m pytest -q $(PYTEST_XDIST)

test-fast: venv sandbox-tool
	$(BIN)/python -m pytest -q $(PYTEST_XDIST) -m "not slow"

clean:
	rm -rf build autograder/gradebook.db autograder/build autograder/source autograder/release \
		autograder/submitted autograder/autograded autograder/feedback autograder/grades.csv .pytest_cache
