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
written into it by `make consts` (viper inlines only a module's own), as
private names: `_STATE` here is layout.STATE, `_ST_FAULT` codes.ST_FAULT.

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
from .motion import axis_tick, start
from .puncture import on_press, prime_tick, puncture_tick

# ---- constants written by `make consts` from codes.py, layout.py: do not edit ----
_SW_NEEDLE_HOME = const(1)
_SW_PLUNGER_REAR = const(2)
_SW_PLUNGER_FRONT = const(4)
_SW_SYRINGE = const(8)
_SW_ESTOP = const(64)
_SW_NEEDLE_STALL = const(128)
_SW_STALLS = const(384)
_SW_FIRE = const(48)
_FORCE_INVALID = const(-536870912)
_ST_UNHOMED = const(0)
_ST_READY = const(2)
_ST_PRIME = const(8)
_ST_LOAD = const(9)
_ST_FAULT = const(10)
_ST_RELIEF = const(11)
_ST_MEASURE = const(12)
_PUNCTURE_MASK = const(248)
_DELIVERING_MASK = const(4408)
_HOMING_MASK = const(514)
_F_NONE = const(0)
_F_ESTOP = const(1)
_F_PLUNGER_FRONT_LIMIT = const(4)
_F_NEEDLE_SOFT_LIMIT = const(5)
_F_OCCLUSION = const(6)
_F_LOAD_CELL = const(7)
_F_NEEDLE_LOST_STEPS = const(8)
_F_PLUNGER_LOST_STEPS = const(9)
_F_NEEDLE_STALL = const(10)
_F_PLUNGER_STALL = const(11)
_F_NEEDLE_HOME_STUCK = const(12)
_F_PLUNGER_REAR_STUCK = const(13)
_F_TICK_OVERRUN = const(14)
_F_SYRINGE_REMOVED = const(15)
_IDLE = const(0)
_WINDOW = const(5)
_IN_SW = const(0)
_IN_FORCE = const(1)
_IN_NCOUNT = const(2)
_IN_PCOUNT = const(3)
_OUT_PUT = const(4)
_OVERRUNS = const(8)
_STATE = const(9)
_TICKS = const(15)
_CHECKED = const(16)
_OVERRUNS_SEEN = const(17)
_NEEDLE_EMITTED = const(18)
_PLUNGER_EMITTED = const(19)
_FIRE_PREV = const(20)
_RECOVERY = const(21)
_NWIN = const(24)
_PWIN = const(25)
_GAP = const(33)
_PA_NEXT = const(34)
_PA_NEXT_DIR = const(35)
_HOMED = const(41)
_FLUID_STEPS = const(52)
_NEEDLE_LIMIT = const(56)
_OCCLUSION_MN = const(57)
_BACKLASH = const(59)
_HOME_STUCK_N = const(62)
_HOME_STUCK_P = const(63)
_LOST_TOL = const(69)
_NRING = const(104)
_PRING = const(112)
_A_POS = const(0)
_A_ORIGIN = const(1)
_A_PHASE = const(2)
_A_DIR = const(3)
_NA = const(125)
_PA = const(145)
# ---- end of the written constants ----


@micropython.viper
def tick(sbuf, rbuf, wbuf):
    """One control tick: inputs in S's port block, outputs back there."""
    s = ptr32(sbuf)
    sw = s[_IN_SW]
    force = s[_IN_FORCE]
    ne = s[_IN_NCOUNT] - s[_NA + _A_ORIGIN]
    pe = s[_IN_PCOUNT] - s[_PA + _A_ORIGIN]
    s[_NEEDLE_EMITTED] = ne
    s[_PLUNGER_EMITTED] = pe
    t = (s[_TICKS] + 1) & 0x3FFFFFFF  # 12 days, then wraps: never a big int
    s[_TICKS] = t
    s[_OUT_PUT] = 0
    state = s[_STATE]
    if state != _ST_FAULT:
        # The safety monitor (hazards H1-H8, H12), cheapest checks first.
        code = _F_NONE
        if sw & _SW_ESTOP:
            code = _F_ESTOP  # H6
        elif s[_OVERRUNS] != s[_OVERRUNS_SEEN]:
            s[_OVERRUNS_SEEN] = s[_OVERRUNS]
            code = _F_TICK_OVERRUN  # H8: the motors were starved, timing is suspect
        elif state == _ST_UNHOMED:
            pass  # drivers off, nothing commanded
        elif state == _ST_RELIEF:
            # Backing off after a fault: the fault's own cause may persist (a
            # stall flag, a dead load cell); watch the axis that moves.
            tol = s[_NWIN] + s[_LOST_TOL]
            d = s[_NA + _A_POS] - ne
            if sw & _SW_NEEDLE_STALL:
                code = _F_NEEDLE_STALL
            elif d > tol or -d > tol:
                code = _F_NEEDLE_LOST_STEPS
        elif force == _FORCE_INVALID:
            code = _F_LOAD_CELL  # H4 needs a working load cell
        elif force > s[_OCCLUSION_MN]:
            code = _F_OCCLUSION  # H4
        elif sw & _SW_STALLS:
            code = _F_NEEDLE_STALL if sw & _SW_NEEDLE_STALL else _F_PLUNGER_STALL  # H5
        else:
            # H5: the motor may lag the command by the steps still queued, no more.
            tol = s[_NWIN] + s[_LOST_TOL]
            d = s[_NA + _A_POS] - ne
            ptol = s[_PWIN] + s[_LOST_TOL]
            pd = s[_PA + _A_POS] - pe
            if d > tol or -d > tol:
                code = _F_NEEDLE_LOST_STEPS
            elif pd > ptol or -pd > ptol:
                code = _F_PLUNGER_LOST_STEPS
            elif s[_HOMED] and state != _ST_LOAD:
                # Switches that contradict the position (H12, H5)
                if sw & _SW_NEEDLE_HOME and ne > s[_HOME_STUCK_N]:
                    code = _F_NEEDLE_HOME_STUCK
                elif sw & _SW_PLUNGER_REAR and pe > s[_HOME_STUCK_P]:
                    code = _F_PLUNGER_REAR_STUCK
                elif sw & _SW_PLUNGER_FRONT:
                    code = _F_PLUNGER_FRONT_LIMIT
                elif (sw & _SW_SYRINGE) == 0 and (1 << state) & _DELIVERING_MASK:
                    code = _F_SYRINGE_REMOVED  # H7: never a partial dose without an alarm
        if code:
            fault(sbuf, code)
            state = _ST_FAULT
    elif s[_RECOVERY] and (sw & _SW_ESTOP) == 0:
        start_recovery(sbuf)
        state = s[_STATE]

    fire = sw & _SW_FIRE
    pressed = fire != 0 and s[_FIRE_PREV] == 0
    s[_FIRE_PREV] = fire

    n = int(axis_tick(sbuf, _NA, rbuf, wbuf))
    s[_OUT_PUT] |= 1
    k = t & 7
    j = (t - _WINDOW) & 7
    s[_NWIN] += n - s[_NRING + j]
    s[_NRING + k] = n
    if s[_NA + _A_POS] > s[_NEEDLE_LIMIT] and s[_HOMED]:
        # Never deeper than the needle allows (H2). The commanded position
        # runs ahead of the motor, so the flush stops it short of the limit.
        fault(sbuf, _F_NEEDLE_SOFT_LIMIT)
        state = _ST_FAULT
    n = int(axis_tick(sbuf, _PA, rbuf, wbuf))  # every tick, so both PIO timelines stay locked
    s[_OUT_PUT] |= 2
    s[_PWIN] += n - s[_PRING + j]
    s[_PRING + k] = n
    if n:
        # The nut crosses its gap before it moves the syringe plunger: only
        # the steps beyond it move fluid, whichever move made them.
        g = s[_GAP]
        if s[_PA + _A_DIR]:
            if n > g:
                s[_FLUID_STEPS] += n - g
                g = 0
            else:
                g -= n
        else:
            room = s[_BACKLASH] - g
            if n > room:
                s[_FLUID_STEPS] -= n - room
                g = s[_BACKLASH]
            else:
                g += n
        s[_GAP] = g
    if s[_PA_NEXT] and s[_PA + _A_PHASE] == _IDLE:
        start(sbuf, _PA, s[_PA_NEXT], s[_PA_NEXT_DIR])  # the gap is crossed: the move itself
        s[_PA_NEXT] = 0

    if state == _ST_READY:
        if pressed:
            on_press(sbuf)
    elif (1 << state) & _PUNCTURE_MASK:
        puncture_tick(sbuf, fire)
    elif state == _ST_PRIME:
        prime_tick(sbuf, fire)
    elif (1 << state) & _HOMING_MASK:
        homing_tick(sbuf, sw)
    elif state == _ST_RELIEF:
        relief_tick(sbuf, sw, force)
    elif state == _ST_MEASURE:
        measure_tick(sbuf, force)
    s[_CHECKED] = t
