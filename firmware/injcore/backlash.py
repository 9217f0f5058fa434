"""The plunger's backlash: measure it (service menu), and set the compensation.

The nut that drives the plunger has play: when the plunger reverses, the
first steps move the nut, not the syringe. Every plunger move that reverses
takes that up first (motion.plunger_start), so the figure matters for every
dose. The measurement, with a primed syringe pushing into a cup: preload
forward, let the force settle, then back off slowly until the load cell's
force drops; the steps until it drops are the backlash. The result is
offered to the engineer, who applies it with `set_backlash`.

The preload is a fast push, a step of volume into the line, so the settle
also shows the line's pressure falling with its time constant: the main
loop reads Core.backlash_phase and fits tau from the force meanwhile
(linefit.py), offered with the backlash and applied with `set_line_tau`.
"""

from . import machine as M
from .compat import const, micropython, ptr32
from .motion import start as start_move
from .motion import stop
from .settings import SettingsError

# ---- constants written by `make consts` from codes.py, layout.py: do not edit ----
_SW_SYRINGE = const(8)
_ST_READY = const(2)
_ST_MEASURE = const(12)
_N_NONE = const(0)
_N_NOT_HOMED = const(1)
_N_NO_SYRINGE = const(2)
_N_NOT_PRIMED = const(3)
_N_BUSY = const(5)
_N_BACKLASH_FAILED = const(8)
_IDLE = const(0)
_FORWARD = const(1)
_BACKWARD = const(0)
_STATE = const(9)
_NOTICE = const(13)
_PLUNGER_EMITTED = const(19)
_BL_PHASE = const(45)
_BL_TIMER = const(46)
_BL_F0 = const(47)
_BL_POS0 = const(48)
_BL_MEASURED = const(49)
_BACKLASH = const(59)
_BL_SETTLE_TICKS = const(67)
_BL_DETECT_MN = const(68)
_A_PHASE = const(2)
_PA = const(145)
_PL_BL_PRELOAD = const(358)
_PL_BL_PROBE = const(367)
# ---- end of the written constants ----

# Measurement phases (Core.backlash_phase)
BL_NONE = const(-1)  # no measurement under way
BL_PRELOAD = const(0)
BL_SETTLE = const(1)
BL_PROBE = const(2)
BL_STOPPING = const(3)


def plan(core, ramp_at):
    """The measurement's two moves: the fast preload and the slow probe back (machine figures)."""
    accel = M.um_to_plunger_steps(M.PLUNGER_ACCEL_UM_S2)
    s = core.S
    s[_BL_SETTLE_TICKS] = M.BACKLASH_SETTLE_MS * 1000 // M.TICK_US
    s[_BL_DETECT_MN] = M.BACKLASH_DETECT_MN
    s[_BL_MEASURED] = -1
    s[_BACKLASH] = M.um_to_plunger_steps(M.PLUNGER_BACKLASH_UM)
    return (
        core.new_plan("backlash preload", _PL_BL_PRELOAD, next(ramp_at)).set(
            M.um_to_plunger_steps(M.BACKLASH_PRELOAD_UM),
            M.um_to_plunger_steps(M.BACKLASH_PRELOAD_SPEED_UM_S),
            accel,
        ),
        core.new_plan("backlash probe", _PL_BL_PROBE, next(ramp_at)).set(
            M.um_to_plunger_steps(M.BACKLASH_PROBE_UM),
            M.um_to_plunger_steps(M.BACKLASH_PROBE_SPEED_UM_S),
            accel,
        ),
    )


def start(core):
    """Start a measurement (homed, primed, into a cup); False with a notice if refused."""
    if core.state != _ST_READY or not core.homed:
        core.notice = _N_NOT_HOMED if not core.homed else _N_BUSY
        return False
    if not core.switches & _SW_SYRINGE:
        core.notice = _N_NO_SYRINGE
        return False
    if not core.primed:
        core.notice = _N_NOT_PRIMED
        return False
    s = core.S
    core.notice = _N_NONE
    s[_BL_MEASURED] = -1
    s[_BL_PHASE] = BL_PRELOAD
    start_move(s, _PA, _PL_BL_PRELOAD, _FORWARD)  # no take-up: the probe finds the gap itself
    core.state = _ST_MEASURE
    return True


def check(steps):
    """A backlash figure the compensation may use; SettingsError if not."""
    hi = M.um_to_plunger_steps(M.BACKLASH_MAX_UM)
    if not isinstance(steps, int) or not 0 <= steps <= hi:
        raise SettingsError.one("backlash_steps", SettingsError.RANGE, steps, 0, hi)


# ---- the tick's part ------------------------------------------------------------------------


@micropython.viper
def measure_tick(sbuf, force: int):
    s = ptr32(sbuf)
    phase = s[_BL_PHASE]
    if phase == BL_PRELOAD:
        if s[_PA + _A_PHASE] == _IDLE:
            s[_BL_PHASE] = BL_SETTLE
            s[_BL_TIMER] = s[_BL_SETTLE_TICKS]
    elif phase == BL_SETTLE:
        s[_BL_TIMER] -= 1
        if s[_BL_TIMER] <= 0:
            s[_BL_F0] = force
            s[_BL_POS0] = s[_PLUNGER_EMITTED]
            s[_BL_PHASE] = BL_PROBE
            start_move(sbuf, _PA, _PL_BL_PROBE, _BACKWARD)
    elif phase == BL_STOPPING:
        if s[_PA + _A_PHASE] == _IDLE:
            s[_STATE] = _ST_READY
    elif force < s[_BL_F0] - s[_BL_DETECT_MN]:
        s[_BL_MEASURED] = s[_BL_POS0] - s[_PLUNGER_EMITTED]  # where the motor is
        stop(sbuf, _PA)
        s[_BL_PHASE] = BL_STOPPING
    elif s[_PA + _A_PHASE] == _IDLE:
        s[_NOTICE] = _N_BACKLASH_FAILED
        s[_STATE] = _ST_READY
