# Two entry points: `make demo` (the main job) and `make test`. Both create .venv on first use; the demo
# installs the package alone, the tests add the test tools and every optional extra (so CI exercises them).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-dev
PIP := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: demo test venv clean

venv: $(STAMP)

# The CPU build of PyTorch is installed first, so that the package's `torch` requirement is already
# met and pip does not fetch a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PIP) -e '.[dev]'
	touch $(TEST_STAMP)

demo: $(STAMP)
	$(BIN)/sparsehalo demo

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
