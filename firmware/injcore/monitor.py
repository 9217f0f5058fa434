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

To add a fault: a code and a row (name, action, recovery) in codes.py, the
check that finds it in tick.tick, a hazard in docs/hazards.toml and a test.
"""

from . import machine as M
from .codes import FAULTS
from .compat import const, micropython, ptr32
from .motion import plunger_start, start, stop

# ---- constants written by `make consts` from codes.py, layout.py: do not edit ----
SW_NEEDLE_HOME = const(1)
ALARM_FAULT = const(2)
ST_FAULT = const(10)
ST_RELIEF = const(11)
PUNCTURING_MASK = const(120)
NO_RECOVERY_MASK = const(2563)
REC_NONE = const(0)
REC_RELIEF = const(1)
REC_NEEDLE_BY_COUNT = const(3)
IDLE = const(0)
BACKWARD = const(0)
IN_NCOUNT = const(2)
IN_PCOUNT = const(3)
OUT_PUT = const(4)
OUT_HALT = const(5)
OUT_DRIVERS = const(6)
OUT_ALARM = const(7)
STATE = const(9)
FAULT = const(10)
FAULT_TICK = const(11)
FAULT_WAS = const(12)
TICKS = const(15)
RECOVERY = const(21)
RELIEF_BY_COUNT = const(22)
RELIEF_PHASE = const(23)
NWIN = const(24)
PWIN = const(25)
PUNCTURE_FLUID0 = const(32)
COMP_LEFT = const(33)
HOMED = const(37)
FLUID_STEPS = const(47)
DELIVERED = const(48)
RELIEF_MN = const(53)
NRING = const(90)
PRING = const(98)
A_POS = const(0)
A_ORIGIN = const(1)
A_PHASE = const(2)
NA = const(111)
PA = const(131)
FAULT_RECOVERY = const(151)
FAULT_COUNT = const(16)
PL_NEEDLE_SEEK = const(271)
PL_RELIEF = const(352)
# ---- end of the written constants ----


# Relief's two phases (RELIEF_PHASE)
RELIEF_PLUNGER = const(0)  # the plunger backs off until the pressure is down
RELIEF_NEEDLE = const(1)  # the needle withdraws


def load(s):
    """Write the fault table's recovery column into S (once, at start)."""
    if len(FAULTS) > FAULT_COUNT:
        raise ValueError("codes.FAULTS has %d rows; layout.FAULT_COUNT is %d" % (len(FAULTS), FAULT_COUNT))
    for code, row in enumerate(FAULTS):
        s[FAULT_RECOVERY + code] = row[2]


def plan(core, ramp_at):
    """The relief move: the plunger backs off at most RELIEF_MAX_UM while the pressure falls."""
    return core.new_plan("relief", PL_RELIEF, next(ramp_at)).set(
        M.um_to_plunger_steps(M.RELIEF_MAX_UM),
        M.RELIEF_SPEED_UM_S * M.PLUNGER_STEPS_PER_MM // 1000,
        M.um_to_plunger_steps(M.PLUNGER_ACCEL_UM_S2))


@micropython.viper
def fault(sbuf, code: int):
    """Stop now: halt both axes (the driver flushes them), drivers off, latch, alarm (H6)."""
    s = ptr32(sbuf)
    s[OUT_HALT] = 1
    s[OUT_PUT] = 0  # this tick's words so far are dropped with the queue
    s[NA + A_PHASE] = IDLE
    s[PA + A_PHASE] = IDLE
    s[OUT_DRIVERS] = 0
    i = 0
    while i < 8:
        s[NRING + i] = 0
        s[PRING + i] = 0
        i += 1
    s[NWIN] = 0
    s[PWIN] = 0
    s[FAULT] = code
    s[FAULT_TICK] = s[TICKS]
    s[FAULT_WAS] = s[STATE]
    s[STATE] = ST_FAULT
    s[HOMED] = 0
    s[OUT_ALARM] = ALARM_FAULT


@micropython.viper
def after_halt(sbuf):
    """After the driver halted the axes and re-read the counters: what the fault left."""
    s = ptr32(sbuf)
    s[OUT_HALT] = 0
    # What was flushed never ran: the axes are where the motors are, and the
    # syringe lost none of the plunger steps that were thrown away.
    s[NA + A_POS] = s[IN_NCOUNT] - s[NA + A_ORIGIN]
    e = s[IN_PCOUNT] - s[PA + A_ORIGIN]
    s[FLUID_STEPS] -= s[PA + A_POS] - e
    s[PA + A_POS] = e
    s[COMP_LEFT] = 0
    was = s[FAULT_WAS]
    if (1 << was) & PUNCTURING_MASK:
        # A puncture cut short still delivered what the plunger pushed: it
        # counts toward the session (H1) though it makes no puncture record.
        cut = s[FLUID_STEPS] - s[PUNCTURE_FLUID0]
        if cut > 0:
            s[DELIVERED] += cut
    # After the stop, only moves that make things safer, and only when the
    # axis that makes them is known to work: never after homing, loading or
    # a recovery, and the needle withdraws only when it is in.
    rec = REC_NONE
    if (1 << was) & NO_RECOVERY_MASK == 0:
        rec = s[FAULT_RECOVERY + s[FAULT]]
        if rec != REC_RELIEF and s[NA + A_POS] <= 0:
            rec = REC_NONE
    s[RECOVERY] = rec


@micropython.viper
def start_recovery(sbuf):
    """First tick after a fault that allows it: drivers back on, start backing off."""
    s = ptr32(sbuf)
    s[OUT_DRIVERS] = 1
    rec = s[RECOVERY]
    s[RELIEF_BY_COUNT] = 1 if rec == REC_NEEDLE_BY_COUNT else 0
    if rec == REC_RELIEF:
        plunger_start(sbuf, PL_RELIEF, BACKWARD)
        s[RELIEF_PHASE] = RELIEF_PLUNGER
    else:
        start(sbuf, NA, PL_NEEDLE_SEEK, BACKWARD)
        s[RELIEF_PHASE] = RELIEF_NEEDLE
    s[RECOVERY] = REC_NONE
    s[STATE] = ST_RELIEF


@micropython.viper
def relief_tick(sbuf, sw: int, force: int):
    """Plunger back until the pressure is down, then the needle out to home."""
    s = ptr32(sbuf)
    if s[RELIEF_PHASE] == RELIEF_PLUNGER:
        if s[PA + A_PHASE] != IDLE:
            if force < s[RELIEF_MN]:
                stop(sbuf, PA)
            return
        start(sbuf, NA, PL_NEEDLE_SEEK, BACKWARD)
        s[RELIEF_PHASE] = RELIEF_NEEDLE
        return
    if s[NA + A_PHASE] != IDLE:
        if s[NA + A_POS] <= 0 or (sw & SW_NEEDLE_HOME and s[RELIEF_BY_COUNT] == 0):
            stop(sbuf, NA)
        return
    if s[NWIN] or s[PWIN]:
        return  # the last steps are still queued: drivers off once the motors have made them
    s[OUT_DRIVERS] = 0
    s[STATE] = ST_FAULT  # latched: the operator acknowledges
