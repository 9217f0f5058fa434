"""The status screen and the alarm.

The status screen: mode and state, depth and dose in large digits, the
speed and shot rate (or the protocol's zone), the totals and the syringe
left, and a banner line when something needs saying. OK opens the main
menu; UP/DOWN move between a protocol's zones; BACK clears a message.

The alarm (a latched fault, or the relief move before it) takes over every
screen (the Ui draws it and sends it the keys while core.state says so); OK
acknowledges once the machine has stopped. Entries as in ui/menu.py.
"""

from injcore import codes as C
from injcore.settings import MODE_CONTINUOUS

from . import draw as D
from . import menu
from .keys import BACK, DOWN, OK, SND_CLICK, SND_REFUSE, UP
from .menu import dose_text, fixed, ml_text, used_of
from .session import after_zone_move, stopped_text


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
    if s == C.ST_READY and _stopped(ui):
        return "NO SHOTS"
    return C.STATE_NAMES[s].upper()


def banner(ui):
    """The status screen's bottom line when it has something to say, else ''."""
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
    if core.warning:
        return "! " + C.WARNING_NAMES[core.warning]
    if core.state == C.ST_UNHOMED:
        return "OK: menu > Home"
    if core.state == C.ST_READY:
        if not core.switches & C.SW_SYRINGE:
            return "no syringe: menu > Load syr."
        if not core.syringe_confirmed:
            return C.NOTICE_NAMES[C.N_SYRINGE_UNCONFIRMED]
        if not core.primed:
            return "not primed: menu > Prime"
    return ""


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
    # Large depth (left half) and dose (right half), units beside them; dashes
    # while a stopped protocol run lets no shot fire (no zone's values apply).
    off = _stopped(ui)
    x = D.big(fb, "--" if off else fixed(st.depth_um, 1000, 1), 0, 12)
    fb.text("mm", x + 1, 24, 1)
    dose = "--" if off else dose_text(st.dose_nl)  # right-aligned, well clear of the depth
    x = D.big(fb, dose, 128 - 2 * D.CHAR_W - 1 - D.big_width(dose), 12)
    fb.text("uL", x + 1, 24, 1)
    run = ui.run
    z = run.status() if run is not None else None
    if run is not None and z is not None:  # the zone for the speed, its progress for the totals
        i = z["index"] if z["refused"] < 0 else z["refused"]  # stopped: the zone refused
        fb.text("%d/%d %s" % (i + 1, z["count"], run.protocol.zones[i].name), 0, 35, 1)
    else:
        fb.text(fixed(st.speed_um_s, 1000, 0) + "mm/s", 0, 35, 1)
        if st.mode == MODE_CONTINUOUS:
            D.right(fb, fixed(st.shot_rate_mhz, 1000, 1) + "/s", 35)
    msg = D.wrap(banner(ui))
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


SCREENS = (
    ("status", _status_key, _draw_status, None),
    ("alarm", _alarm_key, _draw_alarm, None),  # not a place to go: drawn over everything
)
ACTIONS = ()
