"""Where a dose goes: the line model (sim/machine.py Fluid, machine.py's figures) and
the model-side measurement of every puncture (sim/session.py Puncture).

The physics first: the needle's resistance by Hagen-Poiseuille, the line's
compliance from the barrel area, the time constant per syringe, air drawn in by
a suck-back. Then random sessions measured on the model's side, not from what
the core counted: the drug out of the needle against the dose set, the needle's
speed at skin entry, the nappage rate achieved. Last, the target of issue 14
(95 % of every dose out with the tip at its set depth), expected to fail until
the firmware gets pressure advance. docs/line-model.md has the figures.
"""

import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from injcore import machine as M
from injcore.settings import MODE_CONTINUOUS, MODE_SINGLE
from sim.dose import half_step_nl, ready, settle_line, steady_shots
from sim.machine import AIR, NEEDLE_UM_PER_STEP, TISSUE, Fluid, Line, Machine
from sim.session import AT_DEPTH_UM, ENTRY_WINDOW_TICKS
from soak import examples

MODELS = sorted(M.SYRINGES)
DOSES_UL = (1, 2, 10, 20, 100, 200)  # the issue's range, 1-200 uL


def resistance_si(gauge, length_um, viscosity_upa_s):
    """Hagen-Poiseuille in SI units, Pa s / m^3: R = 8 mu L / (pi r^4)."""
    r_m = M.NEEDLE_ID_UM[gauge] / 2 * 1e-6
    return 8 * (viscosity_upa_s * 1e-6) * (length_um * 1e-6) / (math.pi * r_m**4)


# ---- the line model's physics --------------------------------------------------------


@pytest.mark.parametrize("gauge", sorted(M.NEEDLE_ID_UM))
@pytest.mark.parametrize("length_um", [4000, 6000, 13_000])
@pytest.mark.parametrize("viscosity", [M.WATER_UPA_S, M.HYALURONIC_UPA_S])
def test_needle_resistance_is_hagen_poiseuille(gauge, length_um, viscosity):
    r = M.needle_r_pa_s_ml(gauge, length_um, viscosity)  # Pa per mL/s
    assert r * 1e6 == pytest.approx(resistance_si(gauge, length_um, viscosity), rel=1e-5)


def test_resistance_scales_with_the_fourth_power_of_the_bore_and_with_length():
    gauges = sorted(M.NEEDLE_ID_UM)
    water = M.WATER_UPA_S
    for a in gauges:
        for b in gauges:
            ratio = M.needle_r_pa_s_ml(a, 4000, water) / M.needle_r_pa_s_ml(b, 4000, water)
            bore = (M.NEEDLE_ID_UM[b] / M.NEEDLE_ID_UM[a]) ** 4
            assert ratio == pytest.approx(bore, rel=1e-4)
        r4 = M.needle_r_pa_s_ml(a, 4000, water)
        assert M.needle_r_pa_s_ml(a, 13_000, water) == pytest.approx(r4 * 13 / 4, rel=1e-4)
        assert M.needle_r_pa_s_ml(a, 4000, 50 * water) == pytest.approx(50 * r4, rel=1e-4)
    # A finer needle resists more (28 G and 29 G share their nominal bore).
    rs = [M.needle_r_pa_s_ml(g, 4000, water) for g in gauges]
    assert rs == sorted(rs)


def test_compliance_grows_with_the_square_of_the_barrel_area():
    line = M.LINE_COMPLIANCE_NL_KPA
    for area in (1734, 5789, 11290, 16350, M.area_cmm2_from_diameter(M.CUSTOM_ID_MAX_UM)):
        stopper = M.compliance_nl_kpa(area) - line
        exact = (area / 100) ** 2 / M.STOPPER_STIFFNESS_N_MM  # mm^4 / (N/mm) = nL/kPa
        assert abs(stopper - exact) <= 0.5
    small, large = M.compliance_nl_kpa(4000) - line, M.compliance_nl_kpa(8000) - line
    assert large == pytest.approx(4 * small, rel=0.01)
    for model, e in M.SYRINGES.items():
        assert e[M.SYR_COMPLIANCE_NL_KPA] > 0, model
        assert M.syringe_compliance_nl_kpa(model, 0) == e[M.SYR_COMPLIANCE_NL_KPA]
    custom = M.area_cmm2_from_diameter(6000)
    assert M.syringe_compliance_nl_kpa(M.CUSTOM_SYRINGE, custom) == M.compliance_nl_kpa(custom)


def test_time_constant_per_syringe_on_the_reference_line():
    taus = []
    for model in sorted(M.SYRINGES, key=lambda m: M.SYRINGES[m][M.SYR_AREA_CMM2]):
        c_nl_kpa = M.SYRINGES[model][M.SYR_COMPLIANCE_NL_KPA]
        tau_us = M.line_tau_us(c_nl_kpa)
        r_si = resistance_si(M.REF_NEEDLE_GAUGE, M.REF_NEEDLE_LENGTH_UM, M.REF_VISCOSITY_UPA_S)
        assert tau_us * 1e-6 == pytest.approx(r_si * c_nl_kpa * 1e-15, rel=1e-4, abs=1e-6)
        # The simulator's line for that syringe has the same time constant.
        fluid = Machine().new_fluid(model)
        assert fluid.tau_s() * 1e6 == pytest.approx(tau_us, rel=1e-4, abs=1)  # whole us
        taus.append(tau_us)
    assert taus == sorted(taus)  # a wider barrel, a softer line


def test_the_line_is_configurable_and_defaults_to_the_reference():
    ref = Machine().line
    assert (ref.gauge, ref.needle_length_um, ref.viscosity_upa_s) == (
        M.REF_NEEDLE_GAUGE,
        M.REF_NEEDLE_LENGTH_UM,
        M.REF_VISCOSITY_UPA_S,
    )
    thick = Machine(line=Line(gauge=27, needle_length_um=13_000, viscosity_upa_s=50_000))
    thick.insert_syringe(MODELS[0])
    want = M.needle_r_pa_s_ml(27, 13_000, 50_000) / 1e6
    assert thick.fluid.r_kpa_s_per_ul == pytest.approx(want)
    compliance_nl_kpa = M.SYRINGES[MODELS[0]][M.SYR_COMPLIANCE_NL_KPA]
    assert thick.fluid.compliance_ul_per_kpa * 1000 == pytest.approx(compliance_nl_kpa)


def test_a_push_drains_with_the_line_time_constant():
    fluid = Fluid(compliance_ul_per_kpa=0.1, r_kpa_s_per_ul=0.5)  # tau 50 ms
    area_mm2 = 50.0
    force = fluid.step(10.0, area_mm2, 1e-9)  # 10 uL pushed at once
    assert force == pytest.approx(100 * area_mm2 / 1000, rel=1e-6)  # 100 kPa on 50 mm^2
    for _ in range(50):
        fluid.step(0.0, area_mm2, 0.001)
    assert fluid.excess_ul == pytest.approx(10.0 / math.e, rel=1e-3)
    for _ in range(950):
        fluid.step(0.0, area_mm2, 0.001)
    assert fluid.delivered_ul == pytest.approx(10.0, rel=1e-6)


# ---- air and tissue fluid drawn in ------------------------------------------------------


def test_a_suck_back_with_the_tip_out_draws_air_which_leaves_before_the_drug():
    fluid = Fluid(compliance_ul_per_kpa=0.02, r_kpa_s_per_ul=1.0)
    c0 = fluid.compliance()
    fluid.step(-1.0, 17.0, 0.001, tip_in_skin=False)  # the plunger draws back 1 uL
    for _ in range(2000):
        fluid.step(0.0, 17.0, 0.001, tip_in_skin=False)
    assert fluid.air_ul == pytest.approx(1.0, rel=1e-6)
    assert fluid.delivered_ul == 0.0  # air in: no drug went anywhere
    assert fluid.compliance() == pytest.approx(c0 + 1.0 / Fluid.P_ATM_KPA)  # air is springy
    # The next push sends the air out first: 3 uL pushed, 2 uL of drug out.
    fluid.step(3.0, 17.0, 0.001, tip_in_skin=False)
    drug = [fluid.delivered_ul]
    while fluid.excess_ul > 1e-9:
        fluid.step(0.0, 17.0, 0.001, tip_in_skin=False)
        if fluid.drawn_in_ul > 0:
            assert fluid.delivered_ul == 0.0  # no drug while air is still in the needle
        drug.append(fluid.delivered_ul)
    assert fluid.air_ul == 0.0 and fluid.delivered_ul == pytest.approx(2.0, rel=1e-6)
    assert drug == sorted(drug)


def test_with_the_tip_in_the_skin_it_is_tissue_fluid_and_not_drug():
    fluid = Fluid(compliance_ul_per_kpa=0.02, r_kpa_s_per_ul=1.0)
    fluid.step(-0.5, 17.0, 0.001, tip_in_skin=True)
    for _ in range(500):
        fluid.step(0.0, 17.0, 0.001, tip_in_skin=True)
    fluid.step(-0.5, 17.0, 0.001, tip_in_skin=False)
    for _ in range(500):
        fluid.step(0.0, 17.0, 0.001, tip_in_skin=False)
    assert [k for k, _ in fluid.drawn] == [TISSUE, AIR]
    assert fluid.air_ul == pytest.approx(0.5) and fluid.drawn_in_ul == pytest.approx(1.0)
    assert fluid.compliance() == pytest.approx(0.02 + 0.5 / Fluid.P_ATM_KPA)  # only air
    assert fluid.delivered_ul == 0.0


def test_a_puncture_with_suck_back_draws_air_once_the_tip_is_out():
    # The narrowest barrel, the stiffest line: the suck-back outweighs what the
    # injection left squeezed in it, and the line still pulls as the tip leaves.
    # A 32 G line the core plans as the reference 30 G one: pressure advance takes
    # back only part of what it holds, and the suck-back pulls on as the tip leaves.
    sim = ready(min(MODELS, key=lambda m: M.SYRINGES[m][M.SYR_AREA_CMM2]), Line(gauge=32))
    sim.configure(dose_nl=2000, suckback_nl=2000)
    m = sim.machine
    drug = [m.fluid.delivered_ul]
    sim.machine.trigger = True
    sim.run_ms(30)
    sim.machine.trigger = False
    for _ in range(int(12 * m.fluid.tau_s() * 1000) + 1000):
        sim.step()
        drug.append(m.fluid.delivered_ul)
    assert drug == sorted(drug)  # a suck-back never takes drug back: delivered is net drug
    assert m.fluid.air_ul > 0.1  # the line still pulled when the tip was out
    # Tissue fluid first (the tip at depth), then air: no more than the suck-back drew.
    assert [kind for kind, _ in m.fluid.drawn] == [TISSUE, AIR]
    assert m.fluid.air_ul < m.fluid.drawn_in_ul <= 2.0
    p = sim.punctures[-1]
    # What was drawn in displaced drug: out = the plunger's net push + the column's growth.
    pushed_nl = sim.core.steps_to_nl(p.dose_steps)
    grown_nl = p.drawn_in_end_nl - p.drawn_in_start_nl
    assert p.dose_out_nl == pytest.approx(pushed_nl + grown_nl, abs=2)


# ---- random sessions, measured on the model's side ----------------------------------------


def entry_speed_bounds(speed_um_s, depth_um, hover=False):
    """Where the measured speed at skin entry may fall for a set speed.

    The planner lays the needle's move on whole ticks: its cruise is the
    distance over a whole number of ticks, never faster than set and short of
    it by less than three ticks' travel over the whole move (3 x speed/1000 um of
    NEEDLE_HOME_OFFSET_UM + depth, or of the hover clearance + depth). The model
    measures over ENTRY_WINDOW_TICKS ticks of whole microsteps: one microstep more or
    less in that window.
    """
    travel_um = M.NEEDLE_HOME_OFFSET_UM + depth_um
    if hover:  # nappage: from the hover point, at least what the needle needs to reach speed
        travel_um = depth_um + max(
            M.NEEDLE_HOVER_CLEARANCE_UM,
            speed_um_s**2 / (2 * M.NEEDLE_ACCEL_UM_S2) + 2 * speed_um_s / 1000,
        )
    quantum = NEEDLE_UM_PER_STEP * 1000 / ENTRY_WINDOW_TICKS  # um/s
    # Whole ticks for the ramps and the cruise: up to three ticks' travel short (measured:
    # 8.6 % at 38 mm/s over a 550 um nappage move, 2.8 % at 42 mm/s over 4.1 mm).
    low = speed_um_s * (1 - 3 * speed_um_s / 1000 / travel_um) - quantum
    return low, speed_um_s + quantum


dose_nl = st.one_of(
    st.integers(2, 19).map(lambda x: x * 500), st.integers(10, 200).map(lambda x: x * 1000)
)
depth_um = st.integers(3, M.NEEDLE_LENGTH_UM // 100).map(lambda x: x * 100)
speed_um_s = st.integers(5, 50).map(lambda x: x * 1000)


@settings(
    max_examples=examples(12),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    model=st.sampled_from(MODELS),
    dose=dose_nl,
    depth=depth_um,
    speed=speed_um_s,
    sb=st.integers(0, 20).map(lambda x: x * 100),
)
def test_single_shots_put_out_the_dose_at_the_set_speed(model, dose, depth, speed, sb):
    sim = ready(model)
    sim.configure(mode=MODE_SINGLE, dose_nl=dose, depth_um=depth, speed_um_s=speed, suckback_nl=sb)
    for _ in range(2):  # the first after priming, then one with drawn-in fluid before it
        p = sim.shot()
        settle_line(sim)
        assert abs(p.depth_reached_um - depth) <= NEEDLE_UM_PER_STEP
        # Counted on the model's side: drug out of the needle, all of it (before, in and
        # after the skin), against the set dose. Drawn-in fluid that grew in the needle
        # displaced drug (the first puncture after priming puts out dose + suck-back).
        grown_nl = p.drawn_in_end_nl - p.drawn_in_start_nl
        assert abs(p.dose_out_nl - grown_nl - dose) <= half_step_nl(model) + 1e-4 * dose
        assert p.dose_out_nl == pytest.approx(p.pre_entry_nl + p.in_skin_nl + p.tail_nl)
        assert 0 <= p.at_depth_nl <= p.in_skin_nl + 1e-9
        low, high = entry_speed_bounds(speed, depth)
        assert low <= p.entry_speed_um_s <= high


@settings(
    max_examples=examples(10),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    model=st.sampled_from(MODELS),
    dose=dose_nl,
    depth=depth_um,
    speed=speed_um_s,
    rate_share=st.floats(0.2, 1.0),
)
def test_nappage_keeps_the_set_rate_and_puts_out_every_dose(model, dose, depth, speed, rate_share):
    sim = ready(model)
    chosen = dict(dose_nl=dose, depth_um=depth, speed_um_s=speed, syringe_model=model)
    best = sim.highest_shot_rate_mhz(**chosen)
    assume(best is not None)  # a dose too long for even the slowest rate: refused
    rate = max(500, int(best * rate_share) // 100 * 100)
    sim.configure(mode=MODE_CONTINUOUS, shot_rate_mhz=rate, **chosen)
    period_ms = 1_000_000 / rate
    n = len(sim.punctures)
    sim.burst(int(4.5 * period_ms) + 500)  # the first shot starts from home: longer
    settle_line(sim)
    burst = sim.punctures[n:]
    assert len(burst) >= 4
    for p in burst[2:]:  # from the hover point
        # The core counts the period in whole 1 ms ticks.
        assert abs(p.interval_ms - period_ms) <= 1.0
        assert 1e6 / p.interval_ms == pytest.approx(rate, rel=1.0 / period_ms)
    for p in burst:
        low, high = entry_speed_bounds(speed, depth, hover=True)
        assert low <= p.entry_speed_um_s <= high
    # Each puncture's tail ends where the next starts: the burst's drug adds up.
    out_nl = sum(p.dose_out_nl for p in burst)
    grown_nl = burst[-1].drawn_in_end_nl - burst[0].drawn_in_start_nl
    slack = len(burst) * (half_step_nl(model) + 1e-4 * dose)
    assert abs(out_nl - grown_nl - len(burst) * dose) <= slack


# ---- the target: the dose in the skin, at depth ----------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_at_least_95_percent_of_every_dose_leaves_at_the_set_depth(model):
    """Issue 14's target on the reference line; "at depth" is within AT_DEPTH_UM."""
    assert AT_DEPTH_UM == 50
    shots = steady_shots(model, [d * 1000 for d in DOSES_UL])
    shares = {d // 1000: round(p.at_depth_share, 3) for d, p in shots.items()}
    assert min(shares.values()) >= 0.95, shares
