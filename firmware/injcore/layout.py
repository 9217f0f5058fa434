"""The layout of the tick's state array `S`: one array('i') the hot path works on.

Everything the 1 kHz tick reads and writes is an integer at a fixed index
of S: the port block the board fills and reads, the core's scalars, the two
plan sets, the lag rings, the last puncture's record, the two axis blocks,
the sequence tables (the fault recoveries, the puncture's steps, homing's
steps) and the plan rows (each planned move as ROW_SIZE integers; its
ramps in a second array('H')). Core (core.py) plans into S and reads it
through properties; the viper modules index it as raw memory.

Each field is placed after the one before it (`const(PREV + 1)`), so adding
one is a line here and the next line's reference; `make consts` then writes
the new figures into the hot-path modules.

Also here, because they are values held in S: axis phases and directions,
and the lag window.
"""

from .compat import const

# Axis phases and directions
IDLE = const(0)
ACCEL = const(1)
CRUISE = const(2)
DECEL = const(3)
FORWARD = const(1)
BACKWARD = const(0)

WINDOW = const(5)  # ticks of steps the motor may lag the command by (the FIFO lead + 1)
SETTLE_MAX_STEPS = const(24)  # the farthest homing may stop from a switch and still settle on zero

# ---- the port block: the board writes the inputs before each tick, reads the outputs after ----
IN_SW = const(0)  # SW_* mask
IN_FORCE = const(IN_SW + 1)  # mN, or FORCE_INVALID
IN_NCOUNT = const(IN_FORCE + 1)  # the needle's step counter (the port's frame)
IN_PCOUNT = const(IN_NCOUNT + 1)
OUT_PUT = const(IN_PCOUNT + 1)  # bit 1: put the needle's words, bit 2: the plunger's
OUT_HALT = const(OUT_PUT + 1)  # 1: halt both axes, re-read the counters, call after_halt
OUT_DRIVERS = const(OUT_HALT + 1)  # 1: stepper drivers enabled
OUT_ALARM = const(OUT_DRIVERS + 1)  # ALARM_*
OVERRUNS = const(OUT_ALARM + 1)  # the board counts starved FIFOs here

# ---- the core's scalars -----------------------------------------------------------------
STATE = const(OVERRUNS + 1)
FAULT = const(STATE + 1)
FAULT_TICK = const(FAULT + 1)  # TICKS when the latest fault was detected
FAULT_WAS = const(FAULT_TICK + 1)  # the state the fault cut short
NOTICE = const(FAULT_WAS + 1)
WARNING = const(NOTICE + 1)
TICKS = const(WARNING + 1)
CHECKED = const(TICKS + 1)  # tick number of the latest tick whose self-checks ran (watchdog)
OVERRUNS_SEEN = const(CHECKED + 1)
NEEDLE_EMITTED = const(OVERRUNS_SEEN + 1)  # where the motors are (axis frame), read each tick
PLUNGER_EMITTED = const(NEEDLE_EMITTED + 1)
FIRE_PREV = const(PLUNGER_EMITTED + 1)
RECOVERY = const(FIRE_PREV + 1)  # REC_* waiting to start once the stop is released
RELIEF_BY_COUNT = const(RECOVERY + 1)  # the needle withdraws by count, not to its switch
RELIEF_PHASE = const(RELIEF_BY_COUNT + 1)  # monitor.RELIEF_PLUNGER or RELIEF_NEEDLE
NWIN = const(RELIEF_PHASE + 1)  # steps of the last WINDOW ticks per axis
PWIN = const(NWIN + 1)
HOME_STEP = const(PWIN + 1)  # S index of homing's current step (a HOMING_STEPS row)
HOME_FOUND = const(HOME_STEP + 1)
TRIP_POS = const(HOME_FOUND + 1)
PUNCTURE_STEP = const(TRIP_POS + 1)  # S index of the puncture's current step (a PUNCTURE_STEPS row)
SHOT_TIMER = const(PUNCTURE_STEP + 1)
PUNCTURE_TICKS = const(SHOT_TIMER + 1)
PUNCTURE_FLUID0 = const(PUNCTURE_TICKS + 1)
# The plunger nut's forward gap: steps the nut moves forward before it pushes the
# syringe plunger (0: engaged forward, BACKLASH: engaged backward). Every plunger
# step of every path goes through it (tick.tick), so fluid counts only the steps
# that move the syringe plunger.
GAP = const(PUNCTURE_FLUID0 + 1)
PA_NEXT = const(GAP + 1)  # plan row of the plunger move that follows the take-up; 0: none
PA_NEXT_DIR = const(PA_NEXT + 1)
HOVER = const(PA_NEXT_DIR + 1)  # 1: the needle rests at the hover point between shots
DWELL = const(HOVER + 1)  # ticks the puncture still waits at depth (a DWELL step)
DEPTH_REACHED = const(DWELL + 1)
PRIME_FLUID0 = const(DEPTH_REACHED + 1)
PRIMED = const(PRIME_FLUID0 + 1)
HOMED = const(PRIMED + 1)
UNCONFIRMED = const(HOMED + 1)  # codes.HOLD_* bits: nothing is injected (H9 settings; no display)
SYRINGE_OK = const(UNCONFIRMED + 1)  # 1: a syringe loaded and its size confirmed (H13)
CONFIGURING = const(SYRINGE_OK + 1)  # the main loop is re-planning: the tick starts no move
BL_PHASE = const(CONFIGURING + 1)
BL_TIMER = const(BL_PHASE + 1)
BL_F0 = const(BL_TIMER + 1)
BL_POS0 = const(BL_F0 + 1)
BL_MEASURED = const(BL_POS0 + 1)  # the last backlash measurement; -1: none, or not found
ZONE_END = const(BL_MEASURED + 1)  # a protocol zone's cap, in session steps; -1: none
PUNCTURES = const(ZONE_END + 1)
FLUID_STEPS = const(PUNCTURES + 1)  # plunger face position, microsteps from the rear switch
DELIVERED = const(FLUID_STEPS + 1)  # net fluid steps pushed in punctures this session
PRIMED_STEPS = const(DELIVERED + 1)

# Configuration (written by Core when planning, read by the tick)
ACTIVE_SET = const(PRIMED_STEPS + 1)  # S index of the plan set the tick uses (SET0 or SET1)
NEEDLE_LIMIT = const(ACTIVE_SET + 1)  # deepest commanded needle position, steps (H2)
OCCLUSION_MN = const(NEEDLE_LIMIT + 1)
RELIEF_MN = const(OCCLUSION_MN + 1)
BACKLASH = const(RELIEF_MN + 1)
USABLE = const(BACKLASH + 1)  # fluid steps the syringe gives before its dead space
CAP_STEPS = const(USABLE + 1)  # the session cap, steps
HOME_STUCK_N = const(CAP_STEPS + 1)
HOME_STUCK_P = const(HOME_STUCK_N + 1)
RELEASE_N = const(HOME_STUCK_P + 1)
RELEASE_P = const(RELEASE_N + 1)
PAD_WORDS = const(RELEASE_P + 1)  # index of the pad words in the word table
BL_SETTLE_TICKS = const(PAD_WORDS + 1)
BL_DETECT_MN = const(BL_SETTLE_TICKS + 1)
LOST_TOL = const(BL_DETECT_MN + 1)  # machine.LOST_STEPS_TOL (H5)
HOME_PLUNGER_STEP = const(
    LOST_TOL + 1
)  # S index of homing's first plunger step (loading starts there)
TAKEUP_N = const(HOME_PLUNGER_STEP + 1)  # take-up speed, plunger steps per tick

# ---- two plan sets (double-buffered: the main loop plans the spare one) -----------------
C_DEPTH = const(0)
C_DOSE = const(1)
C_SB = const(2)
C_CYCLE = const(3)
C_PERIOD = const(4)
C_MODE = const(5)
C_NEAR_EMPTY = const(6)  # fewer fluid steps than this left: warn (H7)
C_DWELL = const(7)  # ticks to wait at depth after the dose (puncture.plan_cycle)
C_NEEDLE_IN = const(8)  # S index of the set's plan rows: from home to depth
C_NEEDLE_IN_HOVER = const(9)  # from the hover point to depth
C_NEEDLE_OUT = const(10)  # from depth to home (single) or to the hover point (nappage)
C_NEEDLE_HOME = const(11)  # from the hover point to home, when the nappage stops
C_PUSH = const(12)  # pressure advance: the line's stored volume, pushed ahead fast
C_INJECT = const(13)
C_RELEASE = const(14)  # pressure advance: the stored volume drawn back fast
C_SUCKBACK = const(15)
SET_SIZE = const(16)
SET_MOVES = const(8)  # plan rows a set has (puncture.MOVES)
SET0 = const(TAKEUP_N + 1)
SET1 = const(SET0 + SET_SIZE)

# ---- lag rings, the last puncture's record (codes.P_* fields) ------------------------------
NRING = const(SET1 + SET_SIZE)  # 8 ticks of needle steps
PRING = const(NRING + 8)
LAST = const(PRING + 8)
P_NUMBER = const(0)  # the record's fields (Core.last_puncture[P_*])
P_DEPTH_STEPS = const(1)  # deepest needle position reached, microsteps from home
P_DOSE_STEPS = const(2)  # net plunger fluid steps over the puncture
P_TICKS = const(3)  # duration
P_MODE = const(4)
RECORD_SIZE = const(5)

# ---- axis blocks --------------------------------------------------------------------------
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
AXIS_SIZE = const(20)
NA = const(LAST + RECORD_SIZE)  # the needle
PA = const(NA + AXIS_SIZE)  # the plunger

# ---- sequence tables (written once by the modules that own them) --------------------------
FAULT_RECOVERY = const(PA + AXIS_SIZE)  # per fault code its REC_* (codes.FAULTS)
FAULT_COUNT = const(16)

# The puncture's steps (puncture.STEPS), one row each
K_STATE = const(0)  # the state while the step's move runs
K_AXIS = const(1)  # NA, PA, or WAIT_AXIS: a wait of C_DWELL ticks, no move
K_PLAN = const(2)  # C_* of the move's row in the plan set
K_PLAN_HOVER = const(3)  # C_* of its row when the needle starts at the hover point
K_DIR = const(4)
K_SIZE = const(5)
WAIT_AXIS = const(1)  # K_AXIS of a step that only waits
HOMEWARD = const(0)  # PUNCTURE_STEP while the needle goes from the hover point home
PUNCTURE_STEPS = const(FAULT_RECOVERY + FAULT_COUNT)
PUNCTURE_STEPS_MAX = const(8)  # rows, the end row included
PUNCTURE_END = const(PUNCTURE_STEPS + K_SIZE * PUNCTURE_STEPS_MAX)  # S index: the end marker

# Homing's steps (homing.STEPS), one row each
H_KIND = const(0)  # homing.SEEK, BACKOFF or SETTLE
H_AXIS = const(1)  # NA or PA
H_PLAN = const(2)  # S index of the move's plan row (seek, back-off); unused by a settle
H_DIR = const(3)
H_SWITCH = const(4)  # the axis's switch, SW_*
H_NOT_FOUND = const(5)  # F_* when a seek ends without its switch
H_STUCK = const(6)  # F_* when the switch stays closed on backing off
H_RELEASE = const(7)  # S index of the steps within which a working switch opens
H_SIZE = const(8)
HOMING_STEPS = const(PUNCTURE_END + 1)
HOMING_STEPS_MAX = const(9)  # rows, the end row included
HOMING_END = const(HOMING_STEPS + H_SIZE * HOMING_STEPS_MAX)

# ---- plan rows: ROW_SIZE integers from a plan's S index (its length in ticks is Plan.ticks) ----
R_DIST = const(0)
R_K = const(1)
R_CRUISE = const(2)
R_Q = const(3)
R_R = const(4)
R_DEN = const(5)
R_ACC0 = const(6)
R_UP = const(7)
R_DOWN = const(8)
ROW_SIZE = const(9)

# The rows, in order: the machine's fixed moves, then the two cycle sets, then settles.
PL_NEEDLE_SEEK = const(HOMING_END + 1)
PL_NEEDLE_BACKOFF = const(PL_NEEDLE_SEEK + ROW_SIZE)
PL_NEEDLE_APPROACH = const(PL_NEEDLE_BACKOFF + ROW_SIZE)
PL_PLUNGER_SEEK = const(PL_NEEDLE_APPROACH + ROW_SIZE)
PL_PLUNGER_BACKOFF = const(PL_PLUNGER_SEEK + ROW_SIZE)
PL_PLUNGER_APPROACH = const(PL_PLUNGER_BACKOFF + ROW_SIZE)
PL_PRIME = const(PL_PLUNGER_APPROACH + ROW_SIZE)
PL_BL_PRELOAD = const(PL_PRIME + ROW_SIZE)
PL_BL_PROBE = const(PL_BL_PRELOAD + ROW_SIZE)
PL_RELIEF = const(PL_BL_PROBE + ROW_SIZE)
PL_TAKEUP = const(PL_RELIEF + ROW_SIZE)  # the take-up move: written by motion.plunger_start
PL_CYCLE0 = const(PL_TAKEUP + ROW_SIZE)  # SET0's rows
PL_CYCLE1 = const(PL_CYCLE0 + SET_MOVES * ROW_SIZE)  # SET1's
PL_SETTLE = const(PL_CYCLE1 + SET_MOVES * ROW_SIZE)  # + ROW_SIZE * d: the move of d steps to zero

SIZE = const(PL_SETTLE + (SETTLE_MAX_STEPS + 1) * ROW_SIZE)
