"""Service: the service code and the service menu behind it.

The menu's Service line asks for the four-digit code (pin); three wrong
codes lock the entry for a minute. The service menu edits the engineer's
limits (H11) and opens gravimetric calibration (calibration, cal-run,
cal-result: shots into a cup on a scale, the mass entered, the correction
applied), the backlash measurement with the line's time constant read from
its settle (backlash) and the device info (info); Confirm accepts settings
the board could not verify, New code sets the code; Protocols lists the stored
protocols (proto-remove) and removes the one chosen once OK confirms it
(proto-remove-ok): room for another, as `injector protocol remove` does.
Entries as in ui/menu.py.
"""

from injcore import codes as C
from injcore import linefit as F
from injcore import machine as M
from injcore.backlash import BL_NONE, BL_PRELOAD, BL_SETTLE
from injcore.calib import gravimetric, weighed_nl
from injcore.compat import const
from injcore.persist import pin_digits
from injcore.settings import SettingsError
from injcore.store import DEFAULT_SERVICE_PIN

from . import draw as D
from .keys import BACK, DOWN, OK, SND_REFUSE, UP
from .menu import (
    A_SERVICE,
    ACTION,
    LOCAL,
    MENU_ROWS,
    NUM,
    Item,
    done_or_needed,
    dose_text,
    draw_list,
    edit,
    explain,
    fixed,
    limit_item,
    list_key,
    open_list,
    open_main,
)

# The service code: four digits entered with UP/DOWN and OK. Three wrong codes
# lock the entry for PIN_LOCK_MS.
SERVICE_PIN = pin_digits(DEFAULT_SERVICE_PIN)  # until a stored one loads
PIN_TRIES = const(3)
PIN_LOCK_MS = const(60_000)

# Gravimetric calibration: CAL_SHOTS doses of the dose set, into a cup on a scale.
CAL_SHOTS = const(10)
_INFO_ROWS = const(5)  # lines under the title, above the footer

A_CALIB = "calibrate"
A_BACKLASH = "backlash"
A_INFO = "info"
A_CONFIRM = "confirm"
A_NEW_PIN = "new-code"
A_REMOVE = "remove-protocol"

SERVICE_MENU = (
    limit_item("Needle len", "needle_length_um", "mm", 1000, 1, 100),
    limit_item("Sess. cap", "session_cap_nl", "mL", 1_000_000, 1, 100_000),
    limit_item("Occlusion", "occlusion_kpa", "kPa", 1, 0, 10),
    Item("Calibrate", ACTION, A_CALIB),
    Item("Backlash", ACTION, A_BACKLASH),
    Item("Dev. info", ACTION, A_INFO),
    Item("Confirm", ACTION, A_CONFIRM),
    Item("New code", ACTION, A_NEW_PIN),
    Item("Protocols", ACTION, A_REMOVE),
)


def setup(ui):
    ui._pin = [0, 0, 0, 0]
    ui._pin_pos = 0
    ui._pin_wrong = 0
    ui._pin_locked_until = None
    ui._pin_setting = False  # the code screen sets a new code (Service > New code)
    ui._info_top = 0
    ui.cal = {"mass_dmg": 0, "density": M.WATER_MG_PER_ML}  # the LOCAL items' figures
    ui._cal_p0 = 0  # punctures and counted steps when the calibration shots began
    ui._cal_steps0 = 0
    ui._cal_expected_nl = 0
    ui.cal_factor_ppm = 0  # the result, once computed (0: none / out of range)
    ui.cal_measured_nl = 0
    ui.cal_error_before = 0  # hundredths of a percent
    ui.cal_error_after = 0
    ui.cal_saved = 0  # times a calibration was applied (the board stores it)
    ui.line_fit = F.LineFit()  # the line's time constant, read while a backlash measurement settles
    ui._rm_names = []  # the stored protocols, on the removal list
    ui._rm_cursor = 0


def poll(ui):
    core = ui.core
    if (
        ui.screen == "cal-run"
        and core.state == C.ST_READY
        and core.punctures - ui._cal_p0 >= CAL_SHOTS
    ):
        _cal_shots_done(ui)
    _fit_poll(ui)


def _fit_poll(ui):
    """Feed the line fit the force while a backlash measurement settles, whatever the screen:
    the main loop's part of the measurement (the tick only runs the moves)."""
    core = ui.core
    fit = ui.line_fit
    phase = core.backlash_phase
    if phase == BL_PRELOAD or phase == BL_SETTLE:
        if not fit.running:
            fit.begin()  # started elsewhere than the backlash screen: the rest force unknown
        if phase == BL_SETTLE:
            fit.add(core.ticks, core.force_mn)
    elif fit.running:
        if phase == BL_NONE:
            fit.cancel()  # stopped before its probe (a fault): no reading
        else:
            fit.finish()  # the probe began: the settle is over


def _pct(hundredths):
    """A signed percentage from hundredths of a percent: -123 -> '-1.23%'."""
    sign = "-" if hundredths < 0 else "+"
    return sign + fixed(abs(hundredths), 100, 2) + "%"


# ---- the service code ----------------------------------------------------------


def _ask_code(ui):
    if ui._pin_locked_until is not None and ui._now - ui._pin_locked_until < 0:
        ui.message("locked: wait %d s" % ((ui._pin_locked_until - ui._now + 999) // 1000))
        return False
    ui._pin_locked_until = None
    ui._pin_setting = False
    ui._pin = [0, 0, 0, 0]
    ui._pin_pos = 0
    ui.go("pin")
    return True


def _new_code(ui):  # the service code screen, setting instead of checking
    ui._pin = list(ui.service_pin)
    ui._pin_pos = 0
    ui._pin_setting = True
    ui.go("pin")
    return True


def pin_key(ui, b):
    """Engineer limits only behind the service code; three wrong codes lock it (H11)."""
    pin = ui._pin
    i = ui._pin_pos
    if b == UP or b == DOWN:
        pin[i] = (pin[i] + (1 if b == UP else 9)) % 10
        return True
    if b == BACK:
        if i == 0:
            ui.go("service" if ui._pin_setting else "menu")
            ui._pin_setting = False
        else:
            ui._pin_pos = i - 1
        return True
    if b != OK:
        return False
    if i < 3:
        ui._pin_pos = i + 1
        return True
    if ui._pin_setting:  # the board stores it with the settings
        ui._pin_setting = False
        ui.service_pin = tuple(pin)
        ui.go("service")
        ui.message("new service code set")
        return True
    if tuple(pin) == ui.service_pin:
        ui._pin_wrong = 0
        open_list(ui, "service", SERVICE_MENU, 0)
        return True
    ui._pin_wrong += 1
    ui._pin = [0, 0, 0, 0]
    ui._pin_pos = 0
    if ui._pin_wrong >= PIN_TRIES:
        ui._pin_wrong = 0
        ui._pin_locked_until = ui._now + PIN_LOCK_MS
        ui.go("menu")
        ui.message("wrong code: locked 60 s")
    else:
        ui.note = "wrong code"
    ui.sound = SND_REFUSE
    return False


def _draw_pin(ui, fb):
    D.inverted(fb, "New service code" if ui._pin_setting else "Service code", 0)
    x = 20
    for i in range(4):
        ch = str(ui._pin[i]) if i <= ui._pin_pos else "-"
        D.big(fb, ch, x, 16)
        if i == ui._pin_pos:
            fb.fill_rect(x - 2, 39, D.BIG_W + 4, 2, 1)
        x += 24
    D.inverted(fb, ui.note or "UP/DOWN OK BACK", 55)


# ---- the service menu ------------------------------------------------------------


def _service_key(ui, b):
    if b == BACK:  # up to the main menu, on the line it was left at
        open_main(ui, ui._main_cursor)
        return True
    return list_key(ui, b)


def _draw_service(ui, fb):
    draw_list(ui, fb, "Service")


def _confirm(ui):
    if not ui.core.confirm_settings():
        ui.message("settings already confirmed")
        return False
    ui.message("settings confirmed")
    return True


# ---- device info -----------------------------------------------------------------


def _open_info(ui):
    ui._info_top = 0
    ui.go("info")
    return True


def info_lines(ui):
    core = ui.core
    up_s = ui.up_ms // 1000
    lines = [
        ("firmware", ui.version),
        ("reset", C.RESET_NAMES[core.reset_cause]),
        ("run", "%d:%02d h" % (up_s // 3600, up_s // 60 % 60)),
        ("overruns", str(core.overruns)),
    ]
    if ui.info is not None:
        lines.extend(ui.info())
    return lines


def _info_key(ui, b):
    if b == UP or b == DOWN:
        last = max(0, len(info_lines(ui)) - _INFO_ROWS)
        top = max(0, min(last, ui._info_top + (1 if b == DOWN else -1)))
        moved = top != ui._info_top
        ui._info_top = top
        return moved
    return False


def _draw_lines(fb, title, lines, top, foot="BACK: return"):
    D.inverted(fb, title, 0)
    for row in range(_INFO_ROWS):
        i = top + row
        if i >= len(lines):
            break
        label, value = lines[i]
        y = 11 + row * 9
        fb.text(label[: D.LINE_CHARS - len(value) - 1], 0, y, 1)
        D.right(fb, value, y)
    D.foot(fb, foot)


def _draw_info(ui, fb):
    _draw_lines(fb, "Device info", info_lines(ui), ui._info_top)


# ---- gravimetric calibration -----------------------------------------------------


def _open_calib(ui):
    ui.go("calibration")
    return True


def calib_lines(ui):
    core = ui.core
    area = core.settings.syringe()[0]
    return [
        ("needle", "%d/mm" % M.NEEDLE_STEPS_PER_MM),
        ("plunger", "%d/mm" % M.PLUNGER_STEPS_PER_MM),
        ("barrel", fixed(area, 100, 2) + "mm2"),
        ("dose x", fixed(core.dose_factor_ppm, 1_000_000, 4)),
        ("per step", fixed(core.steps_to_nl(1000), 1000, 1) + "nL"),
    ]


def _calib_key(ui, b):
    if b != OK:
        return False
    core = ui.core
    if core.state != C.ST_READY or not core.primed:
        ui.note = "home, load and prime first"
        return False
    ui._cal_p0 = core.punctures
    ui._cal_steps0 = core.delivered_steps
    ui.cal_factor_ppm = 0
    ui.go("cal-run")
    return True


def _draw_calib(ui, fb):
    _draw_lines(fb, "Calibration", calib_lines(ui), 0, ui.note or "OK: weigh BACK")


def _cal_shots_done(ui):
    core = ui.core
    ui._cal_expected_nl = core.steps_to_nl(core.delivered_steps - ui._cal_steps0)
    # Start the mass entry at what the counted volume weighs: a few keys to the reading.
    ui.cal["mass_dmg"] = max(1, ui._cal_expected_nl * ui.cal["density"] // 100_000)
    edit(ui, CAL_MASS)


def cal_compute(ui):
    """Correction factor = weighed / counted volume; errors before and after, in 0.01 %."""
    core = ui.core
    ui.cal_measured_nl = weighed_nl(ui.cal["mass_dmg"], ui.cal["density"])
    ui.cal_factor_ppm, ui.cal_error_before, ui.cal_error_after = gravimetric(
        ui._cal_expected_nl, ui.cal_measured_nl, core.dose_factor_ppm, core.settings.syringe()[0]
    )


def _mass_entered(ui):
    edit(ui, CAL_DENSITY)


def _density_entered(ui):
    cal_compute(ui)
    ui.go("cal-result")


CAL_MASS = Item(
    "Mass", NUM, "mass_dmg", LOCAL, "mg", 10, 1, 1, 1, 1_000_000, done=_mass_entered
)  # 0.1 mg
CAL_DENSITY = Item(
    "Density", NUM, "density", LOCAL, "mg/mL", 1, 0, 1, 500, 2000, done=_density_entered
)


def _draw_cal_run(ui, fb):
    D.inverted(fb, "Calibrate", 0)
    core = ui.core
    for i, line in enumerate(
        D.wrap("fire %d shots of %suL into a cup" % (CAL_SHOTS, dose_text(core.settings.dose_nl)))[
            :3
        ]
    ):
        fb.text(line, 0, 12 + 9 * i, 1)
    D.big(fb, "%d" % (core.punctures - ui._cal_p0), 0, 34)
    fb.text("of %d" % CAL_SHOTS, 40, 46, 1)
    D.inverted(fb, "BACK: cancel", 55)


def _cal_result_key(ui, b):
    if b != OK or not ui.cal_factor_ppm:
        return False
    try:
        ui.core.set_calibration(ui.cal_factor_ppm)
    except SettingsError as e:
        ui.note = explain(e.refusals[0])
        return False
    ui.cal_saved += 1
    ui.go("calibration")
    ui.note = "calibration applied"
    return True


def _draw_cal_result(ui, fb):
    D.inverted(fb, "Calibration", 0)
    fb.text("counted " + fixed(ui._cal_expected_nl, 1000, 1) + "uL", 0, 11, 1)
    fb.text("weighed " + fixed(ui.cal_measured_nl, 1000, 1) + "uL", 0, 20, 1)
    fb.text("error   " + _pct(ui.cal_error_before), 0, 29, 1)
    if ui.cal_factor_ppm:
        fb.text("after   " + _pct(ui.cal_error_after), 0, 38, 1)
        D.foot(fb, ui.note or "OK: apply BACK")
    else:
        fb.text("out of range:", 0, 38, 1)
        D.inverted(fb, "check syr./scale", 55)


# ---- backlash --------------------------------------------------------------------


def _open_backlash(ui):
    ui.go("backlash")
    return True


def measured_tau_us(ui):
    """The line's time constant the last measurement read (us), or None: none read."""
    fit = ui.line_fit
    return None if fit.running else fit.tau_us


def _news(ui):
    """The measured figures that differ from those in use: (backlash steps or -1, tau or None)."""
    core = ui.core
    m = core.backlash_measured_steps
    tau = measured_tau_us(ui)
    return (
        m if m >= 0 and m != core.backlash_steps else -1,
        tau if tau is not None and tau != core.line_tau_us else None,
    )


def _backlash_key(ui, b):
    core = ui.core
    if b == BACK:
        if core.state == C.ST_MEASURE:
            return False  # it ends by itself in a few seconds
        ui.go("service")
        return True
    if b != OK:
        return False
    steps, tau = _news(ui)
    if (steps >= 0 or tau is not None) and core.state == C.ST_READY:
        try:  # what was measured goes in together: the backlash, then tau
            if steps >= 0:
                core.set_backlash(steps)
            if tau is not None:
                core.set_line_tau(tau)
        except SettingsError as e:
            ui.note = explain(e.refusals[0])
            return False
        ui.cal_saved += 1
        ui.note = "applied"
        return True
    rest_mn = core.force_mn  # the line at rest: what its force falls back to after the push
    if core.start_backlash():
        ui.line_fit.begin(rest_mn)
        ui.note = ""
        return True
    ui.note = C.NOTICE_NAMES[core.notice]
    return False


def tau_text(tau_us, status=F.S_OK):
    """A time constant on the screen: '28.4ms', an upper bound '<12.5ms', or why none."""
    if status == F.S_SMALL:
        return "too small"
    if status == F.S_SLOW:
        return "too slow"
    if status == F.S_BOUND:
        return "<" + fixed(F.SAMPLE_US, 1000, 1) + "ms"
    return fixed(tau_us, 1000, 1) + "ms"


def _row(fb, label, value, y):
    fb.text(label, 0, y, 1)
    D.right(fb, value, y)


def _draw_backlash(ui, fb):
    core = ui.core
    fit = ui.line_fit
    D.inverted(fb, "Backlash, tau", 0)
    per_mm = M.PLUNGER_STEPS_PER_MM
    _row(fb, "in use", fixed(core.backlash_steps * 1000, per_mm, 1) + "um", 12)
    _row(fb, "  tau", tau_text(core.line_tau_us), 21)
    m = core.backlash_measured_steps
    if core.state == C.ST_MEASURE:
        fb.text("measuring...", 0, 33, 1)  # nothing changes meanwhile: no frame to send
        foot = "into a cup"
    elif m >= 0 or fit.status != F.S_NONE:
        _row(fb, "measured", fixed(m * 1000, per_mm, 1) + "um" if m >= 0 else "none", 33)
        if fit.status != F.S_NONE:
            _row(fb, "  tau", tau_text(fit.tau_us, fit.status), 42)
        steps, tau = _news(ui)
        foot = "OK: apply BACK" if steps >= 0 or tau is not None else "OK: again BACK"
    else:
        fb.text("primed syringe,", 0, 33, 1)
        fb.text("needle to a cup", 0, 42, 1)
        foot = "OK: measure"
    D.foot(fb, ui.note or foot)


# ---- removing a stored protocol ---------------------------------------------------


def _open_removal(ui):
    protocols = ui.protocols
    if protocols is None:
        ui.message("no protocols here")
        return False
    try:
        ui._rm_names = protocols.names()
    except OSError:
        ui.message("flash error")
        return False
    if not ui._rm_names:
        ui.message("none stored")
        return False
    ui._rm_cursor = min(ui._rm_cursor, len(ui._rm_names) - 1)
    ui.go("proto-remove")
    return True


def _removal_key(ui, b):
    if b == UP or b == DOWN:
        i = ui._rm_cursor + (1 if b == DOWN else -1)
        if not 0 <= i < len(ui._rm_names):
            return False
        ui._rm_cursor = i
        return True
    if b != OK:
        return False
    ui.go("proto-remove-ok")
    return True


def _draw_removal(ui, fb):
    D.inverted(fb, "Remove protocol", 0)
    names = ui._rm_names
    top = max(0, ui._rm_cursor - MENU_ROWS + 1)
    for row in range(MENU_ROWS):
        i = top + row
        if i >= len(names):
            break
        D.list_row(fb, row, names[i][: D.LINE_CHARS], "", i == ui._rm_cursor)
    if ui._msg:  # over the last line, for MESSAGE_MS
        D.inverted(fb, ui._msg, 64 - 9)


def _remove_ok_key(ui, b):
    """OK removes the protocol chosen; not the one a run uses, not while the machine moves."""
    if b != OK:
        return False
    name = ui._rm_names[ui._rm_cursor]
    run = ui.run
    if run is not None and run.protocol.name.lower() == name.lower():
        ui.note = "in use: end it"
        return False
    if not ui.core.at_rest():
        ui.note = "injector busy"
        return False
    try:
        ui.protocols.remove(name)
    except ValueError:  # gone meanwhile (the store's ProtocolError)
        ui.note = "not found"
        return False
    except OSError:
        ui.note = "flash error"
        return False
    if _open_removal(ui):
        ui.message("protocol removed")
    else:
        ui.go("service")
        ui.message("protocol removed")
    return True


def _draw_remove_ok(ui, fb):
    D.inverted(fb, "Remove protocol?", 0)
    lines = D.wrap(ui._rm_names[ui._rm_cursor])
    for i in range(min(2, len(lines))):
        fb.text(lines[i], 0, 14 + 9 * i, 1)
    fb.text("cannot be undone", 0, 40, 1)
    D.inverted(fb, ui.note or "OK: yes BACK: no", 55)


def _no_key(ui, b):
    return False


SCREENS = (
    ("pin", pin_key, _draw_pin, None),  # service code entry
    ("service", _service_key, _draw_service, None),
    ("info", _info_key, _draw_info, "service"),
    ("calibration", _calib_key, _draw_calib, "service"),
    ("cal-run", _no_key, _draw_cal_run, "calibration"),  # the shots into a cup
    ("cal-result", _cal_result_key, _draw_cal_result, "calibration"),
    ("backlash", _backlash_key, _draw_backlash, None),
    ("proto-remove", _removal_key, _draw_removal, "service"),  # which stored protocol to remove
    ("proto-remove-ok", _remove_ok_key, _draw_remove_ok, "proto-remove"),  # remove it?
)
ACTIONS = (
    (A_SERVICE, _ask_code, None),
    (A_CALIB, _open_calib, None),
    (A_BACKLASH, _open_backlash, None),
    (A_INFO, _open_info, None),
    (A_CONFIRM, _confirm, lambda ui: done_or_needed(not ui.core.unconfirmed)),
    (A_NEW_PIN, _new_code, None),
    (A_REMOVE, _open_removal, None),
)
