# clipfoundry — every target sets itself up; see README.md.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export CLIPFOUNDRY_DATA_ROOT ?= $(CURDIR)/data
export CLIPFOUNDRY_SAMPLE_WEB_PORT ?= 8765
export NO_ALBUMENTATIONS_UPDATE := 1
export WANDB_MODE := disabled
export HF_HUB_OFFLINE := 1
export DAGSTER_DISABLE_TELEMETRY := 1

.PHONY: install system-deps demo ui test lint bench fuzz gpu-wheels clean

# Debian packages the tests use: WordNet (MetaCLIP metadata), PostgreSQL (Dagster's production storage) and two
# emoji art styles (the cross-style zero-shot evaluation).
SYSTEM_PACKAGES := wordnet-base postgresql ruby-tanuki-emoji ruby-gemojione

install: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml

system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

$(DAGSTER_HOME)/dagster.yaml: infra/deploy/dagster.local.yaml
	mkdir -p $(DAGSTER_HOME)
	cp $< $@

demo: install
	CLIPFOUNDRY_PROFILE=demo $(PY) -m pipelines.demo

ui: install
	$(PY) -m infra.pools
	CLIPFOUNDRY_PROFILE=demo $(PY) -m pipelines.demo --serve-only & web=$$!; \
	mkdir -p $(CLIPFOUNDRY_DATA_ROOT)/mlflow; \
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CLIPFOUNDRY_DATA_ROOT)/mlflow/mlflow.db \
		--host 127.0.0.1 --port 5000 >/dev/null 2>&1 & ml=$$!; \
	trap "kill $$web $$ml 2>/dev/null" EXIT; \
	CLIPFOUNDRY_PROFILE=demo $(VENV)/bin/dagster dev -w workspace.yaml

test: install system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -p no:cacheprovider

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	$(PY) -m bench.run

# Coverage-guided fuzzing (Atheris) of every parser that reads untrusted bytes, FUZZ_SECONDS per target, then the
# property tests with FUZZ_EXAMPLES fresh examples each. Crashers land in tests/fuzz/crashers/<target>/: fix the
# bug, commit the file, and tests/fuzz/test_crashers.py replays it for ever. The corpus grows in .fuzz/.
FUZZ_SECONDS ?= 600
FUZZ_EXAMPLES ?= 20000
fuzz: install
	status=0; for t in $$($(PY) -m tests.fuzz.run --list); do \
		$(PY) -m tests.fuzz.run $$t --seconds $(FUZZ_SECONDS) --corpus .fuzz/$$t --artifacts tests/fuzz/crashers/$$t \
			|| status=1; \
	done; \
	CLIPFOUNDRY_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider tests/fuzz/test_targets.py \
		|| status=1; \
	exit $$status

# Pure-Python wheels the device machine's image lacks, for bench/gpu.sh (carried there as .whl; see its header).
GPU_WHEELS := open_clip_torch==3.3.0 webdataset==0.2.86 braceexpand==0.1.7 ftfy==6.3.1 wcwidth==0.9.4
gpu-wheels: install
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux2014_x86_64 --platform any -d .whl $(GPU_WHEELS)

clean:
	rm -rf data .dagster_home .clipfoundry
