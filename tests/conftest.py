import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "firmware", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# `make test` draws the same examples every run (a CI verdict does not change with the
# seed); `make soak` (INJECTOR_SOAK) explores new ones each time.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("explore" if os.environ.get("INJECTOR_SOAK") else "repeatable")

# Hazard traceability: @pytest.mark.hazard("H4") on a test says it checks that
# hazard's mitigation. These hooks refuse an id that docs/hazards.toml does not
# list (a collection error) and write the map hazard -> tests for `--hazard-map
# FILE`, which tests/test_hazards.py and `make hazards` read (host_tools/hazards.py).
from host_tools.hazards import (  # noqa: E402,F401
    pytest_addoption,
    pytest_collection_finish,
    pytest_collection_modifyitems,
    pytest_pycollect_makeitem,
)


@pytest.fixture
def sim():
    from sim.session import Simulator

    return Simulator(trace=False)


@pytest.fixture
def ready_sim(sim):
    """Homed, a full 1 mL syringe loaded and primed."""
    assert sim.home()
    sim.load(1)
    sim.prime(800)
    return sim


# The emulated Pico tier (tests/test_chip.py, host_tools/chip): its tests carry
# @pytest.mark.chip. Where RP2040_DIR lacks the MicroPython image or the boot ROM
# (or node/rp2040js are missing) they are skipped, all under the one line that
# host_tools.chip.missing() gives; with INJECTOR_REQUIRE_CHIP=1 (CI) that same
# line fails them instead, so a CI run cannot pass without the chip tier.
REQUIRE_CHIP = "INJECTOR_REQUIRE_CHIP"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "chip: runs on the emulated Pico (host_tools/chip); skipped with one line when "
        "RP2040_DIR lacks its files, a failure when INJECTOR_REQUIRE_CHIP=1",
    )


def pytest_runtest_setup(item):
    if item.get_closest_marker("chip") is None:
        return
    from host_tools.chip import missing

    why = missing()
    if why is None:
        return
    if os.environ.get(REQUIRE_CHIP) == "1":
        pytest.fail("%s=1 but %s" % (REQUIRE_CHIP, why), pytrace=False)
    pytest.skip(why)
