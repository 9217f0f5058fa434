import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "firmware", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import pytest  # noqa: E402

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
