# `make run` and `make test` each do the whole set-up on a fresh machine, then their job.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS ?= 1
export LITELLM_LOCAL_MODEL_COST_MAP ?= True

.PHONY: run test install clean chromium engine

# llama.cpp's llama-server, built once from the pinned source (bench/engines/llamacpp/info.py) into
# the venv, where make test's fresh caches do not reach it; its engine.json exists once it is whole.
LLAMA_CPP_PIN := $(shell sed -n 's/^LLAMA_CPP_PYTHON_VERSION = "\(.*\)"/\1/p' bench/engines/llamacpp/info.py)
ENGINES := $(or $(LLMBENCH_ENGINES),$(VENV)/llmbench-engines)
ENGINE := $(ENGINES)/llama.cpp-$(LLAMA_CPP_PIN)/engine.json

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, with the pin: any other order lets pip pull a CUDA build (STACK.md).
	$(PIP) install --quiet -c constraints.txt torch
	$(PIP) install --quiet -c constraints.txt -e '.[test]'
	# MLflow 3.13+ opens a folder store (./mlruns, llmbench's default --track store) only with
	# MLFLOW_ALLOW_FILE_STORE=true; llmbench sets it for itself, this makes MLflow's own tools in
	# this venv (mlflow ui, MlflowClient) read those folders too.
	echo "import os; os.environ.setdefault('MLFLOW_ALLOW_FILE_STORE', 'true')" \
	  > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/llmbench-mlflow-file-store.pth"
	touch $(STAMP)

install: $(STAMP)

# Order-only on the venv: reinstalling the package must not rebuild the engine.
$(ENGINE): | $(STAMP)
	@echo "llama.cpp is not built yet: building llama-server once into $(ENGINES) (about 5 minutes on 2 cores) ..."
	$(VENV)/bin/llmbench engines build

engine: $(ENGINE)

run: $(STAMP) $(ENGINE)
	$(VENV)/bin/llmbench run

# The report test opens report.html in a real headless browser (Debian's chromium).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: install Debian's chromium package for the report test"; fi; }

# Every cache outside the repository starts empty, as on a new machine (pip's wheel cache aside):
# a test that passes only because an earlier run left a file behind fails here too. Tests run in a
# random order (pytest-randomly prints the seed; `PYTEST_ARGS="-p no:randomly"` for file order).
# TEST_WORKERS=2 runs it on two pytest-xdist workers, a test file (both Ray files together) to one
# worker at a time, the longest first (tests/conftest.py): 32 minutes instead of 36-40 on the 2-core
# VM, but tests that time servers, Ray's retries or a browser then fail under the other worker's
# load (4 of 1,029 in one run), so the default is one process.
TEST_WORKERS ?= 0
test: $(STAMP) $(ENGINE) chromium
	@fresh=$$(mktemp -d -t llmbench-test.XXXXXX); mkdir -p "$$fresh/tmp"; \
	env TMPDIR="$$fresh/tmp" XDG_CACHE_HOME="$$fresh/xdg-cache" TIKTOKEN_CACHE_DIR="$$fresh/tiktoken" \
	    DATA_GYM_CACHE_DIR="$$fresh/data-gym" HF_HOME="$$fresh/hf" LLMBENCH_CACHE="$$fresh/llmbench" \
	    NUMBA_CACHE_DIR="$$fresh/numba" MPLCONFIGDIR="$$fresh/matplotlib" \
	    $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS); rc=$$?; rm -rf "$$fresh"; exit $$rc

clean:
	rm -rf $(VENV) build *.egg-info
