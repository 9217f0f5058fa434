"""The puncture, and the rest of what the trigger does: one table of steps.

A puncture is STEPS walked in order: the needle in to depth; the plunger
pushes the line's stored volume ahead (pressure advance), then the dose
(and the suck-back volume) at the injection rate; it waits at depth for the
line to empty, or draws the stored volume back (whichever is quicker); it
draws the suck-back back; the needle comes out. Each row names the state it
runs in, the axis (or WAIT_AXIS for a wait), the move (a column of the plan
set, and the column to use when the needle starts at the hover point) and
the direction. A row whose move is empty is skipped. `load` writes the table
into S; the tick walks it (`puncture_tick`); `plan_cycle` plans the moves
and sums the same rows into the cycle time the shot rate is checked with.
To change the sequence, change the rows (and, for a new state, codes.py).

Nappage: between shots the needle waits at the hover point, a clearance
behind the skin, not at home; when the shots stop it goes home.

Pressure advance (as 3D-printer firmware compensates an extruder): the line
(stopper, hub, needle) is a compliance drained through the needle's
resistance, so at flow q it holds q * tau (tau: the line's time constant,
Core.line_tau_us). Pushed ahead at the start, that volume makes the flow out
of the needle start with the plunger; drawn back at the end (or let out
during a wait at depth), it stops the flow before the needle leaves.

Also here, what the trigger's press does in the other modes (prime), the
firing gate (`can_fire`: H1, H7, H9) and the near-empty warning.
"""

from . import machine as M
from .compat import const, micropython, ptr32
from .motion import plunger_start, start, stop, takeup_ticks
from .planner import RAMP_TICKS_MAX, Plan
from .settings import RANGES, SettingsError

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
_N_NO_DISPLAY = const(12)
_HOLD_SETTINGS = const(1)
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
_HOVER = const(36)
_DWELL = const(37)
_DEPTH_REACHED = const(38)
_PRIME_FLUID0 = const(39)
_PRIMED = const(40)
_UNCONFIRMED = const(42)
_SYRINGE_OK = const(43)
_CONFIGURING = const(44)
_ZONE_END = const(50)
_PUNCTURES = const(51)
_FLUID_STEPS = const(52)
_DELIVERED = const(53)
_PRIMED_STEPS = const(54)
_ACTIVE_SET = const(55)
_USABLE = const(60)
_CAP_STEPS = const(61)
_TAKEUP_N = const(71)
_C_DEPTH = const(0)
_C_DOSE = const(1)
_C_SB = const(2)
_C_CYCLE = const(3)
_C_PERIOD = const(4)
_C_MODE = const(5)
_C_NEAR_EMPTY = const(6)
_C_DWELL = const(7)
_C_NEEDLE_IN = const(8)
_C_NEEDLE_IN_HOVER = const(9)
_C_NEEDLE_OUT = const(10)
_C_NEEDLE_HOME = const(11)
_C_PUSH = const(12)
_C_INJECT = const(13)
_C_RELEASE = const(14)
_C_SUCKBACK = const(15)
_SET_MOVES = const(8)
_LAST = const(120)
_P_NUMBER = const(0)
_P_DEPTH_STEPS = const(1)
_P_DOSE_STEPS = const(2)
_P_TICKS = const(3)
_P_MODE = const(4)
_A_POS = const(0)
_A_PHASE = const(2)
_NA = const(125)
_PA = const(145)
_K_STATE = const(0)
_K_AXIS = const(1)
_K_PLAN = const(2)
_K_PLAN_HOVER = const(3)
_K_DIR = const(4)
_K_SIZE = const(5)
_WAIT_AXIS = const(1)
_HOMEWARD = const(0)
_PUNCTURE_STEPS = const(181)
_PUNCTURE_STEPS_MAX = const(8)
_PUNCTURE_END = const(221)
_R_DIST = const(0)
_ROW_SIZE = const(9)
_PL_PRIME = const(349)
# ---- end of the written constants ----

# (state, axis, plan column, plan column from the hover point, direction), in order
STEPS = (
    (_ST_ADVANCE, _NA, _C_NEEDLE_IN, _C_NEEDLE_IN_HOVER, _FORWARD),
    (_ST_INJECT, _PA, _C_PUSH, _C_PUSH, _FORWARD),  # the line's stored volume, ahead
    # Inject pushes dose + suck-back and suck-back draws suck-back back, so
    # every puncture nets exactly the dose whatever came before it.
    (_ST_INJECT, _PA, _C_INJECT, _C_INJECT, _FORWARD),
    (_ST_INJECT, _WAIT_AXIS, _C_DWELL, _C_DWELL, _FORWARD),  # the line empties at depth, or
    (_ST_SUCKBACK, _PA, _C_RELEASE, _C_RELEASE, _BACKWARD),  # its stored volume comes back
    (_ST_SUCKBACK, _PA, _C_SUCKBACK, _C_SUCKBACK, _BACKWARD),
    (_ST_RETRACT, _NA, _C_NEEDLE_OUT, _C_NEEDLE_OUT, _BACKWARD),
)

# The plan set's moves: (column, name); the rows follow in this order
MOVES = (
    (_C_NEEDLE_IN, "needle in"),
    (_C_NEEDLE_IN_HOVER, "needle in from hover"),
    (_C_NEEDLE_OUT, "needle out"),
    (_C_NEEDLE_HOME, "needle home from hover"),
    (_C_PUSH, "pressure advance"),
    (_C_INJECT, "inject"),
    (_C_RELEASE, "pressure release"),
    (_C_SUCKBACK, "suck-back"),
)
SET_RAMPS = len(MOVES) * 2 * RAMP_TICKS_MAX  # ramp entries one plan set uses
LEFT_IN_LINE_PER_DOSE = 30  # the wait at depth leaves at most 1/30 of the dose in the line
AT_DEPTH_UM = 50  # the tip counts as at its depth this close to it (also while it leaves)


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
        self.needle_in_hover = self.moves[_C_NEEDLE_IN_HOVER]
        self.needle_out = self.moves[_C_NEEDLE_OUT]
        self.needle_home = self.moves[_C_NEEDLE_HOME]
        self.push = self.moves[_C_PUSH]
        self.inject = self.moves[_C_INJECT]
        self.release = self.moves[_C_RELEASE]
        self.suckback = self.moves[_C_SUCKBACK]

    def plans(self):
        return [self.moves[column] for column, _ in MOVES]

    depth_steps = property(lambda self: self.s[self.base + _C_DEPTH])
    dose_steps = property(lambda self: self.s[self.base + _C_DOSE])
    # Steps a shot pushes beyond its dose and draws back (suck-back, pressure release)
    sb_steps = property(lambda self: self.s[self.base + _C_SB])
    cycle_ticks = property(lambda self: self.s[self.base + _C_CYCLE])
    period_ticks = property(lambda self: self.s[self.base + _C_PERIOD])
    dwell_ticks = property(lambda self: self.s[self.base + _C_DWELL])


def _outflow_steps(q_steps_s, ticks):
    """Fluid steps out of the needle while the line fills from empty to q * tau (or back) in
    `ticks`: the flow rises (or falls) about linearly, so half of q over that time."""
    return q_steps_s * ticks * M.TICK_US // 2_000_000


def _ticks_to_empty(stored_steps, left_steps, tau_us):
    """Ticks the line takes to fall from `stored_steps` to `left_steps`, in eighths of tau."""
    eighths = 0
    while stored_steps > left_steps and eighths < 160:
        stored_steps = stored_steps * 8825 // 10000  # exp(-1/8)
        eighths += 1
    return (eighths * tau_us // 8 + M.TICK_US - 1) // M.TICK_US


def _ticks_still_at_depth(needle_out):
    """The first ticks of the retract, while the tip is still within AT_DEPTH_UM of its depth:
    the line goes on emptying into the skin then."""
    near = M.um_to_needle_steps(AT_DEPTH_UM)
    moved = ticks = 0
    for n in needle_out.accel[: needle_out.ramp_ticks]:
        moved += n
        if moved > near:
            break
        ticks += 1
    return ticks


def plan_cycle(core, st, ps):  # noqa: C901  (one plan after the other, each with its reason)
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
    continuous = st.mode == _MODE_CONTINUOUS
    speed = M.um_to_needle_steps(st.speed_um_s)
    # The hover point: the engineer's clearance behind the skin, but never less than the
    # needle needs to reach the puncture speed before it touches the skin (the ramp on
    # whole ticks runs up to two ticks longer than v^2 / 2a).
    home = M.um_to_needle_steps(M.NEEDLE_HOME_OFFSET_UM)
    ramp = speed * speed // (2 * needle_a) + 2 * speed * M.TICK_US // 1_000_000
    clearance = max(M.um_to_needle_steps(core.limits.hover_clearance_um), ramp)
    hover = max(0, home - clearance) if continuous else 0
    needle_max = M.um_to_needle_steps(M.NEEDLE_MAX_SPEED_UM_S)
    ps.needle_in.set(depth, speed, needle_a)
    ps.needle_in_hover.set(depth - hover, speed, needle_a)
    ps.needle_out.set(depth - hover, needle_max, needle_a)
    ps.needle_home.set(hover, needle_max, needle_a)
    # Pressure advance: at flow `rate` the line holds rate * tau; push it ahead, fast.
    tau_us = core.line_tau_for(st)
    stored = rate * tau_us // 1_000_000
    ps.push.set(stored, rate_max, plunger_a)
    push = stored + _outflow_steps(rate, ps.push.ticks)  # what flows out while it fills
    ps.push.set(push, rate_max, plunger_a)
    # At the end, draw the stored volume back, or wait at depth while it flows out:
    # whichever is quicker (a release reverses the plunger twice: two take-ups).
    ps.release.set(stored, rate_max, plunger_a)
    takeup = int(takeup_ticks(core.backlash_steps, core.S[_TAKEUP_N]))
    # What flows out meanwhile stays out: at the full flow while the nut crosses its
    # backlash (the line still holds all), about half of it while the release runs.
    out = rate * takeup * M.TICK_US // 1_000_000 + _outflow_steps(rate, ps.release.ticks)
    release = max(0, stored - out)
    release_cost = ps.release.ticks + (0 if sb else 2 * takeup)
    dwell = _ticks_to_empty(stored, dose // LEFT_IN_LINE_PER_DOSE, tau_us)
    dwell = max(0, dwell - _ticks_still_at_depth(ps.needle_out))
    if release and release_cost < dwell:
        dwell = 0
    else:
        release = 0
    ps.release.set(release, rate_max, plunger_a)
    sb = max(0, sb - release)  # the release draws back first: suck-back is what it leaves
    inject = dose + sb + release - push
    if inject < 0:  # the dose flows out while the line fills and empties: no cruise
        release -= inject
        ps.release.set(release, rate_max, plunger_a)
        inject = 0
    ps.inject.set(inject, rate, plunger_a)
    ps.suckback.set(sb, rate, plunger_a)
    s, b = core.S, ps.base
    s[b + _C_DEPTH] = depth
    s[b + _C_DOSE] = dose
    s[b + _C_SB] = sb + release
    s[b + _C_DWELL] = dwell
    s[b + _C_PERIOD] = st.shot_period_us() // M.TICK_US
    s[b + _C_MODE] = st.mode
    _, capacity, dead = st.syringe()
    usable = M.plunger_steps_for_nl(capacity - dead, area)
    s[b + _C_NEAR_EMPTY] = M.near_empty_steps(dose + sb + release, usable)
    s[b + _C_CYCLE] = _cycle_ticks(ps, continuous, takeup, dwell)
    if continuous and ps.cycle_ticks > ps.period_ticks:
        lo = RANGES["shot_rate_mhz"][0]
        best = 1_000_000 // ps.cycle_ticks  # mHz
        raise SettingsError.one(
            "shot_rate_mhz", SettingsError.CYCLE, st.shot_rate_mhz, lo, best, ps.cycle_ticks
        )


def _cycle_ticks(ps, continuous, takeup, dwell):
    """One shot to the next in nappage (from the hover point), or one puncture (from home):
    the same rows the tick walks, a take-up wherever the plunger reverses, the tick between."""
    ticks = 1  # a shot starts the tick after the last one ended (puncture_tick's WAIT)
    dirs = []
    for _, ax, column, column_hover, direction in STEPS:
        if ax == _WAIT_AXIS:
            ticks += dwell
            continue
        move = ps.moves[column_hover if continuous else column]
        if move.distance:
            ticks += move.ticks
            if ax == _PA:
                dirs.append(direction)
    # Shot after shot, the first plunger move follows the last one's (cyclic).
    ticks += takeup * sum(1 for i, d in enumerate(dirs) if d != dirs[i - 1])
    return ticks


# ---- the tick's part ------------------------------------------------------------------------


@micropython.viper
def update_warning(sbuf):
    """Near-empty (H7): fewer steps left than machine.near_empty_steps. Warns, never stops."""
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
    elif s[_UNCONFIRMED]:  # H9's stored settings, or no display (codes.HOLD_*)
        notice = _N_UNCONFIRMED if s[_UNCONFIRMED] & _HOLD_SETTINGS else _N_NO_DISPLAY
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
            s[_NOTICE] = _N_UNCONFIRMED if s[_UNCONFIRMED] & _HOLD_SETTINGS else _N_NO_DISPLAY
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
    """Start the first step with something to do from the row at S[k] on; past the last,
    the puncture ends."""
    s = ptr32(sbuf)
    c = s[_ACTIVE_SET]
    while s[k + _K_AXIS]:
        ax = s[k + _K_AXIS]
        if ax == _WAIT_AXIS:
            t = s[c + s[k + _K_PLAN]]
            if t:
                s[_DWELL] = t
                s[_PUNCTURE_STEP] = k
                s[_STATE] = s[k + _K_STATE]
                return
        else:
            direction = s[k + _K_DIR]
            if s[_HOVER]:
                row = s[c + s[k + _K_PLAN_HOVER]]
            else:
                row = s[c + s[k + _K_PLAN]]
            if s[row + _R_DIST]:
                if ax == _PA:
                    plunger_start(sbuf, row, direction)
                else:
                    start(sbuf, ax, row, direction)
                    s[_HOVER] = 0  # the needle has left the hover point
                s[_PUNCTURE_STEP] = k
                s[_STATE] = s[k + _K_STATE]
                return
        k += _K_SIZE  # nothing to do (no suck-back set, no wait planned)
    _end_puncture(sbuf, fire)


@micropython.viper
def _homeward(sbuf):
    """The shots have stopped: from the hover point home, then ready."""
    s = ptr32(sbuf)
    if s[_HOVER]:
        start(sbuf, _NA, s[s[_ACTIVE_SET] + _C_NEEDLE_HOME], _BACKWARD)
        s[_PUNCTURE_STEP] = _HOMEWARD
        s[_STATE] = _ST_RETRACT
    else:
        s[_STATE] = _ST_READY


@micropython.viper
def puncture_tick(sbuf, fire: int):
    s = ptr32(sbuf)
    s[_SHOT_TIMER] -= 1
    if s[_STATE] == _ST_WAIT:
        if fire == 0:
            _homeward(sbuf)
        elif s[_SHOT_TIMER] <= 0:
            if int(can_fire(sbuf)):
                _start_puncture(sbuf)
            else:
                _homeward(sbuf)
        return
    k = s[_PUNCTURE_STEP]
    if k == _HOMEWARD:
        if s[_NA + _A_PHASE] == _IDLE:
            s[_HOVER] = 0
            s[_STATE] = _ST_READY
        return
    s[_PUNCTURE_TICKS] += 1
    ax = s[k + _K_AXIS]
    if ax == _WAIT_AXIS:
        t = s[_DWELL] - 1
        s[_DWELL] = t
        if t > 0:
            return
    elif s[ax + _A_PHASE] != _IDLE:
        return
    elif ax == _NA and s[k + _K_DIR] == _FORWARD:
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
    if mode == _MODE_CONTINUOUS:
        s[_HOVER] = 1  # nappage retracts to the hover point
        if fire:
            s[_STATE] = _ST_WAIT
        else:
            _homeward(sbuf)
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
