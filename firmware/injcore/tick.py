"""The hot path: everything the 1 kHz interrupt runs, over one integer array.

The whole state the tick reads and writes lives in one array('i'), `S`,
laid out by the constants below: the port block the board fills and reads
(inputs, the words for the PIO, the halt request), the core's scalars, the
lag rings, the last puncture's record, the two axis blocks and the plan
rows (each planned move as ten integers; its ramps in a second array('H')).
Core (core.py) plans into S and reads it through properties; it never keeps
a copy of what the tick owns.

Why an array: on the RP2040 each attribute or global look-up goes through a
hash map and each method call costs about 16 us, which put the old object
tick at 0.6-1 ms. Here every function is `@micropython.viper`: compiled to
Thumb code that indexes S as raw memory (ptr32), with the layout as
compile-time constants. Calls between them cost about 5 us, so the common
path is flat and only state changes call out. On CPython (the simulator,
the tests) the decorator is the identity and the same source runs as Python
on the same array, so both runtimes compute the same thing.

Rules for code here: integers below 2**30 only (viper arithmetic is 32-bit);
no allocation, no floats, no exceptions; the result of a call is an object,
so `int()` it; constants must be defined in this module (viper inlines only
its own module's consts).

Fault stop: the tick cannot touch the PIO, so `_fault` asks for a halt
(OUT_HALT). The driver (the board's interrupt, or Core.tick elsewhere) then
stops both state machines, drops their queued words, reads the step counters
again into IN_NCOUNT/IN_PCOUNT and calls `after_halt`, which puts the axes
where the motors really are. OUT_PUT says which axes' words of this tick to
put after that (the axis ticks that ran after the fault).
"""

from .compat import const, micropython, ptr16, ptr32

# ---- codes ----

# ---- constants written by `make consts` from codes.py: do not edit ----
SW_NEEDLE_HOME = const(1)
SW_PLUNGER_REAR = const(2)
SW_PLUNGER_FRONT = const(4)
SW_SYRINGE = const(8)
SW_ESTOP = const(64)
SW_NEEDLE_STALL = const(128)
SW_STALLS = const(384)
SW_FIRE = const(48)
FORCE_INVALID = const(-536870912)
ALARM_NONE = const(0)
ALARM_WARNING = const(1)
ALARM_FAULT = const(2)
W_NONE = const(0)
W_NEAR_EMPTY = const(1)
MODE_CONTINUOUS = const(1)
MODE_PRIME = const(2)
ST_UNHOMED = const(0)
ST_HOMING = const(1)
ST_READY = const(2)
ST_ADVANCE = const(3)
ST_INJECT = const(4)
ST_SUCKBACK = const(5)
ST_RETRACT = const(6)
ST_WAIT = const(7)
ST_PRIME = const(8)
ST_LOAD = const(9)
ST_FAULT = const(10)
ST_RELIEF = const(11)
ST_MEASURE = const(12)
PUNCTURING_MASK = const(120)
PUNCTURE_MASK = const(248)
DELIVERING_MASK = const(4408)
HOMING_MASK = const(514)
REC_NONE = const(0)
REC_RELIEF = const(1)
REC_NEEDLE = const(2)
F_NONE = const(0)
F_ESTOP = const(1)
F_NEEDLE_HOME_NOT_FOUND = const(2)
F_PLUNGER_HOME_NOT_FOUND = const(3)
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
N_NONE = const(0)
N_NO_SYRINGE = const(2)
N_NOT_PRIMED = const(3)
N_SYRINGE_LOW = const(4)
N_BUSY = const(5)
N_SESSION_CAP = const(7)
N_BACKLASH_FAILED = const(8)
N_UNCONFIRMED = const(9)
N_ZONE_CAP = const(10)
P_NUMBER = const(0)
P_DEPTH_STEPS = const(1)
P_DOSE_STEPS = const(2)
P_TICKS = const(3)
P_MODE = const(4)
# ---- end of the written constants ----

# Homing steps
H_NEEDLE_SEEK = const(0)
H_NEEDLE_BACKOFF = const(1)
H_NEEDLE_APPROACH = const(2)
H_PLUNGER_SEEK = const(3)
H_PLUNGER_BACKOFF = const(4)
H_PLUNGER_APPROACH = const(5)
H_PLUNGER_SETTLE = const(6)
H_DONE = const(7)
H_NEEDLE_SETTLE = const(8)
SETTLE_MAX_STEPS = const(24)

# Backlash measurement phases
BL_PRELOAD = const(0)
BL_SETTLE = const(1)
BL_PROBE = const(2)
BL_STOPPING = const(3)

# Axis phases and directions
IDLE = const(0)
ACCEL = const(1)
CRUISE = const(2)
DECEL = const(3)
FORWARD = const(1)
BACKWARD = const(0)

WINDOW = const(5)  # ticks of steps the motor may lag the command by (the FIFO lead + 1)

# ---- the layout of S -------------------------------------------------------------

# Port block: the board writes the inputs before each tick and reads the outputs after.
IN_SW = const(0)  # SW_* mask
IN_FORCE = const(1)  # mN, or FORCE_INVALID
IN_NCOUNT = const(2)  # the needle's step counter (the port's frame)
IN_PCOUNT = const(3)
OUT_PUT = const(4)  # bit 1: put the needle's words, bit 2: the plunger's
OUT_HALT = const(5)  # 1: halt both axes, re-read the counters, call after_halt
OUT_DRIVERS = const(6)  # 1: stepper drivers enabled
OUT_ALARM = const(7)  # ALARM_*
OVERRUNS = const(8)  # the board counts starved FIFOs here

# The core's scalars
STATE = const(9)
FAULT = const(10)
FAULT_TICK = const(11)  # TICKS when the latest fault was detected
FAULT_WAS = const(12)  # the state the fault cut short
NOTICE = const(13)
WARNING = const(14)
TICKS = const(15)
CHECKED = const(16)  # tick number of the latest tick whose self-checks ran (watchdog)
OVERRUNS_SEEN = const(17)
NEEDLE_EMITTED = const(18)  # where the motors are (axis frame), read each tick
PLUNGER_EMITTED = const(19)
FIRE_PREV = const(20)
RECOVERY = const(21)
RELIEF_BY_COUNT = const(22)  # the needle withdraws by count, not to its switch
RELIEF_PHASE = const(23)  # 0: plunger backs off, 1: needle withdraws
NWIN = const(24)  # steps of the last WINDOW ticks per axis
PWIN = const(25)
HOME_STEP = const(26)
HOME_FOUND = const(27)
TRIP_POS = const(28)
SHOT_TIMER = const(29)
PUNCTURE_TICKS = const(30)
PUNCTURE_FLUID0 = const(31)
COMP_LEFT = const(32)  # backlash steps still to take up in this plunger move
DEPTH_REACHED = const(33)
PRIME_FLUID0 = const(34)
PRIMED = const(35)
HOMED = const(36)
UNCONFIRMED = const(37)  # no valid stored settings: nothing is injected until confirmed (H9)
CONFIGURING = const(38)  # the main loop is re-planning: the tick starts no move
BL_PHASE = const(39)
BL_TIMER = const(40)
BL_F0 = const(41)
BL_POS0 = const(42)
BL_MEASURED = const(43)  # the last backlash measurement; -1: none, or not found
ZONE_END = const(44)  # a protocol zone's cap, in session steps; -1: none
PUNCTURES = const(45)
FLUID_STEPS = const(46)  # plunger face position, microsteps from the rear switch
DELIVERED = const(47)  # net fluid steps pushed in punctures this session
PRIMED_STEPS = const(48)

# Configuration (written by Core when planning, read by the tick)
ACTIVE_SET = const(49)  # S index of the plan set the tick uses (SET0 or SET1)
NEEDLE_LIMIT = const(50)  # deepest commanded needle position, steps (H2)
OCCLUSION_MN = const(51)
RELIEF_MN = const(52)
BACKLASH = const(53)
USABLE = const(54)  # fluid steps the syringe gives before its dead space
CAP_STEPS = const(55)  # the session cap, steps
HOME_STUCK_N = const(56)
HOME_STUCK_P = const(57)
RELEASE_N = const(58)
RELEASE_P = const(59)
PAD_WORDS = const(60)  # index of the pad words in the word table
BL_SETTLE_TICKS = const(61)
BL_DETECT_MN = const(62)
LOST_TOL = const(63)  # machine.LOST_STEPS_TOL (H5)

# Two plan sets (double-buffered: the main loop plans the spare one)
SET0 = const(64)
SET1 = const(76)
SET_SIZE = const(12)
C_DEPTH = const(0)
C_DOSE = const(1)
C_SB = const(2)
C_CYCLE = const(3)
C_PERIOD = const(4)
C_MODE = const(5)
C_NEAR_EMPTY = const(6)  # fewer fluid steps than this left: warn (H7)
C_NEEDLE_IN = const(7)  # S index of the set's plan rows
C_NEEDLE_OUT = const(8)
C_INJECT_FWD = const(9)  # the plunger last moved forward
C_INJECT_REV = const(10)  # + backlash take-up
C_SUCKBACK = const(11)

NRING = const(88)  # 8 ticks of needle steps
PRING = const(96)
LAST = const(104)  # the last puncture's record: P_* fields

# Axis blocks
NA = const(112)  # the needle
PA = const(132)  # the plunger
AXIS_SIZE = const(20)
A_POS = const(0)  # commanded position, microsteps from zero
A_ORIGIN = const(1)  # the port's count at this axis's zero
A_PHASE = const(2)
A_DIR = const(3)  # FORWARD / BACKWARD: the direction bit of the words
A_LAST_DIR = const(4)  # direction of the last move that stepped; -1 unknown
A_LAST_N = const(5)  # steps in the latest tick
A_I = const(6)  # tick within the ramp
A_K = const(7)  # ramp ticks
A_CRUISE = const(8)  # cruise ticks left
A_Q = const(9)
A_R = const(10)
A_DEN = const(11)
A_ACC = const(12)
A_UP = const(13)  # ramps index of the accel ramp
A_DOWN = const(14)
A_WORD = const(15)  # this tick's two PIO words
A_WORD2 = const(16)
A_ROW = const(17)  # the plan row of the latest move started
A_MOVES = const(18)  # moves started (wraps below 2**30): tools see each start
A_TICKED = const(19)  # A_MOVES when the axis last ticked: a later start steps from the next tick

# Plan rows: ROW_SIZE integers from a plan's S index (its length in ticks is Plan.ticks)
ROWS = const(160)
ROW_SIZE = const(9)
R_DIST = const(0)
R_K = const(1)
R_CRUISE = const(2)
R_Q = const(3)
R_R = const(4)
R_DEN = const(5)
R_ACC0 = const(6)
R_UP = const(7)
R_DOWN = const(8)

# The rows, in order: the machine's fixed moves, then the two cycle sets, then settles.
PL_NEEDLE_SEEK = const(160)
PL_NEEDLE_BACKOFF = const(169)
PL_NEEDLE_APPROACH = const(178)
PL_PLUNGER_SEEK = const(187)
PL_PLUNGER_BACKOFF = const(196)
PL_PLUNGER_APPROACH = const(205)
PL_PRIME = const(214)
PL_BL_PRELOAD = const(223)
PL_BL_PROBE = const(232)
PL_RELIEF = const(241)
PL_CYCLE0 = const(250)  # SET0's five rows
PL_CYCLE1 = const(295)  # SET1's
PL_SETTLE = const(340)  # + ROW_SIZE * d: the move of d steps to zero, d = 0..SETTLE_MAX_STEPS
SIZE = const(565)


# ---- one axis ----------------------------------------------------------------------


@micropython.viper
def start(sbuf, ax: int, row: int, direction: int):
    """Begin the planned move at S[row] on the axis whose block is at S[ax]."""
    s = ptr32(sbuf)
    s[ax + A_K] = s[row + R_K]
    s[ax + A_CRUISE] = s[row + R_CRUISE]
    s[ax + A_Q] = s[row + R_Q]
    s[ax + A_R] = s[row + R_R]
    s[ax + A_DEN] = s[row + R_DEN]
    s[ax + A_ACC] = s[row + R_ACC0]
    s[ax + A_UP] = s[row + R_UP]
    s[ax + A_DOWN] = s[row + R_DOWN]
    s[ax + A_I] = 0
    s[ax + A_DIR] = direction
    s[ax + A_ROW] = row
    s[ax + A_MOVES] = (s[ax + A_MOVES] + 1) & 0x3FFFFFFF
    if s[row + R_DIST]:
        s[ax + A_PHASE] = ACCEL
        s[ax + A_LAST_DIR] = direction
    else:
        s[ax + A_PHASE] = IDLE


@micropython.viper
def stop(sbuf, ax: int):
    """Decelerate to a stop along the move's own ramp (switch found, trigger released)."""
    s = ptr32(sbuf)
    ph = s[ax + A_PHASE]
    if ph == ACCEL:
        if s[ax + A_I] == 0:  # not a step made yet
            s[ax + A_PHASE] = IDLE
            return
        s[ax + A_I] = s[ax + A_K] - s[ax + A_I]  # the decel tick whose speed matches
        s[ax + A_PHASE] = DECEL
    elif ph == CRUISE:
        s[ax + A_I] = 0
        s[ax + A_PHASE] = DECEL


@micropython.viper
def axis_tick(sbuf, ax: int, rbuf, wbuf) -> int:
    """This tick's step count from the running move, its two words into the block."""
    s = ptr32(sbuf)
    ph = s[ax + A_PHASE]
    n = 0
    if ph == CRUISE:
        n = s[ax + A_Q]
        acc = s[ax + A_ACC] + s[ax + A_R]
        if acc >= s[ax + A_DEN]:
            acc -= s[ax + A_DEN]
            n += 1
        s[ax + A_ACC] = acc
        c = s[ax + A_CRUISE] - 1
        s[ax + A_CRUISE] = c
        if c <= 0:
            s[ax + A_I] = 0
            s[ax + A_PHASE] = DECEL
    elif ph == ACCEL:
        r = ptr16(rbuf)
        i = s[ax + A_I]
        n = r[s[ax + A_UP] + i]
        i += 1
        if i >= s[ax + A_K]:
            i = 0
            s[ax + A_PHASE] = CRUISE if s[ax + A_CRUISE] > 0 else DECEL
        s[ax + A_I] = i
    elif ph == DECEL:
        r = ptr16(rbuf)
        i = s[ax + A_I]
        n = r[s[ax + A_DOWN] + i]
        i += 1
        if i >= s[ax + A_K]:
            s[ax + A_PHASE] = IDLE
        s[ax + A_I] = i
    w = ptr32(wbuf)
    d = s[ax + A_DIR]
    s[ax + A_WORD] = w[n] | d
    s[ax + A_WORD2] = w[s[PAD_WORDS] + n] | d
    if d:
        s[ax + A_POS] += n
    else:
        s[ax + A_POS] -= n
    s[ax + A_LAST_N] = n
    s[ax + A_TICKED] = s[ax + A_MOVES]
    return n


# ---- the tick ------------------------------------------------------------------------


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
            _fault(sbuf, code)
            state = ST_FAULT
    elif s[RECOVERY] and (sw & SW_ESTOP) == 0:
        _start_recovery(sbuf)
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
        _fault(sbuf, F_NEEDLE_SOFT_LIMIT)
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
            _on_press(sbuf)
    elif (1 << state) & PUNCTURE_MASK:
        _puncture_tick(sbuf, fire)
    elif state == ST_PRIME:
        _prime_tick(sbuf, fire)
    elif (1 << state) & HOMING_MASK:
        _homing_tick(sbuf, sw)
    elif state == ST_RELIEF:
        _relief_tick(sbuf, sw, force)
    elif state == ST_MEASURE:
        _measure_tick(sbuf, force)
    s[CHECKED] = t


# ---- faults --------------------------------------------------------------------------


@micropython.viper
def _fault(sbuf, code: int):
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
    s[RELIEF_BY_COUNT] = 1 if code == F_NEEDLE_HOME_STUCK else 0
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
    code = s[FAULT]
    if (1 << was) & PUNCTURING_MASK:
        # A puncture cut short still delivered what the plunger pushed: it
        # counts toward the session (H1) though it makes no puncture record.
        cut = s[FLUID_STEPS] - s[PUNCTURE_FLUID0]
        if cut > 0:
            s[DELIVERED] += cut
    # After the stop, only moves that make things safer, and only when the
    # axis that makes them is known to work.
    rec = REC_NONE
    if was != ST_RELIEF and was != ST_UNHOMED and was != ST_HOMING and was != ST_LOAD:
        if code == F_OCCLUSION:
            rec = REC_RELIEF
        elif (code == F_PLUNGER_LOST_STEPS or code == F_PLUNGER_STALL or code == F_LOAD_CELL
              or code == F_PLUNGER_FRONT_LIMIT or code == F_SYRINGE_REMOVED
              or code == F_PLUNGER_REAR_STUCK):
            if s[NA + A_POS] > 0:
                rec = REC_NEEDLE
        elif code == F_NEEDLE_HOME_STUCK and s[NA + A_POS] > 0:
            # The needle's steps are sound, only its switch lies: withdraw it
            # by count. Left in, homing's back-off would push it deeper.
            rec = REC_NEEDLE
    s[RECOVERY] = rec


@micropython.viper
def _start_recovery(sbuf):
    """First tick after a fault that allows it: drivers back on, start backing off."""
    s = ptr32(sbuf)
    s[OUT_DRIVERS] = 1
    if s[RECOVERY] == REC_RELIEF:
        plunger_start(sbuf, PL_RELIEF, BACKWARD)
        s[RELIEF_PHASE] = 0
    else:
        start(sbuf, NA, PL_NEEDLE_SEEK, BACKWARD)
        s[RELIEF_PHASE] = 1
    s[RECOVERY] = REC_NONE
    s[STATE] = ST_RELIEF


@micropython.viper
def _relief_tick(sbuf, sw: int, force: int):
    """Plunger back until the pressure is down, then the needle out to home."""
    s = ptr32(sbuf)
    if s[RELIEF_PHASE] == 0:
        if s[PA + A_PHASE] != IDLE:
            if force < s[RELIEF_MN]:
                stop(sbuf, PA)
            return
        start(sbuf, NA, PL_NEEDLE_SEEK, BACKWARD)
        s[RELIEF_PHASE] = 1
        return
    if s[NA + A_PHASE] != IDLE:
        if s[NA + A_POS] <= 0 or (sw & SW_NEEDLE_HOME and s[RELIEF_BY_COUNT] == 0):
            stop(sbuf, NA)
        return
    if s[NWIN] or s[PWIN]:
        return  # the last steps are still queued: drivers off once the motors have made them
    s[OUT_DRIVERS] = 0
    s[STATE] = ST_FAULT  # latched: the operator acknowledges


# ---- the sequencer ----------------------------------------------------------------------


@micropython.viper
def plunger_start(sbuf, row: int, direction: int):
    """Start a plunger move, taking up the backlash first if it reverses."""
    s = ptr32(sbuf)
    s[COMP_LEFT] = s[BACKLASH] if s[PA + A_LAST_DIR] != direction else 0
    start(sbuf, PA, row, direction)


@micropython.viper
def plunger_left(sbuf) -> int:
    """Fluid steps the syringe can still give before its dead space."""
    s = ptr32(sbuf)
    return s[USABLE] - s[FLUID_STEPS]


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
def _on_press(sbuf):
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
    c = s[ACTIVE_SET]
    s[SHOT_TIMER] = s[c + C_PERIOD]
    s[PUNCTURE_TICKS] = 0
    s[PUNCTURE_FLUID0] = s[FLUID_STEPS]
    s[DEPTH_REACHED] = 0
    start(sbuf, NA, s[c + C_NEEDLE_IN], FORWARD)
    s[STATE] = ST_ADVANCE


@micropython.viper
def _puncture_tick(sbuf, fire: int):
    s = ptr32(sbuf)
    state = s[STATE]
    s[SHOT_TIMER] -= 1
    if state == ST_WAIT:
        if fire == 0:
            s[STATE] = ST_READY
        elif s[SHOT_TIMER] <= 0:
            if int(can_fire(sbuf)):
                _start_puncture(sbuf)
            else:
                s[STATE] = ST_READY
        return
    s[PUNCTURE_TICKS] += 1
    c = s[ACTIVE_SET]
    if state == ST_ADVANCE:
        if s[NA + A_PHASE] == IDLE:
            s[DEPTH_REACHED] = s[NA + A_POS]
            plunger_start(sbuf, s[c + C_INJECT_FWD] if s[PA + A_LAST_DIR] == FORWARD
                          else s[c + C_INJECT_REV], FORWARD)
            s[STATE] = ST_INJECT
    elif state == ST_INJECT:
        if s[PA + A_PHASE] == IDLE:
            if s[c + C_SB]:
                plunger_start(sbuf, s[c + C_SUCKBACK], BACKWARD)
                s[STATE] = ST_SUCKBACK
            else:
                start(sbuf, NA, s[c + C_NEEDLE_OUT], BACKWARD)
                s[STATE] = ST_RETRACT
    elif state == ST_SUCKBACK:
        if s[PA + A_PHASE] == IDLE:
            start(sbuf, NA, s[c + C_NEEDLE_OUT], BACKWARD)
            s[STATE] = ST_RETRACT
    elif state == ST_RETRACT:
        if s[NA + A_PHASE] == IDLE:
            _end_puncture(sbuf, fire)


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
def _prime_tick(sbuf, fire: int):
    s = ptr32(sbuf)
    if s[PA + A_PHASE] == IDLE:
        s[PRIMED_STEPS] += s[FLUID_STEPS] - s[PRIME_FLUID0]
        s[PRIMED] = 1
        update_warning(sbuf)
        s[STATE] = ST_READY
        return
    if fire == 0 or s[FLUID_STEPS] >= s[USABLE]:
        stop(sbuf, PA)


@micropython.viper
def _measure_tick(sbuf, force: int):
    s = ptr32(sbuf)
    phase = s[BL_PHASE]
    if phase == BL_PRELOAD:
        if s[PA + A_PHASE] == IDLE:
            s[BL_PHASE] = BL_SETTLE
            s[BL_TIMER] = s[BL_SETTLE_TICKS]
    elif phase == BL_SETTLE:
        s[BL_TIMER] -= 1
        if s[BL_TIMER] <= 0:
            s[BL_F0] = force
            s[BL_POS0] = s[PLUNGER_EMITTED]
            s[BL_PHASE] = BL_PROBE
            plunger_start(sbuf, PL_BL_PROBE, BACKWARD)
    elif phase == BL_STOPPING:
        if s[PA + A_PHASE] == IDLE:
            s[STATE] = ST_READY
    elif force < s[BL_F0] - s[BL_DETECT_MN]:
        s[BL_MEASURED] = s[BL_POS0] - s[PLUNGER_EMITTED]  # where the motor is
        stop(sbuf, PA)
        s[BL_PHASE] = BL_STOPPING
    elif s[PA + A_PHASE] == IDLE:
        s[NOTICE] = N_BACKLASH_FAILED
        s[STATE] = ST_READY


# ---- homing --------------------------------------------------------------------------


@micropython.viper
def begin_homing(sbuf, plunger_only: int):
    """Start homing both axes, or the plunger alone (loading a syringe)."""
    s = ptr32(sbuf)
    s[OUT_DRIVERS] = 1
    s[NOTICE] = N_NONE
    s[HOME_FOUND] = 0
    if plunger_only:
        s[HOME_STEP] = H_PLUNGER_SEEK
        plunger_start(sbuf, PL_PLUNGER_SEEK, BACKWARD)
    else:
        s[HOMED] = 0
        s[HOME_STEP] = H_NEEDLE_SEEK
        start(sbuf, NA, PL_NEEDLE_SEEK, BACKWARD)
    s[STATE] = ST_HOMING


@micropython.viper
def _settle(sbuf, ax: int) -> int:
    """Start the pre-planned move from where the axis stopped to zero; 0 on a fault."""
    s = ptr32(sbuf)
    off = s[ax + A_POS]
    if off > SETTLE_MAX_STEPS or off < -SETTLE_MAX_STEPS:
        _fault(sbuf, F_NEEDLE_HOME_NOT_FOUND if ax == NA else F_PLUNGER_HOME_NOT_FOUND)
        return 0
    if off < 0:
        start(sbuf, ax, PL_SETTLE + ROW_SIZE * (0 - off), FORWARD)
    else:
        start(sbuf, ax, PL_SETTLE + ROW_SIZE * off, BACKWARD)
    return 1


@micropython.viper
def _homing_tick(sbuf, sw: int):
    s = ptr32(sbuf)
    step = s[HOME_STEP]
    needle_step = step <= H_NEEDLE_APPROACH
    ax = NA if needle_step else PA
    switch = SW_NEEDLE_HOME if needle_step else SW_PLUNGER_REAR
    emitted = s[NEEDLE_EMITTED] if needle_step else s[PLUNGER_EMITTED]
    stuck = F_NEEDLE_HOME_STUCK if needle_step else F_PLUNGER_REAR_STUCK
    seeking = (step == H_NEEDLE_SEEK or step == H_NEEDLE_APPROACH
               or step == H_PLUNGER_SEEK or step == H_PLUNGER_APPROACH)
    backing = step == H_NEEDLE_BACKOFF or step == H_PLUNGER_BACKOFF
    release = s[RELEASE_N] if needle_step else s[RELEASE_P]
    if backing and sw & switch and emitted - s[TRIP_POS] > release:
        # A working switch opens within a fraction of a millimetre: a stuck
        # one must not lead the needle a full back-off deeper (H12).
        _fault(sbuf, stuck)
        return
    if seeking and s[HOME_FOUND] == 0 and sw & switch:
        s[HOME_FOUND] = 1
        # Zero is where the switch closed: where the motor was when it was read,
        # not the commanded position, which runs ahead by the FIFO lead.
        s[TRIP_POS] = emitted
        stop(sbuf, ax)
    if s[ax + A_PHASE] != IDLE:
        return
    if seeking and s[HOME_FOUND] == 0:
        # Full travel plus margin and no switch: broken or blocked (H12).
        _fault(sbuf, F_NEEDLE_HOME_NOT_FOUND if needle_step else F_PLUNGER_HOME_NOT_FOUND)
        return
    s[HOME_FOUND] = 0
    if backing and sw & switch:
        # Backed off a millimetre and the switch is still closed: stuck (H12).
        _fault(sbuf, stuck)
        return
    nxt = step + 1
    if step == H_NEEDLE_SEEK:
        start(sbuf, NA, PL_NEEDLE_BACKOFF, FORWARD)
    elif step == H_NEEDLE_BACKOFF:
        start(sbuf, NA, PL_NEEDLE_APPROACH, BACKWARD)
    elif step == H_NEEDLE_APPROACH or step == H_PLUNGER_APPROACH:
        trip = s[TRIP_POS]  # the axis's zero moves to where the switch closed
        s[ax + A_POS] -= trip
        s[ax + A_ORIGIN] += trip
        if int(_settle(sbuf, ax)) == 0:
            return
        nxt = H_NEEDLE_SETTLE if step == H_NEEDLE_APPROACH else H_PLUNGER_SETTLE
    elif step == H_NEEDLE_SETTLE:
        plunger_start(sbuf, PL_PLUNGER_SEEK, BACKWARD)
        nxt = H_PLUNGER_SEEK
    elif step == H_PLUNGER_SEEK:
        plunger_start(sbuf, PL_PLUNGER_BACKOFF, FORWARD)
    elif step == H_PLUNGER_BACKOFF:
        plunger_start(sbuf, PL_PLUNGER_APPROACH, BACKWARD)
    else:  # H_PLUNGER_SETTLE
        # The plunger face rests at the rear switch: where a full syringe sits.
        s[FLUID_STEPS] = 0
        s[COMP_LEFT] = 0
        s[PRIMED] = 0
        s[HOMED] = 1
        s[STATE] = ST_READY
        nxt = H_DONE
    s[HOME_STEP] = nxt
