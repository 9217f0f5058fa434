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
