"""The line's time constant read during the backlash measurement's settle (injcore.linefit).

The fit on made-up samples first (an exponential, a friction step, the
sample period, a flat cell, a settle that ends too soon), then the whole
measurement on the simulator through the service screen: the simulated
line's R x C set through its needle resistance, the reading against it, the
upper bound of a fast line, a dead load cell, a slow line, and OK applying
what was read.
"""

import math

import pytest

from host_tools import ui_scenes
from injcore import codes as C
from injcore import linefit as F
from injcore import machine as M
from injcore.backlash import BL_SETTLE
from sim.session import Simulator
from ui import screens as S
from ui import service
from ui.keys import BACK, DOWN, OK, PRESS

# ---- the fit on made-up samples ----------------------------------------------------

PERIOD_TICKS = F.SAMPLE_US // M.TICK_US  # 12.5 ms: samples at 0, 12, 25, 37, ...


def decay(tau_ms, rise_mn=1200, base_mn=40, friction_mn=0, settle_ms=400, phase_ms=0):
    """(ticks, forces, end) of an exponential fall sampled like the HX711: a sample every
    12.5 ms, dated by the tick it is first seen; friction_mn on the first sample only (the
    stopper still sliding)."""
    t, f = [], []
    k = 0
    while True:
        at = (k * F.SAMPLE_US + phase_ms * 1000 + M.TICK_US - 1) // M.TICK_US
        if at >= settle_ms:
            break
        v = base_mn + rise_mn * math.exp(-at / tau_ms)
        t.append(at)
        f.append(int(v + (friction_mn if k == 0 else 0)))
        k += 1
    return t, f, settle_ms


@pytest.mark.parametrize("tau_ms", [15, 30, 60, 100])
@pytest.mark.parametrize("phase_ms", [0, 5, 11])
def test_the_fit_reads_an_exponential(tau_ms, phase_ms):
    t, f, end = decay(tau_ms, phase_ms=phase_ms)
    status, tau_us = F.fit(t, f, len(t), end, rest_mn=40)
    assert status == F.S_OK
    # A tau near a third of the settle reads low: the baseline is still falling.
    assert tau_us == pytest.approx(tau_ms * 1000, rel=0.05 if tau_ms <= 60 else 0.15)


def test_a_friction_step_at_the_start_does_not_shorten_it():
    t, f, end = decay(40, rise_mn=1000, friction_mn=400)
    status, tau_us = F.fit(t, f, len(t), end)
    assert status == F.S_OK and tau_us == pytest.approx(40_000, rel=0.05)


def test_a_fall_within_a_sample_period_is_an_upper_bound():
    t, f, end = decay(3)
    status, tau_us = F.fit(t, f, len(t), end)
    assert status == F.S_BOUND and 0 < tau_us < F.SAMPLE_US
    assert service.tau_text(tau_us, status) == "<12.5ms"


def test_what_cannot_be_read_is_refused():
    flat = [25] * 32
    ticks = [i * PERIOD_TICKS for i in range(32)]
    assert F.fit(ticks, flat, 32, 400) == (F.S_SMALL, None)
    # A rise that leaves the lower level within NOISE_LEVELS of the noise.
    t, f, end = decay(30, rise_mn=300)
    assert F.fit(t, f, len(t), end) == (F.S_SMALL, None)
    # A settle too short for the line: its end still far above the rest before the push.
    t, f, end = decay(500, rise_mn=1500)
    assert F.fit(t, f, len(t), end, rest_mn=40) == (F.S_SLOW, None)
    assert F.fit(t, f, 0, 400) == (F.S_NONE, None)


def test_line_fit_keeps_new_samples_and_the_last_one():
    fit = F.LineFit(capacity=8)
    t0 = 0x3FFFFFFF - 20  # Core.ticks wraps within the settle
    t, f, end = decay(30)
    fit.begin(40)
    for tick in range(end):
        i = max(k for k in range(len(t)) if t[k] <= tick)
        fit.add((t0 + tick) & 0x3FFFFFFF, f[i])  # every tick, the held sample
    assert fit.running and fit._n == 8  # full: the newest replaced the last
    fit.finish()
    assert not fit.running and fit.status in (F.S_OK, F.S_BOUND)
    fit = F.LineFit()
    fit.begin(40)
    for tick in range(end):
        i = max(k for k in range(len(t)) if t[k] <= tick)
        fit.add(t0 + tick, f[i])
    assert fit.finish() == pytest.approx(30_000, rel=0.03)
    fit.begin()
    fit.add(1, C.FORCE_INVALID)
    assert fit.finish() is None and fit.status == F.S_NONE


# ---- the measurement on the simulator ------------------------------------------------


def model_tau_us(sim):
    return sim.machine.fluid.tau_s() * 1e6


def set_line_tau_ms(sim, tau_ms):
    """Give the simulated line the time constant tau_ms through its resistance (another
    needle or drug); the syringe's compliance stays, and so the preload's force."""
    fluid = sim.machine.fluid
    fluid.r_kpa_s_per_ul = tau_ms / 1000 / fluid.compliance_ul_per_kpa
    assert model_tau_us(sim) == pytest.approx(tau_ms * 1000, rel=1e-6)


def keys(ui, *buttons):
    for b in buttons:
        ui.button(b, PRESS, 0)


def ready(model=1, seed=1):
    """Homed, loaded, primed, the line at rest, with a Ui polled every simulated ms (the
    main loop) on the backlash screen."""
    sim = Simulator(trace=False, seed=seed)
    assert sim.home()
    sim.load(model)
    sim.prime(800)
    sim.run_ms(300)
    ui = S.Ui(sim.core, "test")
    sim.main_loop.append(lambda: ui.poll(sim.now_us // 1000))
    ui_scenes._service(ui)
    ui_scenes._menu_at(ui, "Backlash")
    keys(ui, OK)
    assert ui.screen_name() == "backlash"
    return sim, ui


def measure(sim, ui):
    keys(ui, OK)
    assert sim.core.state == C.ST_MEASURE
    sim.run_until(lambda s: s.core.state != C.ST_MEASURE, 10_000)
    assert sim.core.state == C.ST_READY
    return ui.line_fit


def screen_text(ui):
    """The backlash screen's rows, as _draw_backlash writes them (label, value)."""
    rows = []

    class Fb:
        def fill(self, c):
            pass

        def fill_rect(self, *a):
            pass

        def text(self, s, x, y, c=1):
            rows.append((y, x, s))

    ui.draw(Fb(), 0)
    return " | ".join(s for _, _, s in sorted(rows))


@pytest.mark.parametrize("tau_ms", [30, 60, 120])
def test_tau_is_read_from_the_settle_and_applied_with_the_backlash(tau_ms):
    sim, ui = ready()
    set_line_tau_ms(sim, tau_ms)
    core = sim.core
    fit = measure(sim, ui)
    assert fit.status == F.S_OK
    want = model_tau_us(sim)
    assert abs(fit.tau_us - want) <= max(0.2 * want, F.SAMPLE_US)
    assert core.backlash_measured_steps >= 0
    assert "measured" in screen_text(ui) and service.tau_text(fit.tau_us) in screen_text(ui)
    keys(ui, OK)  # applies both
    assert ui.note == "applied" and ui.cal_saved == 1
    assert core.line_tau_us == fit.tau_us
    assert core.backlash_steps == core.backlash_measured_steps
    ui.note = ""
    assert "OK: again" in screen_text(ui)


def test_a_fast_line_reads_as_an_upper_bound():
    sim, ui = ready()
    set_line_tau_ms(sim, 5)
    fit = measure(sim, ui)
    assert fit.status == F.S_BOUND and fit.tau_us < F.SAMPLE_US
    assert "<12.5ms" in screen_text(ui)
    keys(ui, OK)  # the estimate is the best there is: it is applied
    assert sim.core.line_tau_us == fit.tau_us


def test_a_dead_load_cell_reads_nothing_and_applies_nothing():
    sim, ui = ready()
    core = sim.core
    sim.machine.force_mn = lambda: 0  # the cell answers, always the same
    before = core.backlash_steps, core.line_tau_us
    fit = measure(sim, ui)
    assert fit.status == F.S_SMALL and fit.tau_us is None
    assert core.backlash_measured_steps == -1 and core.notice == C.N_BACKLASH_FAILED
    assert "too small" in screen_text(ui) and "OK: again" in screen_text(ui)
    keys(ui, OK)  # nothing to apply: it measures again
    assert (core.backlash_steps, core.line_tau_us) == before
    assert core.state == C.ST_MEASURE


def test_a_line_slower_than_the_settle_is_not_read_nor_applied():
    sim, ui = ready()
    set_line_tau_ms(sim, 600)
    sim.machine.backlash_um = 12.0  # (the backlash read differs from the figure in use)
    core = sim.core
    tau0 = core.line_tau_us
    fit = measure(sim, ui)
    assert fit.status == F.S_SLOW and fit.tau_us is None and "too slow" in screen_text(ui)
    assert 0 <= core.backlash_measured_steps < core.backlash_steps
    keys(ui, OK)  # the backlash alone
    assert core.backlash_steps == core.backlash_measured_steps and core.line_tau_us == tau0


def test_a_measurement_started_without_the_screen_is_read_too():
    sim, ui = ready()
    set_line_tau_ms(sim, 40)
    keys(ui, BACK, DOWN)  # the service menu: the Ui's poll still feeds the fit
    assert sim.core.start_backlash()
    sim.run_until(lambda s: s.core.state != C.ST_MEASURE, 10_000)
    assert ui.line_fit.status == F.S_OK
    assert ui.line_fit.tau_us == pytest.approx(40_000, rel=0.2)


def test_a_fault_in_the_settle_leaves_no_reading():
    sim, ui = ready()
    keys(ui, OK)
    sim.run_until(lambda s: s.core.backlash_phase == BL_SETTLE, 1000)
    sim.run_ms(50)
    assert ui.line_fit.running
    sim.machine.estop = True
    sim.run_until(lambda s: s.core.state == C.ST_FAULT, 100)
    sim.run_ms(2)
    assert not ui.line_fit.running and ui.line_fit.status == F.S_NONE
    assert service.measured_tau_us(ui) is None
