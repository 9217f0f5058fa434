"""The safety monitor's behaviours, one at a time, in the simulator.

The fault-injection matrix (test_safety_matrix.py) sweeps every fault over
every phase; these tests look closely at what happens after some of them.
"""

import pytest

from injcore import codes as C
from injcore import machine as M
from injcore.settings import Limits

MN_PER_N = 1000


def occlusion_limit_n(sim):
    return sim.core.occlusion_mn / MN_PER_N


@pytest.mark.hazard("H4", "H6")
def test_occlusion_stops_relieves_withdraws_and_latches(ready_sim):
    sim = ready_sim
    sim.configure(depth_um=1500, dose_nl=20_000, rate_nl_s=50_000)
    sim.machine.fluid.blocked = True
    sim.machine.trigger = True
    sim.run_until(lambda s: s.core.state == C.ST_FAULT, 5000)
    sim.machine.trigger = False
    core, m = sim.core, sim.machine
    assert core.fault == C.F_OCCLUSION
    assert not m.drivers_on  # the same tick
    assert m.alarm_level == C.ALARM_FAULT
    limit_n = occlusion_limit_n(sim)
    # Relief: the plunger backs off until the force is below half the limit,
    # then the needle withdraws; then the latched fault with the drivers off.
    sim.run_until(lambda s: s.core.state == C.ST_RELIEF, 50)
    assert m.drivers_on
    sim.run_until(lambda s: s.core.state == C.ST_FAULT, 5000)
    sim.settle()
    assert not m.drivers_on
    assert m.force_n < limit_n / 2
    assert m.needle_tip_um() <= -M.NEEDLE_HOME_OFFSET_UM + 1
    # Clearing the needle lets out only what stayed trapped in the line.
    out0 = m.fluid.delivered_ul
    m.fluid.blocked = False
    sim.run_ms(2000)
    assert m.fluid.delivered_ul - out0 <= 2.0
    # Latched until acknowledged; then homing again, started by the operator.
    sim.run_ms(500)
    assert core.state == C.ST_FAULT
    assert core.acknowledge()
    assert core.state == C.ST_UNHOMED and core.alarm == C.ALARM_NONE
    sim.machine.trigger = True
    sim.run_ms(500)
    assert core.punctures == 0 and not m.drivers_on


@pytest.mark.hazard("H8")
def test_an_overrun_is_a_fault(ready_sim):
    sim = ready_sim
    sim.core.overruns += 1
    sim.run_ms(1)
    assert sim.core.fault == C.F_TICK_OVERRUN and not sim.machine.drivers_on


@pytest.mark.hazard("H12")
def test_a_home_switch_stuck_closed_faults_during_homing(sim):
    sim.machine.stuck_home_switch = True
    start = sim.machine.needle_tip_um()  # wherever a reset left it: maybe in the skin
    deepest = start
    assert sim.core.start_homing()
    while sim.core.state == C.ST_HOMING:
        sim.step()
        deepest = max(deepest, sim.machine.needle_tip_um())
    sim.settle()
    # The back-off gives up as soon as a working switch would have opened:
    # a fraction of a millimetre deeper at most, not the whole back-off.
    assert deepest - start <= M.SWITCH_RELEASE_UM + 50
    assert M.SWITCH_RELEASE_UM < M.NEEDLE_HOME_BACKOFF_UM
    assert sim.core.fault == C.F_NEEDLE_HOME_STUCK
    assert not sim.core.homed and not sim.machine.drivers_on


@pytest.mark.hazard("H7")
def test_near_empty_is_a_warning_not_a_fault():
    from sim.session import Simulator

    sim = Simulator(trace=False)
    assert sim.home()
    sim.load(1)
    sim.prime(800)
    sim.configure(dose_nl=100_000, suckback_nl=0)
    shots = 0
    while sim.core.warning == C.W_NONE:
        assert sim.shot() is not None
        shots += 1
        assert shots < 20
    assert sim.core.state == C.ST_READY and sim.core.fault == C.F_NONE
    assert sim.machine.alarm_level == C.ALARM_WARNING
    left = sim.core.plunger_limit_left()
    need = sim.core.plans().dose_steps
    assert left < M.NEAR_EMPTY_DOSES * need
    # Shots go on until the syringe cannot finish one; that one is refused whole.
    while sim.shot() is not None:
        pass
    assert sim.core.notice == C.N_SYRINGE_LOW
    assert all(abs(p.dose_nl - 100_000) <= 2000 for p in sim.punctures)


@pytest.mark.hazard("H7")
def test_near_empty_with_a_dose_a_fifth_of_the_syringe_waits_for_the_last_dose():
    from sim.session import Simulator

    sim = Simulator(trace=False)
    assert sim.home()
    sim.load(1)
    sim.prime(800)
    sim.configure(dose_nl=200_000, suckback_nl=0, rate_nl_s=100_000)
    core = sim.core
    assert core.warning == C.W_NONE  # a full syringe is not nearly empty
    shots = 0
    while core.warning == C.W_NONE:
        assert sim.shot() is not None
        shots += 1
        assert shots < 6
    assert core.can_fire()  # warned while a dose is still left ...
    assert sim.shot() is not None and sim.punctures[-1].dose_nl >= 196_000  # ... in full
    assert sim.shot() is None and core.notice == C.N_SYRINGE_LOW
    # Small doses: fewer than five of them left, and less than a fifth of the syringe.
    usable = M.plunger_steps_for_nl(1_000_000, 1000)
    assert M.near_empty_steps(10, usable) == 50
    assert M.near_empty_steps(usable // 20, usable) == usable // 5  # a fifth, not five doses
    assert M.near_empty_steps(usable // 5, usable) == 2 * (usable // 5)


@pytest.mark.hazard("H1")
def test_no_shot_starts_past_the_session_cap():
    from sim.session import Simulator

    sim = Simulator(trace=False)
    sim.core.limits = Limits(session_cap_nl=50_000)
    assert sim.home()
    sim.load(1)
    sim.prime(800)
    sim.configure(dose_nl=20_000)
    fired = [sim.shot() for _ in range(4)]
    assert [p is not None for p in fired] == [True, True, False, False]
    assert sim.core.notice == C.N_SESSION_CAP
    assert sim.core.delivered_nl() <= 50_000
    sim.core.new_session()
    assert sim.shot() is not None


@pytest.mark.hazard("H3")
def test_trigger_held_through_acknowledge_fires_nothing(ready_sim):
    sim = ready_sim
    sim.machine.estop = True
    sim.machine.trigger = True
    sim.run_ms(5)
    sim.machine.estop = False
    assert sim.core.acknowledge()
    assert sim.home()
    sim.load(1)
    sim.configure(mode=2)  # prime: a press would push the plunger
    face = sim.machine.face_um
    sim.run_ms(300)  # the trigger is still held from before the fault
    assert sim.machine.face_um == face and sim.core.state == C.ST_READY
    sim.machine.trigger = False
    sim.run_ms(20)
    sim.hold_trigger(300)  # released and pressed again: now it primes
    sim.run_until(lambda s: s.core.state == C.ST_READY, 2000)
    assert sim.machine.face_um > face


@pytest.mark.hazard("H5")
def test_a_stall_flag_faults_and_withdraws_the_needle_when_it_is_the_plunger(ready_sim):
    sim = ready_sim
    sim.configure(depth_um=2000, dose_nl=20_000)
    sim.machine.trigger = True
    sim.run_until(lambda s: s.core.state == C.ST_INJECT, 2000)
    sim.machine.plunger_stall = True
    sim.run_ms(1)
    assert sim.core.fault == C.F_PLUNGER_STALL and not sim.machine.drivers_on
    sim.run_until(lambda s: s.core.state == C.ST_RELIEF, 10)
    sim.run_until(lambda s: s.core.state == C.ST_FAULT, 5000)
    assert not sim.machine.drivers_on
    sim.settle()
    assert sim.machine.needle_tip_um() <= -M.NEEDLE_HOME_OFFSET_UM + 1  # the needle came out


@pytest.mark.hazard("H5")
def test_a_needle_stall_leaves_the_needle_for_the_operator(ready_sim):
    sim = ready_sim
    sim.configure(depth_um=2000)
    sim.machine.trigger = True
    sim.run_until(lambda s: s.core.state == C.ST_INJECT, 2000)
    depth = sim.machine.needle_tip_um()
    sim.machine.needle_stall = True
    sim.run_ms(200)
    assert sim.core.fault == C.F_NEEDLE_STALL and sim.core.state == C.ST_FAULT
    assert sim.machine.needle_tip_um() == depth and not sim.machine.drivers_on


@pytest.mark.hazard("H1")
def test_a_protocol_caps_its_zone_and_its_session(ready_sim):
    sim = ready_sim
    core = sim.core
    core.configure(dose_nl=20_000, suckback_nl=0)
    core.set_protocol_caps(session_cap_nl=110_000, zone_left_nl=50_000)
    for _ in range(4):
        sim.shot()
    assert core.punctures == 2 and core.notice == C.N_ZONE_CAP  # 2 x 20 uL fit in 50, a third not
    core.set_protocol_caps(session_cap_nl=110_000, zone_left_nl=200_000)  # the next zone
    for _ in range(6):
        sim.shot()
    assert core.punctures == 5 and core.notice == C.N_SESSION_CAP  # the protocol's 110 uL
    assert core.delivered_nl() <= 110_000
    core.set_protocol_caps()  # the protocol ends: the engineer's cap again
    sim.shot()
    assert core.punctures == 6


# ---- what a fault leaves of the prime (codes.FAULTS' last column) ----------------------------


def cut_by(sim, fault):
    """A shot cut mid-injection by `fault` ("estop", "needle_stall", "plunger_stall",
    "occlusion", "syringe"), the fault latched, the cause gone, the alarm acknowledged;
    the fault's code."""
    m = sim.machine
    sim.configure(depth_um=1500, dose_nl=20_000, rate_nl_s=20_000)
    if fault == "occlusion":
        m.fluid.blocked = True
    m.trigger = True
    sim.run_until(lambda s: s.core.state in (C.ST_INJECT, C.ST_FAULT), 3000)
    sim.run_ms(50)
    m.trigger = False
    if fault == "estop":
        m.estop = True
    elif fault == "needle_stall":
        m.needle_stall = True
    elif fault == "plunger_stall":
        m.plunger_stall = True
    elif fault == "syringe":
        m.remove_syringe()
    sim.run_until(lambda s: s.core.state == C.ST_FAULT and not s.core.recovery_pending, 5000)
    sim.run_until(lambda s: s.core.state == C.ST_FAULT, 5000)
    sim.settle()
    m.estop = m.needle_stall = m.plunger_stall = m.fluid.blocked = False
    if fault == "syringe":
        m.insert_syringe(1)
    sim.run_ms(5)
    code = sim.core.fault
    assert sim.core.acknowledge()
    return code


@pytest.mark.hazard("H6", "H7")
@pytest.mark.parametrize("fault", ["estop", "needle_stall"])
def test_a_fault_that_keeps_the_line_keeps_the_prime_and_the_plunger(ready_sim, fault):
    sim = ready_sim
    core, m = sim.core, sim.machine
    assert sim.shot() is not None
    code = cut_by(sim, fault)
    assert code == {"estop": C.F_ESTOP, "needle_stall": C.F_NEEDLE_STALL}[fault]
    assert C.FAULT_LINES[code] == C.LINE_KEPT and core.primed
    face, fluid, left = m.face_um, core.fluid_steps, core.volume_left_nl()
    assert sim.home()  # the needle alone: the plunger stays on the stopper
    assert m.face_um == face and core.fluid_steps == fluid and core.volume_left_nl() == left
    assert m.needle_tip_um() <= -M.NEEDLE_HOME_OFFSET_UM + 1
    assert core.primed
    p = sim.shot()  # no new prime: the full dose, counted from where the plunger was
    assert p is not None and abs(p.dose_nl - 20_000) <= 400
    assert core.volume_left_nl() < left


@pytest.mark.hazard("H7")
@pytest.mark.parametrize("fault", ["plunger_stall", "occlusion", "syringe"])
def test_a_fault_that_may_open_the_line_needs_a_new_prime(ready_sim, fault):
    sim = ready_sim
    core = sim.core
    code = cut_by(sim, fault)
    want = {"plunger_stall": C.F_PLUNGER_STALL, "occlusion": C.F_OCCLUSION}
    assert code == want.get(fault, C.F_SYRINGE_REMOVED)
    assert C.FAULT_LINES[code] == C.LINE_OPENED and not core.primed
    assert sim.home()  # the plunger too: back to its switch
    assert sim.machine.face_um <= sim.machine.backlash_um
    assert sim.shot() is None and core.notice == C.N_NOT_PRIMED


def test_every_fault_says_whether_it_keeps_the_line():
    kept = {C.FAULT_NAMES[i] for i, line in enumerate(C.FAULT_LINES) if line == C.LINE_KEPT}
    # What the plunger's side or the syringe did may have let air in or lost the
    # count: those unprime. A stop, the needle's faults and an overrun leave both.
    for i, name in enumerate(C.FAULT_NAMES):
        line = C.FAULT_LINES[i]
        assert line in (C.LINE_KEPT, C.LINE_OPENED), name
        opens = name.startswith(("plunger", "syringe", "occlusion", "load cell"))
        assert (line == C.LINE_OPENED) == opens, name
    assert "emergency stop" in kept and "needle lost steps" in kept
