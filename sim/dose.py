"""Where doses go on a line: steady single shots, measured on the model's side.

The tests (tests/test_dose_model.py) and the bench's dose table
(host_tools/bench.py) both fire their shots here, so they measure the same way.
"""

from injcore import machine as M

from .machine import Machine
from .session import Simulator

SETTLE_TAUS = 12  # after this many time constants the line's squeeze is below 1e-5


def settle_ms(sim):
    """Long enough for the line to empty its compliance (the air in it included)."""
    return int(SETTLE_TAUS * sim.machine.fluid.tau_s() * 1000) + 50


def settle_line(sim):
    sim.run_ms(settle_ms(sim))


def ready(model, line=None):
    """Homed, a full syringe of `model` loaded and primed on `line` (sim.machine.Line, default
    the reference line), the line settled. Tails are watched until the next puncture."""
    sim = Simulator(trace=False, machine=Machine(line=line))
    if not sim.home():
        raise RuntimeError("homing failed")
    sim.load(model)
    sim.prime(300)
    settle_line(sim)
    sim.tail_ms = 10**9  # a tail ends where the next puncture starts
    return sim


def steady_shots(model, doses_nl, line=None, **settings):
    """{dose_nl: Puncture} of single shots of each dose on a fresh syringe of `model`.

    Each dose is fired twice, the line settled after each shot; the second is
    kept: it follows a shot of the same dose, as in a session (the first after
    priming, or after another dose, also puts out the change in what the
    suck-backs left drawn into the needle).
    """
    sim = ready(model, line)
    sim.configure(**settings)
    out = {}
    for dose in doses_nl:
        sim.configure(dose_nl=dose)
        for _ in range(2):
            p = sim.shot()
            settle_line(sim)
        out[dose] = p
    return out


def half_step_nl(model):
    """The dose is counted in whole plunger steps: it can be off the set by half of one."""
    return M.nl_for_plunger_steps(1, M.SYRINGES[model][M.SYR_AREA_CMM2]) / 2
