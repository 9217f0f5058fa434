"""The step-segment word: the contract between the planner and the PIO program.

One control tick (1 ms = 125 000 PIO cycles at 125 MHz) is handed to an
axis's PIO state machine as exactly two 32-bit words, so the PIO timeline
stays locked to the tick and a joined 8-word TX FIFO holds 4 ms of motion.

Word layout (shifted out LSB first):
    bit 0        direction (1 = forward: needle into the skin, plunger pushing)
    bits 1..9    step count in this word (0..511)
    bits 10..29  timing field (cycles, see below)
    bits 30..31  zero: a word stays a MicroPython small int (no heap allocation)

Timing of one word, in PIO cycles from the moment the word is pulled:
    count > 0:  rising edges at HEADER + k * period (k = 0..count-1),
                period = timing + STEP_FIXED; the word lasts HEADER + count * period.
    count == 0: no edge; the word lasts timing + PAD_FIXED ("pad" word).
The step pulse is high for HIGH cycles (TMC2209 needs >= 100 ns = 13 cycles).
These constants are the cycle counts of the PIO program in
firmware/board/pio_step.py; the PIO emulator test proves they match.
"""

from . import machine as M
from .compat import const

PIO_HZ = const(125_000_000)
# PIO cycles in one control tick. Not a const(): MicroPython folds only its own
# module's constants, and the tick's length is the machine's (machine.TICK_US).
TICK_CYCLES = PIO_HZ // 1_000_000 * M.TICK_US

HEADER = const(5)  # cycles from pull to the first rising edge
STEP_FIXED = const(18)  # cycles of a step period beyond the timing field
PAD_FIXED = const(6)  # cycles of a pad word beyond the timing field
HIGH = const(16)  # step pulse high time in cycles (128 ns)
MIN_LOW = const(13)  # TMC2209: STEP low >= 100 ns between pulses

COUNT_BITS = const(9)
TIMING_BITS = const(20)
# FIFO policy: the TX FIFO (joined) holds FIFO_WORDS words = FIFO_TICKS ticks.
# The board tops it up every timer interrupt while there is room for a
# tick, so LEAD_TICKS..FIFO_TICKS ticks of motion are always queued: a late
# interrupt of up to LEAD_TICKS ms does not starve the axes, and the core's
# commands run LEAD_TICKS..FIFO_TICKS ms ahead of the motors. The simulator
# models the same lead.
FIFO_WORDS = const(8)
FIFO_TICKS = const(4)
LEAD_TICKS = const(3)

MAX_COUNT = const(511)  # (1 << COUNT_BITS) - 1: steps one tick may carry
MAX_TIMING = const(1_048_575)  # (1 << TIMING_BITS) - 1
_COUNT_SHIFT = const(1)
_TIMING_SHIFT = const(10)


def encode(direction, count, timing):
    """Pack one word. Not for the tick path: the tick uses precomputed tables."""
    if not (0 <= count <= MAX_COUNT and 0 <= timing <= MAX_TIMING and direction in (0, 1)):
        raise ValueError("segment word out of range")
    return direction | (count << _COUNT_SHIFT) | (timing << _TIMING_SHIFT)


def decode(word):
    """Return (direction, count, timing) of a word."""
    return word & 1, (word >> _COUNT_SHIFT) & MAX_COUNT, (word >> _TIMING_SHIFT) & MAX_TIMING


def word_cycles(word):
    """How many PIO cycles a word lasts."""
    _d, count, timing = decode(word)
    if count:
        return HEADER + count * (timing + STEP_FIXED)
    return timing + PAD_FIXED


def tick_words(count):
    """The two direction-less words that carry `count` steps in one tick.

    Steps are spread evenly from the start of the tick; the pad word fills the
    tick to exactly TICK_CYCLES. Returns (step_word, pad_word) with bit 0 clear.
    """
    if count == 0:
        half = TICK_CYCLES // 2
        return encode(0, 0, half - PAD_FIXED), encode(0, 0, TICK_CYCLES - half - PAD_FIXED)
    period = (TICK_CYCLES - HEADER - PAD_FIXED) // count
    if period - HIGH < MIN_LOW:  # the program itself could go faster than the driver
        raise ValueError("too many steps for one tick: the driver needs STEP low >= 100 ns")
    pad = TICK_CYCLES - HEADER - count * period
    return encode(0, count, period - STEP_FIXED), encode(0, 0, pad - PAD_FIXED)


def edge_cycles(words):
    """Rising-edge times (PIO cycles from the first word) and direction per edge.

    The reference model of the PIO program: the simulator and the PIO emulator
    test both compare against it.
    """
    t = 0
    edges = []
    for w in words:
        d, count, timing = decode(w)
        if count:
            period = timing + STEP_FIXED
            for k in range(count):
                edges.append((t + HEADER + k * period, d))
        t += word_cycles(w)
    return edges
