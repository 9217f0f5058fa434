"""Stepping one axis: start a planned move, stop it on its ramp, and each tick's steps.

Hot path (`@micropython.viper`, see tick.py for the rules): an axis is a
block of S at NA or PA (layout.py), a move is a plan row of S that the
planner (planner.py) filled. `axis_tick` turns the running move into this
tick's step count and the two PIO words for it (pio_word.py's tables, in
`wbuf`), and keeps the commanded position. `plunger_start` is how every
plunger move begins: it takes up the nut's backlash first when the plunger
reverses, so the syringe moves by exactly the planned fluid steps.
"""

from .compat import const, micropython, ptr16, ptr32

# ---- constants written by `make consts` from layout.py: do not edit ----
IDLE = const(0)
ACCEL = const(1)
CRUISE = const(2)
DECEL = const(3)
COMP_LEFT = const(33)
BACKLASH = const(54)
PAD_WORDS = const(61)
A_POS = const(0)
A_PHASE = const(2)
A_DIR = const(3)
A_LAST_DIR = const(4)
A_LAST_N = const(5)
A_I = const(6)
A_K = const(7)
A_CRUISE = const(8)
A_Q = const(9)
A_R = const(10)
A_DEN = const(11)
A_ACC = const(12)
A_UP = const(13)
A_DOWN = const(14)
A_WORD = const(15)
A_WORD2 = const(16)
A_ROW = const(17)
A_MOVES = const(18)
A_TICKED = const(19)
PA = const(131)
R_DIST = const(0)
R_K = const(1)
R_CRUISE = const(2)
R_Q = const(3)
R_R = const(4)
R_DEN = const(5)
R_ACC0 = const(6)
R_UP = const(7)
R_DOWN = const(8)
# ---- end of the written constants ----


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


@micropython.viper
def plunger_start(sbuf, row: int, direction: int):
    """Start a plunger move, taking up the backlash first if it reverses."""
    s = ptr32(sbuf)
    s[COMP_LEFT] = s[BACKLASH] if s[PA + A_LAST_DIR] != direction else 0
    start(sbuf, PA, row, direction)
