# Two commands do all the set-up on a fresh machine (README.md):
#   make demo   bootstrap .venv if needed, then the main job end to end on mnist5k
#   make test   bootstrap .venv if needed, then the whole test suite
SHELL := /bin/bash
PY := .venv/bin/python
WORKDIR ?= runs/demo
export TF_USE_LEGACY_KERAS := 1
# No TF_CPP_MIN_LOG_LEVEL here: ppcd_tf sets it to 2 itself and then keeps TensorFlow's
# start-up notices off the console; a TF_CPP_MIN_LOG_LEVEL in the environment means "show
# them" (ppcd_tf/quiet_start.py), which is how `make demo` printed cuInit errors.
export PYTHONPATH := $(CURDIR)

.PHONY: venv test test-fast demo clean help

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

venv:  ## Create .venv from requirements.txt (no-op when it is current).
	@bash tools/bootstrap_venv.sh

# Two pytest worker processes, one test class (or module of plain functions) each at a
# time, the longest first (tests/conftest.py HEAVY_FIRST; pytest-xdist; BUILD.md
# "Tests"; --no-loadscope-reorder keeps that order: xdist 3.x otherwise sends the classes
# with the most tests first, which left the one-test end-to-end classes for the end): TensorFlow's tracing is single-threaded Python, so a second process keeps
# the second core busy. TEST_WORKERS=0 runs in one process. -p no:unraisableexception:
# that plugin's gc passes at exit cost each worker about 14 s with TensorFlow loaded.
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder)
PYTEST := -m pytest -q -p no:unraisableexception

test: venv  ## Whole suite, slow end-to-end tests included (CI runs this).
	TF_ENABLE_ONEDNN_OPTS=0 $(PY) $(PYTEST) $(XDIST) tests

test-fast: venv  ## Suite without tests marked slow.
	TF_ENABLE_ONEDNN_OPTS=0 $(PY) $(PYTEST) $(XDIST) -m "not slow" tests

demo: venv  ## Main job end to end on the embedded mnist5k data (WORKDIR=runs/demo).
	$(PY) -m tools.demo --workdir=$(WORKDIR)

clean:  ## Remove run directories (not .venv).
	rm -rf runs
