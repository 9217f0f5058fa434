"""The hot path: the 1 kHz tick, over one integer array.

The whole state the tick reads and writes lives in one array('i'), `S`,
laid out in layout.py. Each tick: read the port block (switches, force, the
motors' step counts), run the safety monitor's checks (hazards H1-H8, H12),
step both axes (motion.py), then hand the tick to the state's own module:

    state                  module       function
    ready (a press)        puncture.py  on_press
    a puncture, the wait   puncture.py  puncture_tick (its STEPS table)
    prime                  puncture.py  prime_tick
    homing, load           homing.py    homing_tick (its STEPS table)
    relieving              monitor.py   relief_tick
    measuring              backlash.py  measure_tick

Why an array: on the RP2040 each attribute or global look-up goes through a
hash map and each method call costs about 16 us, which put the old object
tick at 0.6-1 ms. Here every function is `@micropython.viper`: compiled to
Thumb code that indexes S as raw memory (ptr32), with the layout as
compile-time constants. Calls between them cost about 5 us, so the common
path is flat (the monitor's checks run inline here) and only state changes
call out. On CPython (the simulator, the tests) the decorator is the
identity and the same source runs as Python on the same array, so both
runtimes compute the same thing.

Rules for the hot-path modules: integers below 2**30 only (viper
arithmetic is 32-bit); no allocation, no floats, no exceptions; the result
of a call is an object, so `int()` it; the constants a module uses are
written into it by `make consts` (viper inlines only a module's own).

Fault stop: the tick cannot touch the PIO, so monitor.fault asks for a halt
(OUT_HALT). The driver (the board's interrupt, or Core.tick elsewhere) then
stops both state machines, drops their queued words, reads the step counters
again into IN_NCOUNT/IN_PCOUNT and calls `after_halt`, which puts the axes
where the motors really are. OUT_PUT says which axes' words of this tick to
put after that (the axis ticks that ran after the fault).
"""

from .backlash import measure_tick
from .compat import const, micropython, ptr32
from .homing import homing_tick
from .monitor import after_halt, fault, relief_tick, start_recovery  # noqa: F401  (after_halt: the drivers call it here)
from .motion import axis_tick
from .puncture import on_press, prime_tick, puncture_tick

# ---- constants written by `make consts` from codes.py, layout.py: do not edit ----
SW_NEEDLE_HOME = const(1)
SW_PLUNGER_REAR = const(2)
SW_PLUNGER_FRONT = const(4)
SW_SYRINGE = const(8)
SW_ESTOP = const(64)
SW_NEEDLE_STALL = const(128)
SW_STALLS = const(384)
SW_FIRE = const(48)
FORCE_INVALID = const(-536870912)
ST_UNHOMED = const(0)
ST_READY = const(2)
ST_PRIME = const(8)
ST_LOAD = const(9)
ST_FAULT = const(10)
ST_RELIEF = const(11)
ST_MEASURE = const(12)
PUNCTURE_MASK = const(248)
DELIVERING_MASK = const(4408)
HOMING_MASK = const(514)
F_NONE = const(0)
F_ESTOP = const(1)
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
WINDOW = const(5)
IN_SW = const(0)
IN_FORCE = const(1)
IN_NCOUNT = const(2)
IN_PCOUNT = const(3)
OUT_PUT = const(4)
OVERRUNS = const(8)
STATE = const(9)
TICKS = const(15)
CHECKED = const(16)
OVERRUNS_SEEN = const(17)
NEEDLE_EMITTED = const(18)
PLUNGER_EMITTED = const(19)
FIRE_PREV = const(20)
RECOVERY = const(21)
NWIN = const(24)
PWIN = const(25)
COMP_LEFT = const(33)
HOMED = const(37)
FLUID_STEPS = const(47)
NEEDLE_LIMIT = const(51)
OCCLUSION_MN = const(52)
HOME_STUCK_N = const(57)
HOME_STUCK_P = const(58)
LOST_TOL = const(64)
NRING = const(90)
PRING = const(98)
A_POS = const(0)
A_ORIGIN = const(1)
A_DIR = const(3)
NA = const(111)
PA = const(131)
# ---- end of the written constants ----


@micropython.viper
def tick(sbuf, rbuf, wbuf):
    """One control tick: inputs in S's port block, outputs back there."""
    s = ptr32(sbuf)
    sw = s[IN_SW]
    force = s[IN_FORCE]
    ne = s[IN_NCOUNT] - s[NA + A_ORIGIN]
    pe = s[IN_PCOUNT] - s[PA + A_ORIGIN]
    s[NEEDLE_EMITTED] = ne
    s[PLUNGER_EMITTED] = pe
    t = (s[TICKS] + 1) & 0x3FFFFFFF  # 12 days, then wraps: never a big int
    s[TICKS] = t
    s[OUT_PUT] = 0
    state = s[STATE]
    if state != ST_FAULT:
        # The safety monitor (hazards H1-H8, H12), cheapest checks first.
        code = F_NONE
        if sw & SW_ESTOP:
            code = F_ESTOP  # H6
        elif s[OVERRUNS] != s[OVERRUNS_SEEN]:
            s[OVERRUNS_SEEN] = s[OVERRUNS]
            code = F_TICK_OVERRUN  # H8: the motors were starved, timing is suspect
        elif state == ST_UNHOMED:
            pass  # drivers off, nothing commanded
        elif state == ST_RELIEF:
            # Backing off after a fault: the fault's own cause may persist (a
            # stall flag, a dead load cell); watch the axis that moves.
            tol = s[NWIN] + s[LOST_TOL]
            d = s[NA + A_POS] - ne
            if sw & SW_NEEDLE_STALL:
                code = F_NEEDLE_STALL
            elif d > tol or -d > tol:
                code = F_NEEDLE_LOST_STEPS
        elif force == FORCE_INVALID:
            code = F_LOAD_CELL  # H4 needs a working load cell
        elif force > s[OCCLUSION_MN]:
            code = F_OCCLUSION  # H4
        elif sw & SW_STALLS:
            code = F_NEEDLE_STALL if sw & SW_NEEDLE_STALL else F_PLUNGER_STALL  # H5
        else:
            # H5: the motor may lag the command by the steps still queued, no more.
            tol = s[NWIN] + s[LOST_TOL]
            d = s[NA + A_POS] - ne
            ptol = s[PWIN] + s[LOST_TOL]
            pd = s[PA + A_POS] - pe
            if d > tol or -d > tol:
                code = F_NEEDLE_LOST_STEPS
            elif pd > ptol or -pd > ptol:
                code = F_PLUNGER_LOST_STEPS
            elif s[HOMED] and state != ST_LOAD:
                # Switches that contradict the position (H12, H5)
                if sw & SW_NEEDLE_HOME and ne > s[HOME_STUCK_N]:
                    code = F_NEEDLE_HOME_STUCK
                elif sw & SW_PLUNGER_REAR and pe > s[HOME_STUCK_P]:
                    code = F_PLUNGER_REAR_STUCK
                elif sw & SW_PLUNGER_FRONT:
                    code = F_PLUNGER_FRONT_LIMIT
                elif (sw & SW_SYRINGE) == 0 and (1 << state) & DELIVERING_MASK:
                    code = F_SYRINGE_REMOVED  # H7: never a partial dose without an alarm
        if code:
            fault(sbuf, code)
            state = ST_FAULT
    elif s[RECOVERY] and (sw & SW_ESTOP) == 0:
        start_recovery(sbuf)
        state = s[STATE]

    fire = sw & SW_FIRE
    pressed = fire != 0 and s[FIRE_PREV] == 0
    s[FIRE_PREV] = fire

    n = int(axis_tick(sbuf, NA, rbuf, wbuf))
    s[OUT_PUT] |= 1
    k = t & 7
    j = (t - WINDOW) & 7
    s[NWIN] += n - s[NRING + j]
    s[NRING + k] = n
    if s[NA + A_POS] > s[NEEDLE_LIMIT] and s[HOMED]:
        # Never deeper than the needle allows (H2). The commanded position
        # runs ahead of the motor, so the flush stops it short of the limit.
        fault(sbuf, F_NEEDLE_SOFT_LIMIT)
        state = ST_FAULT
    n = int(axis_tick(sbuf, PA, rbuf, wbuf))  # every tick, so both PIO timelines stay locked
    s[OUT_PUT] |= 2
    s[PWIN] += n - s[PRING + j]
    s[PRING + k] = n
    if n:
        # Backlash take-up moves the nut, not the syringe plunger.
        c = s[COMP_LEFT]
        if c:
            if n > c:
                n -= c
                c = 0
            else:
                c -= n
                n = 0
            s[COMP_LEFT] = c
        if s[PA + A_DIR]:
            s[FLUID_STEPS] += n
        else:
            s[FLUID_STEPS] -= n

    if state == ST_READY:
        if pressed:
            on_press(sbuf)
    elif (1 << state) & PUNCTURE_MASK:
        puncture_tick(sbuf, fire)
    elif state == ST_PRIME:
        prime_tick(sbuf, fire)
    elif (1 << state) & HOMING_MASK:
        homing_tick(sbuf, sw)
    elif state == ST_RELIEF:
        relief_tick(sbuf, sw, force)
    elif state == ST_MEASURE:
        measure_tick(sbuf, force)
    s[CHECKED] = t
