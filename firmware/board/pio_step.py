"""PIO programs of one stepper axis: step generator and signed step counter.

step_gen turns the segment words of injcore.pio_word into STEP pulses and the
DIR level, cycle-exactly (125 MHz, clock divider 1):

    addr  instruction                       cycle in the word
    0     pad:     mov y, osr      side 0    4            (count == 0)
    1     padloop: jmp y--, padloop side 0   5 .. 5+timing, falls into the pull
    2     (wrap_target) pull block  side 0   0            STEP low while the FIFO is empty
    3     out pins, 1              side 0    1            DIR, 4 cycles before the edge
    4     out x, 9                 side 0    2            count
    5     jmp !x, pad              side 0    3
    6     jmp x--, step            side 0    4            x = count - 1
    7     step:    mov y, osr      side 1 [15]   5 + k*period: rising edge, high 16 cycles
    8     low:     jmp y--, low    side 0    timing + 1 cycles low
    9     (wrap)   jmp x--, step   side 0    1 cycle; the last one wraps into the pull

so HEADER = 5, STEP_FIXED = 16 + (timing + 1) + 1 - timing = 18, HIGH = 16 and
PAD_FIXED = 6 (pull, 2 outs, jmp, mov, then timing + 1 loop cycles). The pad
code sits before the pull so that both the step path (through the wrap) and
the pad path (by falling through) reach the pull at no cost; a `jmp` back
would add a cycle to one of them. The price: the program is entered at the
pad code, so start_axis first clears OSR (the entry is then a 2-cycle pad).

Every instruction side-sets: in MicroPython's asm_pio one instruction without
.side() makes side-set optional (SIDE_EN), which costs a delay bit and the
[15] would no longer fit (max 7).

step_count runs on a second state machine. It watches
the STEP pin (in_base) for rising edges, reads DIR (jmp_pin) and keeps the
signed count in X, offset by COUNT_BIAS so the value always stays a
MicroPython small int. After each edge it copies X to Y in one instruction,
so Y always holds a whole count (X is inverted for two cycles while counting
up). The CPU reads Y on request (read_count): one forced `in y, 32`, which
autopush turns into an RX FIFO word. That costs nothing per step, never
returns a stale FIFO entry and steals a single cycle from the counter, so even
at the peak rate (STEP low for only 2 cycles) no edge is missed.

Nothing here touches hardware at import: start_axis() builds the machines.
"""

import rp2

from injcore.compat import const
from injcore.pio_word import PIO_HZ

try:
    from typing import TYPE_CHECKING
except ImportError:  # MicroPython
    TYPE_CHECKING = False
if TYPE_CHECKING:  # the PIO names asm_pio injects, for type checkers only
    from rp2.asm_pio import *  # noqa: F403

COUNT_BIAS = const(1 << 29)  # step_count value at start: +-2**29 steps stay small ints
EXEC_IN_Y = const(0x4040)  # in_(y, 32) for StateMachine.exec: autopush sends it
# step_gen opcodes for StateMachine.exec, prebuilt so halt() allocates nothing
# (a string would be assembled at run time). Side-set bit 12 is 0: STEP low.
EXEC_PULL_NOBLOCK = const(0x8080)  # pull(noblock).side(0): takes one word out of the FIFO
EXEC_MOV_OSR_NULL = const(0xA0E3)  # mov(osr, null).side(0): the entry pad then lasts 2 cycles
EXEC_JMP = const(0x0000)  # jmp(addr).side(0): OR in the absolute address

# RP2040 PIO registers (datasheet 3.7): a state machine's program counter, and
# CTRL, whose SM_ENABLE bits start several machines on the same cycle.
_PIO_BASES = (0x50200000, 0x50300000)
_SM0_ADDR = const(0x0D4)
_SM_STRIDE = const(0x18)
_CLKDIV_RESTART_SHIFT = const(8)


# PIO bodies run with only the PIO names as globals: literals, no module constants.
@rp2.asm_pio(
    sideset_init=rp2.PIO.OUT_LOW,  # STEP
    out_init=rp2.PIO.OUT_LOW,  # DIR
    out_shiftdir=rp2.PIO.SHIFT_RIGHT,
    autopull=False,
    fifo_join=rp2.PIO.JOIN_TX,  # 8 words = 4 ticks of motion
)
def step_gen():
    label("pad")
    mov(y, osr).side(0)  # y = timing field (OSR shifted right by 10)
    label("padloop")
    jmp(y_dec, "padloop").side(0)  # timing + 1 cycles, then falls into the pull
    wrap_target()
    pull(block).side(0)  # cycle 0 of a word
    out(pins, 1).side(0)  # cycle 1: direction
    out(x, 9).side(0)  # cycle 2: step count
    jmp(not_x, "pad").side(0)  # cycle 3
    jmp(x_dec, "step").side(0)  # cycle 4: x = count - 1, always to the next line
    label("step")
    mov(y, osr).side(1)[15]  # rising edge; STEP high for 16 cycles
    label("low")
    jmp(y_dec, "low").side(0)  # STEP low for timing + 1 cycles
    jmp(x_dec, "step").side(0)  # next step, or wrap to the pull
    wrap()


@rp2.asm_pio(in_shiftdir=rp2.PIO.SHIFT_LEFT, autopush=True, push_thresh=32)
def step_count():
    wrap_target()
    wait(0, pin, 0)  # STEP low ...
    wait(1, pin, 0)  # ... then its rising edge
    jmp(pin, "up")  # DIR high: forward
    jmp(x_dec, "publish")  # backward: x - 1 (either branch lands on publish)
    label("publish")
    mov(y, x)  # the CPU reads y: always a whole count
    wrap()
    label("up")
    mov(x, invert(x))  # x + 1 == ~(~x - 1)
    jmp(x_dec, "inc")
    label("inc")
    mov(x, invert(x))
    jmp("publish")


def axis_wiring(step_pin, dir_pin):
    """Keyword arguments of the two StateMachines of one axis (pure).

    step_gen drives STEP by side-set and DIR by `out pins`; step_count reads
    STEP as `wait pin 0` (in_base) and DIR as `jmp pin`. Both run at the PIO
    clock the segment words are timed in.
    """
    gen = {"freq": PIO_HZ, "sideset_base": step_pin, "out_base": dir_pin}
    count = {"freq": PIO_HZ, "in_base": step_pin, "jmp_pin": dir_pin}
    return gen, count


def start_axis(gen_id, count_id, step_pin, dir_pin, sys_hz=PIO_HZ, run=True):
    """Build, reset and start one axis's generator and counter.

    gen_id/count_id are StateMachine ids (0-3 on PIO0, 4-7 on PIO1; both axes
    on one block load the 19 instructions once), the pins machine.Pin objects.
    sys_hz is machine.freq(): the PIO clock must divide it exactly, a
    fractional divider would jitter every edge. Returns (gen, count):
    feed gen with gen.put(word), read the position with read_count(count).
    """
    if sys_hz % PIO_HZ:
        raise ValueError("system clock is not a multiple of the PIO clock")
    gen_kw, count_kw = axis_wiring(step_pin, dir_pin)
    count = rp2.StateMachine(count_id, step_count, **count_kw)
    count.put(COUNT_BIAS)
    count.exec("pull()")
    count.exec("mov(x, osr)")
    count.exec("mov(y, osr)")
    gen = rp2.StateMachine(gen_id, step_gen, **gen_kw)
    gen.exec(EXEC_MOV_OSR_NULL)  # the entry pad (address 0) then lasts 2 cycles
    count.active(1)  # counting before the first edge can come
    if run:
        gen.active(1)
    return gen, count


def pc_of(mem32, sm_id):
    """Program counter of a state machine (read once at start: above 2**30 the
    register address is a big int, so this must not run in an interrupt)."""
    return mem32[_PIO_BASES[sm_id >> 2] + _SM0_ADDR + (sm_id & 3) * _SM_STRIDE] & 31


def run_together(mem32, sm_ids):
    """Enable state machines of one PIO block on the same clock cycle.

    Two step generators started this way pull their tick words in lockstep
    forever (both words last exactly one tick), so their FIFO levels match.
    """
    block = sm_ids[0] >> 2
    mask = 0
    for i in sm_ids:
        if i >> 2 != block:
            raise ValueError("state machines on different PIO blocks")
        mask |= 1 << (i & 3)
    base = _PIO_BASES[block]
    mem32[base] = mem32[base] | mask | mask << _CLKDIV_RESTART_SHIFT


def halt_axis(gen, entry_pc):
    """Stop step_gen at once and throw away its queued words (faults).

    The machine is stopped, its queued words pulled out by exec and it is
    sent back to its entry with an empty OSR, STEP low; then it runs again and
    waits for the next tick's words. Emitted steps stay counted by step_count.
    Allocates nothing: safe in the timer interrupt.
    """
    gen.active(0)
    gen.restart()  # clears a stalled pull, delay and shift counters
    while gen.tx_fifo():
        gen.exec(EXEC_PULL_NOBLOCK)
    gen.exec(EXEC_JMP | entry_pc)
    gen.exec(EXEC_MOV_OSR_NULL)
    gen.active(1)


def read_count(count):
    """Signed steps emitted since start_axis (forward minus backward).

    A forced `in y, 32` copies the published count (Y) into the ISR and
    autopush moves it to the RX FIFO; the program never pushes by itself, so
    the word read is fresh. No allocation: the word stays below 2**30.
    """
    while count.rx_fifo():
        count.get()
    count.exec(EXEC_IN_Y)
    return count.get() - COUNT_BIAS
