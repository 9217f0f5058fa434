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
_SW_SYRINGE = const(8)
_ALARM_NONE = const(0)
_ALARM_WARNING = const(1)
_W_NONE = const(0)
_W_NEAR_EMPTY = const(1)
_MODE_CONTINUOUS = const(1)
_MODE_PRIME = const(2)
_ST_READY = const(2)
_ST_ADVANCE = const(3)
_ST_INJECT = const(4)
_ST_SUCKBACK = const(5)
_ST_RETRACT = const(6)
_ST_WAIT = const(7)
_ST_PRIME = const(8)
_ST_FAULT = const(10)
_ST_RELIEF = const(11)
_N_NONE = const(0)
_N_NO_SYRINGE = const(2)
_N_NOT_PRIMED = const(3)
_N_SYRINGE_LOW = const(4)
_N_BUSY = const(5)
_N_SESSION_CAP = const(7)
_N_UNCONFIRMED = const(9)
_N_ZONE_CAP = const(10)
_N_SYRINGE_UNCONFIRMED = const(11)
_IDLE = const(0)
_FORWARD = const(1)
_BACKWARD = const(0)
_IN_SW = const(0)
_OUT_ALARM = const(7)
_STATE = const(9)
_NOTICE = const(13)
_WARNING = const(14)
_PUNCTURE_STEP = const(29)
_SHOT_TIMER = const(30)
_PUNCTURE_TICKS = const(31)
_PUNCTURE_FLUID0 = const(32)
_DEPTH_REACHED = const(34)
_PRIME_FLUID0 = const(35)
_PRIMED = const(36)
_UNCONFIRMED = const(38)
_CONFIGURING = const(39)
_ZONE_END = const(45)
_PUNCTURES = const(46)
_FLUID_STEPS = const(47)
_DELIVERED = const(48)
_PRIMED_STEPS = const(49)
_ACTIVE_SET = const(50)
_USABLE = const(55)
_CAP_STEPS = const(56)
_C_DEPTH = const(0)
_C_DOSE = const(1)
_C_SB = const(2)
_C_CYCLE = const(3)
_C_PERIOD = const(4)
_C_MODE = const(5)
_C_NEAR_EMPTY = const(6)
_C_NEEDLE_IN = const(7)
_C_NEEDLE_OUT = const(8)
_C_INJECT_FWD = const(9)
_C_INJECT_REV = const(10)
_C_SUCKBACK = const(11)
_SET_MOVES = const(5)
_LAST = const(106)
_P_NUMBER = const(0)
_P_DEPTH_STEPS = const(1)
_P_DOSE_STEPS = const(2)
_P_TICKS = const(3)
_P_MODE = const(4)
_A_POS = const(0)
_A_PHASE = const(2)
_A_LAST_DIR = const(4)
_NA = const(111)
_PA = const(131)
_K_STATE = const(0)
_K_AXIS = const(1)
_K_PLAN = const(2)
_K_PLAN_REVERSED = const(3)
_K_DIR = const(4)
_K_SIZE = const(5)
_PUNCTURE_STEPS = const(167)
_PUNCTURE_STEPS_MAX = const(6)
_PUNCTURE_END = const(197)
_R_DIST = const(0)
_ROW_SIZE = const(9)
_PL_PRIME = const(325)
_SYRINGE_OK = const(676)
# ---- end of the written constants ----

# (state, axis, plan column, plan column when the plunger reverses, direction), in order
STEPS = (
    (_ST_ADVANCE, _NA, _C_NEEDLE_IN, _C_NEEDLE_IN, _FORWARD),
    # Inject pushes dose + suck-back and suck-back draws suck-back back, so
    # every puncture nets exactly the dose whatever came before it.
    (_ST_INJECT, _PA, _C_INJECT_FWD, _C_INJECT_REV, _FORWARD),
    (_ST_SUCKBACK, _PA, _C_SUCKBACK, _C_SUCKBACK, _BACKWARD),
    (_ST_RETRACT, _NA, _C_NEEDLE_OUT, _C_NEEDLE_OUT, _BACKWARD),
)

# The plan set's moves: (column, name); the rows follow in this order
MOVES = (
    (_C_NEEDLE_IN, "needle in"),
    (_C_NEEDLE_OUT, "needle out"),
    (_C_INJECT_FWD, "inject"),  # the plunger last moved forward
    (_C_INJECT_REV, "inject after reversal"),  # + backlash take-up
    (_C_SUCKBACK, "suck-back"),  # + backlash take-up
)
SET_RAMPS = len(MOVES) * 2 * RAMP_TICKS_MAX  # ramp entries one plan set uses


def load(s):
    """Write STEPS into S (the row after the last is the end: axis 0)."""
    if len(STEPS) >= _PUNCTURE_STEPS_MAX:
        raise ValueError(
            "puncture.STEPS has %d rows; layout.PUNCTURE_STEPS_MAX is %d (one for the end)"
            % (len(STEPS), _PUNCTURE_STEPS_MAX)
        )
    if len(MOVES) != _SET_MOVES:
        raise ValueError(
            "puncture.MOVES has %d moves; layout.SET_MOVES is %d" % (len(MOVES), _SET_MOVES)
        )
    for i in range(_PUNCTURE_STEPS, _PUNCTURE_END):
        s[i] = 0
    for i, row in enumerate(STEPS):
        for field, v in enumerate(row):
            s[_PUNCTURE_STEPS + i * _K_SIZE + field] = v


class PlanSet:
    """The moves of one puncture cycle for one set of settings, at S[base]."""

    def __init__(self, s, ramps, base, rows, ramp_at):
        self.s = s
        self.base = base
        self.moves = {}
        for i, (column, name) in enumerate(MOVES):
            row = rows + i * _ROW_SIZE
            s[base + column] = row
            self.moves[column] = Plan(
                name, table=s, row=row, ramps=ramps, ramp_at=ramp_at + i * 2 * RAMP_TICKS_MAX
            )
        self.needle_in = self.moves[_C_NEEDLE_IN]
        self.needle_out = self.moves[_C_NEEDLE_OUT]
        self.inject_fwd = self.moves[_C_INJECT_FWD]
        self.inject_rev = self.moves[_C_INJECT_REV]
        self.suckback = self.moves[_C_SUCKBACK]

    def plans(self):
        return [self.moves[column] for column, _ in MOVES]

    depth_steps = property(lambda self: self.s[self.base + _C_DEPTH])
    dose_steps = property(lambda self: self.s[self.base + _C_DOSE])
    sb_steps = property(lambda self: self.s[self.base + _C_SB])
    cycle_ticks = property(lambda self: self.s[self.base + _C_CYCLE])
    period_ticks = property(lambda self: self.s[self.base + _C_PERIOD])


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
        raise SettingsError.one(
            "rate_nl_s", SettingsError.PLUNGER, st.rate_nl_s, extra=M.PLUNGER_MAX_SPEED_UM_S
        )
    ps.needle_in.set(depth, M.um_to_needle_steps(st.speed_um_s), needle_a)
    ps.needle_out.set(depth, M.um_to_needle_steps(M.NEEDLE_MAX_SPEED_UM_S), needle_a)
    bl = core.backlash_steps
    ps.inject_fwd.set(dose + sb, rate, plunger_a)
    ps.inject_rev.set(dose + sb + bl, rate, plunger_a)
    ps.suckback.set(sb + bl if sb else 0, rate, plunger_a)
    s, b = core.S, ps.base
    s[b + _C_DEPTH] = depth
    s[b + _C_DOSE] = dose
    s[b + _C_SB] = sb
    # The longest a puncture takes: every step's move, the plunger's with its take-up.
    s[b + _C_CYCLE] = sum(ps.moves[reversed_].ticks for _, _, _, reversed_, _ in STEPS)
    s[b + _C_PERIOD] = st.shot_period_us() // M.TICK_US
    s[b + _C_MODE] = st.mode
    s[b + _C_NEAR_EMPTY] = M.NEAR_EMPTY_DOSES * (dose + sb)
    if st.mode == _MODE_CONTINUOUS and ps.cycle_ticks > ps.period_ticks:
        best = 1_000_000 // ps.cycle_ticks  # mHz
        raise SettingsError.one(
            "shot_rate_mhz", SettingsError.CYCLE, st.shot_rate_mhz, 500, best, ps.cycle_ticks
        )


# ---- the tick's part ------------------------------------------------------------------------


@micropython.viper
def update_warning(sbuf):
    """Near-empty (H7): fewer than NEAR_EMPTY_DOSES doses left. Warns, never stops."""
    s = ptr32(sbuf)
    w = _W_NONE
    if s[_PRIMED] and s[_USABLE] - s[_FLUID_STEPS] < s[s[_ACTIVE_SET] + _C_NEAR_EMPTY]:
        w = _W_NEAR_EMPTY
    s[_WARNING] = w
    st = s[_STATE]
    if st != _ST_FAULT and st != _ST_RELIEF:
        s[_OUT_ALARM] = _ALARM_WARNING if w else _ALARM_NONE


@micropython.viper
def can_fire(sbuf) -> int:
    """May a puncture start now? If not, NOTICE says why."""
    s = ptr32(sbuf)
    notice = _N_NONE
    c = s[_ACTIVE_SET]
    shot = s[c + _C_DOSE] + s[c + _C_SB]
    if s[_CONFIGURING]:
        notice = _N_BUSY
    elif s[_UNCONFIRMED]:
        notice = _N_UNCONFIRMED
    elif (s[_IN_SW] & _SW_SYRINGE) == 0:
        notice = _N_NO_SYRINGE
    elif s[_SYRINGE_OK] == 0:
        notice = _N_SYRINGE_UNCONFIRMED  # H13: doses are counted with the size set
    elif s[_PRIMED] == 0:
        notice = _N_NOT_PRIMED
    elif s[_USABLE] - s[_FLUID_STEPS] < shot:
        notice = _N_SYRINGE_LOW  # H7: no shot the syringe cannot finish
    # Dose plus suck-back: a puncture cut before its suck-back leaves both in.
    elif s[_ZONE_END] >= 0 and s[_DELIVERED] + shot > s[_ZONE_END]:
        notice = _N_ZONE_CAP  # a protocol zone never passes its own cap
    elif s[_DELIVERED] + shot > s[_CAP_STEPS]:
        notice = _N_SESSION_CAP  # H1: the session never passes the engineer's cap
    s[_NOTICE] = notice
    return 1 if notice == _N_NONE else 0


@micropython.viper
def on_press(sbuf):
    s = ptr32(sbuf)
    if s[s[_ACTIVE_SET] + _C_MODE] == _MODE_PRIME:
        if s[_UNCONFIRMED]:
            s[_NOTICE] = _N_UNCONFIRMED
            return
        if (s[_IN_SW] & _SW_SYRINGE) == 0:
            s[_NOTICE] = _N_NO_SYRINGE
            return
        if s[_SYRINGE_OK] == 0:
            s[_NOTICE] = _N_SYRINGE_UNCONFIRMED  # H13: primed volume counted with the size set
            return
        s[_NOTICE] = _N_NONE
        s[_PRIME_FLUID0] = s[_FLUID_STEPS]
        plunger_start(sbuf, _PL_PRIME, _FORWARD)
        s[_STATE] = _ST_PRIME
    elif int(can_fire(sbuf)):
        _start_puncture(sbuf)


@micropython.viper
def _start_puncture(sbuf):
    s = ptr32(sbuf)
    s[_SHOT_TIMER] = s[s[_ACTIVE_SET] + _C_PERIOD]
    s[_PUNCTURE_TICKS] = 0
    s[_PUNCTURE_FLUID0] = s[_FLUID_STEPS]
    s[_DEPTH_REACHED] = 0
    _begin_step(sbuf, _PUNCTURE_STEPS, 1)


@micropython.viper
def _begin_step(sbuf, k: int, fire: int):
    """Start the first move with steps from the row at S[k] on; past the last, the puncture ends."""
    s = ptr32(sbuf)
    c = s[_ACTIVE_SET]
    while s[k + _K_AXIS]:
        ax = s[k + _K_AXIS]
        direction = s[k + _K_DIR]
        if ax == _PA and s[_PA + _A_LAST_DIR] != direction:
            row = s[c + s[k + _K_PLAN_REVERSED]]
        else:
            row = s[c + s[k + _K_PLAN]]
        if s[row + _R_DIST]:
            if ax == _PA:
                plunger_start(sbuf, row, direction)
            else:
                start(sbuf, ax, row, direction)
            s[_PUNCTURE_STEP] = k
            s[_STATE] = s[k + _K_STATE]
            return
        k += _K_SIZE  # nothing to move (no suck-back set)
    _end_puncture(sbuf, fire)


@micropython.viper
def puncture_tick(sbuf, fire: int):
    s = ptr32(sbuf)
    s[_SHOT_TIMER] -= 1
    if s[_STATE] == _ST_WAIT:
        if fire == 0:
            s[_STATE] = _ST_READY
        elif s[_SHOT_TIMER] <= 0:
            if int(can_fire(sbuf)):
                _start_puncture(sbuf)
            else:
                s[_STATE] = _ST_READY
        return
    s[_PUNCTURE_TICKS] += 1
    k = s[_PUNCTURE_STEP]
    ax = s[k + _K_AXIS]
    if s[ax + _A_PHASE] != _IDLE:
        return
    if ax == _NA and s[k + _K_DIR] == _FORWARD:
        s[_DEPTH_REACHED] = s[_NA + _A_POS]  # the needle is at depth
    _begin_step(sbuf, k + _K_SIZE, fire)


@micropython.viper
def _end_puncture(sbuf, fire: int):
    s = ptr32(sbuf)
    p = s[_PUNCTURES] + 1
    s[_PUNCTURES] = p
    dose = s[_FLUID_STEPS] - s[_PUNCTURE_FLUID0]
    s[_DELIVERED] += dose
    mode = s[s[_ACTIVE_SET] + _C_MODE]
    s[_LAST + _P_NUMBER] = p
    s[_LAST + _P_DEPTH_STEPS] = s[_DEPTH_REACHED]
    s[_LAST + _P_DOSE_STEPS] = dose
    s[_LAST + _P_TICKS] = s[_PUNCTURE_TICKS]
    s[_LAST + _P_MODE] = mode
    update_warning(sbuf)
    if mode == _MODE_CONTINUOUS and fire:
        s[_STATE] = _ST_WAIT
    else:
        s[_STATE] = _ST_READY


@micropython.viper
def prime_tick(sbuf, fire: int):
    s = ptr32(sbuf)
    if s[_PA + _A_PHASE] == _IDLE:
        s[_PRIMED_STEPS] += s[_FLUID_STEPS] - s[_PRIME_FLUID0]
        s[_PRIMED] = 1
        update_warning(sbuf)
        s[_STATE] = _ST_READY
        return
    if fire == 0 or s[_FLUID_STEPS] >= s[_USABLE]:
        stop(sbuf, _PA)
