"""The puncture, and the rest of what the trigger does: one table of steps.

A puncture is STEPS walked in order: the needle in to depth, the plunger
pushes the dose (and the suck-back volume), draws the suck-back back, the
needle out. Each row names the state it runs in, the axis, the move (a
column of the plan set, and the column to use when the plunger reverses, so
the nut's backlash is taken up inside the move) and the direction. A row
whose move is empty (no suck-back set) is skipped. `load` writes the table
into S; the tick walks it (`puncture_tick`); `plan_cycle` plans the moves
and sums the same rows into the cycle time the shot rate is checked with.
To change the sequence, change the rows (and, for a new state, codes.py).

Also here, what the trigger's press does in the other modes (prime), the
firing gate (`can_fire`: H1, H7, H9) and the near-empty warning.
"""

from . import machine as M
from .compat import const, micropython, ptr32
from .motion import plunger_start, start, stop
from .planner import RAMP_TICKS_MAX, Plan
from .settings import SettingsError

# ---- constants written by `make consts` from codes.py, layout.py: do not edit ----
SW_SYRINGE = const(8)
ALARM_NONE = const(0)
ALARM_WARNING = const(1)
W_NONE = const(0)
W_NEAR_EMPTY = const(1)
MODE_CONTINUOUS = const(1)
MODE_PRIME = const(2)
ST_READY = const(2)
ST_ADVANCE = const(3)
ST_INJECT = const(4)
ST_SUCKBACK = const(5)
ST_RETRACT = const(6)
ST_WAIT = const(7)
ST_PRIME = const(8)
ST_FAULT = const(10)
ST_RELIEF = const(11)
N_NONE = const(0)
N_NO_SYRINGE = const(2)
N_NOT_PRIMED = const(3)
N_SYRINGE_LOW = const(4)
N_BUSY = const(5)
N_SESSION_CAP = const(7)
N_UNCONFIRMED = const(9)
N_ZONE_CAP = const(10)
IDLE = const(0)
FORWARD = const(1)
BACKWARD = const(0)
IN_SW = const(0)
OUT_ALARM = const(7)
STATE = const(9)
NOTICE = const(13)
WARNING = const(14)
PUNCTURE_STEP = const(29)
SHOT_TIMER = const(30)
PUNCTURE_TICKS = const(31)
PUNCTURE_FLUID0 = const(32)
DEPTH_REACHED = const(34)
PRIME_FLUID0 = const(35)
PRIMED = const(36)
UNCONFIRMED = const(38)
CONFIGURING = const(39)
ZONE_END = const(45)
PUNCTURES = const(46)
FLUID_STEPS = const(47)
DELIVERED = const(48)
PRIMED_STEPS = const(49)
ACTIVE_SET = const(50)
USABLE = const(55)
CAP_STEPS = const(56)
C_DEPTH = const(0)
C_DOSE = const(1)
C_SB = const(2)
C_CYCLE = const(3)
C_PERIOD = const(4)
C_MODE = const(5)
C_NEAR_EMPTY = const(6)
C_NEEDLE_IN = const(7)
C_NEEDLE_OUT = const(8)
C_INJECT_FWD = const(9)
C_INJECT_REV = const(10)
C_SUCKBACK = const(11)
SET_MOVES = const(5)
LAST = const(106)
P_NUMBER = const(0)
P_DEPTH_STEPS = const(1)
P_DOSE_STEPS = const(2)
P_TICKS = const(3)
P_MODE = const(4)
A_POS = const(0)
A_PHASE = const(2)
A_LAST_DIR = const(4)
NA = const(111)
PA = const(131)
K_STATE = const(0)
K_AXIS = const(1)
K_PLAN = const(2)
K_PLAN_REVERSED = const(3)
K_DIR = const(4)
K_SIZE = const(5)
PUNCTURE_STEPS = const(167)
PUNCTURE_STEPS_MAX = const(6)
PUNCTURE_END = const(197)
R_DIST = const(0)
ROW_SIZE = const(9)
PL_PRIME = const(325)
# ---- end of the written constants ----

# (state, axis, plan column, plan column when the plunger reverses, direction), in order
STEPS = (
    (ST_ADVANCE, NA, C_NEEDLE_IN, C_NEEDLE_IN, FORWARD),
    # Inject pushes dose + suck-back and suck-back draws suck-back back, so
    # every puncture nets exactly the dose whatever came before it.
    (ST_INJECT, PA, C_INJECT_FWD, C_INJECT_REV, FORWARD),
    (ST_SUCKBACK, PA, C_SUCKBACK, C_SUCKBACK, BACKWARD),
    (ST_RETRACT, NA, C_NEEDLE_OUT, C_NEEDLE_OUT, BACKWARD),
)

# The plan set's moves: (column, name); the rows follow in this order
MOVES = (
    (C_NEEDLE_IN, "needle in"),
    (C_NEEDLE_OUT, "needle out"),
    (C_INJECT_FWD, "inject"),  # the plunger last moved forward
    (C_INJECT_REV, "inject after reversal"),  # + backlash take-up
    (C_SUCKBACK, "suck-back"),  # + backlash take-up
)
SET_RAMPS = len(MOVES) * 2 * RAMP_TICKS_MAX  # ramp entries one plan set uses


def load(s):
    """Write STEPS into S (the row after the last is the end: axis 0)."""
    if len(STEPS) >= PUNCTURE_STEPS_MAX:
        raise ValueError("puncture.STEPS has %d rows; layout.PUNCTURE_STEPS_MAX is %d (one for the end)"
                         % (len(STEPS), PUNCTURE_STEPS_MAX))
    if len(MOVES) != SET_MOVES:
        raise ValueError("puncture.MOVES has %d moves; layout.SET_MOVES is %d" % (len(MOVES), SET_MOVES))
    for i in range(PUNCTURE_STEPS, PUNCTURE_END):
        s[i] = 0
    for i, row in enumerate(STEPS):
        for field, v in enumerate(row):
            s[PUNCTURE_STEPS + i * K_SIZE + field] = v


class PlanSet:
    """The moves of one puncture cycle for one set of settings, at S[base]."""

    def __init__(self, s, ramps, base, rows, ramp_at):
        self.s = s
        self.base = base
        self.moves = {}
        for i, (column, name) in enumerate(MOVES):
            row = rows + i * ROW_SIZE
            s[base + column] = row
            self.moves[column] = Plan(name, table=s, row=row, ramps=ramps,
                                      ramp_at=ramp_at + i * 2 * RAMP_TICKS_MAX)
        self.needle_in = self.moves[C_NEEDLE_IN]
        self.needle_out = self.moves[C_NEEDLE_OUT]
        self.inject_fwd = self.moves[C_INJECT_FWD]
        self.inject_rev = self.moves[C_INJECT_REV]
        self.suckback = self.moves[C_SUCKBACK]

    def plans(self):
        return [self.moves[column] for column, _ in MOVES]

    depth_steps = property(lambda self: self.s[self.base + C_DEPTH])
    dose_steps = property(lambda self: self.s[self.base + C_DOSE])
    sb_steps = property(lambda self: self.s[self.base + C_SB])
    cycle_ticks = property(lambda self: self.s[self.base + C_CYCLE])
    period_ticks = property(lambda self: self.s[self.base + C_PERIOD])


def plan_cycle(core, st, ps):
    """Plan settings `st` into the spare plan set `ps`; SettingsError if the machine cannot."""
    area = core.dose_area(st)
    needle_a = M.um_to_needle_steps(M.NEEDLE_ACCEL_UM_S2)
    plunger_a = M.um_to_plunger_steps(M.PLUNGER_ACCEL_UM_S2)
    depth = M.um_to_needle_steps(M.NEEDLE_HOME_OFFSET_UM + st.depth_um)
    dose = M.plunger_steps_for_nl(st.dose_nl, area)
    sb = M.plunger_steps_for_nl(st.suckback_nl, area)
    rate = M.plunger_steps_for_nl(st.rate_nl_s, area)
    rate_max = M.um_to_plunger_steps(M.PLUNGER_MAX_SPEED_UM_S)
    if rate > rate_max:
        raise SettingsError(["rate_nl_s: %d needs the plunger faster than %d um/s with this syringe"
                             % (st.rate_nl_s, M.PLUNGER_MAX_SPEED_UM_S)])
    ps.needle_in.set(depth, M.um_to_needle_steps(st.speed_um_s), needle_a)
    ps.needle_out.set(depth, M.um_to_needle_steps(M.NEEDLE_MAX_SPEED_UM_S), needle_a)
    bl = core.backlash_steps
    ps.inject_fwd.set(dose + sb, rate, plunger_a)
    ps.inject_rev.set(dose + sb + bl, rate, plunger_a)
    ps.suckback.set(sb + bl if sb else 0, rate, plunger_a)
    s, b = core.S, ps.base
    s[b + C_DEPTH] = depth
    s[b + C_DOSE] = dose
    s[b + C_SB] = sb
    # The longest a puncture takes: every step's move, the plunger's with its take-up.
    s[b + C_CYCLE] = sum(ps.moves[reversed_].ticks for _, _, _, reversed_, _ in STEPS)
    s[b + C_PERIOD] = st.shot_period_us() // M.TICK_US
    s[b + C_MODE] = st.mode
    s[b + C_NEAR_EMPTY] = M.NEAR_EMPTY_DOSES * (dose + sb)
    if st.mode == MODE_CONTINUOUS and ps.cycle_ticks > ps.period_ticks:
        best = 1_000_000 // ps.cycle_ticks  # mHz
        raise SettingsError([
            "shot_rate_mhz: %d is faster than one puncture with this depth, dose and "
            "speeds takes (%d ms); allowed 500..%d mHz" % (st.shot_rate_mhz, ps.cycle_ticks, best)])


# ---- the tick's part ------------------------------------------------------------------------


@micropython.viper
def update_warning(sbuf):
    """Near-empty (H7): fewer than NEAR_EMPTY_DOSES doses left. Warns, never stops."""
    s = ptr32(sbuf)
    w = W_NONE
    if s[PRIMED] and s[USABLE] - s[FLUID_STEPS] < s[s[ACTIVE_SET] + C_NEAR_EMPTY]:
        w = W_NEAR_EMPTY
    s[WARNING] = w
    st = s[STATE]
    if st != ST_FAULT and st != ST_RELIEF:
        s[OUT_ALARM] = ALARM_WARNING if w else ALARM_NONE


@micropython.viper
def can_fire(sbuf) -> int:
    """May a puncture start now? If not, NOTICE says why."""
    s = ptr32(sbuf)
    notice = N_NONE
    c = s[ACTIVE_SET]
    shot = s[c + C_DOSE] + s[c + C_SB]
    if s[CONFIGURING]:
        notice = N_BUSY
    elif s[UNCONFIRMED]:
        notice = N_UNCONFIRMED
    elif (s[IN_SW] & SW_SYRINGE) == 0:
        notice = N_NO_SYRINGE
    elif s[PRIMED] == 0:
        notice = N_NOT_PRIMED
    elif s[USABLE] - s[FLUID_STEPS] < shot:
        notice = N_SYRINGE_LOW  # H7: no shot the syringe cannot finish
    # Dose plus suck-back: a puncture cut before its suck-back leaves both in.
    elif s[ZONE_END] >= 0 and s[DELIVERED] + shot > s[ZONE_END]:
        notice = N_ZONE_CAP  # a protocol zone never passes its own cap
    elif s[DELIVERED] + shot > s[CAP_STEPS]:
        notice = N_SESSION_CAP  # H1: the session never passes the engineer's cap
    s[NOTICE] = notice
    return 1 if notice == N_NONE else 0


@micropython.viper
def on_press(sbuf):
    s = ptr32(sbuf)
    if s[s[ACTIVE_SET] + C_MODE] == MODE_PRIME:
        if s[UNCONFIRMED]:
            s[NOTICE] = N_UNCONFIRMED
            return
        if (s[IN_SW] & SW_SYRINGE) == 0:
            s[NOTICE] = N_NO_SYRINGE
            return
        s[NOTICE] = N_NONE
        s[PRIME_FLUID0] = s[FLUID_STEPS]
        plunger_start(sbuf, PL_PRIME, FORWARD)
        s[STATE] = ST_PRIME
    elif int(can_fire(sbuf)):
        _start_puncture(sbuf)


@micropython.viper
def _start_puncture(sbuf):
    s = ptr32(sbuf)
    s[SHOT_TIMER] = s[s[ACTIVE_SET] + C_PERIOD]
    s[PUNCTURE_TICKS] = 0
    s[PUNCTURE_FLUID0] = s[FLUID_STEPS]
    s[DEPTH_REACHED] = 0
    _begin_step(sbuf, PUNCTURE_STEPS, 1)


@micropython.viper
def _begin_step(sbuf, k: int, fire: int):
    """Start the first move with steps from the row at S[k] on; past the last, the puncture ends."""
    s = ptr32(sbuf)
    c = s[ACTIVE_SET]
    while s[k + K_AXIS]:
        ax = s[k + K_AXIS]
        direction = s[k + K_DIR]
        if ax == PA and s[PA + A_LAST_DIR] != direction:
            row = s[c + s[k + K_PLAN_REVERSED]]
        else:
            row = s[c + s[k + K_PLAN]]
        if s[row + R_DIST]:
            if ax == PA:
                plunger_start(sbuf, row, direction)
            else:
                start(sbuf, ax, row, direction)
            s[PUNCTURE_STEP] = k
            s[STATE] = s[k + K_STATE]
            return
        k += K_SIZE  # nothing to move (no suck-back set)
    _end_puncture(sbuf, fire)


@micropython.viper
def puncture_tick(sbuf, fire: int):
    s = ptr32(sbuf)
    s[SHOT_TIMER] -= 1
    if s[STATE] == ST_WAIT:
        if fire == 0:
            s[STATE] = ST_READY
        elif s[SHOT_TIMER] <= 0:
            if int(can_fire(sbuf)):
                _start_puncture(sbuf)
            else:
                s[STATE] = ST_READY
        return
    s[PUNCTURE_TICKS] += 1
    k = s[PUNCTURE_STEP]
    ax = s[k + K_AXIS]
    if s[ax + A_PHASE] != IDLE:
        return
    if ax == NA and s[k + K_DIR] == FORWARD:
        s[DEPTH_REACHED] = s[NA + A_POS]  # the needle is at depth
    _begin_step(sbuf, k + K_SIZE, fire)


@micropython.viper
def _end_puncture(sbuf, fire: int):
    s = ptr32(sbuf)
    p = s[PUNCTURES] + 1
    s[PUNCTURES] = p
    dose = s[FLUID_STEPS] - s[PUNCTURE_FLUID0]
    s[DELIVERED] += dose
    mode = s[s[ACTIVE_SET] + C_MODE]
    s[LAST + P_NUMBER] = p
    s[LAST + P_DEPTH_STEPS] = s[DEPTH_REACHED]
    s[LAST + P_DOSE_STEPS] = dose
    s[LAST + P_TICKS] = s[PUNCTURE_TICKS]
    s[LAST + P_MODE] = mode
    update_warning(sbuf)
    if mode == MODE_CONTINUOUS and fire:
        s[STATE] = ST_WAIT
    else:
        s[STATE] = ST_READY


@micropython.viper
def prime_tick(sbuf, fire: int):
    s = ptr32(sbuf)
    if s[PA + A_PHASE] == IDLE:
        s[PRIMED_STEPS] += s[FLUID_STEPS] - s[PRIME_FLUID0]
        s[PRIMED] = 1
        update_warning(sbuf)
        s[STATE] = ST_READY
        return
    if fire == 0 or s[FLUID_STEPS] >= s[USABLE]:
        stop(sbuf, PA)
