"""The safety monitor's stop and recovery: what happens once a fault is found.

The checks themselves run inline in every tick (tick.tick: a call per tick
would cost the interrupt about 5 us on the chip). When one trips, `fault`
stops both axes (the driver flushes their queued words), switches the
drivers off, latches the fault and raises the alarm (H6). `after_halt`
then puts the axes where the motors really are and picks the recovery from
the fault table (codes.FAULTS, copied into S by `load`): relieve the
pressure, withdraw the needle, or stay put. The recovery starts once the
E-stop is released (`start_recovery`) and ends in ST_FAULT, latched until
the operator acknowledges; then homing is needed again (H3).

To add a fault: a code and a row (name, action, recovery, line) in codes.py, the
check that finds it in tick.tick, a hazard in docs/hazards.toml and a test.
"""

from . import machine as M
from .codes import FAULTS
from .compat import const, micropython, ptr32
from .motion import plunger_start, start, stop

# ---- constants written by `make consts` from codes.py, layout.py: do not edit ----
_SW_NEEDLE_HOME = const(1)
_ALARM_FAULT = const(2)
_ST_FAULT = const(10)
_ST_RELIEF = const(11)
_PUNCTURING_MASK = const(120)
_NO_RECOVERY_MASK = const(2563)
_REC_NONE = const(0)
_REC_RELIEF = const(1)
_REC_NEEDLE_BY_COUNT = const(3)
_IDLE = const(0)
_BACKWARD = const(0)
_IN_NCOUNT = const(2)
_IN_PCOUNT = const(3)
_OUT_PUT = const(4)
_OUT_HALT = const(5)
_OUT_DRIVERS = const(6)
_OUT_ALARM = const(7)
_STATE = const(9)
_FAULT = const(10)
_FAULT_TICK = const(11)
_FAULT_WAS = const(12)
_TICKS = const(15)
_RECOVERY = const(21)
_RELIEF_BY_COUNT = const(22)
_RELIEF_PHASE = const(23)
_NWIN = const(24)
_PWIN = const(25)
_PUNCTURE_FLUID0 = const(32)
_GAP = const(33)
_PA_NEXT = const(34)
_HOVER = const(36)
_HOMED = const(41)
_FLUID_STEPS = const(52)
_DELIVERED = const(53)
_RELIEF_MN = const(58)
_BACKLASH = const(59)
_NRING = const(104)
_PRING = const(112)
_A_POS = const(0)
_A_ORIGIN = const(1)
_A_PHASE = const(2)
_A_ROW = const(17)
_NA = const(125)
_PA = const(145)
_FAULT_RECOVERY = const(165)
_FAULT_COUNT = const(16)
_PL_NEEDLE_SEEK = const(295)
_PL_RELIEF = const(376)
_PL_TAKEUP = const(385)
# ---- end of the written constants ----


# Relief's two phases (RELIEF_PHASE)
RELIEF_PLUNGER = const(0)  # the plunger backs off until the pressure is down
RELIEF_NEEDLE = const(1)  # the needle withdraws


def load(s):
    """Write the fault table's recovery column into S (once, at start)."""
    if len(FAULTS) > _FAULT_COUNT:
        raise ValueError(
            "codes.FAULTS has %d rows; layout.FAULT_COUNT is %d" % (len(FAULTS), _FAULT_COUNT)
        )
    for code, row in enumerate(FAULTS):
        s[_FAULT_RECOVERY + code] = row[2]


def plan(core, ramp_at):
    """The relief move: the plunger backs off at most RELIEF_MAX_UM while the pressure falls."""
    return core.new_plan("relief", _PL_RELIEF, next(ramp_at)).set(
        M.um_to_plunger_steps(M.RELIEF_MAX_UM),
        M.RELIEF_SPEED_UM_S * M.PLUNGER_STEPS_PER_MM // 1000,
        M.um_to_plunger_steps(M.PLUNGER_ACCEL_UM_S2),
    )


@micropython.viper
def fault(sbuf, code: int):
    """Stop now: halt both axes (the driver flushes them), drivers off, latch, alarm (H6)."""
    s = ptr32(sbuf)
    s[_OUT_HALT] = 1
    s[_OUT_PUT] = 0  # this tick's words so far are dropped with the queue
    s[_NA + _A_PHASE] = _IDLE
    s[_PA + _A_PHASE] = _IDLE
    s[_PA_NEXT] = 0  # nothing chained after a take-up starts
    s[_HOVER] = 0
    s[_OUT_DRIVERS] = 0
    i = 0
    while i < 8:
        s[_NRING + i] = 0
        s[_PRING + i] = 0
        i += 1
    s[_NWIN] = 0
    s[_PWIN] = 0
    s[_FAULT] = code
    s[_FAULT_TICK] = s[_TICKS]
    s[_FAULT_WAS] = s[_STATE]
    s[_STATE] = _ST_FAULT
    s[_HOMED] = 0
    s[_OUT_ALARM] = _ALARM_FAULT


@micropython.viper
def after_halt(sbuf):
    """After the driver halted the axes and re-read the counters: what the fault left."""
    s = ptr32(sbuf)
    s[_OUT_HALT] = 0
    # What was flushed never ran: the axes are where the motors are, and the
    # syringe lost none of the plunger steps that were thrown away.
    s[_NA + _A_POS] = s[_IN_NCOUNT] - s[_NA + _A_ORIGIN]
    e = s[_IN_PCOUNT] - s[_PA + _A_ORIGIN]
    lost = s[_PA + _A_POS] - e  # signed: + forward steps never made
    if s[_PA + _A_ROW] == _PL_TAKEUP:
        g = s[_GAP] + lost  # a take-up cut short leaves that much of the gap
        if g < 0:
            g = 0
        elif g > s[_BACKLASH]:
            g = s[_BACKLASH]
        s[_GAP] = g
    else:
        s[_FLUID_STEPS] -= lost
    s[_PA + _A_POS] = e
    was = s[_FAULT_WAS]
    if (1 << was) & _PUNCTURING_MASK:
        # A puncture cut short still delivered what the plunger pushed: it
        # counts toward the session (H1) though it makes no puncture record.
        cut = s[_FLUID_STEPS] - s[_PUNCTURE_FLUID0]
        if cut > 0:
            s[_DELIVERED] += cut
    # After the stop, only moves that make things safer, and only when the
    # axis that makes them is known to work: never after homing, loading or
    # a recovery, and the needle withdraws only when it is in.
    rec = _REC_NONE
    if (1 << was) & _NO_RECOVERY_MASK == 0:
        rec = s[_FAULT_RECOVERY + s[_FAULT]]
        if rec != _REC_RELIEF and s[_NA + _A_POS] <= 0:
            rec = _REC_NONE
    s[_RECOVERY] = rec


@micropython.viper
def start_recovery(sbuf):
    """First tick after a fault that allows it: drivers back on, start backing off."""
    s = ptr32(sbuf)
    s[_OUT_DRIVERS] = 1
    rec = s[_RECOVERY]
    s[_RELIEF_BY_COUNT] = 1 if rec == _REC_NEEDLE_BY_COUNT else 0
    if rec == _REC_RELIEF:
        plunger_start(sbuf, _PL_RELIEF, _BACKWARD)
        s[_RELIEF_PHASE] = RELIEF_PLUNGER
    else:
        start(sbuf, _NA, _PL_NEEDLE_SEEK, _BACKWARD)
        s[_RELIEF_PHASE] = RELIEF_NEEDLE
    s[_RECOVERY] = _REC_NONE
    s[_STATE] = _ST_RELIEF


@micropython.viper
def relief_tick(sbuf, sw: int, force: int):
    """Plunger back until the pressure is down, then the needle out to home."""
    s = ptr32(sbuf)
    if s[_RELIEF_PHASE] == RELIEF_PLUNGER:
        if s[_PA + _A_PHASE] != _IDLE:
            if force < s[_RELIEF_MN]:
                stop(sbuf, _PA)
            return
        start(sbuf, _NA, _PL_NEEDLE_SEEK, _BACKWARD)
        s[_RELIEF_PHASE] = RELIEF_NEEDLE
        return
    if s[_NA + _A_PHASE] != _IDLE:
        if s[_NA + _A_POS] <= 0 or (sw & _SW_NEEDLE_HOME and s[_RELIEF_BY_COUNT] == 0):
            stop(sbuf, _NA)
        return
    if s[_NWIN] or s[_PWIN]:
        return  # the last steps are still queued: drivers off once the motors have made them
    s[_OUT_DRIVERS] = 0
    s[_STATE] = _ST_FAULT  # latched: the operator acknowledges
