"""Stepping one axis: start a planned move, stop it on its ramp, and each tick's steps.

Hot path (`@micropython.viper`, see tick.py for the rules): an axis is a
block of S at NA or PA (layout.py), a move is a plan row of S that the
planner (planner.py) filled. `axis_tick` turns the running move into this
tick's step count and the two PIO words for it (pio_word.py's tables, in
`wbuf`), and keeps the commanded position. `plunger_start` is how the
moves that count fluid begin (the puncture, prime, relief): if the nut has a
gap to cross before it pushes or pulls the syringe plunger (S[GAP], which
the tick keeps for every step of every path), it crosses it first in a move
of its own at the take-up speed, and the tick then starts the planned move
(S[PA_NEXT]): the syringe moves by exactly the planned fluid steps, and the
take-up never runs at the injection rate.
"""

from .compat import const, micropython, ptr16, ptr32

# ---- constants written by `make consts` from layout.py: do not edit ----
_IDLE = const(0)
_ACCEL = const(1)
_CRUISE = const(2)
_DECEL = const(3)
_GAP = const(33)
_PA_NEXT = const(34)
_PA_NEXT_DIR = const(35)
_BACKLASH = const(59)
_PAD_WORDS = const(66)
_TAKEUP_N = const(71)
_A_POS = const(0)
_A_PHASE = const(2)
_A_DIR = const(3)
_A_LAST_DIR = const(4)
_A_LAST_N = const(5)
_A_I = const(6)
_A_K = const(7)
_A_CRUISE = const(8)
_A_Q = const(9)
_A_R = const(10)
_A_DEN = const(11)
_A_ACC = const(12)
_A_UP = const(13)
_A_DOWN = const(14)
_A_WORD = const(15)
_A_WORD2 = const(16)
_A_ROW = const(17)
_A_MOVES = const(18)
_A_TICKED = const(19)
_PA = const(145)
_R_DIST = const(0)
_R_K = const(1)
_R_CRUISE = const(2)
_R_Q = const(3)
_R_R = const(4)
_R_DEN = const(5)
_R_ACC0 = const(6)
_R_UP = const(7)
_R_DOWN = const(8)
_PL_TAKEUP = const(385)
# ---- end of the written constants ----


@micropython.viper
def start(sbuf, ax: int, row: int, direction: int):
    """Begin the planned move at S[row] on the axis whose block is at S[ax]."""
    s = ptr32(sbuf)
    s[ax + _A_K] = s[row + _R_K]
    s[ax + _A_CRUISE] = s[row + _R_CRUISE]
    s[ax + _A_Q] = s[row + _R_Q]
    s[ax + _A_R] = s[row + _R_R]
    s[ax + _A_DEN] = s[row + _R_DEN]
    s[ax + _A_ACC] = s[row + _R_ACC0]
    s[ax + _A_UP] = s[row + _R_UP]
    s[ax + _A_DOWN] = s[row + _R_DOWN]
    s[ax + _A_I] = 0
    s[ax + _A_DIR] = direction
    s[ax + _A_ROW] = row
    s[ax + _A_MOVES] = (s[ax + _A_MOVES] + 1) & 0x3FFFFFFF
    if s[row + _R_DIST]:
        s[ax + _A_PHASE] = _ACCEL
        s[ax + _A_LAST_DIR] = direction
    else:
        s[ax + _A_PHASE] = _IDLE


@micropython.viper
def stop(sbuf, ax: int):
    """Decelerate to a stop along the move's own ramp (switch found, trigger released)."""
    s = ptr32(sbuf)
    if ax == _PA:
        s[_PA_NEXT] = 0  # a move waiting for its take-up never starts
    ph = s[ax + _A_PHASE]
    if s[ax + _A_K] == 0:
        s[ax + _A_PHASE] = _IDLE  # a move without ramps (a take-up) stops at once
    elif ph == _ACCEL:
        if s[ax + _A_I] == 0:  # not a step made yet
            s[ax + _A_PHASE] = _IDLE
            return
        s[ax + _A_I] = s[ax + _A_K] - s[ax + _A_I]  # the decel tick whose speed matches
        s[ax + _A_PHASE] = _DECEL
    elif ph == _CRUISE:
        s[ax + _A_I] = 0
        s[ax + _A_PHASE] = _DECEL


@micropython.viper
def axis_tick(sbuf, ax: int, rbuf, wbuf) -> int:
    """This tick's step count from the running move, its two words into the block."""
    s = ptr32(sbuf)
    ph = s[ax + _A_PHASE]
    n = 0
    if ph == _CRUISE:
        n = s[ax + _A_Q]
        acc = s[ax + _A_ACC] + s[ax + _A_R]
        if acc >= s[ax + _A_DEN]:
            acc -= s[ax + _A_DEN]
            n += 1
        s[ax + _A_ACC] = acc
        c = s[ax + _A_CRUISE] - 1
        s[ax + _A_CRUISE] = c
        if c <= 0:
            s[ax + _A_I] = 0
            s[ax + _A_PHASE] = _DECEL if s[ax + _A_K] else _IDLE
    elif ph == _ACCEL:
        r = ptr16(rbuf)
        i = s[ax + _A_I]
        n = r[s[ax + _A_UP] + i]
        i += 1
        if i >= s[ax + _A_K]:
            i = 0
            s[ax + _A_PHASE] = _CRUISE if s[ax + _A_CRUISE] > 0 else _DECEL
        s[ax + _A_I] = i
    elif ph == _DECEL:
        r = ptr16(rbuf)
        i = s[ax + _A_I]
        n = r[s[ax + _A_DOWN] + i]
        i += 1
        if i >= s[ax + _A_K]:
            s[ax + _A_PHASE] = _IDLE
        s[ax + _A_I] = i
    w = ptr32(wbuf)
    d = s[ax + _A_DIR]
    s[ax + _A_WORD] = w[n] | d
    s[ax + _A_WORD2] = w[s[_PAD_WORDS] + n] | d
    if d:
        s[ax + _A_POS] += n
    else:
        s[ax + _A_POS] -= n
    s[ax + _A_LAST_N] = n
    s[ax + _A_TICKED] = s[ax + _A_MOVES]
    return n


@micropython.viper
def takeup_ticks(steps: int, per_tick: int) -> int:
    """Ticks a take-up of `steps` lasts: the fewest power of two at `per_tick` at most."""
    t = 1
    while steps > per_tick * t:
        t = t << 1
    return t


@micropython.viper
def plunger_start(sbuf, row: int, direction: int):
    """Start a plunger move; if the nut has a gap to cross that way, cross it first."""
    s = ptr32(sbuf)
    g = s[_GAP] if direction else s[_BACKLASH] - s[_GAP]
    if g <= 0 or s[row + _R_DIST] == 0:
        start(sbuf, _PA, row, direction)
        return
    # The take-up: g steps at up to TAKEUP_N a tick without a ramp (the nut
    # carries no load), over a power of two ticks so no division is needed.
    t = int(takeup_ticks(g, s[_TAKEUP_N]))
    sh = 0
    while (1 << sh) < t:
        sh += 1
    r = _PL_TAKEUP
    s[r + _R_DIST] = g
    s[r + _R_K] = 0
    s[r + _R_CRUISE] = t
    s[r + _R_Q] = g >> sh
    s[r + _R_R] = g & (t - 1)
    s[r + _R_DEN] = t
    s[r + _R_ACC0] = 0
    start(sbuf, _PA, r, direction)
    s[_PA + _A_PHASE] = _CRUISE
    s[_PA_NEXT] = row
    s[_PA_NEXT_DIR] = direction
