"""The plunger's backlash, the take-up, the shot rate and the hover point (issue 14).

Measured on the machine model's side (the pusher face, the needle tip, the
step times), not from the core's own counters: the core counts what it
commanded, the model says what the syringe did.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from injcore import codes as C
from injcore import machine as M
from injcore.settings import RANGES, SettingsError, refusal_text
from sim.machine import NEEDLE_UM_PER_STEP, PLUNGER_UM_PER_STEP
from sim.session import Simulator

MODELS = sorted(M.SYRINGES)  # every syringe the table has, never a hand-kept list


def loaded(model=1, **settings):
    """Homed and loaded with a full syringe of `model`; the face where the count is zero."""
    sim = Simulator(trace=False)
    assert sim.home()
    sim.load(model)
    if settings:
        sim.configure(**settings)
    return sim, sim.machine.face_um


def face_steps(sim, face0_um):
    """How far the syringe's plunger really moved since loading, in plunger steps."""
    return (sim.machine.face_um - face0_um) / PLUNGER_UM_PER_STEP


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("prime_ms", [100, 150, 200])
def test_a_short_prime_after_loading_counts_only_what_moved_the_syringe(model, prime_ms):
    # Loading ends with a short forward settle: most of the backlash is still open.
    sim, face0 = loaded(model)
    sim.prime(prime_ms)
    sim.settle()
    assert abs(sim.core.primed_steps - face_steps(sim, face0)) <= 1
    # The next shot gives its dose: the face moves by the dose, whatever the prime left.
    sim.configure(dose_nl=2000, suckback_nl=0, rate_nl_s=5000)
    before = sim.machine.face_um
    sim.shot()
    sim.settle()
    moved_nl = (sim.machine.face_um - before) * sim.machine.syringe_area_mm2
    assert moved_nl == pytest.approx(2000, abs=M.nl_for_plunger_steps(1, sim.core.area_cmm2) + 1)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=st.sampled_from(MODELS),
    actions=st.lists(
        st.sampled_from(["prime", "shot", "shot_sb", "burst", "estop", "backlash", "load"]),
        min_size=1,
        max_size=5,
    ),
)
def test_the_count_follows_the_syringe_through_every_path(model, actions):
    """Load, prime, shots with and without suck-back, nappage, an E-stop mid-dose and
    its relief, a backlash measurement: the count stays with the syringe's plunger."""
    sim, face0 = loaded(model, dose_nl=5000, rate_nl_s=20_000)
    sim.prime(300)
    for a in actions:
        core = sim.core
        if core.state == C.ST_FAULT:
            core.acknowledge()
        if core.state == C.ST_UNHOMED:
            # Homing backs the plunger off a millimetre: not with a syringe seated.
            sim.machine.remove_syringe()
            assert sim.home()
            a = "load"
        if a == "load":
            sim.load(model)
            face0 = sim.machine.face_um
            sim.configure(dose_nl=5000, rate_nl_s=20_000)
            sim.prime(200)
        elif a == "prime":
            sim.prime(120)
        elif a in ("shot", "shot_sb"):
            sim.configure(suckback_nl=1000 if a == "shot_sb" else 0, mode=C.MODE_SINGLE)
            sim.shot()
        elif a == "burst":
            sim.configure(mode=C.MODE_CONTINUOUS, shot_rate_mhz=1000, suckback_nl=0)
            sim.burst(1500)
            sim.configure(mode=C.MODE_SINGLE)
        elif a == "estop":
            sim.configure(suckback_nl=0, mode=C.MODE_SINGLE)
            sim.machine.trigger = True
            sim.run_until(lambda s: s.core.state == C.ST_INJECT, 5000)
            sim.run_ms(40)
            sim.machine.trigger = False
            sim.machine.estop = True
            sim.run_ms(20)
            sim.machine.estop = False
            sim.run_until(lambda s: s.core.state == C.ST_FAULT and s.core.axes_idle(), 5000)
        elif a == "backlash":
            if sim.core.start_backlash():
                sim.run_until(lambda s: s.core.state == C.ST_READY, 10_000)
        sim.settle()
        assert abs(sim.core.fluid_steps - face_steps(sim, face0)) <= 1, a


def puncture_ms(model, dose_nl, rate_nl_s, suckback_nl):
    sim, _ = loaded(model, dose_nl=dose_nl, rate_nl_s=rate_nl_s, suckback_nl=suckback_nl)
    sim.prime(300)
    sim.shot()  # the first after the prime
    sim.shot()
    return sim.punctures[-1].duration_ms, sim.core.plans()


def test_the_take_up_runs_fast_not_at_the_injection_rate():
    # 10 mL, 1.5 uL at 5 uL/s with suck-back: the backlash (20 um) is 3.3 uL of
    # barrel, 650 ms at the injection rate; at the take-up speed it takes 8 ms.
    ms, plans = puncture_ms(10, 1500, 5000, 500)
    takeup_ms = (
        M.um_to_plunger_steps(M.PLUNGER_BACKLASH_UM)
        * 1000
        // M.um_to_plunger_steps(M.PLUNGER_TAKEUP_SPEED_UM_S)
    )
    walked = (
        plans.needle_in,
        plans.push,
        plans.inject,
        plans.release,
        plans.suckback,
        plans.needle_out,
    )
    physical_ms = 2 * takeup_ms + sum(p.ticks for p in walked) + plans.dwell_ticks
    assert ms <= physical_ms
    assert takeup_ms <= 10  # the backlash at the injection rate would take 650 ms


def _best_rate_mhz(sim, **settings):
    """The highest shot rate the core accepts (bisection over the setting's range)."""
    lo, hi = RANGES["shot_rate_mhz"][0], RANGES["shot_rate_mhz"][1]
    step = RANGES["shot_rate_mhz"][2]
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2 // step * step
        try:
            sim.configure(mode=C.MODE_CONTINUOUS, shot_rate_mhz=mid, **settings)
            best, lo = mid, mid + step
        except SettingsError:
            hi = mid - step
    return best


def test_without_suck_back_the_rate_check_budgets_no_take_up():
    sim, _ = loaded(10)
    sim.core.set_line_tau(0)  # no pressure advance: the plunger never reverses
    best = _best_rate_mhz(sim, depth_um=500, dose_nl=1000, suckback_nl=0, speed_um_s=50_000)
    cycle = sim.core.plans().cycle_ticks
    walked = 1 + sum(
        p.ticks
        for p in sim.core.plans().plans()
        if p.name in ("needle in from hover", "needle out", "inject") and p.distance
    )
    assert cycle == walked  # the rows and the tick between shots, no take-up
    top = RANGES["shot_rate_mhz"][1]
    assert best >= min(top, 1_000_000 // cycle - RANGES["shot_rate_mhz"][2])


@pytest.mark.parametrize("model", MODELS)
def test_nappage_at_the_highest_accepted_rate_keeps_its_interval(model):
    sim, _ = loaded(model, depth_um=1000, dose_nl=2000, suckback_nl=500, rate_nl_s=50_000)
    best = _best_rate_mhz(sim)
    sim.prime(300)
    sim.burst(3000)
    starts = [p.start_ms for p in sim.punctures]
    gaps = [b - a for a, b in zip(starts[1:], starts[2:])]
    period_ms = 1_000_000 / best
    assert gaps and max(gaps) <= period_ms + 1e-9 and min(gaps) >= int(period_ms)


def test_no_rate_possible_says_what_limits_it():
    sim, _ = loaded(1)
    with pytest.raises(SettingsError) as e:
        sim.configure(mode=C.MODE_CONTINUOUS, dose_nl=200_000, rate_nl_s=2000, shot_rate_mhz=500)
    (r,) = e.value.refusals
    text = refusal_text(r)
    assert r[4] < r[3]  # no rate from the lowest fits
    assert "lower the dose" in text and ".." not in text


@pytest.mark.parametrize("model", MODELS)
def test_nappage_waits_at_the_hover_point_and_enters_the_skin_at_speed(model):
    sim, _ = loaded(model, depth_um=1000, dose_nl=2000, speed_um_s=30_000, suckback_nl=0)
    sim.configure(mode=C.MODE_CONTINUOUS, shot_rate_mhz=4000)
    sim.prime(300)
    m = sim.machine
    tips, entry = [], []
    sim.machine.trigger = True
    prev = m.needle_tip_um()
    waited = 0
    for _ in range(1200):
        sim.step()
        tip = m.needle_tip_um()
        if prev < 0 <= tip:
            entry.append((tip - prev) * 1000)  # um/s over the tick it crossed the skin
        waited = waited + 1 if sim.core.state == C.ST_WAIT else 0
        if waited > 8:  # the motor makes its last queued steps a few ticks after the core
            tips.append(tip)
        prev = tip
    m.trigger = False
    sim.run_until(lambda s: s.core.state == C.ST_READY, 2000)
    sim.settle()
    clearance = sim.core.limits.hover_clearance_um
    assert tips and all(abs(t + clearance) <= NEEDLE_UM_PER_STEP for t in tips)
    assert len(entry) >= 3 and all(abs(v - 30_000) <= 1000 for v in entry[1:])
    assert m.needle_axis.motor_steps == 0  # home once the shots stop


def test_one_mm_two_ul_at_ten_shots_a_second():
    """On the reference mechanics and line (1 mL, 30 G x 4 mm, water): the line's time
    constant, which pressure advance plans with, is what a wider barrel adds to."""
    for model in MODELS[:1]:
        sim, face0 = loaded(model, depth_um=1000, dose_nl=2000, speed_um_s=50_000)
        sim.configure(rate_nl_s=100_000, suckback_nl=0, mode=C.MODE_CONTINUOUS)
        sim.configure(shot_rate_mhz=10_000)
        sim.prime(300)
        start = sim.machine.face_um
        sim.burst(1050)
        sim.settle()
        n = len(sim.punctures)
        assert n >= 10
        starts = [p.start_ms for p in sim.punctures]
        # The first shot starts from home, the rest from the hover point, 100 ms apart.
        assert all(b - a == 100 for a, b in zip(starts[1:], starts[2:]))
        moved_nl = (sim.machine.face_um - start) * sim.machine.syringe_area_mm2
        step_nl = M.nl_for_plunger_steps(1, sim.core.area_cmm2) + 1
        assert moved_nl == pytest.approx(2000 * n, abs=step_nl)
