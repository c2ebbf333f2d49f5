# The two commands of the README: `make book` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROFILE ?= sample

.PHONY: book test batch html bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: install Python 3.11 or newer, or run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: $(PYTHON) is older than 3.11: run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# Profiles whose committed records the book renders without running their missing cells (they
# need the full datasets and hours of training: python -m tkdlib batch --profile cpu --data-root ...).
RECORDED ?= cifar10-converged cpu cpu-bf16 tinyimagenet-converged cpu-tinyimagenet

## Run the profile's grid with papermill (finished runs are skipped), then build the book.
book: batch html

batch: $(STAMP)
	$(BIN)/python -m tkdlib batch --profile $(PROFILE) --examples
	for profile in $(RECORDED); do $(BIN)/python -m tkdlib batch --profile $$profile --summaries-only || exit 1; done

html: $(STAMP)
	$(BIN)/jupyter-book build . --all -W -n --keep-going
	@echo "The book is at $(CURDIR)/_build/html/index.html"

## The whole test suite (pytest exits 5 when it collects nothing: that fails too).
test: $(STAMP)
	$(BIN)/python -m pytest

## Every benchmark in benchmarks/ (a few minutes on 2 cores); figures and goals go to benchmarks/results.json.
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf _build book/generated
