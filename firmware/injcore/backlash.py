"""The plunger's backlash: measure it (service menu), and set the compensation.

The nut that drives the plunger has play: when the plunger reverses, the
first steps move the nut, not the syringe. Every plunger move that reverses
takes that up first (motion.plunger_start), so the figure matters for every
dose. The measurement, with a primed syringe pushing into a cup: preload
forward, let the force settle, then back off slowly until the load cell's
force drops; the steps until it drops are the backlash. The result is
offered to the engineer, who applies it with `set_backlash`.
"""

from . import machine as M
from .compat import const, micropython, ptr32
from .motion import plunger_start, stop
from .settings import SettingsError

# ---- constants written by `make consts` from codes.py, layout.py: do not edit ----
SW_SYRINGE = const(8)
ST_READY = const(2)
ST_MEASURE = const(12)
N_NONE = const(0)
N_NOT_HOMED = const(1)
N_NO_SYRINGE = const(2)
N_NOT_PRIMED = const(3)
N_BUSY = const(5)
N_BACKLASH_FAILED = const(8)
IDLE = const(0)
FORWARD = const(1)
BACKWARD = const(0)
STATE = const(9)
NOTICE = const(13)
PLUNGER_EMITTED = const(19)
BL_PHASE = const(40)
BL_TIMER = const(41)
BL_F0 = const(42)
BL_POS0 = const(43)
BL_MEASURED = const(44)
BACKLASH = const(54)
BL_SETTLE_TICKS = const(62)
BL_DETECT_MN = const(63)
A_PHASE = const(2)
PA = const(131)
PL_BL_PRELOAD = const(334)
PL_BL_PROBE = const(343)
# ---- end of the written constants ----

# Measurement phases
BL_PRELOAD = const(0)
BL_SETTLE = const(1)
BL_PROBE = const(2)
BL_STOPPING = const(3)


def plan(core, ramp_at):
    """The measurement's two moves: the preload and the slow probe back (machine figures)."""
    speed = M.um_to_plunger_steps(M.BACKLASH_PROBE_SPEED_UM_S)
    accel = M.um_to_plunger_steps(M.PLUNGER_ACCEL_UM_S2)
    s = core.S
    s[BL_SETTLE_TICKS] = M.BACKLASH_SETTLE_MS * 1000 // M.TICK_US
    s[BL_DETECT_MN] = M.BACKLASH_DETECT_MN
    s[BL_MEASURED] = -1
    s[BACKLASH] = M.um_to_plunger_steps(M.PLUNGER_BACKLASH_UM)
    return (core.new_plan("backlash preload", PL_BL_PRELOAD, next(ramp_at)).set(
                M.um_to_plunger_steps(M.BACKLASH_PRELOAD_UM), speed, accel),
            core.new_plan("backlash probe", PL_BL_PROBE, next(ramp_at)).set(
                M.um_to_plunger_steps(M.BACKLASH_PROBE_UM), speed, accel))


def start(core):
    """Start a measurement (homed, primed, into a cup); False with a notice if refused."""
    if core.state != ST_READY or not core.homed:
        core.notice = N_NOT_HOMED if not core.homed else N_BUSY
        return False
    if not core.switches & SW_SYRINGE:
        core.notice = N_NO_SYRINGE
        return False
    if not core.primed:
        core.notice = N_NOT_PRIMED
        return False
    s = core.S
    core.notice = N_NONE
    s[BL_MEASURED] = -1
    s[BL_PHASE] = BL_PRELOAD
    plunger_start(s, PL_BL_PRELOAD, FORWARD)
    core.state = ST_MEASURE
    return True


def check(steps):
    """A backlash figure the compensation may use; SettingsError if not."""
    hi = M.um_to_plunger_steps(M.BACKLASH_MAX_UM)
    if not isinstance(steps, int) or not 0 <= steps <= hi:
        raise SettingsError(["backlash_steps: %r is out of range; allowed 0..%d" % (steps, hi)])


# ---- the tick's part ------------------------------------------------------------------------


@micropython.viper
def measure_tick(sbuf, force: int):
    s = ptr32(sbuf)
    phase = s[BL_PHASE]
    if phase == BL_PRELOAD:
        if s[PA + A_PHASE] == IDLE:
            s[BL_PHASE] = BL_SETTLE
            s[BL_TIMER] = s[BL_SETTLE_TICKS]
    elif phase == BL_SETTLE:
        s[BL_TIMER] -= 1
        if s[BL_TIMER] <= 0:
            s[BL_F0] = force
            s[BL_POS0] = s[PLUNGER_EMITTED]
            s[BL_PHASE] = BL_PROBE
            plunger_start(sbuf, PL_BL_PROBE, BACKWARD)
    elif phase == BL_STOPPING:
        if s[PA + A_PHASE] == IDLE:
            s[STATE] = ST_READY
    elif force < s[BL_F0] - s[BL_DETECT_MN]:
        s[BL_MEASURED] = s[BL_POS0] - s[PLUNGER_EMITTED]  # where the motor is
        stop(sbuf, PA)
        s[BL_PHASE] = BL_STOPPING
    elif s[PA + A_PHASE] == IDLE:
        s[NOTICE] = N_BACKLASH_FAILED
        s[STATE] = ST_READY
