"""The status screen and the alarm.

The status screen, top to bottom: mode and state; depth and dose in large
digits; the speed and shot rate (or the protocol's zone); a banner line when
something needs saying; the counts (punctures and volume this session, or
the zone's); the volume left in the syringe, a figure and a bar. The banner
has a line of its own: the counts and the syringe are always on screen. A
banner of two lines takes the speed's line too; the near-empty warning also
marks the volume left (inverted), so it shows whatever the banner says. OK
opens the main menu; UP/DOWN move between a protocol's zones; BACK clears a
message.

The alarm (a latched fault, or the relief move before it) takes over every
screen (the Ui draws it and sends it the keys while core.state says so): the
fault, where the needle stayed when it stayed in, what to do. OK
acknowledges once the machine has stopped. Entries as in ui/menu.py.
"""

from injcore import codes as C
from injcore.compat import const
from injcore.settings import MODE_CONTINUOUS

from . import draw as D
from . import menu
from .keys import BACK, DOWN, OK, SND_CLICK, SND_REFUSE, UP
from .menu import dose_text, fixed, ml_text, used_of
from .session import after_zone_move, stopped_text

# The status screen's rows: y of the large digits (DIGITS_H high), then of the text
# lines under them. A one-line banner is a band on BANNER_Y's line, a two-line one
# also covers SETTINGS_Y's.
DIGITS_Y = const(10)
DIGITS_H = const(16)
SETTINGS_Y = const(28)
BANNER_Y = const(37)
COUNTS_Y = const(46)
SYRINGE_Y = const(56)
BANNER_LINES = const(2)
ALARM_GAP = const(3)  # pixels between the alarm's fault, the needle and the action


def _stopped(ui):
    """The protocol run stopped at a zone the core refused (the trigger fires nothing)."""
    return ui.run is not None and ui.run.refused is not None


def state_text(ui):
    s = ui.core.state
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
    if s == C.ST_MEASURE:
        return "MEASURE"
    if s == C.ST_READY and _stopped(ui):
        return "NO SHOTS"
    return C.STATE_NAMES[s].upper()


def needle_in_text(core):
    """'needle 1.0mm in' while the needle's tip is known to be in the skin, else ''."""
    depth = core.needle_depth_um()
    if depth is None or depth <= 0:
        return ""
    return "needle " + menu.fixed(depth, 1000, 1) + "mm in"


def banner(ui):
    """The status screen's banner when it has something to say, else '': at most
    BANNER_LINES display lines (tests/test_ui.py walks every text)."""
    core = ui.core
    if _stopped(ui):  # above all: why nothing fires, and the way out
        return stopped_text(ui.run)
    if ui._msg:
        return ui._msg
    if ui._sticky:
        return ui._sticky
    if core.notice:
        return C.NOTICE_NAMES[core.notice]
    if core.unconfirmed:
        return C.NOTICE_NAMES[C.N_UNCONFIRMED]
    if core.state == C.ST_UNHOMED:
        needle = needle_in_text(core)  # left in by a fault: Home withdraws it first
        return needle + ": menu > Home" if needle else "OK: menu > Home"
    if core.state == C.ST_READY:
        if not core.switches & C.SW_SYRINGE:
            return "no syringe: menu > Load syr."
        if not core.syringe_confirmed:
            return C.NOTICE_NAMES[C.N_SYRINGE_UNCONFIRMED]
        if not core.primed:
            return "not primed: menu > Prime"
    if core.warning:
        return "! " + C.WARNING_NAMES[core.warning]
    return ""


def zone_text(run, z):
    """The zone shown (the one refused, when stopped): '2/3 Cheek L', or '12 Forehead
    left' when its number and count leave no room for the name."""
    i = z["index"] if z["refused"] < 0 else z["refused"]
    name = run.protocol.zones[i].name
    text = "%d/%d %s" % (i + 1, z["count"], name)
    return text if len(text) <= D.LINE_CHARS else "%d %s" % (i + 1, name)


def next_text(z):
    name = z["next_name"]
    if not name:
        return "last zone"
    text = "next: " + name
    return text if len(text) <= D.LINE_CHARS else "> " + name


def counts_text(ui, z):
    """The counts line, (left, right): the session's punctures and volume, or the zone's."""
    if z is not None:
        left = "%d/%s" % (z["done"], str(z["planned"]) if z["planned"] else "-")
        right = used_of(z["used_nl"], z["cap_nl"])
        if len(left) + 1 + len(right) > D.LINE_CHARS:
            left = str(z["done"])
        return left, right
    core = ui.core
    left = "#%d" % core.punctures
    right = ml_text(core.delivered_nl())
    if len(left) + 5 + len(right) <= D.LINE_CHARS:
        right = "tot " + right
    return left, right


def _status_key(ui, b):
    core = ui.core
    if b == OK:
        # Not homed: the menu opens on Home, so OK, OK homes.
        menu.open_main(ui, 0 if not core.homed else ui._main_cursor)
        return True
    run = ui.run
    if run is not None and (b == UP or b == DOWN):
        if core.state != C.ST_READY and core.state != C.ST_UNHOMED:
            return False  # not while a puncture runs
        if run.refused is not None:
            return False  # stopped: only ending the protocol leaves it
        if b == UP:
            if run.index == 0:
                return False
            run.back()
        else:
            st = run.status()
            unfinished = not st["capped"] and st["planned"] and st["done"] < st["planned"]
            if unfinished:
                ui.go("skip")  # skipping is logged: ask first
                return True
            run.next()
        after_zone_move(ui)
        return True
    if b == BACK:
        had = core.notice or ui._msg or ui._sticky
        core.clear_notice()
        ui._msg = ""
        ui._sticky = ""
        return bool(had)
    return False


def _draw_status(ui, fb):
    core = ui.core
    st = core.settings
    fb.fill_rect(0, 0, 128, 9, 1)
    fb.text(menu.MODE_LABELS[st.mode].upper(), 0, 1, 0)
    D.right(fb, state_text(ui), 1, 0)
    run = ui.run
    z = run.status() if run is not None else None
    stopped = _stopped(ui)
    if stopped:  # no zone's values apply: the zone refused in place of the digits
        fb.text(zone_text(run, z), 0, DIGITS_Y + 4, 1)
    else:  # large depth (left) and dose (right, well clear of it), units beside them
        x = D.big(fb, fixed(st.depth_um, 1000, 1), 0, DIGITS_Y, 1, DIGITS_H)
        fb.text("mm", x + 1, DIGITS_Y + DIGITS_H - 8, 1)
        dose = dose_text(st.dose_nl)
        x = 128 - 2 * D.CHAR_W
        D.big(fb, dose, x - 3 - D.big_width(dose), DIGITS_Y, 1, DIGITS_H)
        fb.text("uL", x, DIGITS_Y + DIGITS_H - 8, 1)
    lines = D.wrap(banner(ui))[:BANNER_LINES]
    if len(lines) < 2 and not stopped:  # the speed and shot rate, or the zone
        if z is not None:
            fb.text(zone_text(run, z), 0, SETTINGS_Y, 1)
        else:
            fb.text(fixed(st.speed_um_s, 1000, 0) + "mm/s", 0, SETTINGS_Y, 1)
            if st.mode == MODE_CONTINUOUS:
                D.right(fb, fixed(st.shot_rate_mhz, 1000, 1) + "/s", SETTINGS_Y)
    if lines:
        D.band(fb, lines, BANNER_Y - 1 - 9 * (len(lines) - 1))
    elif z is not None:
        fb.text(next_text(z), 0, BANNER_Y, 1)
    left, right = counts_text(ui, None if stopped else z)  # stopped: the session's
    fb.text(left, 0, COUNTS_Y, 1)
    D.right(fb, right, COUNTS_Y)
    _draw_syringe_left(core, fb)


def _draw_syringe_left(core, fb):
    """The volume left, a figure and a bar; inverted while the near-empty warning is on."""
    y = SYRINGE_Y
    if not core.homed and not core.primed:  # no plunger count to trust until homing
        fb.text("left ?", 0, y, 1)
        D.bar(fb, 60, y - 1, 68, 9, 0, 1)
        return
    left = core.volume_left_nl()
    text = ml_text(left)
    if core.warning:
        fb.fill_rect(0, y - 1, len(text) * D.CHAR_W + 2, 9, 1)
        fb.text(text, 1, y, 0)
    else:
        fb.text(text, 0, y, 1)
    D.bar(fb, 60, y - 1, 68, 9, left, core.settings.syringe()[1])


def alarm_groups(core):
    """The alarm's lines in groups: the fault's name, where the needle stayed (when in),
    what to do. codes.FAULTS keeps them within the screen (tests/test_ui.py)."""
    groups = [D.wrap(C.FAULT_NAMES[core.fault])]
    needle = needle_in_text(core)
    if needle:
        groups.append([needle])
    action = C.FAULT_ACTIONS[core.fault]
    if action:
        groups.append(D.wrap(action))
    return groups


def _alarm_key(ui, b):
    core = ui.core
    if b == OK and core.state == C.ST_FAULT and not core.switches & C.SW_ESTOP:
        core.acknowledge()
        ui.to_status()
        ui.sound = SND_CLICK
        return True
    ui.sound = SND_REFUSE  # relief still moving, or the stop still pressed
    return False


def _draw_alarm(ui, fb):
    core = ui.core
    D.inverted(fb, "ALARM  E%02d" % core.fault, 0)
    y = 10
    for group in alarm_groups(core):
        for line in group:
            fb.text(line, 0, y, 1)
            y += 9
        y += ALARM_GAP
    if core.state == C.ST_RELIEF:
        foot = "withdrawing..."
    elif core.switches & C.SW_ESTOP:
        foot = "release the stop"
    else:
        foot = "OK: acknowledge"
    D.inverted(fb, foot, 55)


SCREENS = (
    ("status", _status_key, _draw_status, None),
    ("alarm", _alarm_key, _draw_alarm, None),  # not a place to go: drawn over everything
)
ACTIONS = ()
