"""The session and protocols: the main menu's actions in the order of a
session and the screens they open.

Home starts a move and returns to the status screen; Load syringe starts
one and shows the size set until the operator confirms the syringe seated is
that size (syringe: OK, or BACK to decline); Prime switches the core to
prime mode until the prime screen is left; New session asks first
(confirm), then takes the product lot (lot) and zeroes the counters;
Protocol lists the stored protocols (protocols) and starts the one chosen
as a new session, or ends the one running. While a protocol runs the status
screen moves between its zones, asking before a zone is skipped (skip).
Entries as in ui/menu.py.

A protocol with a zone the core would refuse (with the syringe in use) is
refused when chosen, before the counters or the lot: its run stays stopped at
that zone, no session started. So does a run at a zone refused later (the
syringe, backlash or calibration changed since). Stopped, the trigger fires
nothing; the status screen shows NO SHOTS, the zone, why, and the way out
(stopped_text): OK > Protocol > End protocol.
"""

from injcore import codes as C
from injcore.compat import const
from injcore.settings import MODE_PRIME, SettingsError

from . import draw as D
from .keys import BACK, DOWN, OK, UP
from .menu import (
    A_HOME,
    A_LOAD,
    A_PRIME,
    A_PROTOCOL,
    A_SESSION,
    BUSY,
    MENU_ROWS,
    done_or_needed,
    explain,
    fixed,
    ml_text,
    syringe_text,
)

LOT_CHARS = " 0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-"  # a blank ends the lot
LOT_LEN = const(12)  # what a log record holds (tlog.LOT_CHARS)


def setup(ui):
    ui._lot = [0] * LOT_LEN
    ui._lot_pos = 0
    ui.run = None  # the protocol run in progress
    ui._proto_names = []
    ui._proto_cursor = 0
    ui._chosen = None  # the protocol the next session starts
    ui._prime_restore = None  # the mode to go back to after priming


def poll(ui):
    if ui.run is not None and ui.protocols is not None:
        ui.protocols.poll(ui.run)
    if ui._prime_restore is not None and ui.screen != "prime":
        end_prime(ui)


# ---- actions ---------------------------------------------------------------------


def _home(ui):
    if ui.core.start_homing():
        ui.to_status()
        return True
    ui.message(BUSY)
    return False


def _load(ui):
    core = ui.core
    if core.syringe_to_confirm and (core.state == C.ST_READY or core.state == C.ST_LOAD):
        # Loading, or loaded with nothing pushed since (a size set after it, say):
        # only the OK is missing.
        ui.go("syringe")
        return True
    if core.start_load():
        ui.go("syringe")
        return True
    ui.message(C.NOTICE_NAMES[core.notice])
    return False


def _prime(ui):
    core = ui.core
    mode = core.settings.mode
    if mode != MODE_PRIME:
        try:
            core.configure(mode=MODE_PRIME)
        except SettingsError as e:
            ui.message(explain(e.refusals[0]))
            return False
        ui._prime_restore = mode
    ui.go("prime")
    return True


def _new_session(ui):
    ui._chosen = None
    ui.go("confirm")
    return True


def _protocol(ui):
    if ui.protocols is None:
        ui.message("no protocols on this device")
        return False
    ui._proto_names = ui.protocols.names()
    if ui.run is not None:
        ui._proto_names = ["End protocol"] + ui._proto_names
    if not ui._proto_names:
        ui.message("no protocols stored")
        return False
    ui._proto_cursor = 0
    ui.go("protocols")
    return True


# ---- load: the size the doses are counted with, confirmed (H13) ----------------------


def _syringe_key(ui, b):
    if b != OK:
        return False
    core = ui.core
    if core.confirm_syringe():
        ui.to_status()
        ui.message("confirmed: " + syringe_text(core.settings))
        return True
    if core.state == C.ST_LOAD:
        ui.note = "wait: loading"
    elif core.state == C.ST_READY and not core.switches & C.SW_SYRINGE:
        ui.note = "seat one first"
    else:
        ui.note = "BACK, Load again"
    return False


def _draw_syringe(ui, fb):
    core = ui.core
    D.inverted(fb, "Load syringe", 0)
    fb.text("size set:", 0, 12, 1)
    D.center(fb, syringe_text(core.settings), 24)
    foot = "BACK: menu"
    if core.state == C.ST_LOAD:
        lines = ("plunger going", "back: wait")
    elif core.state != C.ST_READY or not core.syringe_to_confirm:
        lines = ("not loaded:", "BACK, Load again")
    elif not core.switches & C.SW_SYRINGE:
        lines = ("seat a syringe", "of this size")
    else:
        lines = ("is the syringe", "this size?")
        foot = "OK: yes BACK: no"
    for i in range(len(lines)):
        fb.text(lines[i], 0, 36 + i * 9, 1)
    D.foot(fb, ui.note or foot)


# ---- prime -----------------------------------------------------------------------


def _prime_key(ui, b):
    if b != BACK:
        return False
    if end_prime(ui):
        ui.go("menu")
        return True
    ui.note = "release the trigger first"
    return False


def end_prime(ui):
    """Back to the mode before priming; False while the plunger still moves."""
    mode = ui._prime_restore
    if mode is None:
        return True
    try:
        ui.core.configure(mode=mode)
    except SettingsError:
        return False
    ui._prime_restore = None
    return True


def _draw_prime(ui, fb):
    core = ui.core
    D.inverted(fb, "Prime", 0)
    if not core.homed:
        lines = ("home first:", "BACK, then Home")
    elif not core.switches & C.SW_SYRINGE:
        lines = ("no syringe:", "seat one first")
    elif not core.syringe_confirmed:
        lines = ("syringe size not", "confirmed: BACK,", "then Load syr.")
    else:
        lines = ("hold the trigger", "to push fluid,", "release to stop")
    for i in range(len(lines)):
        fb.text(lines[i], 0, 12 + i * 9, 1)
    fb.text("primed " + fixed(core.primed_nl(), 1000, 1) + "uL", 0, 42, 1)
    D.foot(fb, ui.note or "BACK: done")


# ---- a new session: confirm, then the lot ------------------------------------------


def _confirm_key(ui, b):
    if b == OK:
        ui._lot = [0] * LOT_LEN
        ui._lot_pos = 0
        ui.go("lot")
        return True
    return False


def _draw_confirm(ui, fb):
    core = ui.core
    D.inverted(fb, "New session", 0)
    y = 16
    if ui._chosen is not None:  # a protocol's session: its name, whole
        lines = D.wrap(ui._chosen)
        for i in range(len(lines)):
            fb.text(lines[i], 0, 11 + 9 * i, 1)
        y = 11 + 9 * len(lines) + 3
    fb.text("counters to zero", 0, y, 1)
    fb.text("#%d, %s" % (core.punctures, ml_text(core.delivered_nl())), 0, y + 12, 1)
    D.inverted(fb, "OK: yes BACK: no", 55)


def lot_text(ui):
    return "".join(LOT_CHARS[i] for i in ui._lot).strip()


def _lot_key(ui, b):
    lot = ui._lot
    i = ui._lot_pos
    if b == UP or b == DOWN:
        lot[i] = (lot[i] + (1 if b == UP else len(LOT_CHARS) - 1)) % len(LOT_CHARS)
        return True
    if b == BACK:
        if i == 0:
            ui.go("confirm")
        else:
            lot[i] = 0
            ui._lot_pos = i - 1
        return True
    if b != OK:
        return False
    if lot[i] and i < LOT_LEN - 1:
        ui._lot_pos = i + 1
        return True
    # OK on a blank (or the last) character: the lot is complete; the session starts.
    ui.to_status()
    if ui.run is not None:
        finish_run(ui)
    if ui._chosen is None:
        ui.new_session(lot_text(ui))
        ui.message("new session")
        return True
    protocols = ui.protocols
    if protocols is None:
        return False
    try:  # checked again: nothing changes if a zone is refused now
        ui.run = protocols.start(ui._chosen, lot_text(ui))
    except (ValueError, OSError) as e:
        _refused(ui, e)
        return False
    if ui.run.refused is None:
        ui.message("protocol started")  # its name was on the screen before the lot
    return True


def _draw_lot(ui, fb):
    D.inverted(fb, "Product lot", 0)
    fb.text("optional; blank", 0, 12, 1)
    fb.text("+ OK to finish", 0, 21, 1)
    x = (128 - LOT_LEN * D.CHAR_W) // 2
    for i in range(LOT_LEN):
        ch = LOT_CHARS[ui._lot[i]] if i <= ui._lot_pos else "."
        fb.text(ch, x + i * D.CHAR_W, 34, 1)
    fb.hline(x + ui._lot_pos * D.CHAR_W, 43, D.CHAR_W - 1, 1)
    D.inverted(fb, "UP/DOWN OK BACK", 55)


# ---- protocols -------------------------------------------------------------------

LEAVE = "OK>Protocol>End"  # how a stopped run is left: OK (menu), Protocol, End protocol


def refusal_short(refusal):
    """Why the core refuses a zone, in at most 14 characters (a line with its ';')."""
    code = refusal[1]
    if code == SettingsError.CYCLE:
        return "shots too fast"
    if code == SettingsError.PLUNGER:
        return "rate too fast"
    if code == SettingsError.NOT_IDLE:
        return "injector busy"
    return "cannot run"


def stopped_text(run):
    """A stopped run's banner, two display lines: why, and how to leave (the zone is
    on the line above it, the title says NO SHOTS)."""
    return "%s; %s" % (refusal_short(run.refused[1]), LEAVE)


def _refused(ui, e):
    """A protocol that did not start: stopped at the zone the core refuses, or (the
    store refuses it) why, until BACK. On the status screen, either way."""
    ui.to_status()
    if getattr(e, "refusal", None) is not None:  # ui.protocols.ZoneRefused
        if ui.run is not None:
            finish_run(ui)  # the operator chose to leave it
        ui.run = ui.protocols.hold(e)
    else:  # a stored protocol the limits now refuse, flash trouble: the words on the console
        print("protocol refused: %s" % e)
        ui.sticky(
            "flash error: protocol unread"
            if isinstance(e, OSError)
            else "bad protocol: validate on host"
        )


def after_zone_move(ui):
    run = ui.run
    if run is None:
        return
    if run.finished:
        finish_run(ui)
        ui.message("protocol done")
    elif run.refused is None and getattr(run, "message", ""):
        # A zone refused stops the run (the status screen says so itself); what else
        # keeps it from moving is the injector being busy.
        ui.message(BUSY)


def finish_run(ui):
    """End the run: caps off; one last poll so the log gets its zone records."""
    run = ui.run
    if run is None:
        return
    run.end()
    if ui.protocols is not None:
        ui.protocols.poll(run)
    ui.run = None


def _protocols_key(ui, b):
    names = ui._proto_names
    if b == UP or b == DOWN:
        i = ui._proto_cursor + (1 if b == DOWN else -1)
        if not 0 <= i < len(names):
            return False
        ui._proto_cursor = i
        return True
    if b != OK:
        return False
    name = names[ui._proto_cursor]
    run = ui.run
    if run is not None and ui._proto_cursor == 0:  # "End protocol"
        finish_run(ui)
        ui.message("protocol ended")
        ui.to_status()
        return True
    try:  # every zone, with the syringe in use, before the counters or the lot
        ui.protocols.check(name)
    except (ValueError, OSError) as e:
        _refused(ui, e)
        return False
    ui._chosen = name
    ui.go("confirm")  # a protocol is a new session: counters to zero, then the lot
    return True


_WHOLE_ROWS = const(3)  # list lines while the name chosen is shown whole under them


def _draw_protocols(ui, fb):
    """The names, a line each; a name longer than a line is cut there, and shown whole
    under a rule at the bottom while it is the one chosen."""
    D.inverted(fb, "Protocols", 0)
    names = ui._proto_names
    chosen = names[ui._proto_cursor] if names else ""
    rows = MENU_ROWS if len(chosen) <= D.LINE_CHARS else _WHOLE_ROWS
    top = max(0, ui._proto_cursor - rows + 1)
    for row in range(rows):
        i = top + row
        if i >= len(names):
            break
        D.list_row(fb, row, names[i][: D.LINE_CHARS], "", i == ui._proto_cursor)
    if rows < MENU_ROWS:
        fb.hline(0, 41, 128, 1)
        lines = D.wrap(chosen)
        for i in range(len(lines)):
            fb.text(lines[i], 0, 44 + 9 * i, 1)


def _skip_key(ui, b):
    run = ui.run
    if b == OK and run is not None:
        run.skip()
        after_zone_move(ui)
        ui.go("status")
        return True
    return False


def _draw_skip(ui, fb):
    if ui.run is None:
        return
    st = ui.run.status()
    D.inverted(fb, "Skip zone?", 0)
    fb.text(st["zone"], 0, 14, 1)
    fb.text("%d/%d done" % (st["done"], st["planned"]), 0, 26, 1)
    fb.text("(it is logged)", 0, 38, 1)
    D.inverted(fb, "OK:skip BACK:no", 55)


SCREENS = (
    ("syringe", _syringe_key, _draw_syringe, "menu"),  # load: is the syringe seated this size?
    ("prime", _prime_key, _draw_prime, None),
    ("confirm", _confirm_key, _draw_confirm, "menu"),  # start a new session?
    ("lot", _lot_key, _draw_lot, None),  # the product lot, typed with the buttons
    ("protocols", _protocols_key, _draw_protocols, "menu"),  # choose one, or end the one running
    ("skip", _skip_key, _draw_skip, "status"),  # skip the current zone?
)
ACTIONS = (
    (A_HOME, _home, lambda ui: done_or_needed(ui.core.homed)),
    (A_LOAD, _load, None),
    (A_PRIME, _prime, lambda ui: done_or_needed(ui.core.primed)),
    (A_SESSION, _new_session, None),
    (A_PROTOCOL, _protocol, lambda ui: "on" if ui.run is not None else ">"),
)
