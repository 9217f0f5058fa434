"""Homing: find each axis's switch, and make where it closes the axis's zero.

The sequence is one table, STEPS, walked in order: per axis a fast seek to
its switch, a back-off, a slow approach, and a short settle onto the point
where the switch closed. Loading a syringe runs the plunger's rows alone
(from its first row). `load` writes the table into S; the tick walks it
(`homing_tick`), so changing the sequence is a change of rows here.

A primed syringe keeps its plunger where it is: taken back to its switch it
would draw air into the line and lose the volume count, so homing then ends
after the needle's rows (the plunger's count is kept). Loading unprimes first,
and a fault that may have opened the line unprimes when acknowledged
(Core.acknowledge), so both home the plunger.

Every seek is a full travel plus a margin: no switch by its end is a fault
(H12), as is a switch that stays closed when the axis backs off. Zero is the
motor's position when the switch was read closed, not the commanded one,
which runs ahead by the FIFO lead.
"""

from . import machine as M
from .compat import const, micropython, ptr32
from .monitor import fault
from .motion import start, stop

# ---- constants written by `make consts` from codes.py, layout.py: do not edit ----
_SW_NEEDLE_HOME = const(1)
_SW_PLUNGER_REAR = const(2)
_ST_HOMING = const(1)
_ST_READY = const(2)
_F_NEEDLE_HOME_NOT_FOUND = const(2)
_F_PLUNGER_HOME_NOT_FOUND = const(3)
_F_NEEDLE_HOME_STUCK = const(12)
_F_PLUNGER_REAR_STUCK = const(13)
_N_NONE = const(0)
_IDLE = const(0)
_FORWARD = const(1)
_BACKWARD = const(0)
_SETTLE_MAX_STEPS = const(24)
_OUT_DRIVERS = const(6)
_STATE = const(9)
_NOTICE = const(13)
_NEEDLE_EMITTED = const(18)
_PLUNGER_EMITTED = const(19)
_HOME_STEP = const(26)
_HOME_FOUND = const(27)
_TRIP_POS = const(28)
_PRIMED = const(40)
_HOMED = const(41)
_FLUID_STEPS = const(52)
_HOME_STUCK_N = const(62)
_HOME_STUCK_P = const(63)
_RELEASE_N = const(64)
_RELEASE_P = const(65)
_HOME_PLUNGER_STEP = const(70)
_A_POS = const(0)
_A_ORIGIN = const(1)
_A_PHASE = const(2)
_NA = const(125)
_PA = const(145)
_H_KIND = const(0)
_H_AXIS = const(1)
_H_PLAN = const(2)
_H_DIR = const(3)
_H_SWITCH = const(4)
_H_NOT_FOUND = const(5)
_H_STUCK = const(6)
_H_RELEASE = const(7)
_H_SIZE = const(8)
_HOMING_STEPS = const(222)
_HOMING_STEPS_MAX = const(9)
_HOMING_END = const(294)
_ROW_SIZE = const(9)
_PL_NEEDLE_SEEK = const(295)
_PL_NEEDLE_BACKOFF = const(304)
_PL_NEEDLE_APPROACH = const(313)
_PL_PLUNGER_SEEK = const(322)
_PL_PLUNGER_BACKOFF = const(331)
_PL_PLUNGER_APPROACH = const(340)
_PL_SETTLE = const(538)
# ---- end of the written constants ----

# What a row does
DONE = const(0)  # the end of the table: both axes are home
SEEK = const(1)  # move toward the switch until it closes (stop on the ramp)
BACKOFF = const(2)  # move away until it opens, a fixed distance
SETTLE = const(3)  # zero the axis where the switch closed, then move there

# Per axis: its switch, the fault when a seek misses it, the fault when it
# sticks, and the S slot of the distance within which a working switch opens.
_AXES = {
    _NA: (_SW_NEEDLE_HOME, _F_NEEDLE_HOME_NOT_FOUND, _F_NEEDLE_HOME_STUCK, _RELEASE_N),
    _PA: (_SW_PLUNGER_REAR, _F_PLUNGER_HOME_NOT_FOUND, _F_PLUNGER_REAR_STUCK, _RELEASE_P),
}

# (what, axis, plan row, direction), in order
STEPS = (
    (SEEK, _NA, _PL_NEEDLE_SEEK, _BACKWARD),
    (BACKOFF, _NA, _PL_NEEDLE_BACKOFF, _FORWARD),
    (SEEK, _NA, _PL_NEEDLE_APPROACH, _BACKWARD),
    (SETTLE, _NA, 0, _FORWARD),
    (SEEK, _PA, _PL_PLUNGER_SEEK, _BACKWARD),
    (BACKOFF, _PA, _PL_PLUNGER_BACKOFF, _FORWARD),
    (SEEK, _PA, _PL_PLUNGER_APPROACH, _BACKWARD),
    (SETTLE, _PA, 0, _FORWARD),
)


def load(s):
    """Write STEPS into S, and where loading starts (the plunger's first row)."""
    if len(STEPS) >= _HOMING_STEPS_MAX:
        raise ValueError(
            "homing.STEPS has %d rows; layout.HOMING_STEPS_MAX is %d (one for the end)"
            % (len(STEPS), _HOMING_STEPS_MAX)
        )
    for i in range(_HOMING_STEPS, _HOMING_END):
        s[i] = 0
    s[_HOME_STEP] = _HOMING_STEPS + len(STEPS) * _H_SIZE  # the end row: nothing under way
    s[_HOME_PLUNGER_STEP] = -1
    for i, (kind, ax, row, direction) in enumerate(STEPS):
        at = _HOMING_STEPS + i * _H_SIZE
        switch, not_found, stuck, release = _AXES[ax]
        for field, v in (
            (_H_KIND, kind),
            (_H_AXIS, ax),
            (_H_PLAN, row),
            (_H_DIR, direction),
            (_H_SWITCH, switch),
            (_H_NOT_FOUND, not_found),
            (_H_STUCK, stuck),
            (_H_RELEASE, release),
        ):
            s[at + field] = v
        if ax == _PA and s[_HOME_PLUNGER_STEP] < 0:
            s[_HOME_PLUNGER_STEP] = at


def plan(core, ramp_at):
    """The seek, back-off and approach moves of both axes (machine figures only)."""
    ns = M.NEEDLE_STEPS_PER_MM
    ps = M.PLUNGER_STEPS_PER_MM
    na = M.um_to_needle_steps(M.NEEDLE_ACCEL_UM_S2)
    pa = M.um_to_plunger_steps(M.PLUNGER_ACCEL_UM_S2)
    nb = M.um_to_needle_steps(M.NEEDLE_HOME_BACKOFF_UM)
    pb = M.um_to_plunger_steps(M.PLUNGER_HOME_BACKOFF_UM)
    needle_fast = M.NEEDLE_HOME_FAST_UM_S * ns // 1000
    plunger_fast = M.PLUNGER_HOME_FAST_UM_S * ps // 1000
    moves = (
        (
            "needle seek",
            _PL_NEEDLE_SEEK,
            M.um_to_needle_steps(M.NEEDLE_TRAVEL_UM + M.HOME_MARGIN_UM),
            needle_fast,
            na,
        ),
        ("needle back-off", _PL_NEEDLE_BACKOFF, nb, needle_fast, na),
        ("needle approach", _PL_NEEDLE_APPROACH, 2 * nb, M.NEEDLE_HOME_SLOW_UM_S * ns // 1000, na),
        (
            "plunger seek",
            _PL_PLUNGER_SEEK,
            M.um_to_plunger_steps(M.PLUNGER_TRAVEL_UM + M.HOME_MARGIN_UM),
            plunger_fast,
            pa,
        ),
        ("plunger back-off", _PL_PLUNGER_BACKOFF, pb, plunger_fast, pa),
        (
            "plunger approach",
            _PL_PLUNGER_APPROACH,
            2 * pb,
            M.PLUNGER_HOME_SLOW_UM_S * ps // 1000,
            pa,
        ),
    )
    s = core.S
    s[_HOME_STUCK_N] = M.um_to_needle_steps(M.HOME_STUCK_UM)
    s[_HOME_STUCK_P] = M.um_to_plunger_steps(M.HOME_STUCK_UM)
    s[_RELEASE_N] = M.um_to_needle_steps(M.SWITCH_RELEASE_UM)
    s[_RELEASE_P] = M.um_to_plunger_steps(M.SWITCH_RELEASE_UM)
    return tuple(
        core.new_plan(name, row, next(ramp_at)).set(dist, speed, accel)
        for name, row, dist, speed, accel in moves
    )


def plan_settles(core, ramp_at, ramp_ticks):
    """The short moves from where a seek stopped to exactly zero: d steps at PL_SETTLE + d rows."""
    speed = M.NEEDLE_HOME_SLOW_UM_S * M.NEEDLE_STEPS_PER_MM // 1000
    accel = M.um_to_needle_steps(M.NEEDLE_ACCEL_UM_S2)
    return [
        core.new_plan(
            "settle %d" % d, _PL_SETTLE + d * _ROW_SIZE, ramp_at + d * 2 * ramp_ticks, ramp_ticks
        ).set(d, speed, accel)
        for d in range(_SETTLE_MAX_STEPS + 1)
    ]


# ---- the tick's part ------------------------------------------------------------------------


@micropython.viper
def begin_homing(sbuf, plunger_only: int):
    """Start homing both axes, or the plunger alone (loading a syringe)."""
    s = ptr32(sbuf)
    s[_OUT_DRIVERS] = 1
    s[_NOTICE] = _N_NONE
    s[_HOME_FOUND] = 0
    s[_STATE] = _ST_HOMING
    if plunger_only:
        _begin_step(sbuf, s[_HOME_PLUNGER_STEP])
    else:
        s[_HOMED] = 0
        _begin_step(sbuf, _HOMING_STEPS)


@micropython.viper
def _begin_step(sbuf, k: int):
    """Start the move of the row at S[k]; at the end row, homing is done."""
    s = ptr32(sbuf)
    s[_HOME_STEP] = k
    kind = s[k + _H_KIND]
    ax = s[k + _H_AXIS]
    if kind == DONE or (k == s[_HOME_PLUNGER_STEP] and s[_PRIMED]):
        if kind == DONE:
            # The plunger face rests at the rear switch: where a full syringe sits.
            s[_FLUID_STEPS] = 0
            s[_PRIMED] = 0
        # Else a primed syringe (Home while primed, or after a fault that kept the
        # line closed: codes.FAULTS): its plunger stays, and its count with it.
        s[_HOMED] = 1
        s[_STATE] = _ST_READY
    elif kind == SETTLE:
        trip = s[_TRIP_POS]  # the axis's zero moves to where the switch closed
        s[ax + _A_POS] -= trip
        s[ax + _A_ORIGIN] += trip
        off = s[ax + _A_POS]
        if off > _SETTLE_MAX_STEPS or off < -_SETTLE_MAX_STEPS:
            fault(sbuf, s[k + _H_NOT_FOUND])
        elif off < 0:
            start(sbuf, ax, _PL_SETTLE + _ROW_SIZE * (0 - off), _FORWARD)
        else:
            start(sbuf, ax, _PL_SETTLE + _ROW_SIZE * off, _BACKWARD)
    else:
        # No take-up first: these moves find a switch, and the tick keeps the nut's gap.
        start(sbuf, ax, s[k + _H_PLAN], s[k + _H_DIR])


@micropython.viper
def homing_tick(sbuf, sw: int):
    s = ptr32(sbuf)
    k = s[_HOME_STEP]
    kind = s[k + _H_KIND]
    ax = s[k + _H_AXIS]
    switch = s[k + _H_SWITCH]
    emitted = s[_NEEDLE_EMITTED] if ax == _NA else s[_PLUNGER_EMITTED]
    if kind == BACKOFF and sw & switch and emitted - s[_TRIP_POS] > s[s[k + _H_RELEASE]]:
        # A working switch opens within a fraction of a millimetre: a stuck
        # one must not lead the needle a full back-off deeper (H12).
        fault(sbuf, s[k + _H_STUCK])
        return
    if kind == SEEK and s[_HOME_FOUND] == 0 and sw & switch:
        s[_HOME_FOUND] = 1
        # Zero is where the switch closed: where the motor was when it was read,
        # not the commanded position, which runs ahead by the FIFO lead.
        s[_TRIP_POS] = emitted
        stop(sbuf, ax)
    if s[ax + _A_PHASE] != _IDLE:
        return
    if kind == SEEK and s[_HOME_FOUND] == 0:
        # Full travel plus margin and no switch: broken or blocked (H12).
        fault(sbuf, s[k + _H_NOT_FOUND])
        return
    s[_HOME_FOUND] = 0
    if kind == BACKOFF and sw & switch:
        # Backed off a millimetre and the switch is still closed: stuck (H12).
        fault(sbuf, s[k + _H_STUCK])
        return
    _begin_step(sbuf, k + _H_SIZE)
