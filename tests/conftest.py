import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "firmware", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import pytest  # noqa: E402


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
