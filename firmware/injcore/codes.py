"""The codes the firmware speaks in, and their names: the one place for both.

States, faults, notices, warnings, switches, alarms, operating modes and
reset causes are small integers, so the tick can hold them in its state
array. Each has its name here; the display, the log and the host tools read
the names from these tables, never a copy.

Groups of states are bit masks (bit `1 << state`), so the viper hot path
tests one with a shift and an AND, and tuples for everyone else: use
`state in PUNCTURE`, never a numeric range, so a new state changes only the
groups here. The hot-path modules carry the constants they use as a block
that `make consts` writes from this module (viper inlines only a module's
own constants); a test fails while a block is stale.

Faults are one table, FAULTS: per code its name, what the operator should do,
and what the machine does once it has stopped (the recovery, REC_*).
"""

from .compat import const

# ---- switches: bits of the inputs' mask (1 = closed / pressed / stall flagged) --------

SW_NEEDLE_HOME = const(1)
SW_PLUNGER_REAR = const(2)
SW_PLUNGER_FRONT = const(4)
SW_SYRINGE = const(8)
SW_TRIGGER = const(16)
SW_PEDAL = const(32)
SW_ESTOP = const(64)
SW_NEEDLE_STALL = const(128)  # TMC2209 DIAG: stall or driver error
SW_PLUNGER_STALL = const(256)
SW_STALLS = const(SW_NEEDLE_STALL | SW_PLUNGER_STALL)
SW_FIRE = const(SW_TRIGGER | SW_PEDAL)  # either fires

FORCE_INVALID = const(-0x20000000)  # the force of a disconnected or saturated load cell

# ---- alarm levels (display, buzzer) and warnings ------------------------------------

ALARM_NONE = const(0)
ALARM_WARNING = const(1)
ALARM_FAULT = const(2)

W_NONE = const(0)
W_NEAR_EMPTY = const(1)
WARNING_NAMES = (
    "",
    "nearly empty",
)  # of the syringe: the status screen shows it by the volume left

# ---- operating modes (settings.mode) ---------------------------------------------------

MODE_SINGLE = const(0)  # one puncture per press
MODE_CONTINUOUS = const(1)  # punctures at the shot rate while the trigger is held (nappage)
MODE_PRIME = const(2)  # the trigger pushes fluid to fill the needle
# What the device, the settings tool, the log's CSV and the report call each mode:
# nappage is the operator's word for the continuous mode.
MODE_NAMES = ("single", "nappage", "prime")

# ---- states ------------------------------------------------------------------------------

ST_UNHOMED = const(0)
ST_HOMING = const(1)
ST_READY = const(2)
ST_ADVANCE = const(3)
ST_INJECT = const(4)
ST_SUCKBACK = const(5)
ST_RETRACT = const(6)
ST_WAIT = const(7)
ST_PRIME = const(8)
ST_LOAD = const(9)
ST_FAULT = const(10)
ST_RELIEF = const(11)  # after a fault: plunger backs off, needle withdraws, then ST_FAULT
ST_MEASURE = const(12)  # plunger backlash measurement (service menu)
STATE_NAMES = (
    "unhomed",
    "homing",
    "ready",
    "advance",
    "inject",
    "suck-back",
    "retract",
    "wait",
    "prime",
    "load",
    "fault",
    "relieving",
    "measuring",
)

# Groups of states, as masks
# Nothing is moving or about to move: settings, limits and calibration change only here.
IDLE_MASK = const((1 << ST_UNHOMED) | (1 << ST_READY) | (1 << ST_FAULT))
# A puncture under way, from the first needle step to the last: the needle may be in the skin.
PUNCTURING_MASK = const(
    (1 << ST_ADVANCE) | (1 << ST_INJECT) | (1 << ST_SUCKBACK) | (1 << ST_RETRACT)
)
# The trigger's run: a puncture, or the wait between nappage shots.
PUNCTURE_MASK = const(PUNCTURING_MASK | (1 << ST_WAIT))
# The plunger may be pushing fluid: a syringe pulled out now means a partial dose (H7).
DELIVERING_MASK = const(
    (1 << ST_ADVANCE) | (1 << ST_INJECT) | (1 << ST_SUCKBACK) | (1 << ST_PRIME) | (1 << ST_MEASURE)
)
# Homing both axes, or the plunger alone to load a syringe.
HOMING_MASK = const((1 << ST_HOMING) | (1 << ST_LOAD))
# A fault here starts no recovery: the axes' positions are not yet known, or
# the recovery itself failed.
NO_RECOVERY_MASK = const((1 << ST_UNHOMED) | HOMING_MASK | (1 << ST_RELIEF))


def states_in(mask):
    """The states of a group mask, in code order."""
    return tuple(st for st in range(len(STATE_NAMES)) if mask >> st & 1)


IDLE = states_in(IDLE_MASK)
PUNCTURING = states_in(PUNCTURING_MASK)
PUNCTURE = states_in(PUNCTURE_MASK)
DELIVERING = states_in(DELIVERING_MASK)
HOMING = states_in(HOMING_MASK)

# ---- faults ---------------------------------------------------------------------------------

# What the machine does after a fault has stopped it
REC_NONE = const(0)  # stays where it stopped
REC_RELIEF = const(1)  # plunger backs off until the pressure is down, then the needle withdraws
REC_NEEDLE = const(2)  # the needle withdraws to its switch; the plunger stays
REC_NEEDLE_BY_COUNT = const(3)  # the same by counted steps: the switch is not to be trusted

F_NONE = const(0)
F_ESTOP = const(1)
F_NEEDLE_HOME_NOT_FOUND = const(2)
F_PLUNGER_HOME_NOT_FOUND = const(3)
F_PLUNGER_FRONT_LIMIT = const(4)
F_NEEDLE_SOFT_LIMIT = const(5)
F_OCCLUSION = const(6)
F_LOAD_CELL = const(7)
F_NEEDLE_LOST_STEPS = const(8)
F_PLUNGER_LOST_STEPS = const(9)
F_NEEDLE_STALL = const(10)
F_PLUNGER_STALL = const(11)
F_NEEDLE_HOME_STUCK = const(12)
F_PLUNGER_REAR_STUCK = const(13)
F_TICK_OVERRUN = const(14)
F_SYRINGE_REMOVED = const(15)

# Whether the syringe stays primed through the fault (FAULTS' last column): the
# line stayed closed and the plunger's count is sound, so after the operator
# acknowledges, homing moves the needle alone and the next shot needs no new prime.
LINE_KEPT = const(1)
LINE_OPENED = const(0)  # the line may hold air or the plunger's count is in doubt: prime again

# Per fault code: its name, what the operator should do (the alarm screen's
# footer says "OK: acknowledge"), the recovery and what it leaves of the prime.
# The alarm screen shows the name and the action with a line between them and,
# when the needle stayed in, a line saying how deep: a name wraps to at most two
# display lines of 16 characters and the name and action together to at most
# three (tests/test_ui.py checks every row). A recovery that withdraws the needle
# does so only when the needle is in, and never after a fault in homing, loading
# or a recovery itself.
FAULTS = (
    ("none", "", REC_NONE, LINE_KEPT),
    ("emergency stop", "OK, then Home", REC_NONE, LINE_KEPT),
    ("needle home switch not found", "check the axis", REC_NONE, LINE_KEPT),
    ("plunger rear switch not found", "check the axis", REC_NONE, LINE_OPENED),
    ("plunger front limit reached", "check syringe", REC_NEEDLE, LINE_OPENED),
    ("needle past its soft limit", "check the depth", REC_NONE, LINE_KEPT),
    ("occlusion: pressure high", "check the needle", REC_RELIEF, LINE_OPENED),
    ("load cell lost or saturated", "check its wiring", REC_NEEDLE, LINE_OPENED),
    ("needle lost steps", "check the axis", REC_NONE, LINE_KEPT),
    ("plunger lost steps", "check the axis", REC_NEEDLE, LINE_OPENED),
    ("needle driver stalled", "check the axis", REC_NONE, LINE_KEPT),
    ("plunger driver stalled", "check the axis", REC_NEEDLE, LINE_OPENED),
    # The needle's steps are sound, only its switch lies: withdraw it by count.
    ("needle home switch stuck", "check the switch", REC_NEEDLE_BY_COUNT, LINE_KEPT),
    ("plunger rear switch stuck", "check the switch", REC_NEEDLE, LINE_OPENED),
    ("control loop overrun", "report repeats", REC_NONE, LINE_KEPT),
    ("syringe removed during a shot", "reseat syringe", REC_NEEDLE, LINE_OPENED),
)
FAULT_NAMES = tuple(f[0] for f in FAULTS)
FAULT_ACTIONS = tuple(f[1] for f in FAULTS)
FAULT_RECOVERIES = tuple(f[2] for f in FAULTS)
FAULT_LINES = tuple(f[3] for f in FAULTS)

# ---- notices: why the last request was refused ----------------------------------------------

N_NONE = const(0)
N_NOT_HOMED = const(1)
N_NO_SYRINGE = const(2)
N_NOT_PRIMED = const(3)
N_SYRINGE_LOW = const(4)
N_BUSY = const(5)
N_WATCHDOG_RESET = const(6)
N_SESSION_CAP = const(7)
N_BACKLASH_FAILED = const(8)
N_UNCONFIRMED = const(9)
N_ZONE_CAP = const(10)
N_SYRINGE_UNCONFIRMED = const(11)  # size set since the load, or a load not confirmed (H13)
N_NO_DISPLAY = const(12)  # the board found no display: nothing is injected blind
# What the status screen shows (at most two display lines of 16 characters) and
# the host tools print.
NOTICE_NAMES = (
    "",
    "home first",
    "no syringe",
    "prime first",
    "not enough left for a dose",
    "busy",
    "watchdog reset: home first",
    "session volume cap reached",
    "backlash failed: check syringe",
    "settings lost: Service>Confirm",
    "zone volume cap: go to next zone",
    "confirm syringe: menu > Load syr.",
    "no display: nothing fires",
)

# Why nothing may be injected whatever the operator does (bits of layout.UNCONFIRMED)
HOLD_SETTINGS = const(1)  # no valid stored settings: until an engineer confirms them (H9)
HOLD_DISPLAY = const(2)  # no display: the board refuses to fire blind

# ---- why the controller (re)started, as the board reads it -----------------------------------

RC_POWER_ON = const(0)
RC_WATCHDOG = const(1)
RC_SOFT = const(2)  # soft reset (Ctrl-D, machine.soft_reset)
RC_HARD = const(3)  # reset pin / machine.reset()
RESET_NAMES = ("power-on", "watchdog", "soft reset", "hard reset")
