# Two set-up commands: `make demo` and `make test`. Each installs what it needs into .venv first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test install sysdeps bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: this CPU build is on the machine's wheel path (no multi-GB CUDA download)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# System packages the tests and the audio path use: FluidSynth + a soundfont (audio), Chromium +
# chromedriver (the browser test of the serving page). Best effort: without them the project falls
# back to pure-Python synthesis, and the tests that need them say so.
sysdeps:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  need=""; \
	  command -v fluidsynth >/dev/null 2>&1 || need="$$need fluidsynth"; \
	  [ -f /usr/share/sounds/sf2/TimGM6mb.sf2 ] || need="$$need timgm6mb-soundfont"; \
	  command -v chromium >/dev/null 2>&1 || need="$$need chromium"; \
	  command -v chromedriver >/dev/null 2>&1 || need="$$need chromium-driver"; \
	  if [ -n "$$need" ]; then \
	    echo "installing system packages:$$need"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need) >/dev/null 2>&1 \
	      || echo "warning: apt-get could not install$$need; continuing"; \
	  fi; \
	fi

demo: $(STAMP) sysdeps
	$(BIN)/musicgan demo --out demo

test: $(STAMP) sysdeps
	$(BIN)/python -m pytest -q --durations=15 tests

# every benchmark (ingest_feed and the training-quality ones included), then one summary table
bench: $(STAMP) sysdeps
	$(BIN)/python benchmarks/run_all.py --out bench-summary.md

# fixed names only: clean never removes a path that came from the environment or the command line
clean:
	rm -rf demo .pytest_cache bench-summary.md
