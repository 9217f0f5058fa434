"""The operator interface: status screen, menus, value editing, alarms, service.

    ui = Ui(core, version="0.4.0")
    ui.button(OK, PRESS, now_ms)   # from the debouncer (board.buttons), main loop only
    ui.poll(now_ms)                # every main-loop pass: alarms, timers
    ui.draw(fb, now_ms)            # into a 128x64 framebuf.FrameBuffer (MONO_VLSB)
    ui.take_sound()                # SND_* for the buzzer, once

Pure Python on the framebuf API: the board draws it on the SSD1306, the host
front panel (host_tools/panel.py) on its own framebuf, from the same code.

Rules the screens keep:
- A value changes only when OK confirms it, and only through the core's
  validation (Core.configure, Core.set_limits); BACK cancels. UP/DOWN stop at
  the limits (the engineer's included) and say which limit.
- An alarm (a latched fault, or the relief move before it) takes over every
  screen; an edit in progress is dropped. OK acknowledges once the machine
  has stopped. A warning shows as a banner on the status screen.
- Every screen has a way back: BACK goes up one level, a long BACK straight to
  the status screen.
"""

from injcore import codes as C
from injcore import machine as M
from injcore.calib import gravimetric, weighed_nl
from injcore.compat import const
from injcore.persist import pin_digits
from injcore.store import DEFAULT_SERVICE_PIN
from injcore.settings import (
    COARSE_DOSE_STEP_NL,
    FINE_DOSE_BELOW_NL,
    MODE_CONTINUOUS,
    MODE_PRIME,
    MODE_SINGLE,
    NEEDLE_COUNTS,
    RANGES,
    Limits,
    SettingsError,
)

from . import draw as D
from .keys import BACK, DOWN, LONG, OK, PRESS, REPEAT, SND_CLICK, SND_NONE, SND_REFUSE, UP

# Screens
S_STATUS = const(0)
S_MENU = const(1)
S_EDIT = const(2)
S_CONFIRM = const(3)  # start a new session?
S_PRIME = const(4)
S_PIN = const(5)  # service code entry
S_SERVICE = const(6)
S_INFO = const(7)
S_CALIB = const(8)
S_ALARM = const(9)  # not a place to go: drawn over everything while an alarm is on
S_CAL_RUN = const(10)  # gravimetric calibration: the shots into a cup
S_CAL_RESULT = const(11)
S_BACKLASH = const(12)
S_LOT = const(13)  # the product lot of a new session, typed with the buttons
S_PROTOCOLS = const(14)  # choose a protocol (or end the one running)
S_SKIP = const(15)  # skip the current zone?
SCREEN_NAMES = ("status", "menu", "edit", "confirm", "prime", "pin", "service", "info",
                "calibration", "alarm", "cal-run", "cal-result", "backlash", "lot", "protocols",
                "skip")
# What a protocol fixes per zone: not editable by hand while it runs.
ZONE_FIELDS = ("mode", "depth_um", "dose_nl", "speed_um_s", "rate_nl_s", "shot_rate_mhz",
               "suckback_nl")
LOT_CHARS = " 0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-"  # a blank ends the lot
LOT_LEN = const(12)  # what a log record holds (tlog.LOT_CHARS)

# Gravimetric calibration: CAL_SHOTS doses of the dose set, into a cup on a scale.
CAL_SHOTS = const(10)

# The service code: four digits entered with UP/DOWN and OK. Three wrong codes
# lock the entry for PIN_LOCK_MS.
SERVICE_PIN = pin_digits(DEFAULT_SERVICE_PIN)  # until a stored one loads
PIN_TRIES = const(3)
PIN_LOCK_MS = const(60_000)
MESSAGE_MS = const(3000)  # how long a one-off message stays
FAST_AFTER_REPEATS = const(10)  # held this long (about 1 s of repeats): ten steps at a time

# Item kinds
_NUM = const(0)  # an integer setting or limit, edited in steps
_CHOICE = const(1)  # one of a list
_ACTION = const(2)

# Where a value goes
_SETTING = const(0)
_LIMIT = const(1)
_LOCAL = const(2)  # a figure the interface keeps (calibration entries)

# Actions
A_HOME = const(0)
A_PRIME = const(1)
A_LOAD = const(2)
A_SESSION = const(3)
A_SERVICE = const(4)
A_CALIB = const(5)
A_INFO = const(6)
A_BACKLASH = const(7)
A_CONFIRM = const(8)
A_PROTOCOL = const(9)
A_NEW_PIN = const(10)

MODE_LABELS = ("single", "nappage", "prime")  # what the operator reads for MODE_*


def fixed(value, scale, decimals):
    """`value` / `scale` with `decimals` decimals, truncated: fixed(1500, 1000, 1) == '1.5'."""
    if decimals == 0:
        return str(value // scale)
    p = 10 ** decimals
    q = value * p // scale
    return "%d.%s" % (q // p, str(q % p + p)[1:])


def _pct(hundredths):
    """A signed percentage from hundredths of a percent: -123 -> '-1.23%'."""
    sign = "-" if hundredths < 0 else "+"
    return sign + fixed(abs(hundredths), 100, 2) + "%"


def dose_text(dose_nl):
    """0.5 uL steps below 10 uL show a decimal; whole microlitres above do not."""
    return fixed(dose_nl, 1000, 1 if dose_nl < FINE_DOSE_BELOW_NL else 0)


def used_of(used_nl, cap_nl):
    """'240/550uL' or '1.2/2.0mL': a zone's volume against its cap, in the cap's unit."""
    if cap_nl < 1_000_000:
        return "%d/%duL" % (used_nl // 1000, cap_nl // 1000)
    return fixed(used_nl, 1_000_000, 1) + "/" + fixed(cap_nl, 1_000_000, 1) + "mL"


def ml_text(nl):
    """A volume: microlitres below 1 mL (small doses must show), else mL."""
    if nl < 1_000_000:
        return fixed(nl, 1000, 1) + "uL"
    return fixed(nl, 1_000_000, 2) + "mL"


class Item:
    """One menu line: a setting or limit to edit, or an action."""

    def __init__(self, label, kind, key, target=_SETTING, unit="", scale=1, decimals=0,
                 step=0, lo=0, hi=0, choices=(), names=()):
        self.label = label
        self.kind = kind
        self.key = key  # the field name, or the action code
        self.target = target
        self.unit = unit
        self.scale = scale
        self.decimals = decimals
        self.step = step
        self.lo = lo
        self.hi = hi
        self.choices = choices
        self.names = names

    def text(self, value):
        """The value as the operator reads it, with its unit."""
        if self.kind == _CHOICE:
            i = self.choices.index(value) if value in self.choices else -1
            return self.names[i] if i >= 0 else "?"
        if self.key == "dose_nl":
            return dose_text(value) + self.unit
        return fixed(value, self.scale, self.decimals) + self.unit


def _ranged(label, field, unit, scale, decimals):
    lo, hi, step, _ = RANGES[field]
    return Item(label, _NUM, field, _SETTING, unit, scale, decimals, step, lo, hi)


def _limit(label, field, unit, scale, decimals, step):
    lo, hi, _ = Limits.RANGES[field]
    lo = (lo + step - 1) // step * step  # the lowest value on the edit grid
    return Item(label, _NUM, field, _LIMIT, unit, scale, decimals, step, lo, hi)


def _syringe_item():
    sizes = sorted(M.SYRINGES)
    codes = tuple(sizes) + (M.CUSTOM_SYRINGE,)
    names = tuple(M.SYRINGES[s][M.SYR_NAME] for s in sizes) + ("custom",)
    return Item("Syringe", _CHOICE, "syringe_model", choices=codes, names=names)


MAIN_MENU = (  # in the order of a session: home, load, prime, set, fire
    Item("Home", _ACTION, A_HOME),
    Item("Load syr.", _ACTION, A_LOAD),
    Item("Prime", _ACTION, A_PRIME),
    Item("Mode", _CHOICE, "mode", choices=(MODE_SINGLE, MODE_CONTINUOUS), names=MODE_LABELS),
    _ranged("Depth", "depth_um", "mm", 1000, 1),
    _ranged("Dose", "dose_nl", "uL", 1000, 1),
    _ranged("Speed", "speed_um_s", "mm/s", 1000, 0),
    _ranged("Inj rate", "rate_nl_s", "uL/s", 1000, 0),
    _ranged("Shot rate", "shot_rate_mhz", "/s", 1000, 1),
    _ranged("Suck-back", "suckback_nl", "uL", 1000, 1),
    _syringe_item(),
    _ranged("Syr. ID", "syringe_id_um", "mm", 1000, 2),
    Item("Needles", _CHOICE, "needle_count", choices=NEEDLE_COUNTS,
         names=tuple(str(n) for n in NEEDLE_COUNTS)),
    Item("New sess.", _ACTION, A_SESSION),
    Item("Protocol", _ACTION, A_PROTOCOL),
    Item("Service", _ACTION, A_SERVICE),
)
SERVICE_MENU = (
    _limit("Needle len", "needle_length_um", "mm", 1000, 1, 100),
    _limit("Sess. cap", "session_cap_nl", "mL", 1_000_000, 1, 100_000),
    _limit("Occlusion", "occlusion_kpa", "kPa", 1, 0, 10),
    Item("Calibrate", _ACTION, A_CALIB),
    Item("Backlash", _ACTION, A_BACKLASH),
    Item("Dev. info", _ACTION, A_INFO),
    Item("Confirm", _ACTION, A_CONFIRM),
    Item("New code", _ACTION, A_NEW_PIN),
)
CAL_MASS = Item("Mass", _NUM, "mass_dmg", _LOCAL, "mg", 10, 1, 1, 1, 1_000_000)  # 0.1 mg
CAL_DENSITY = Item("Density", _NUM, "density", _LOCAL, "mg/mL", 1, 0, 1, 500, 2000)
_MENU_ROWS = const(6)  # lines under the title
_INFO_ROWS = const(5)  # lines under the title, above the footer


def explain(problem):
    """A core SettingsError message, as short as the screen needs."""
    if "idle" in problem:
        return "busy: wait until ready"
    field = problem.split(":", 1)[0]
    if field == "shot_rate_mhz":
        return "shot rate too fast for this puncture: lower it first"
    if field == "rate_nl_s":
        return "too fast for the plunger with this syringe"
    if field == "depth_um":
        return "the depth set is deeper: lower it first"
    return problem.split(": ", 1)[-1]


class Ui:
    def __init__(self, core, version="", info=None, service_pin=SERVICE_PIN, new_session=None,
                 protocols=None):
        self.core = core
        # What "New session" does: the board's log recorder ends the open session
        # and starts one (tlog.Recorder.start_session); bare, the core's counters.
        self.new_session = new_session or (lambda lot="": core.new_session())
        self._lot = [0] * LOT_LEN
        self._lot_pos = 0
        # Protocols (ui/protocols.py's Protocols, or None on a device without storage):
        # names() and start(name, lot) -> a running injcore.protocol.Run.
        self.protocols = protocols
        self.run = None  # the protocol run in progress
        self._proto_names = []
        self._chosen = None  # the protocol the next session starts
        self.service_pin = tuple(service_pin)
        self.version = version
        self.info = info  # callable -> extra (label, value) pairs for the info screen
        self.screen = S_STATUS
        self.sound = SND_NONE
        self.menu = MAIN_MENU
        self.cursor = 0
        self._top = 0  # first menu line shown
        self._main_cursor = 0
        self.item = MAIN_MENU[4]  # the item being edited (on the edit screen)
        self.value = 0
        self._repeats = 0
        self.note = ""  # footer line of the edit, pin and prime screens
        self._msg = ""  # one-off message on the status screen and menus
        self._sticky = ""  # until BACK
        self._msg_until = 0
        self._now = 0
        self.up_ms = 0  # time the interface has run (device info)
        self._last_ms = None
        self._pin = [0, 0, 0, 0]
        self._pin_pos = 0
        self._pin_wrong = 0
        self._pin_locked_until = None
        self._pin_setting = False  # the code screen sets a new code (Service > New code)
        self._prime_restore = None  # the mode to go back to after priming
        self._info_top = 0
        self._alarm = False
        self.cal = {"mass_dmg": 0, "density": M.WATER_MG_PER_ML}
        self._cal_p0 = 0  # punctures and counted steps when the calibration shots began
        self._cal_steps0 = 0
        self._cal_expected_nl = 0
        self.cal_factor_ppm = 0  # the result, once computed (0: none / out of range)
        self.cal_measured_nl = 0
        self.cal_error_before = 0  # hundredths of a percent
        self.cal_error_after = 0
        self.cal_saved = 0  # times a calibration was applied (the board stores it)

    # ---- state -------------------------------------------------------------

    def alarm_on(self):
        s = self.core.state
        return s == C.ST_FAULT or s == C.ST_RELIEF

    def screen_name(self):
        return SCREEN_NAMES[S_ALARM if self.alarm_on() else self.screen]

    def take_sound(self):
        s = self.sound
        self.sound = SND_NONE
        return s

    def sticky(self, text):
        """A message that stays on the status screen until BACK (a boot report)."""
        self._sticky = text

    def message(self, text):
        self._msg = text
        self._msg_until = self._now + MESSAGE_MS

    def _go(self, screen):
        self.screen = screen
        self.note = ""

    def _to_status(self):
        self._go(S_STATUS)
        self.menu = MAIN_MENU

    def poll(self, now_ms):
        """Timers and takeovers; call every main-loop pass, before button()."""
        if self._last_ms is not None:
            d = now_ms - self._last_ms
            if 0 < d < 1_000_000:  # a ticks_ms wrap or a jump counts as nothing
                self.up_ms += d
        self._last_ms = now_ms
        self._now = self.up_ms
        if self.alarm_on():
            if not self._alarm:
                self._alarm = True
                self._to_status()  # an edit in progress is dropped, never applied
        else:
            self._alarm = False
        if self._msg and self.up_ms - self._msg_until >= 0:
            self._msg = ""
        if self.run is not None and self.protocols is not None:
            self.protocols.poll(self.run)
        if self.screen == S_CAL_RUN and self.core.state == C.ST_READY and \
                self.core.punctures - self._cal_p0 >= CAL_SHOTS:
            self._cal_shots_done()
        if self._prime_restore is not None and self.screen != S_PRIME:
            self._end_prime()

    # ---- buttons -------------------------------------------------------------

    def button(self, b, event, now_ms=None):
        """One debounced button event (ui.keys). Returns True if it did something."""
        if now_ms is not None:
            self.poll(now_ms)
        if event == PRESS:
            self._repeats = 0
        elif event == REPEAT:
            if b != UP and b != DOWN:
                return False
            self._repeats += 1
        elif event == LONG:
            if b == BACK and self.screen != S_STATUS and not self.alarm_on():
                self._to_status()
                self.sound = SND_CLICK
                return True
            return False
        else:
            return False
        if self.alarm_on():
            return self._alarm_key(b)
        done = self._key(b)
        if self.sound == SND_NONE:
            self.sound = SND_CLICK if done else SND_REFUSE
        return done

    def _alarm_key(self, b):
        core = self.core
        if b == OK and core.state == C.ST_FAULT and not core.switches & C.SW_ESTOP:
            core.acknowledge()
            self._to_status()
            self.sound = SND_CLICK
            return True
        self.sound = SND_REFUSE  # relief still moving, or the stop still pressed
        return False

    def _key(self, b):
        s = self.screen
        if s == S_STATUS:
            return self._status_key(b)
        if s == S_MENU or s == S_SERVICE:
            return self._menu_key(b)
        if s == S_EDIT:
            return self._edit_key(b)
        if s == S_CONFIRM:
            if b == OK:
                self._lot = [0] * LOT_LEN
                self._lot_pos = 0
                self._go(S_LOT)
                return True
            if b == BACK:
                self._go(S_MENU)
                return True
            return False
        if s == S_LOT:
            return self._lot_key(b)
        if s == S_PROTOCOLS:
            return self._protocols_key(b)
        if s == S_SKIP:
            run = self.run
            if b == OK and run is not None:
                run.skip()
                self._after_zone_move()
                self._go(S_STATUS)
                return True
            if b == BACK:
                self._go(S_STATUS)
                return True
            return False
        if s == S_PRIME:
            return self._prime_key(b)
        if s == S_PIN:
            return self._pin_key(b)
        if s == S_CALIB and b == OK:
            return self._cal_start()
        if s == S_CAL_RUN or s == S_CAL_RESULT:
            return self._cal_key(b)
        if s == S_BACKLASH:
            return self._backlash_key(b)
        if s == S_INFO or s == S_CALIB:
            if b == BACK:
                self._go(S_SERVICE)
                return True
            if s == S_INFO and (b == UP or b == DOWN):
                last = max(0, len(self.info_lines()) - _INFO_ROWS)
                top = max(0, min(last, self._info_top + (1 if b == DOWN else -1)))
                moved = top != self._info_top
                self._info_top = top
                return moved
            return False
        return False

    def _status_key(self, b):
        core = self.core
        if b == OK:
            self.menu = MAIN_MENU
            # Not homed: the menu opens on Home, so OK, OK homes.
            self._set_cursor(0 if not core.homed else self._main_cursor)
            self._go(S_MENU)
            return True
        run = self.run
        if run is not None and (b == UP or b == DOWN):
            if core.state != C.ST_READY and core.state != C.ST_UNHOMED:
                return False  # not while a puncture runs
            if b == UP:
                if run.index == 0:
                    return False
                run.back()
            else:
                st = run.status()
                unfinished = not st["capped"] and st["planned"] and st["done"] < st["planned"]
                if unfinished:
                    self._go(S_SKIP)  # skipping is logged: ask first
                    return True
                run.next()
            self._after_zone_move()
            return True
        if b == BACK:
            had = core.notice or self._msg or self._sticky
            core.clear_notice()
            self._msg = ""
            self._sticky = ""
            return bool(had)
        return False

    def _set_cursor(self, i):
        n = len(self.menu)
        i = max(0, min(n - 1, i))
        self.cursor = i
        if i < self._top:
            self._top = i
        elif i >= self._top + _MENU_ROWS:
            self._top = i - _MENU_ROWS + 1

    def _menu_key(self, b):
        if b == UP or b == DOWN:
            before = self.cursor
            self._set_cursor(self.cursor + (1 if b == DOWN else -1))
            return self.cursor != before
        if b == BACK:
            if self.screen == S_SERVICE:
                self.menu = MAIN_MENU
                self._set_cursor(self._main_cursor)
                self._go(S_MENU)
            else:
                self._main_cursor = self.cursor
                self._to_status()
            return True
        if b != OK:
            return False
        if self.screen == S_MENU:
            self._main_cursor = self.cursor
        item = self.menu[self.cursor]
        if item.kind == _ACTION:
            return self._action(item.key)
        if self.run is not None and item.key in ZONE_FIELDS:
            self.message("set by the protocol")
            return False
        self.item = item
        self.value = self._current(item)
        self._go(S_EDIT)
        return True

    def _action(self, code):
        core = self.core
        if code == A_HOME:
            if core.start_homing():
                self._to_status()
                return True
            self.message("busy: wait until ready")
            return False
        if code == A_LOAD:
            if core.start_load():
                self._to_status()
                return True
            self.message(C.NOTICE_NAMES[core.notice])
            return False
        if code == A_PRIME:
            mode = core.settings.mode
            if mode != MODE_PRIME:
                try:
                    core.configure(mode=MODE_PRIME)
                except SettingsError as e:
                    self.message(explain(e.problems[0]))
                    return False
                self._prime_restore = mode
            self._go(S_PRIME)
            return True
        if code == A_SESSION:
            self._chosen = None
            self._go(S_CONFIRM)
            return True
        if code == A_PROTOCOL:
            if self.protocols is None:
                self.message("no protocols on this device")
                return False
            self._proto_names = self.protocols.names()
            if self.run is not None:
                self._proto_names = ["End protocol"] + self._proto_names
            if not self._proto_names:
                self.message("no protocols stored")
                return False
            self._proto_cursor = 0
            self._go(S_PROTOCOLS)
            return True
        if code == A_SERVICE:
            if self._pin_locked_until is not None and self._now - self._pin_locked_until < 0:
                self.message("locked: wait %d s" % ((self._pin_locked_until - self._now + 999) // 1000))
                return False
            self._pin_locked_until = None
            self._pin_setting = False
            self._pin = [0, 0, 0, 0]
            self._pin_pos = 0
            self._go(S_PIN)
            return True
        if code == A_INFO:
            self._info_top = 0
            self._go(S_INFO)
            return True
        if code == A_CALIB:
            self._go(S_CALIB)
            return True
        if code == A_NEW_PIN:  # the service code screen, setting instead of checking
            self._pin = list(self.service_pin)
            self._pin_pos = 0
            self._pin_setting = True
            self._go(S_PIN)
            return True
        if code == A_CONFIRM:
            if not core.confirm_settings():
                self.message("settings already confirmed")
                return False
            self.message("settings confirmed")
            return True
        if code == A_BACKLASH:
            self._go(S_BACKLASH)
            return True
        return False

    # ---- editing -------------------------------------------------------------

    def _current(self, item):
        if item.target == _LOCAL:
            return self.cal[item.key]
        src = self.core.limits if item.target == _LIMIT else self.core.settings
        return getattr(src, item.key)

    def bounds(self, item):
        """(lowest, highest, why the highest) for an item now, the engineer's limits included."""
        lo, hi = item.lo, item.hi
        why = ""
        key = item.key
        core = self.core
        if key == "depth_um" and core.limits.needle_length_um < hi:
            hi = core.limits.needle_length_um
            why = "needle length"
        elif key == "shot_rate_mhz":
            cycle_ms = core.plans().cycle_ticks * M.TICK_US // 1000
            if cycle_ms > 0:
                best = 1_000_000 // cycle_ms // item.step * item.step
                if best < hi:
                    hi = max(lo, best)
                    why = "puncture time"
        return lo, hi, why

    def _edit_key(self, b):
        item = self.item
        if b == BACK:
            self._go(self._edit_parent(item))
            return True
        if b == OK:
            return self._apply()
        if b != UP and b != DOWN:
            return False
        up = b == UP
        if item.kind == _CHOICE:
            i = item.choices.index(self.value) if self.value in item.choices else 0
            i = (i + (1 if up else -1)) % len(item.choices)
            self.value = item.choices[i]
            self.note = ""
            return True
        lo, hi, why = self.bounds(item)
        v = self.value
        step = item.step
        if item.key == "dose_nl":  # fine steps below 10 uL, coarse above
            step = COARSE_DOSE_STEP_NL if (v >= FINE_DOSE_BELOW_NL if up else v > FINE_DOSE_BELOW_NL) else step
        if self._repeats >= FAST_AFTER_REPEATS and (hi - lo) // step > 100:
            step *= 10
        v = v + step if up else v - step
        if v > hi:
            v = hi
            self.note = "max " + item.text(hi) + (" (" + why + ")" if why else "")
        elif v < lo:
            v = lo
            self.note = "min " + item.text(lo)
        else:
            self.note = ""
        if v == self.value:
            self.sound = SND_REFUSE
            return False
        self.value = v
        return True

    def _edit_parent(self, item):
        if item.target == _LOCAL:
            return S_CALIB
        return S_SERVICE if item.target == _LIMIT else S_MENU

    def _apply(self):
        item = self.item
        core = self.core
        if item.target == _LOCAL:
            self.cal[item.key] = self.value
            if item is CAL_MASS:
                self._edit(CAL_DENSITY)
            else:
                self._cal_compute()
                self._go(S_CAL_RESULT)
            return True
        try:
            if item.target == _LIMIT:
                core.set_limits(**{item.key: self.value})
            else:
                core.configure(**{item.key: self.value})
        except SettingsError as e:
            self.note = explain(e.problems[0])
            self.sound = SND_REFUSE
            return False
        self._go(self._edit_parent(item))
        return True

    def _edit(self, item):
        self.item = item
        self.value = self._current(item)
        self._go(S_EDIT)

    # ---- gravimetric calibration ---------------------------------------------

    def _cal_start(self):
        core = self.core
        if core.state != C.ST_READY or not core.primed:
            self.note = "home, load and prime first"
            return False
        self._cal_p0 = core.punctures
        self._cal_steps0 = core.delivered_steps
        self.cal_factor_ppm = 0
        self._go(S_CAL_RUN)
        return True

    def _cal_shots_done(self):
        core = self.core
        self._cal_expected_nl = core.steps_to_nl(core.delivered_steps - self._cal_steps0)
        # Start the mass entry at what the counted volume weighs: a few keys to the reading.
        self.cal["mass_dmg"] = max(1, self._cal_expected_nl * self.cal["density"] // 100_000)
        self._edit(CAL_MASS)

    def _cal_compute(self):
        """Correction factor = weighed / counted volume; errors before and after, in 0.01 %."""
        core = self.core
        self.cal_measured_nl = weighed_nl(self.cal["mass_dmg"], self.cal["density"])
        self.cal_factor_ppm, self.cal_error_before, self.cal_error_after = gravimetric(
            self._cal_expected_nl, self.cal_measured_nl, core.dose_factor_ppm,
            core.settings.syringe()[0])

    def _cal_key(self, b):
        if b == BACK:
            self._go(S_CALIB)
            return True
        if b != OK or self.screen != S_CAL_RESULT or not self.cal_factor_ppm:
            return False
        try:
            self.core.set_calibration(self.cal_factor_ppm)
        except SettingsError as e:
            self.note = explain(e.problems[0])
            return False
        self.cal_saved += 1
        self._go(S_CALIB)
        self.note = "calibration applied"
        return True

    def _backlash_key(self, b):
        core = self.core
        if b == BACK:
            if core.state == C.ST_MEASURE:
                return False  # it ends by itself in a few seconds
            self._go(S_SERVICE)
            return True
        if b != OK:
            return False
        measured = core.backlash_measured_steps
        if measured >= 0 and measured != core.backlash_steps and core.state == C.ST_READY:
            try:
                core.set_backlash(measured)
            except SettingsError as e:
                self.note = explain(e.problems[0])
                return False
            self.cal_saved += 1
            self.note = "backlash applied"
            return True
        if core.start_backlash():
            self.note = ""
            return True
        self.note = C.NOTICE_NAMES[core.notice]
        return False

    def _after_zone_move(self):
        run = self.run
        if run is None:
            return
        if run.finished:
            self._finish_run()
            self.message("protocol done: " + run.protocol.name)
        elif getattr(run, "message", ""):
            self.message(run.message)

    def _finish_run(self):
        """End the run: caps off; one last poll so the log gets its zone records."""
        run = self.run
        if run is None:
            return
        run.end()
        if self.protocols is not None:
            self.protocols.poll(run)
        self.run = None

    def _protocols_key(self, b):
        names = self._proto_names
        if b == UP or b == DOWN:
            i = self._proto_cursor + (1 if b == DOWN else -1)
            if not 0 <= i < len(names):
                return False
            self._proto_cursor = i
            return True
        if b == BACK:
            self._go(S_MENU)
            return True
        if b != OK:
            return False
        name = names[self._proto_cursor]
        run = self.run
        if run is not None and self._proto_cursor == 0:  # "End protocol"
            self._finish_run()
            self.message("protocol ended: " + run.protocol.name)
            self._to_status()
            return True
        self._chosen = name
        self._go(S_CONFIRM)  # a protocol is a new session: counters to zero, then the lot
        return True

    def lot_text(self):
        return "".join(LOT_CHARS[i] for i in self._lot).strip()

    def _lot_key(self, b):
        lot = self._lot
        i = self._lot_pos
        if b == UP or b == DOWN:
            lot[i] = (lot[i] + (1 if b == UP else len(LOT_CHARS) - 1)) % len(LOT_CHARS)
            return True
        if b == BACK:
            if i == 0:
                self._go(S_CONFIRM)
            else:
                lot[i] = 0
                self._lot_pos = i - 1
            return True
        if b != OK:
            return False
        if lot[i] and i < LOT_LEN - 1:
            self._lot_pos = i + 1
            return True
        # OK on a blank (or the last) character: the lot is complete; the session starts.
        self._to_status()
        if self.run is not None:
            self._finish_run()
        if self._chosen is None:
            self.new_session(self.lot_text())
            self.message("new session")
            return True
        protocols = self.protocols
        if protocols is None:
            return False
        try:
            self.run = protocols.start(self._chosen, self.lot_text())
        except (ValueError, OSError) as e:  # a stored protocol the limits now refuse, flash trouble
            self.message("protocol refused: %s" % e)
            return False
        self.message("protocol: " + self.run.protocol.name)
        return True

    # ---- prime, service code -------------------------------------------------

    def _prime_key(self, b):
        if b != BACK:
            return False
        if self._end_prime():
            self._go(S_MENU)
            return True
        self.note = "release the trigger first"
        return False

    def _end_prime(self):
        """Back to the mode before priming; False while the plunger still moves."""
        mode = self._prime_restore
        if mode is None:
            return True
        try:
            self.core.configure(mode=mode)
        except SettingsError:
            return False
        self._prime_restore = None
        return True

    def _pin_key(self, b):
        pin = self._pin
        i = self._pin_pos
        if b == UP or b == DOWN:
            pin[i] = (pin[i] + (1 if b == UP else 9)) % 10
            return True
        if b == BACK:
            if i == 0:
                self._go(S_SERVICE if self._pin_setting else S_MENU)
                self._pin_setting = False
            else:
                self._pin_pos = i - 1
            return True
        if b != OK:
            return False
        if i < 3:
            self._pin_pos = i + 1
            return True
        if self._pin_setting:  # the board stores it with the settings
            self._pin_setting = False
            self.service_pin = tuple(pin)
            self._go(S_SERVICE)
            self.message("new service code set")
            return True
        if tuple(pin) == self.service_pin:
            self._pin_wrong = 0
            self.menu = SERVICE_MENU
            self._set_cursor(0)
            self._go(S_SERVICE)
            return True
        self._pin_wrong += 1
        self._pin = [0, 0, 0, 0]
        self._pin_pos = 0
        if self._pin_wrong >= PIN_TRIES:
            self._pin_wrong = 0
            self._pin_locked_until = self._now + PIN_LOCK_MS
            self._go(S_MENU)
            self.message("wrong code: locked 60 s")
        else:
            self.note = "wrong code"
        self.sound = SND_REFUSE
        return False

    # ---- drawing ---------------------------------------------------------------

    def draw(self, fb, now_ms=None):
        """The whole screen into `fb` (128x64); the caller sends it if it changed."""
        if now_ms is not None:
            self.poll(now_ms)
        fb.fill(0)
        if self.alarm_on():
            self._draw_alarm(fb)
            return
        s = self.screen
        if s == S_STATUS:
            self._draw_status(fb)
        elif s == S_MENU or s == S_SERVICE:
            self._draw_menu(fb)
        elif s == S_EDIT:
            self._draw_edit(fb)
        elif s == S_CONFIRM:
            D.inverted(fb, "New session" if self._chosen is None else self._chosen, 0)
            fb.text("counters to zero", 0, 16, 1)
            fb.text("#%d, %s" % (self.core.punctures, ml_text(self.core.delivered_nl())), 0, 28, 1)
            D.inverted(fb, "OK: yes BACK: no", 55)
        elif s == S_PROTOCOLS:
            D.inverted(fb, "Protocols", 0)
            top = max(0, self._proto_cursor - _MENU_ROWS + 1)
            for row in range(_MENU_ROWS):
                i = top + row
                if i >= len(self._proto_names):
                    break
                D.list_row(fb, row, self._proto_names[i][:D.LINE_CHARS], "", i == self._proto_cursor)
        elif s == S_SKIP and self.run is not None:
            st = self.run.status()
            D.inverted(fb, "Skip zone?", 0)
            fb.text(st["zone"], 0, 14, 1)
            fb.text("%d of %d done" % (st["done"], st["planned"]), 0, 26, 1)
            fb.text("(it is logged)", 0, 38, 1)
            D.inverted(fb, "OK:skip BACK:no", 55)
        elif s == S_LOT:
            D.inverted(fb, "Product lot", 0)
            fb.text("optional; blank", 0, 12, 1)
            fb.text("+ OK to finish", 0, 21, 1)
            x = (128 - LOT_LEN * D.CHAR_W) // 2
            for i in range(LOT_LEN):
                ch = LOT_CHARS[self._lot[i]] if i <= self._lot_pos else "."
                fb.text(ch, x + i * D.CHAR_W, 34, 1)
            fb.hline(x + self._lot_pos * D.CHAR_W, 43, D.CHAR_W - 1, 1)
            D.inverted(fb, "UP/DOWN OK BACK", 55)
        elif s == S_PRIME:
            self._draw_prime(fb)
        elif s == S_PIN:
            self._draw_pin(fb)
        elif s == S_INFO:
            self._draw_lines(fb, "Device info", self.info_lines(), self._info_top)
        elif s == S_CALIB:
            self._draw_lines(fb, "Calibration", self.calib_lines(), 0, self.note or "OK: weigh BACK")
        elif s == S_CAL_RUN:
            D.inverted(fb, "Calibrate", 0)
            core = self.core
            for i, line in enumerate(D.wrap("fire %d shots of %suL into a cup" % (
                    CAL_SHOTS, dose_text(core.settings.dose_nl)))[:3]):
                fb.text(line, 0, 12 + 9 * i, 1)
            D.big(fb, "%d" % (core.punctures - self._cal_p0), 0, 34)
            fb.text("of %d" % CAL_SHOTS, 40, 46, 1)
            D.inverted(fb, "BACK: cancel", 55)
        elif s == S_CAL_RESULT:
            self._draw_cal_result(fb)
        elif s == S_BACKLASH:
            self._draw_backlash(fb)

    def state_text(self):
        core = self.core
        s = core.state
        if s in C.PUNCTURE:
            return "FIRING"
        if s == C.ST_UNHOMED:
            return "UNHOMED"
        if s == C.ST_FAULT or s == C.ST_RELIEF:
            return "ALARM"
        if s == C.ST_PRIME:
            return "PRIMING"
        if s == C.ST_LOAD:
            return "LOADING"
        return C.STATE_NAMES[s].upper()

    def banner(self):
        """The status screen's bottom line when it has something to say, else ''."""
        core = self.core
        if self._msg:
            return self._msg
        if self._sticky:
            return self._sticky
        if core.notice:
            return C.NOTICE_NAMES[core.notice]
        if core.unconfirmed:
            return C.NOTICE_NAMES[C.N_UNCONFIRMED]
        if core.warning:
            return "! " + C.WARNING_NAMES[core.warning]
        if core.state == C.ST_UNHOMED:
            return "OK: menu > Home"
        if core.state == C.ST_READY:
            if not core.switches & C.SW_SYRINGE:
                return "no syringe: menu > Load syr."
            if not core.primed:
                return "not primed: menu > Prime"
        return ""

    def _draw_status(self, fb):
        core = self.core
        st = core.settings
        fb.fill_rect(0, 0, 128, 9, 1)
        fb.text(MODE_LABELS[st.mode].upper(), 0, 1, 0)
        D.right(fb, self.state_text(), 1, 0)
        # Large depth (left half) and dose (right half), units beside them.
        x = D.big(fb, fixed(st.depth_um, 1000, 1), 0, 12)
        fb.text("mm", x + 1, 24, 1)
        dose = dose_text(st.dose_nl)  # right-aligned, well clear of the depth
        x = D.big(fb, dose, 128 - 2 * D.CHAR_W - 1 - D.big_width(dose), 12)
        fb.text("uL", x + 1, 24, 1)
        run = self.run
        z = run.status() if run is not None else None
        if z is not None:  # the zone in place of the speed, its progress in place of the totals
            fb.text("%d/%d %s" % (z["index"] + 1, z["count"], z["zone"]), 0, 35, 1)
        else:
            fb.text(fixed(st.speed_um_s, 1000, 0) + "mm/s", 0, 35, 1)
            if st.mode == MODE_CONTINUOUS:
                D.right(fb, fixed(st.shot_rate_mhz, 1000, 1) + "/s", 35)
        msg = D.wrap(self.banner())
        if len(msg) > 1:  # a long message takes two or three bottom lines
            n = min(len(msg), 3)
            top = 63 - 9 * n
            fb.fill_rect(0, top, 128, 64 - top, 1)
            for i in range(n):
                fb.text(msg[i], 0, top + 1 + 9 * i, 0)
            return
        if z is not None:
            fb.text("%d/%s" % (z["done"], str(z["planned"]) if z["planned"] else "-"), 0, 45, 1)
            D.right(fb, used_of(z["used_nl"], z["cap_nl"]), 45)
            if not msg:
                msg = ["next: " + z["next_name"] if z["next_name"] else "last zone"]
            D.inverted(fb, msg[0], 55)
            return
        fb.text("#%d" % core.punctures, 0, 45, 1)
        D.right(fb, "tot " + ml_text(core.delivered_nl()), 45)
        if msg:
            D.inverted(fb, msg[0], 55)
            return
        if not core.homed:  # the plunger is not referenced: what is left is unknown
            fb.text("left ?", 0, 56, 1)
            D.bar(fb, 56, 55, 72, 9, 0, 1)
            return
        left = core.volume_left_nl()
        fb.text(ml_text(left), 0, 56, 1)
        D.bar(fb, 60, 55, 68, 9, left, st.syringe()[1])

    def _draw_menu(self, fb):
        title = "Service" if self.screen == S_SERVICE else "Menu"
        D.inverted(fb, title, 0)
        D.right(fb, "%d/%d" % (self.cursor + 1, len(self.menu)), 1, 0)
        for row in range(_MENU_ROWS):
            i = self._top + row
            if i >= len(self.menu):
                break
            item = self.menu[i]
            D.list_row(fb, row, item.label, self.item_value(item), i == self.cursor)
        if self._msg:  # over the last line, for MESSAGE_MS
            D.inverted(fb, self._msg, 64 - 9)

    def item_value(self, item):
        """The right-hand column of a menu line."""
        core = self.core
        if item.kind == _ACTION:
            if item.key == A_HOME:
                return "done" if core.homed else "needed"
            if item.key == A_PRIME:
                return "done" if core.primed else "needed"
            if item.key == A_CONFIRM:
                return "needed" if core.unconfirmed else "done"
            if item.key == A_PROTOCOL:
                return "on" if self.run is not None else ">"
            return ">"
        return item.text(self._current(item))

    def _draw_edit(self, fb):
        item = self.item
        D.inverted(fb, item.label, 0)
        text = item.text(self.value)
        if item.kind == _NUM:
            unit = item.unit
            digits = text[:len(text) - len(unit)]
            w = D.big_width(digits) + 2 + len(unit) * D.CHAR_W
            x = D.big(fb, digits, (128 - w) // 2, 13)
            fb.text(unit, x + 1, 25, 1)
            lo, hi, _ = self.bounds(item)
            D.center(fb, item.text(lo) + ".." + item.text(hi), 36)
        else:
            D.center(fb, "< " + text + " >", 24)
        if self.note:  # why a key was refused, over the two bottom lines
            lines = D.wrap(self.note)
            for i in range(min(len(lines), 2)):
                fb.text(lines[i], 0, 46 + i * 9, 1)
            return
        if self.value != self._current(item):
            D.center(fb, "was " + item.text(self._current(item)), 46)
        D.inverted(fb, "OK: set BACK: no", 55)

    def _draw_prime(self, fb):
        core = self.core
        D.inverted(fb, "Prime", 0)
        if not core.homed:
            lines = ("home first:", "BACK, then Home")
        elif not core.switches & C.SW_SYRINGE:
            lines = ("no syringe:", "seat one first")
        else:
            lines = ("hold the trigger", "to push fluid,", "release to stop")
        for i in range(len(lines)):
            fb.text(lines[i], 0, 12 + i * 9, 1)
        fb.text("primed " + fixed(core.primed_nl(), 1000, 1) + "uL", 0, 42, 1)
        D.inverted(fb, self.note or "BACK: done", 55)

    def _draw_pin(self, fb):
        D.inverted(fb, "New service code" if self._pin_setting else "Service code", 0)
        x = 20
        for i in range(4):
            ch = str(self._pin[i]) if i <= self._pin_pos else "-"
            D.big(fb, ch, x, 16)
            if i == self._pin_pos:
                fb.fill_rect(x - 2, 39, D.BIG_W + 4, 2, 1)
            x += 24
        D.inverted(fb, self.note or "UP/DOWN OK BACK", 55)

    def info_lines(self):
        core = self.core
        up_s = self.up_ms // 1000
        lines = [
            ("firmware", self.version),
            ("reset", C.RESET_NAMES[core.reset_cause]),
            ("run", "%d:%02d h" % (up_s // 3600, up_s // 60 % 60)),
            ("overruns", str(core.overruns)),
        ]
        if self.info is not None:
            lines.extend(self.info())
        return lines

    def calib_lines(self):
        core = self.core
        area = core.settings.syringe()[0]
        return [
            ("needle", "%d/mm" % M.NEEDLE_STEPS_PER_MM),
            ("plunger", "%d/mm" % M.PLUNGER_STEPS_PER_MM),
            ("barrel", fixed(area, 100, 2) + "mm2"),
            ("dose x", fixed(core.dose_factor_ppm, 1_000_000, 4)),
            ("per step", fixed(core.steps_to_nl(1000), 1000, 1) + "nL"),
        ]

    def _draw_backlash(self, fb):
        core = self.core
        D.inverted(fb, "Backlash", 0)
        per_mm = M.PLUNGER_STEPS_PER_MM
        fb.text("in use  " + fixed(core.backlash_steps * 1000, per_mm, 1) + "um", 0, 12, 1)
        m = core.backlash_measured_steps
        if core.state == C.ST_MEASURE:
            fb.text("measuring...", 0, 24, 1)
            foot = "into a cup"
        elif m >= 0:
            fb.text("measured " + fixed(m * 1000, per_mm, 1) + "um", 0, 24, 1)
            foot = "OK: apply BACK" if m != core.backlash_steps else "OK: again BACK"
        else:
            fb.text("primed syringe,", 0, 24, 1)
            fb.text("needle to a cup", 0, 33, 1)
            foot = "OK: measure"
        D.inverted(fb, self.note or foot, 55)

    def _draw_cal_result(self, fb):
        D.inverted(fb, "Calibration", 0)
        fb.text("counted " + fixed(self._cal_expected_nl, 1000, 1) + "uL", 0, 11, 1)
        fb.text("weighed " + fixed(self.cal_measured_nl, 1000, 1) + "uL", 0, 20, 1)
        fb.text("error   " + _pct(self.cal_error_before), 0, 29, 1)
        if self.cal_factor_ppm:
            fb.text("after   " + _pct(self.cal_error_after), 0, 38, 1)
            D.inverted(fb, self.note or "OK: apply BACK", 55)
        else:
            fb.text("out of range:", 0, 38, 1)
            D.inverted(fb, "check syr./scale", 55)

    def _draw_lines(self, fb, title, lines, top, foot="BACK: return"):
        D.inverted(fb, title, 0)
        for row in range(_INFO_ROWS):
            i = top + row
            if i >= len(lines):
                break
            label, value = lines[i]
            y = 11 + row * 9
            fb.text(label[:D.LINE_CHARS - len(value) - 1], 0, y, 1)
            D.right(fb, value, y)
        D.inverted(fb, foot, 55)

    def _draw_alarm(self, fb):
        core = self.core
        D.inverted(fb, "ALARM  E%02d" % core.fault, 0)
        name = D.wrap(C.FAULT_NAMES[core.fault])
        for i in range(min(len(name), 2)):
            fb.text(name[i], 0, 10 + i * 9, 1)
        action = D.wrap(C.FAULT_ACTIONS[core.fault])
        for i in range(min(len(action), 3)):
            fb.text(action[i], 0, 28 + i * 9, 1)
        if core.state == C.ST_RELIEF:
            foot = "withdrawing..."
        elif core.switches & C.SW_ESTOP:
            foot = "release the stop"
        else:
            foot = "OK: acknowledge"
        D.inverted(fb, foot, 55)
