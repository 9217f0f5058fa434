"""The fault-injection matrix: every fault in every phase meets its target.

One test per fault (so xdist spreads the rows), each running the fault in all
eight phases with sim.faults.run_cell: detection within one tick of the
reading, steps stopped in the detecting tick, nothing pushed after a fault
(an occlusion's bolus <= 2 uL), the needle never past its limit, drivers off
and latched, unhomed after acknowledging with nothing moving (see
sim/faults.py for each fault's own target). `make safety-report` writes the
same cells to docs/safety-matrix.md.
"""

import pytest

from host_tools import safety_report
from sim import faults as F
from sim.machine import PioAxis

ROWS = [
    pytest.param(name, id=name, marks=pytest.mark.hazard(*f.hazards))
    for name, f in F.FAULTS.items()
]


@pytest.mark.parametrize("fault", ROWS)
def test_every_phase_meets_its_targets(fault):
    cells = [F.run_cell(fault, phase) for phase in F.PHASES]
    missed = [c.summary() for c in cells if not c.passed]
    assert not missed, "\n".join(missed)
    f = F.FAULTS[fault]
    if f.kind == "stop":
        # Every fault row acts somewhere: a row of n/a would prove nothing.
        assert any(c.applicable and c.code in f.codes for c in cells), [c.summary() for c in cells]


@pytest.mark.hazard("H6")
def test_the_matrix_catches_a_stop_that_lets_queued_steps_run(monkeypatch):
    # A halt that forgets to flush the FIFO: the motors run on for the lead.
    F.enter_phase("inject")  # the shared starting point is built with the real halt
    monkeypatch.setattr(PioAxis, "halt", lambda self: setattr(self, "halts", self.halts + 1))
    cell = F.run_cell("estop", "inject")
    assert not cell.passed
    assert cell.stop_ticks >= 3 and any("moved on" in r for r in cell.reasons)


def test_the_report_is_a_table_with_a_worst_row():
    matrix = {"estop": [F.run_cell("estop", p) for p in F.PHASES]}
    text = safety_report.markdown(matrix)
    head = "| fault | " + " | ".join(F.PHASES) + " |"
    assert head in text
    row = next(line for line in text.splitlines() if line.startswith("| emergency stop |"))
    assert row.count("✓") == len(F.PHASES) and "1/0 · 0.00 µL" in row
    assert "| **worst** |" in text and "8 of 8 cells meet their targets" in text
