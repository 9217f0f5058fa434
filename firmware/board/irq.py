"""The 1 kHz timer interrupt: registers in, the core's tick, registers out.

Everything here is `@micropython.viper` and reads the RP2040's registers
directly (SIO GPIO_IN, the PIO FIFOs, FLEVEL/FSTAT, SM_INSTR, CTRL): a
MicroPython method call costs about 16 us on the chip, a register read a few
cycles. Per tick it reads the switches, drains the HX711's FIFO and turns a
new sample into mN, reads both step counters, runs injcore.tick.tick, halts
the axes if the tick asked (a fault), puts the words and switches the
drivers' EN lines when the tick changed them.

Its state is the board array `B` (layout below), made by new_board() and
filled by attach(); board/ports.py and board/hx711.py read and set it from the
main loop. On CPython and on a MicroPython without the native emitter (the
tests), the decorator is gone and `ptr32` of an address is the fake
machine's register view (host_tools/fakes), so the same code runs on fakes.
"""

# pyright: reportOptionalSubscript=false, reportOptionalCall=false

from array import array

import machine as _machine  # only ptr32 below uses it, off the device

from injcore.compat import const, micropython
from injcore.monitor import after_halt
from injcore.tick import tick

# ---- constants written by `make consts` from codes.py, layout.py: do not edit ----
_SW_NEEDLE_STALL = const(128)
_SW_PLUNGER_STALL = const(256)
_FORCE_INVALID = const(-536870912)
_IN_SW = const(0)
_IN_FORCE = const(1)
_IN_NCOUNT = const(2)
_IN_PCOUNT = const(3)
_OUT_PUT = const(4)
_OUT_HALT = const(5)
_OUT_DRIVERS = const(6)
_OVERRUNS = const(8)
_TICKS = const(15)
_A_WORD = const(15)
_A_WORD2 = const(16)
_NA = const(125)
_PA = const(145)
# ---- end of the written constants ----

# RP2040 registers (datasheet 2.3.1, 3.7), as word indexes from their block
SIO_BASE = const(0xD0000000)
_SIO_GPIO_IN = const(1)
PIO0_BASE = const(0x50200000)
PIO1_BASE = const(0x50300000)
_PIO_CTRL = const(0)
_PIO_FSTAT = const(1)  # RXEMPTY at bit 8 + sm
_PIO_FLEVEL = const(3)  # 8 bits per sm: TX level, then RX level
_PIO_TXF0 = const(4)
_PIO_RXF0 = const(8)
_PIO_SM0_INSTR = const(54)  # 0x0D8
_PIO_SM_STRIDE = const(6)
_CTRL_RESTART_SHIFT = const(4)

# The board array: B_* fields
B_IRQS = const(0)  # interrupts so far (wraps below 2**30)
B_LATE = const(1)  # interrupts that had to catch up (the FIFO lead absorbed them)
B_QUIET = const(2)  # 1: after a flash write, until the FIFOs have their lead again (no overrun)
B_GPIO = const(3)  # the last GPIO word (the main loop's buttons read it)
B_SW_SHIFT = const(4)  # switch pins: GPIO >> shift ^ invert, masked (ports.switch_layout)
B_SW_INVERT = const(5)
B_DIAG_N = const(6)  # GPIO mask of the needle driver's DIAG
B_DIAG_P = const(7)
B_DRIVERS = const(8)  # what the EN lines were last set to
B_HALTS_N = const(9)
B_HALTS_P = const(10)
B_ENTRY_N = const(11)  # step_gen's entry address per axis (halt jumps there)
B_ENTRY_P = const(12)
B_SM_NGEN = const(13)  # state machine numbers on PIO0 (0-3)
B_SM_NCOUNT = const(14)
B_SM_PGEN = const(15)
B_SM_PCOUNT = const(16)
B_SM_HX = const(17)  # on PIO1 (0-3)
B_COUNT_BIAS = const(18)
B_TICKS_MAX = const(19)  # ticks one interrupt may run to catch up (the FIFO's depth)
B_ROOM = const(20)  # TX level at or below which the FIFO has room for a tick
B_HX_RAW = const(21)  # latest signed 24-bit reading
B_HX_AGE = const(22)  # polls since the last sample (capped)
B_HX_SAMPLES = const(23)  # samples so far (wraps below 2**30)
B_HX_OFFSET = const(24)  # force = (raw - offset) * num / den mN
B_HX_NUM = const(25)
B_HX_DEN = const(26)
B_HX_FORCE = const(27)  # the latest sample in mN
B_HX_STALE = const(28)  # polls without a sample before the cell reads as disconnected
B_EXEC_IN_Y = const(29)  # step_count's "publish" instruction (pio_step)
B_EXEC_PULL = const(30)  # step_gen's flush, jump and entry instructions (pio_step)
B_EXEC_JMP = const(31)
B_EXEC_OSR_NULL = const(32)
B_BTN_SHIFT = const(33)  # the operator buttons: consecutive GPIOs from this one, closed = 0
B_BTN_LAST = const(34)  # their pressed mask as last logged
B_BTN_HEAD = const(35)  # changes logged so far (wraps below 2**30)
B_BTN_LOG = const(36)  # BTN_LOG_SIZE entries of (pressed mask, core tick of the change)
BTN_LOG_SIZE = const(8)
B_SIZE = const(B_BTN_LOG + 2 * BTN_LOG_SIZE)

_HX_AGE_MAX = const(1 << 20)
HX_RAW_MAX = const(0x7FFFFF)  # the 24-bit extremes: the input is out of range
HX_RAW_MIN = const(-0x800000)
_COUNT_MASK = const(0x3FFFFFFF)
_READ_POLLS = const(16)  # FSTAT polls for a counter's word (it arrives within a PIO cycle or two)

# Set by attach(): the arrays and the drivers' EN switch the interrupt works on.
_S = None
_R = None
_W = None
_B = None
_drivers = None


def ptr32(x):
    """Outside viper (fakes, tests): an address is the fake machine's register view."""
    if isinstance(x, int):
        return _machine.mem32_view(x)  # pyright: ignore[reportAttributeAccessIssue]
    return x


def new_board():
    b = array("i", bytes(4 * B_SIZE))
    b[B_HX_AGE] = _HX_AGE_MAX  # a cell that never answered reads as disconnected
    b[B_HX_DEN] = 1
    return b


def attach(s, ramps, words, b, drivers):
    """Give the interrupt its arrays and the drivers' EN switch (a callable, on change only)."""
    global _S, _R, _W, _B, _drivers
    _S, _R, _W, _B, _drivers = s, ramps, words, b, drivers


# ---- the parts of a tick ----------------------------------------------------------------


@micropython.viper
def hx_poll(bbuf) -> int:
    """Drain the HX711's FIFO into B (the force in mN into B_HX_FORCE).

    Returns the force for the safety monitor: mN, or FORCE_INVALID when the
    cell is stale (disconnected) or saturated.
    """
    b = ptr32(bbuf)
    pio = ptr32(PIO1_BASE)
    sm = b[B_SM_HX]
    empty = 1 << (8 + sm)
    if pio[_PIO_FSTAT] & empty:
        if b[B_HX_AGE] < _HX_AGE_MAX:
            b[B_HX_AGE] += 1
        if b[B_HX_AGE] > b[B_HX_STALE]:
            return _FORCE_INVALID
    else:
        raw = 0
        while (pio[_PIO_FSTAT] & empty) == 0:
            w = pio[_PIO_RXF0 + sm] & 0xFFFFFF
            raw = w - ((w & 0x800000) << 1)  # 24-bit two's complement
            b[B_HX_SAMPLES] = (b[B_HX_SAMPLES] + 1) & _COUNT_MASK
        b[B_HX_RAW] = raw
        b[B_HX_AGE] = 0
        b[B_HX_FORCE] = int(hx_mn(bbuf, raw))
    raw = b[B_HX_RAW]
    if raw == HX_RAW_MAX or raw == HX_RAW_MIN:
        return _FORCE_INVALID
    return b[B_HX_FORCE]


@micropython.viper
def hx_mn(bbuf, raw: int) -> int:
    """A reading in mN with the board's calibration: (raw - offset) * num / den, floor.

    Computed as (d // den) * num + (d % den) * num // den: exact, and every
    intermediate stays below 2**30 (hx711.calibrate bounds the scale).
    """
    b = ptr32(bbuf)
    d = raw - b[B_HX_OFFSET]
    den = b[B_HX_DEN]
    num = b[B_HX_NUM]
    return (d // den) * num + (d % den) * num // den


@micropython.viper
def read_count(bbuf, sm: int) -> int:
    """Signed steps a step_count machine on PIO0 has seen (see pio_step.read_count)."""
    b = ptr32(bbuf)
    pio = ptr32(PIO0_BASE)
    empty = 1 << (8 + sm)
    stale = 0
    while (pio[_PIO_FSTAT] & empty) == 0:  # a stale word would be an old count
        stale = pio[_PIO_RXF0 + sm]  # noqa: F841  (read to drop it)
    pio[_PIO_SM0_INSTR + _PIO_SM_STRIDE * sm] = b[B_EXEC_IN_Y]
    i = 0
    while i < _READ_POLLS and pio[_PIO_FSTAT] & empty:
        i += 1
    return pio[_PIO_RXF0 + sm] - b[B_COUNT_BIAS]


@micropython.viper
def halt_axis(bbuf, sm: int, entry: int):
    """Stop a step_gen at once, dropping its queued words (pio_step.halt_axis, in registers)."""
    b = ptr32(bbuf)
    pio = ptr32(PIO0_BASE)
    bit = 1 << sm
    pio[_PIO_CTRL] = pio[_PIO_CTRL] & (0xF ^ bit)  # stop it
    pio[_PIO_CTRL] = pio[_PIO_CTRL] | (bit << _CTRL_RESTART_SHIFT)  # clear a stalled pull, delays
    instr = _PIO_SM0_INSTR + _PIO_SM_STRIDE * sm
    shift = 8 * sm
    while (pio[_PIO_FLEVEL] >> shift) & 0xF:
        pio[instr] = b[B_EXEC_PULL]
    pio[instr] = b[B_EXEC_JMP] | entry
    pio[instr] = b[B_EXEC_OSR_NULL]
    pio[_PIO_CTRL] = pio[_PIO_CTRL] | bit


# ---- the interrupt ------------------------------------------------------------------------


@micropython.viper
def on_timer(_timer):
    """Top both FIFOs up to the lead: the PIO's consumption is the motion clock.

    Normally one tick per interrupt; after a late interrupt, the missed ticks
    (the lead kept the motors fed meanwhile). A FIFO found empty means the
    motors were starved: a tick overrun, counted for the core. No allocation.
    """
    sbuf = _S
    bbuf = _B
    rbuf = _R
    wbuf = _W
    s = ptr32(sbuf)
    b = ptr32(bbuf)
    pio = ptr32(PIO0_BASE)
    sio = ptr32(SIO_BASE)
    ngen = b[B_SM_NGEN]
    pgen = b[B_SM_PGEN]
    nshift = 8 * ngen
    pshift = 8 * pgen
    room = b[B_ROOM]
    running = b[B_IRQS]  # the first interrupt fills an empty FIFO: not late
    b[B_IRQS] = (running + 1) & _COUNT_MASK
    lev = pio[_PIO_FLEVEL]
    if running and ((lev >> nshift) & 0xF) == 0 and b[B_QUIET] == 0:
        s[_OVERRUNS] += 1
    n = 0
    n_max = b[B_TICKS_MAX]
    quiet = b[B_QUIET]
    if quiet:
        n_max = 2  # refilling after a flash write: a short interrupt, one tick gained each
    while n < n_max and ((lev >> nshift) & 0xF) <= room and ((lev >> pshift) & 0xF) <= room:
        g = sio[_SIO_GPIO_IN]
        b[B_GPIO] = g
        sw = ((g >> b[B_SW_SHIFT]) ^ b[B_SW_INVERT]) & 127
        if g & b[B_DIAG_N]:
            sw |= _SW_NEEDLE_STALL
        if g & b[B_DIAG_P]:
            sw |= _SW_PLUNGER_STALL
        s[_IN_SW] = sw
        # The buttons' changes, logged with their tick: the main loop replays
        # them, so a press shorter than its longest pass is never lost.
        btn = ((g >> b[B_BTN_SHIFT]) ^ 15) & 15
        if btn != b[B_BTN_LAST]:
            b[B_BTN_LAST] = btn
            head = b[B_BTN_HEAD]
            at = B_BTN_LOG + 2 * (head & (BTN_LOG_SIZE - 1))
            b[at] = btn
            b[at + 1] = s[_TICKS]
            b[B_BTN_HEAD] = (head + 1) & _COUNT_MASK
        s[_IN_FORCE] = int(hx_poll(bbuf))
        s[_IN_NCOUNT] = int(read_count(bbuf, b[B_SM_NCOUNT]))
        s[_IN_PCOUNT] = int(read_count(bbuf, b[B_SM_PCOUNT]))
        tick(sbuf, rbuf, wbuf)
        if s[_OUT_HALT]:
            halt_axis(bbuf, ngen, b[B_ENTRY_N])
            halt_axis(bbuf, pgen, b[B_ENTRY_P])
            b[B_HALTS_N] += 1
            b[B_HALTS_P] += 1
            s[_IN_NCOUNT] = int(read_count(bbuf, b[B_SM_NCOUNT]))
            s[_IN_PCOUNT] = int(read_count(bbuf, b[B_SM_PCOUNT]))
            after_halt(sbuf)
        put = s[_OUT_PUT]
        if put & 1:
            pio[_PIO_TXF0 + ngen] = s[_NA + _A_WORD]
            pio[_PIO_TXF0 + ngen] = s[_NA + _A_WORD2]
        if put & 2:
            pio[_PIO_TXF0 + pgen] = s[_PA + _A_WORD]
            pio[_PIO_TXF0 + pgen] = s[_PA + _A_WORD2]
        on = s[_OUT_DRIVERS]
        if on != b[B_DRIVERS]:
            b[B_DRIVERS] = on
            _drivers(on)
        n += 1
        lev = pio[_PIO_FLEVEL]
    if quiet:
        if n < n_max:
            b[B_QUIET] = 0  # no room left: the FIFOs have their lead again
    elif n > 1 and running:
        b[B_LATE] = (b[B_LATE] + 1) & _COUNT_MASK
