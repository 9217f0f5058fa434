"""The simulator's physical models behave as the core's tests assume."""

from injcore import codes as C
from injcore import machine as M
from injcore import pio_word
from sim.session import Simulator


def injecting_force(sim):
    return [f for f, s in zip(sim.trace.force_n, sim.trace.state) if s == C.ST_INJECT]


def primed(**settings):
    sim = Simulator()
    sim.home()
    sim.load(1)
    sim.prime(300)
    sim.configure(**settings)
    return sim


def test_force_rises_while_injecting_and_more_against_a_blocked_needle():
    open_ = primed(dose_nl=10_000, rate_nl_s=50_000)
    open_.shot()
    f_open = max(injecting_force(open_))
    # 50 uL/s through the reference needle needs pressure: Hagen-Poiseuille's, on the barrel
    r_pa_s_ml = M.needle_r_pa_s_ml(
        M.REF_NEEDLE_GAUGE, M.REF_NEEDLE_LENGTH_UM, M.REF_VISCOSITY_UPA_S
    )
    area_mm2 = M.SYRINGES[1][M.SYR_AREA_CMM2] / 100
    f_flow = r_pa_s_ml * 0.05 * area_mm2 / 1e6  # Pa x mm^2 = uN
    assert f_open > 0.8 * f_flow and f_open > 0.3
    idle = [f for f, s in zip(open_.trace.force_n, open_.trace.state) if s == C.ST_READY]
    assert abs(idle[-1]) < 0.1

    blocked = primed(dose_nl=10_000, rate_nl_s=50_000)
    # The model, not the firmware, is under test: the occlusion limit is set out of the way.
    blocked.core.limits.occlusion_kpa = 1000
    blocked.configure()
    blocked.machine.fluid.blocked = True
    blocked.shot()
    f_blocked = max(injecting_force(blocked))
    assert f_blocked > 5 * f_open
    assert blocked.machine.fluid.delivered_ul < open_.machine.fluid.delivered_ul


def test_backlash_is_taken_up_before_fluid_moves():
    sim = primed(dose_nl=5000, suckback_nl=1000)
    sim.shot()  # ends with a suck-back: the nut is on the rear side of the gap
    face0 = sim.machine.face_um
    sim.shot()
    # Each puncture nets the dose at the pusher face, backlash or not.
    dose_um = 5000 / 17.34  # nL over mm^2 = um
    assert abs((sim.machine.face_um - face0) - dose_um) < 0.5


def test_trace_records_every_tick():
    sim = Simulator()
    sim.home()
    n = len(sim.trace.t_ms)
    assert n == sim.now_us // 1000
    rows = list(sim.trace.rows())
    assert rows[-1][0] == sim.now_us / 1000
    # Homing overshoots the switch by the stopping distance from the seek speed
    # (2.5 um), the tick in which it closed, and the seek steps already queued
    # in the FIFO when it was read.
    queued_um = (pio_word.FIFO_TICKS + 1) * M.NEEDLE_HOME_FAST_UM_S / 1000
    assert min(r[1] for r in rows) >= -1000.0 - 3 - queued_um
