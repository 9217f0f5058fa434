"""Menus and value edits: the menu lines (Item), the main menu, the list
screens, the edit screen, and the few words a refused change shows.

Also the figures as the operator reads them (fixed, dose_text, ml_text,
used_of, syringe_text), which every screen uses. Like the other screen
modules (status, session, service) it holds module-level handlers taking the
Ui first, and its entries of the interface's tables (ui/screens.py collects them):
    SCREENS   (name, key(ui, button) -> bool, draw(ui, fb), BACK target or None)
    ACTIONS   (name, do(ui) -> bool, state(ui) -> the menu's right column, or None)
and setup(ui), which gives the Ui the fields its screens keep.

An edit changes nothing until OK, and then only through the core's
validation (Core.configure, Core.set_limits); BACK cancels. UP/DOWN stop at
the limits, the engineer's included, and say which limit.
"""

from injcore import codes as C
from injcore import machine as M
from injcore.compat import const
from injcore.settings import (
    COARSE_DOSE_STEP_NL,
    FINE_DOSE_BELOW_NL,
    MODE_CONTINUOUS,
    MODE_SINGLE,
    NEEDLE_COUNTS,
    RANGES,
    Limits,
    SettingsError,
)

from . import draw as D
from .keys import BACK, DOWN, OK, SND_REFUSE, UP

# Item kinds
NUM = const(0)  # an integer setting or limit, edited in steps
CHOICE = const(1)  # one of a list
ACTION = const(2)  # its key names an action (the Ui's ACTIONS)

# Where a value goes
SETTING = const(0)  # Core.configure
LIMIT = const(1)  # Core.set_limits (the service menu)
LOCAL = const(2)  # ui.cal, a figure the interface keeps (calibration entries)
_EDIT_BACK = ("menu", "service", "calibration")  # by target: where an edit returns to

# The main menu's actions (their entries: session.py, service.py's A_SERVICE).
A_HOME = "home"
A_LOAD = "load"
A_PRIME = "prime"
A_SESSION = "session"
A_PROTOCOL = "protocol"
A_SERVICE = "service"

MODE_LABELS = C.MODE_NAMES  # what the operator reads for MODE_*: the modes' one table
# What a protocol fixes per zone: not editable by hand while it runs.
ZONE_FIELDS = (
    "mode",
    "depth_um",
    "dose_nl",
    "speed_um_s",
    "rate_nl_s",
    "shot_rate_mhz",
    "suckback_nl",
)
# Held UP/DOWN: the board repeats the key at a steady rate (board/buttons.py); each
# repeat moves the value one step times the multiplier of the last row whose hold
# time has passed, (held ms, multiplier): the change speeds up gently and stops
# speeding up at the last. A multiplier applies only to a range at least twenty
# times its step (a repeat never crosses more than a twentieth of the range), and
# a multiplied step lands on its own multiple: round figures.
REPEAT_STEPS = ((0, 1), (2000, 2), (3500, 5), (5000, 10), (8000, 50))
MENU_ROWS = const(6)  # lines under the title
BUSY = "busy: wait until ready"


def fixed(value, scale, decimals):
    """`value` / `scale` with `decimals` decimals, rounded half up (a negative value as
    its magnitude): fixed(1500, 1000, 1) == '1.5', fixed(51_960, 1000, 1) == '52.0'."""
    if value < 0:
        return "-" + fixed(-value, scale, decimals)
    p = 10**decimals
    q = (2 * value * p + scale) // (2 * scale)
    if decimals == 0:
        return str(q)
    return "%d.%s" % (q // p, str(q % p + p)[1:])


def dose_text(dose_nl):
    """0.5 uL steps below 10 uL show a decimal; whole microlitres above do not."""
    return fixed(dose_nl, 1000, 1 if dose_nl < FINE_DOSE_BELOW_NL else 0)


def used_of(used_nl, cap_nl):
    """'240/550uL' or '1.2/2.0mL': a zone's volume against its cap, in the cap's unit."""
    if cap_nl < 999_500:  # what rounds to 1000 uL shows as 1.0mL
        return fixed(used_nl, 1000, 0) + "/" + fixed(cap_nl, 1000, 0) + "uL"
    return fixed(used_nl, 1_000_000, 1) + "/" + fixed(cap_nl, 1_000_000, 1) + "mL"


def ml_text(nl):
    """A volume: microlitres below 1 mL (small doses must show), else mL."""
    if nl < 999_950:  # what rounds to 1000.0 uL shows as 1.00mL
        return fixed(nl, 1000, 1) + "uL"
    return fixed(nl, 1_000_000, 2) + "mL"


CUSTOM_NAME = "custom"  # what the operator reads for a custom inner diameter


def syringe_text(settings):
    """The syringe size set, as the operator reads it: "3 mL", "custom 4.70mm"."""
    model = settings.syringe_model
    if model == M.CUSTOM_SYRINGE:
        return CUSTOM_NAME + " " + fixed(settings.syringe_id_um, 1000, 2) + "mm"
    return M.SYRINGES[model][M.SYR_NAME]


def explain(refusal):
    """A refusal (SettingsError.refusals) in the words the screen has room for: at most
    two display lines, the remedy included (tests/test_ui.py walks every code)."""
    if isinstance(refusal, str):  # a problem already in words (a stored record's)
        return "refused"
    field, code = refusal[0], refusal[1]
    E = SettingsError  # noqa: N806  (the class, shorter)
    if code == E.NOT_IDLE:
        return BUSY
    # The value edited was fine by itself: another setting stands in the way.
    if code == E.CYCLE and refusal[4] < refusal[3]:
        return "no shot rate fits: lower dose"
    if code == E.CYCLE:
        return "shots too fast: lower shot rate"
    if code == E.PLUNGER:
        return "rate too fast for this syringe"
    if field == "depth_um":  # a needle length below the depth set
        return "depth is deeper: lower it first"
    if code == E.NO_SETTING or code == E.NO_LIMIT:
        return "no such setting"
    if code == E.CHOICE:
        return "not one of its choices"
    if code == E.RANGE or code == E.NOT_INT:
        span = "%d..%d" % (refusal[3], refusal[4])  # in the field's own unit
        return "out of range: " + span if len(span) <= D.LINE_CHARS else "out of range"
    return "refused"


class Item:
    """One menu line: a setting or limit to edit, or an action."""

    # Defaults on the class: a line keeps only what its kind uses (an action
    # just its label, kind and name), which saves heap on the device.
    target = SETTING
    unit = ""
    scale = 1
    decimals = 0
    step = 0
    lo = 0
    hi = 0
    choices = ()
    names = ()
    done = None  # LOCAL items: done(ui) after OK stored the value

    def __init__(
        self,
        label,
        kind,
        key,
        target=SETTING,
        unit="",
        scale=1,
        decimals=0,
        step=0,
        lo=0,
        hi=0,
        choices=(),
        names=(),
        done=None,
    ):
        self.label = label
        self.kind = kind
        self.key = key  # the field name, or the action's name
        if kind == NUM:
            self.target = target
            self.unit = unit
            self.scale = scale
            self.decimals = decimals
            self.step = step
            self.lo = lo
            self.hi = hi
        elif kind == CHOICE:
            self.choices = choices
            self.names = names
        if done is not None:
            self.done = done

    def text(self, value):
        """The value as the operator reads it, with its unit."""
        if self.kind == CHOICE:
            i = self.choices.index(value) if value in self.choices else -1
            return self.names[i] if i >= 0 else "?"
        if self.key == "dose_nl":
            return dose_text(value) + self.unit
        return fixed(value, self.scale, self.decimals) + self.unit


def _ranged(label, field, unit, scale, decimals):
    lo, hi, step, _ = RANGES[field]
    return Item(label, NUM, field, SETTING, unit, scale, decimals, step, lo, hi)


def limit_item(label, field, unit, scale, decimals, step):
    lo, hi, _ = Limits.RANGES[field]
    lo = (lo + step - 1) // step * step  # the lowest value on the edit grid
    return Item(label, NUM, field, LIMIT, unit, scale, decimals, step, lo, hi)


def _syringe_item():
    sizes = sorted(M.SYRINGES)
    codes = tuple(sizes) + (M.CUSTOM_SYRINGE,)
    names = tuple(M.SYRINGES[s][M.SYR_NAME] for s in sizes) + (CUSTOM_NAME,)
    return Item("Syringe", CHOICE, "syringe_model", choices=codes, names=names)


MAIN_MENU = (  # in the order of a session: home, load, prime, set, fire
    Item("Home", ACTION, A_HOME),
    Item("Load syr.", ACTION, A_LOAD),
    Item("Prime", ACTION, A_PRIME),
    Item("Mode", CHOICE, "mode", choices=(MODE_SINGLE, MODE_CONTINUOUS), names=MODE_LABELS),
    _ranged("Depth", "depth_um", "mm", 1000, 1),
    _ranged("Dose", "dose_nl", "uL", 1000, 1),
    _ranged("Speed", "speed_um_s", "mm/s", 1000, 0),
    _ranged("Inj rate", "rate_nl_s", "uL/s", 1000, 0),
    _ranged("Shot rate", "shot_rate_mhz", "/s", 1000, 1),
    _ranged("Suck-back", "suckback_nl", "uL", 1000, 1),
    _syringe_item(),
    _ranged("Syr. ID", "syringe_id_um", "mm", 1000, 2),
    Item(
        "Needles",
        CHOICE,
        "needle_count",
        choices=NEEDLE_COUNTS,
        names=tuple(str(n) for n in NEEDLE_COUNTS),
    ),
    Item("New sess.", ACTION, A_SESSION),
    Item("Protocol", ACTION, A_PROTOCOL),
    Item("Service", ACTION, A_SERVICE),
)


def setup(ui):
    ui.menu = MAIN_MENU  # the lines of the list on screen
    ui.cursor = 0
    ui._top = 0  # first menu line shown
    ui._main_cursor = 0  # the main menu's line, kept while a sub-screen is open
    ui.item = MAIN_MENU[4]  # the item being edited (on the edit screen)
    ui.value = 0


# ---- the lists ----------------------------------------------------------------


def set_cursor(ui, i):
    n = len(ui.menu)
    i = max(0, min(n - 1, i))
    ui.cursor = i
    if i < ui._top:
        ui._top = i
    elif i >= ui._top + MENU_ROWS:
        ui._top = i - MENU_ROWS + 1


def open_list(ui, screen, rows, cursor):
    """Show the list screen `screen` with `rows`, on line `cursor`."""
    ui.menu = rows
    set_cursor(ui, cursor)
    ui.go(screen)


def open_main(ui, cursor):
    open_list(ui, "menu", MAIN_MENU, cursor)


def list_key(ui, b):
    """UP/DOWN move the cursor; OK runs the line's action or edits its value."""
    if b == UP or b == DOWN:
        before = ui.cursor
        set_cursor(ui, ui.cursor + (1 if b == DOWN else -1))
        return ui.cursor != before
    if b != OK:
        return False
    item = ui.menu[ui.cursor]
    if item.kind == ACTION:
        return ui.act(item.key)
    if ui.run is not None and item.key in ZONE_FIELDS:
        ui.message("set by the protocol")
        return False
    edit(ui, item)
    return True


def _main_key(ui, b):
    if b == BACK or b == OK:
        ui._main_cursor = ui.cursor  # the line to come back to
    if b == BACK:
        ui.to_status()
        return True
    return list_key(ui, b)


def draw_list(ui, fb, title):
    D.inverted(fb, title, 0)
    D.right(fb, "%d/%d" % (ui.cursor + 1, len(ui.menu)), 1, 0)
    for row in range(MENU_ROWS):
        i = ui._top + row
        if i >= len(ui.menu):
            break
        item = ui.menu[i]
        D.list_row(fb, row, item.label, item_value(ui, item), i == ui.cursor)
    if ui._msg:  # over the last line or two, for MESSAGE_MS
        D.foot(fb, ui._msg)


def _draw_main(ui, fb):
    draw_list(ui, fb, "Menu")


def item_value(ui, item):
    """The right-hand column of a menu line."""
    if item.kind == ACTION:
        return ui.action_state(item.key)
    return item.text(current(ui, item))


def done_or_needed(done):
    return "done" if done else "needed"


# ---- editing -------------------------------------------------------------------


def current(ui, item):
    if item.target == LOCAL:
        return ui.cal[item.key]
    src = ui.core.limits if item.target == LIMIT else ui.core.settings
    return getattr(src, item.key)


def bounds(ui, item):
    """(lowest, highest, why the highest) for an item now, the engineer's limits included."""
    lo, hi = item.lo, item.hi
    why = ""
    key = item.key
    core = ui.core
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


def repeat_multiplier(held_ms, span):
    """Steps one key repeat moves after the key was held `held_ms` (REPEAT_STEPS), for a
    range of `span` steps."""
    m = 1
    for ms, mult in REPEAT_STEPS:
        if held_ms >= ms and 20 * mult <= span:
            m = mult
    return m


def edit(ui, item):
    """The edit screen for `item`, starting at its value now."""
    ui.item = item
    ui.value = current(ui, item)
    ui.go("edit")


def _edit_key(ui, b):
    item = ui.item
    if b == BACK:
        ui.go(_EDIT_BACK[item.target])
        return True
    if b == OK:
        return _apply(ui)
    if b != UP and b != DOWN:
        return False
    up = b == UP
    if item.kind == CHOICE:
        i = item.choices.index(ui.value) if ui.value in item.choices else 0
        i = (i + (1 if up else -1)) % len(item.choices)
        ui.value = item.choices[i]
        ui.note = ""
        return True
    lo, hi, why = bounds(ui, item)
    v = ui.value
    step = item.step
    if item.key == "dose_nl":  # fine steps below 10 uL, coarse above
        coarse = v >= FINE_DOSE_BELOW_NL if up else v > FINE_DOSE_BELOW_NL
        step = COARSE_DOSE_STEP_NL if coarse else step
    m = repeat_multiplier(ui.held_ms, (hi - lo) // item.step)
    if m > 1 and lo % step == 0:  # to the next multiple of the larger step: round figures
        big = step * m
        v = (v // big + 1) * big if up else -((-v) // big + 1) * big
    else:
        v = v + step if up else v - step
    if v > hi:
        v = hi
        ui.note = "max " + item.text(hi) + (" (" + why + ")" if why else "")
    elif v < lo:
        v = lo
        ui.note = "min " + item.text(lo)
    else:
        ui.note = ""
    if v == ui.value:
        ui.sound = SND_REFUSE
        return False
    ui.value = v
    return True


def _apply(ui):
    item = ui.item
    core = ui.core
    if item.target == LOCAL:
        ui.cal[item.key] = ui.value
        item.done(ui)
        return True
    try:
        if item.target == LIMIT:
            core.set_limits(**{item.key: ui.value})
        else:
            core.configure(**{item.key: ui.value})
    except SettingsError as e:
        ui.note = explain(e.refusals[0])
        ui.sound = SND_REFUSE
        return False
    ui.go(_EDIT_BACK[item.target])
    return True


def _draw_edit(ui, fb):
    item = ui.item
    D.inverted(fb, item.label, 0)
    text = item.text(ui.value)
    if item.kind == NUM:
        unit = item.unit
        digits = text[: len(text) - len(unit)]
        w = D.big_width(digits) + 2 + len(unit) * D.CHAR_W
        x = D.big(fb, digits, (128 - w) // 2, 13)
        fb.text(unit, x + 1, 25, 1)
        lo, hi, _ = bounds(ui, item)
        D.center(fb, item.text(lo) + ".." + item.text(hi), 36)
    else:
        D.center(fb, "< " + text + " >", 24)
    if ui.note:  # why a key was refused, over the two bottom lines
        lines = D.wrap(ui.note)
        for i in range(min(len(lines), 2)):
            fb.text(lines[i], 0, 46 + i * 9, 1)
        return
    was = current(ui, item)
    if ui.value != was:
        D.center(fb, "was " + item.text(was), 46)
    D.inverted(fb, "OK: set BACK: no", 55)


SCREENS = (
    ("menu", _main_key, _draw_main, None),
    ("edit", _edit_key, _draw_edit, None),
)
ACTIONS = ()
