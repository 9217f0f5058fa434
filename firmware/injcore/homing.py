"""Homing: find each axis's switch, and make where it closes the axis's zero.

The sequence is one table, STEPS, walked in order: per axis a fast seek to
its switch, a back-off, a slow approach, and a short settle onto the point
where the switch closed. Loading a syringe runs the plunger's rows alone
(from its first row). `load` writes the table into S; the tick walks it
(`homing_tick`), so changing the sequence is a change of rows here.

Every seek is a full travel plus a margin: no switch by its end is a fault
(H12), as is a switch that stays closed when the axis backs off. Zero is the
motor's position when the switch was read closed, not the commanded one,
which runs ahead by the FIFO lead.
"""

from . import machine as M
from .compat import const, micropython, ptr32
from .monitor import fault
from .motion import plunger_start, start, stop

# ---- constants written by `make consts` from codes.py, layout.py: do not edit ----
SW_NEEDLE_HOME = const(1)
SW_PLUNGER_REAR = const(2)
ST_HOMING = const(1)
ST_READY = const(2)
F_NEEDLE_HOME_NOT_FOUND = const(2)
F_PLUNGER_HOME_NOT_FOUND = const(3)
F_NEEDLE_HOME_STUCK = const(12)
F_PLUNGER_REAR_STUCK = const(13)
N_NONE = const(0)
IDLE = const(0)
FORWARD = const(1)
BACKWARD = const(0)
SETTLE_MAX_STEPS = const(24)
OUT_DRIVERS = const(6)
STATE = const(9)
NOTICE = const(13)
NEEDLE_EMITTED = const(18)
PLUNGER_EMITTED = const(19)
HOME_STEP = const(26)
HOME_FOUND = const(27)
TRIP_POS = const(28)
COMP_LEFT = const(33)
PRIMED = const(36)
HOMED = const(37)
FLUID_STEPS = const(47)
HOME_STUCK_N = const(57)
HOME_STUCK_P = const(58)
RELEASE_N = const(59)
RELEASE_P = const(60)
HOME_PLUNGER_STEP = const(65)
A_POS = const(0)
A_ORIGIN = const(1)
A_PHASE = const(2)
NA = const(111)
PA = const(131)
H_KIND = const(0)
H_AXIS = const(1)
H_PLAN = const(2)
H_DIR = const(3)
H_SWITCH = const(4)
H_NOT_FOUND = const(5)
H_STUCK = const(6)
H_RELEASE = const(7)
H_SIZE = const(8)
HOMING_STEPS = const(198)
HOMING_STEPS_MAX = const(9)
HOMING_END = const(270)
ROW_SIZE = const(9)
PL_NEEDLE_SEEK = const(271)
PL_NEEDLE_BACKOFF = const(280)
PL_NEEDLE_APPROACH = const(289)
PL_PLUNGER_SEEK = const(298)
PL_PLUNGER_BACKOFF = const(307)
PL_PLUNGER_APPROACH = const(316)
PL_SETTLE = const(451)
# ---- end of the written constants ----

# What a row does
DONE = const(0)  # the end of the table: both axes are home
SEEK = const(1)  # move toward the switch until it closes (stop on the ramp)
BACKOFF = const(2)  # move away until it opens, a fixed distance
SETTLE = const(3)  # zero the axis where the switch closed, then move there

# Per axis: its switch, the fault when a seek misses it, the fault when it
# sticks, and the S slot of the distance within which a working switch opens.
_AXES = {
    NA: (SW_NEEDLE_HOME, F_NEEDLE_HOME_NOT_FOUND, F_NEEDLE_HOME_STUCK, RELEASE_N),
    PA: (SW_PLUNGER_REAR, F_PLUNGER_HOME_NOT_FOUND, F_PLUNGER_REAR_STUCK, RELEASE_P),
}

# (what, axis, plan row, direction), in order
STEPS = (
    (SEEK, NA, PL_NEEDLE_SEEK, BACKWARD),
    (BACKOFF, NA, PL_NEEDLE_BACKOFF, FORWARD),
    (SEEK, NA, PL_NEEDLE_APPROACH, BACKWARD),
    (SETTLE, NA, 0, FORWARD),
    (SEEK, PA, PL_PLUNGER_SEEK, BACKWARD),
    (BACKOFF, PA, PL_PLUNGER_BACKOFF, FORWARD),
    (SEEK, PA, PL_PLUNGER_APPROACH, BACKWARD),
    (SETTLE, PA, 0, FORWARD),
)


def load(s):
    """Write STEPS into S, and where loading starts (the plunger's first row)."""
    if len(STEPS) >= HOMING_STEPS_MAX:
        raise ValueError("homing.STEPS has %d rows; layout.HOMING_STEPS_MAX is %d (one for the end)"
                         % (len(STEPS), HOMING_STEPS_MAX))
    for i in range(HOMING_STEPS, HOMING_END):
        s[i] = 0
    s[HOME_STEP] = HOMING_STEPS + len(STEPS) * H_SIZE  # the end row: nothing under way
    s[HOME_PLUNGER_STEP] = -1
    for i, (kind, ax, row, direction) in enumerate(STEPS):
        at = HOMING_STEPS + i * H_SIZE
        switch, not_found, stuck, release = _AXES[ax]
        for field, v in ((H_KIND, kind), (H_AXIS, ax), (H_PLAN, row), (H_DIR, direction),
                         (H_SWITCH, switch), (H_NOT_FOUND, not_found), (H_STUCK, stuck),
                         (H_RELEASE, release)):
            s[at + field] = v
        if ax == PA and s[HOME_PLUNGER_STEP] < 0:
            s[HOME_PLUNGER_STEP] = at


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
        ("needle seek", PL_NEEDLE_SEEK, M.um_to_needle_steps(M.NEEDLE_TRAVEL_UM + M.HOME_MARGIN_UM),
         needle_fast, na),
        ("needle back-off", PL_NEEDLE_BACKOFF, nb, needle_fast, na),
        ("needle approach", PL_NEEDLE_APPROACH, 2 * nb, M.NEEDLE_HOME_SLOW_UM_S * ns // 1000, na),
        ("plunger seek", PL_PLUNGER_SEEK,
         M.um_to_plunger_steps(M.PLUNGER_TRAVEL_UM + M.HOME_MARGIN_UM), plunger_fast, pa),
        ("plunger back-off", PL_PLUNGER_BACKOFF, pb, plunger_fast, pa),
        ("plunger approach", PL_PLUNGER_APPROACH, 2 * pb, M.PLUNGER_HOME_SLOW_UM_S * ps // 1000, pa),
    )
    s = core.S
    s[HOME_STUCK_N] = M.um_to_needle_steps(M.HOME_STUCK_UM)
    s[HOME_STUCK_P] = M.um_to_plunger_steps(M.HOME_STUCK_UM)
    s[RELEASE_N] = M.um_to_needle_steps(M.SWITCH_RELEASE_UM)
    s[RELEASE_P] = M.um_to_plunger_steps(M.SWITCH_RELEASE_UM)
    return tuple(core.new_plan(name, row, next(ramp_at)).set(dist, speed, accel)
                 for name, row, dist, speed, accel in moves)


def plan_settles(core, ramp_at, ramp_ticks):
    """The short moves from where a seek stopped to exactly zero: d steps at PL_SETTLE + d rows."""
    speed = M.NEEDLE_HOME_SLOW_UM_S * M.NEEDLE_STEPS_PER_MM // 1000
    accel = M.um_to_needle_steps(M.NEEDLE_ACCEL_UM_S2)
    return [core.new_plan("settle %d" % d, PL_SETTLE + d * ROW_SIZE, ramp_at + d * 2 * ramp_ticks,
                      ramp_ticks).set(d, speed, accel)
            for d in range(SETTLE_MAX_STEPS + 1)]


# ---- the tick's part ------------------------------------------------------------------------


@micropython.viper
def begin_homing(sbuf, plunger_only: int):
    """Start homing both axes, or the plunger alone (loading a syringe)."""
    s = ptr32(sbuf)
    s[OUT_DRIVERS] = 1
    s[NOTICE] = N_NONE
    s[HOME_FOUND] = 0
    s[STATE] = ST_HOMING
    if plunger_only:
        _begin_step(sbuf, s[HOME_PLUNGER_STEP])
    else:
        s[HOMED] = 0
        _begin_step(sbuf, HOMING_STEPS)


@micropython.viper
def _begin_step(sbuf, k: int):
    """Start the move of the row at S[k]; at the end row, homing is done."""
    s = ptr32(sbuf)
    s[HOME_STEP] = k
    kind = s[k + H_KIND]
    ax = s[k + H_AXIS]
    if kind == DONE:
        # The plunger face rests at the rear switch: where a full syringe sits.
        s[FLUID_STEPS] = 0
        s[COMP_LEFT] = 0
        s[PRIMED] = 0
        s[HOMED] = 1
        s[STATE] = ST_READY
    elif kind == SETTLE:
        trip = s[TRIP_POS]  # the axis's zero moves to where the switch closed
        s[ax + A_POS] -= trip
        s[ax + A_ORIGIN] += trip
        off = s[ax + A_POS]
        if off > SETTLE_MAX_STEPS or off < -SETTLE_MAX_STEPS:
            fault(sbuf, s[k + H_NOT_FOUND])
        elif off < 0:
            start(sbuf, ax, PL_SETTLE + ROW_SIZE * (0 - off), FORWARD)
        else:
            start(sbuf, ax, PL_SETTLE + ROW_SIZE * off, BACKWARD)
    elif ax == PA:
        plunger_start(sbuf, s[k + H_PLAN], s[k + H_DIR])
    else:
        start(sbuf, ax, s[k + H_PLAN], s[k + H_DIR])


@micropython.viper
def homing_tick(sbuf, sw: int):
    s = ptr32(sbuf)
    k = s[HOME_STEP]
    kind = s[k + H_KIND]
    ax = s[k + H_AXIS]
    switch = s[k + H_SWITCH]
    emitted = s[NEEDLE_EMITTED] if ax == NA else s[PLUNGER_EMITTED]
    if kind == BACKOFF and sw & switch and emitted - s[TRIP_POS] > s[s[k + H_RELEASE]]:
        # A working switch opens within a fraction of a millimetre: a stuck
        # one must not lead the needle a full back-off deeper (H12).
        fault(sbuf, s[k + H_STUCK])
        return
    if kind == SEEK and s[HOME_FOUND] == 0 and sw & switch:
        s[HOME_FOUND] = 1
        # Zero is where the switch closed: where the motor was when it was read,
        # not the commanded position, which runs ahead by the FIFO lead.
        s[TRIP_POS] = emitted
        stop(sbuf, ax)
    if s[ax + A_PHASE] != IDLE:
        return
    if kind == SEEK and s[HOME_FOUND] == 0:
        # Full travel plus margin and no switch: broken or blocked (H12).
        fault(sbuf, s[k + H_NOT_FOUND])
        return
    s[HOME_FOUND] = 0
    if kind == BACKOFF and sw & switch:
        # Backed off a millimetre and the switch is still closed: stuck (H12).
        fault(sbuf, s[k + H_STUCK])
        return
    _begin_step(sbuf, k + H_SIZE)
