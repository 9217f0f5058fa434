"""Gravimetric dose calibration: the core's correction factor and the interface's flow.

The simulated syringe's real bore is made 3 % larger in area than the table
says, so it delivers 3 % more than the core counts. The operator fires the
calibration shots into a "cup" (the model's outflow), enters the mass the
scale shows, and the correction brings the next doses back to what is set.
"""

import pytest

from host_tools import ui_scenes
from injcore import codes as C
from injcore import machine as M
from injcore.settings import SettingsError
from sim.session import Simulator
from ui import screens as S
from ui.keys import BACK, DOWN, OK, PRESS


def keys(ui, *buttons):
    for b in buttons:
        ui.button(b, PRESS, 0)


def to_calibration(ui):
    ui_scenes._service(ui)
    ui_scenes._menu_at(ui, "Calibrate")
    keys(ui, OK)
    assert ui.screen_name() == "calibration"


@pytest.fixture
def wide_syringe():
    sim = Simulator(trace=False)
    assert sim.home()
    sim.load(1)
    sim.machine.syringe_area_mm2 *= 1.03  # the real bore: 3 % more area than the table
    sim.prime(800)
    return sim


def fire_shots(sim, ui, n):
    for _ in range(n):
        sim.shot()
        ui.poll(sim.now_us // 1000)


def test_the_factor_corrects_the_dose(wide_syringe):
    sim = wide_syringe
    ui = S.Ui(sim.core, "test")
    ui.poll(0)
    to_calibration(ui)
    keys(ui, OK)
    assert ui.screen_name() == "cal-run"
    out0 = sim.machine.fluid.delivered_ul
    fire_shots(sim, ui, S.CAL_SHOTS)
    sim.settle()
    ui.poll(sim.now_us // 1000)
    assert ui.screen_name() == "edit" and ui.item is S.CAL_MASS
    weighed_ul = sim.machine.fluid.delivered_ul - out0
    mass_dmg = round(weighed_ul * M.WATER_MG_PER_ML / 100)  # the scale reads 0.1 mg
    ui.value = mass_dmg  # the operator keys it in (UP/DOWN tested elsewhere)
    keys(ui, OK)
    assert ui.item is S.CAL_DENSITY and ui.value == M.WATER_MG_PER_ML  # water by default
    keys(ui, OK)
    assert ui.screen_name() == "cal-result"
    assert 250 <= ui.cal_error_before <= 350  # about +3 % before
    assert abs(ui.cal_error_after) <= 10  # within 0.1 % after (the area's integer rounding)
    keys(ui, OK)
    assert sim.core.dose_factor_ppm == ui.cal_factor_ppm
    assert 1_025_000 <= sim.core.dose_factor_ppm <= 1_035_000
    assert ui.cal_saved == 1 and ui.screen_name() == "calibration"
    # The next doses: what leaves the needle is the dose set again.
    out1 = sim.machine.fluid.delivered_ul
    fire_shots(sim, ui, 5)
    sim.settle()
    per_shot_ul = (sim.machine.fluid.delivered_ul - out1) / 5
    assert per_shot_ul == pytest.approx(sim.core.settings.dose_nl / 1000, rel=0.005)


def test_calibration_needs_a_primed_machine_and_back_cancels():
    sim = Simulator(trace=False)
    ui = S.Ui(sim.core, "test")
    to_calibration(ui)
    keys(ui, OK)
    assert ui.screen_name() == "calibration" and "prime" in ui.note
    keys(ui, BACK)
    assert ui.screen_name() == "service"
    assert sim.core.dose_factor_ppm == M.DOSE_FACTOR_ONE_PPM


def test_an_impossible_reading_is_refused(wide_syringe):
    sim = wide_syringe
    ui = S.Ui(sim.core, "test")
    to_calibration(ui)
    keys(ui, OK)
    fire_shots(sim, ui, S.CAL_SHOTS)
    sim.settle()
    ui.poll(sim.now_us // 1000)
    ui.value = ui.value // 2  # half the mass: a spilled cup
    keys(ui, OK, OK)
    assert ui.screen_name() == "cal-result" and ui.cal_factor_ppm == 0
    keys(ui, OK)  # nothing to apply
    assert sim.core.dose_factor_ppm == M.DOSE_FACTOR_ONE_PPM


def test_the_core_range_checks_the_factor():
    sim = Simulator(trace=False)
    for bad in (M.DOSE_FACTOR_MIN_PPM - 1, M.DOSE_FACTOR_MAX_PPM + 1, 1.0, None):
        with pytest.raises(SettingsError):
            sim.core.set_calibration(bad)
    assert sim.core.dose_factor_ppm == M.DOSE_FACTOR_ONE_PPM
    sim.core.set_calibration(1_050_000)
    area = M.SYRINGES[1][M.SYR_AREA_CMM2]
    assert sim.core.steps_to_nl(100_000) > 1.04 * M.nl_for_plunger_steps(100_000, area)
    sim.core.state = C.ST_ADVANCE
    with pytest.raises(SettingsError):
        sim.core.set_calibration(1_000_000)


@pytest.mark.parametrize("true_um", [10.0, 35.0, 60.0])
def test_backlash_is_measured_with_the_load_cell_and_applied(true_um):
    sim = Simulator(trace=False)
    assert sim.home()
    sim.load(1)
    sim.prime(800)
    sim.machine.backlash_um = true_um
    ui = S.Ui(sim.core, "test")
    to_calibration(ui)
    keys(ui, BACK, DOWN, OK)
    assert ui.screen_name() == "backlash"
    keys(ui, OK)
    assert sim.core.state == C.ST_MEASURE
    keys(ui, BACK)  # not while measuring
    assert ui.screen_name() == "backlash"
    sim.run_until(lambda s: s.core.state != C.ST_MEASURE, 10_000)
    assert sim.core.state == C.ST_READY
    measured_um = sim.core.backlash_measured_steps * 1000 / M.PLUNGER_STEPS_PER_MM
    assert measured_um == pytest.approx(true_um, abs=2.0)  # the load cell's 12.5 ms adds <= 1.3 um
    keys(ui, OK)
    assert sim.core.backlash_steps == sim.core.backlash_measured_steps
    # The compensation now matches the mechanism: doses stay right after reversals.
    out0 = sim.machine.fluid.delivered_ul
    for _ in range(4):
        sim.shot()
    sim.settle()
    assert (sim.machine.fluid.delivered_ul - out0) / 4 == pytest.approx(
        sim.core.settings.dose_nl / 1000, rel=0.01
    )


def test_backlash_refused_without_a_primed_syringe():
    sim = Simulator(trace=False)
    assert sim.home()
    assert not sim.core.start_backlash()
    assert sim.core.notice == C.N_NO_SYRINGE
    with pytest.raises(SettingsError):
        sim.core.set_backlash(10_000)
