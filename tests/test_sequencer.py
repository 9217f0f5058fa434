"""Scenario tests on the simulator: homing, single, continuous, prime, load."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from injcore import codes as C
from injcore import machine as M
from sim.session import Simulator
from soak import examples

NEEDLE_UM_PER_STEP = 1000 / M.NEEDLE_STEPS_PER_MM


@pytest.mark.hazard("H3")
def test_nothing_moves_before_homing_even_with_trigger_held():
    sim = Simulator(trace=False)
    m = sim.machine
    n0, p0 = m.needle_axis.motor_steps, m.plunger_axis.motor_steps
    m.trigger = True  # held at boot
    sim.run_ms(2000)
    assert (m.needle_axis.motor_steps, m.plunger_axis.motor_steps) == (n0, p0)
    assert m.needle_axis.count == m.plunger_axis.count == 0
    assert not m.drivers_on
    assert sim.core.state == C.ST_UNHOMED


def test_homing_finds_both_switches_and_sets_zero_there():
    sim = Simulator(trace=False)
    assert sim.home()
    m = sim.machine
    assert sim.core.needle.pos == 0 and sim.core.plunger.pos == 0
    assert m.needle_axis.motor_steps == 0  # the model's switch point
    assert m.plunger_axis.motor_steps == 0
    assert sim.core.homed


@pytest.mark.hazard("H12")
def test_broken_home_switch_faults_after_full_travel():
    sim = Simulator(trace=False)
    sim.machine.broken_home_switch = True
    assert not sim.home()
    assert sim.core.fault == C.F_NEEDLE_HOME_NOT_FOUND
    travel = M.um_to_needle_steps(M.NEEDLE_TRAVEL_UM + M.HOME_MARGIN_UM)
    assert abs(sim.machine.needle_axis.count) <= travel
    assert not sim.machine.drivers_on


@pytest.mark.hazard("H1", "H2")
def test_single_mode_one_puncture_per_press(ready_sim):
    sim = ready_sim
    sim.configure(mode=0, depth_um=1500, dose_nl=10_000)
    p = sim.shot()
    assert p.depth_reached_um == 1500.0
    assert p.dose_nl == 10_000 or abs(p.dose_nl - 10_000) <= 3  # one step is 5.4 nL
    # Held trigger: exactly one puncture, however long it is held.
    sim.machine.trigger = True
    sim.run_ms(3000)
    assert sim.core.punctures == 2
    sim.machine.trigger = False
    sim.run_ms(50)
    sim.shot()
    assert sim.core.punctures == 3


def test_pedal_fires_like_the_trigger(ready_sim):
    ready_sim.machine.pedal = True
    ready_sim.run_ms(30)
    ready_sim.machine.pedal = False
    ready_sim.run_until(lambda s: s.core.state == C.ST_READY, 5000)
    assert ready_sim.core.punctures == 1


def test_continuous_fires_at_the_shot_rate_while_held(ready_sim):
    sim = ready_sim
    sim.configure(
        mode=1,
        depth_um=600,
        dose_nl=2000,
        speed_um_s=40_000,
        rate_nl_s=100_000,
        shot_rate_mhz=5000,
        suckback_nl=200,
    )
    shots = sim.burst(2000)
    # 5 shots/s for 2 s: the first fires at once, then one every 200 ms.
    assert len(shots) == 10
    starts = [p.start_ms for p in shots]
    assert all(b - a == 200 for a, b in zip(starts, starts[1:]))
    assert all(p.depth_reached_um == 600.0 and p.dose_steps == shots[0].dose_steps for p in shots)


@pytest.mark.hazard("H1")
def test_continuous_release_mid_puncture_finishes_it_cleanly(ready_sim):
    sim = ready_sim
    sim.configure(mode=1, depth_um=2000, dose_nl=10_000, shot_rate_mhz=1000)
    sim.machine.trigger = True
    sim.run_until(lambda s: s.core.state == C.ST_INJECT, 1000)
    sim.run_ms(20)
    sim.machine.trigger = False  # mid-injection
    sim.run_until(lambda s: s.core.state == C.ST_READY, 5000)
    assert sim.core.punctures == 1
    p = sim.punctures[-1]
    assert p.depth_reached_um == 2000.0
    assert abs(p.dose_nl - 10_000) <= 3
    assert sim.machine.needle_axis.motor_steps > 0  # the motor lags the core by the FIFO lead
    sim.settle()
    assert sim.core.needle.pos == 0 and sim.machine.needle_axis.motor_steps == 0
    sim.run_ms(2000)
    assert sim.core.punctures == 1  # and nothing more


@pytest.mark.hazard("H7")
def test_prime_pushes_only_while_held():
    sim = Simulator(trace=False)
    sim.home()
    sim.load(1)
    sim.configure(mode=2)
    sim.hold_trigger(1000)
    sim.run_until(lambda s: s.core.state == C.ST_READY, 2000)
    primed = sim.core.primed_nl()
    assert 9_000 <= primed <= 10_500  # 10 uL/s for 1 s, with ramps
    sim.run_ms(1000)
    assert sim.core.primed_nl() == primed
    assert sim.core.primed and sim.core.punctures == 0


@pytest.mark.hazard("H7")
def test_shots_refused_until_primed_and_with_no_syringe():
    sim = Simulator(trace=False)
    sim.home()
    sim.machine.trigger = True
    sim.run_ms(30)
    assert sim.core.notice == C.N_NO_SYRINGE and sim.core.state == C.ST_READY
    sim.machine.trigger = False
    sim.load(1)
    sim.run_ms(10)
    sim.machine.trigger = True
    sim.run_ms(30)
    sim.machine.trigger = False
    assert sim.core.notice == C.N_NOT_PRIMED and sim.core.punctures == 0


def test_load_returns_plunger_to_rear_switch(ready_sim):
    sim = ready_sim
    sim.configure(dose_nl=50_000)
    sim.shot()
    assert sim.core.fluid_steps > 0
    sim.load(3)
    # Zero is where the switch was read closed: read once a tick, on the slow
    # approach (1.6 steps a tick) that is the switch point or one step past it.
    assert sim.core.plunger.pos == 0 and abs(sim.machine.plunger_axis.motor_steps) <= 1
    assert sim.core.volume_left_nl() == 3_000_000
    assert not sim.core.primed


@pytest.mark.hazard("H7")
def test_no_shot_the_syringe_cannot_finish():
    sim = Simulator(trace=False)
    sim.home()
    sim.load(1)
    sim.prime(500)
    sim.configure(dose_nl=200_000, rate_nl_s=100_000, suckback_nl=0)
    for _ in range(5):
        sim.shot()
    left = sim.core.volume_left_nl()
    assert left < 200_000 + 70_000  # less than a dose above the dead space
    sim.machine.trigger = True
    sim.run_ms(30)
    sim.machine.trigger = False
    assert sim.core.notice == C.N_SYRINGE_LOW
    assert sim.core.punctures == 4


@pytest.mark.hazard("H1")
def test_counters_add_up(ready_sim):
    sim = ready_sim
    sim.configure(dose_nl=5000)
    for _ in range(4):
        sim.shot()
    c = sim.core
    assert c.punctures == 4
    assert c.delivered_steps == sum(p.dose_steps for p in sim.punctures)
    assert abs(c.delivered_nl() - 20_000) <= 4 * 3  # half a 5.4 nL step per shot
    assert c.volume_left_nl() == 1_000_000 - M.nl_for_plunger_steps(c.fluid_steps, 1734)


@pytest.mark.hazard("H1", "H2")
@settings(
    max_examples=examples(25),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    depth=st.integers(3, 40).map(lambda x: x * 100),
    dose=st.one_of(
        st.integers(2, 19).map(lambda x: x * 500), st.integers(10, 60).map(lambda x: x * 1000)
    ),
    speed=st.integers(5, 50).map(lambda x: x * 1000),
    rate=st.integers(2, 100).map(lambda x: x * 1000),
    sb=st.integers(0, 20).map(lambda x: x * 100),
    syringe=st.sampled_from(sorted(M.SYRINGES)),
)
def test_every_puncture_reaches_depth_and_dose(depth, dose, speed, rate, sb, syringe):
    sim = Simulator(trace=False)
    sim.home()
    sim.load(syringe)
    sim.prime(200)
    sim.configure(depth_um=depth, dose_nl=dose, speed_um_s=speed, rate_nl_s=rate, suckback_nl=sb)
    planned = sim.core.plans().dose_steps
    for _ in range(2):
        p = sim.shot()
        assert abs(p.depth_reached_um - depth) <= NEEDLE_UM_PER_STEP
        assert p.dose_steps == planned
    assert sim.machine.needle_axis.motor_steps == 0


@pytest.mark.hazard("H2", "H6")
def test_needle_soft_limit_stops_a_move_past_the_needle_length(ready_sim):
    sim = ready_sim
    # A corrupted plan (here: forced by hand) must still never drive past the limit.
    ps = sim.core.plans()
    ps.needle_in.set(
        M.um_to_needle_steps(M.NEEDLE_HOME_OFFSET_UM + 6000),
        16_000,
        M.um_to_needle_steps(M.NEEDLE_ACCEL_UM_S2),
    )
    sim.machine.trigger = True
    sim.run_until(lambda s: s.core.state == C.ST_FAULT, 2000)
    limit_um = M.NEEDLE_HOME_OFFSET_UM + sim.core.limits.needle_length_um
    assert sim.core.fault == C.F_NEEDLE_SOFT_LIMIT
    steps = sim.machine.needle_axis.motor_steps
    assert steps * 1000 / M.NEEDLE_STEPS_PER_MM <= limit_um + 20  # one tick at 16 mm/s
    assert not sim.machine.drivers_on
