"""HX711 load-cell amplifier (channel A, gain 128, 80 samples/s) read by PIO.

A PIO state machine (PIO1, pins.SM_HX711) does the whole serial read: it
waits for DOUT to go low (conversion ready), clocks 24 data bits MSB first on
SCK (side-set), gives the 25th pulse that keeps channel A at gain 128 for the
next conversion, and autopushes the 24-bit word into its RX FIFO. The CPU
never bit-bangs SCK: an SCK held high for more than 60 us powers the HX711
down, which a bit-banged read interrupted by the 1 kHz timer IRQ would do.

The CPU side is poll(), called from the 1 kHz tick: it drains the FIFO, keeps
the latest signed raw value and counts samples, without allocating.

Timing (HX711 datasheet): SCK high >= 0.2 us and < 50 us, SCK low >= 0.2 us,
data valid 0.1 us after a rising edge, first rising edge >= 0.1 us after DOUT
falls. The PIO runs at 1 MHz: 1 us per instruction, so SCK is high 1 us and
low 2 us per bit (the datasheet's typical 1 us, five times the minimum and a
fiftieth of the maximum; slow edges also suit a cable to the handpiece), the
bit is sampled on the falling edge 1 us after the rise, and a whole read takes
25 x 3 us = 75 us of the 12.5 ms between conversions. 1 MHz divides any
whole-MHz system clock exactly (125 at 125 MHz), so the edges do not jitter.
SCK can only stall low (a full RX FIFO stalls the autopushing `in`), never
high, so the PIO cannot power the chip down either.
"""

import time

import rp2
from machine import Pin

from board import irq as board_irq  # not `irq`: a PIO name too
from board import pins as _pins  # not `pins`: the PIO names below include one
from injcore import machine as M
from injcore.compat import const

try:
    from typing import TYPE_CHECKING
except ImportError:  # MicroPython
    TYPE_CHECKING = False
if TYPE_CHECKING:  # the PIO names asm_pio injects, for type checkers only
    from rp2.asm_pio import *  # noqa: F403

PIO_HZ = 1_000_000  # 1 us per PIO cycle (see the module docstring)
SAMPLE_HZ = M.LOAD_CELL_HZ  # RATE pin high on the usual boards
RAW_MAX = board_irq.HX_RAW_MAX  # the 24-bit extremes: the input is out of range
RAW_MIN = board_irq.HX_RAW_MIN
STALE_TICKS = const(50)  # polls without a sample before `disconnected` (50 ms at 1 kHz)

# Calibration placeholders until the rig is calibrated (issue 6): a 5 kg,
# 2 mV/V cell excited at 3.3 V gives 6.6 mV at 49 N; the HX711 spans
# +-0.5 * 3.3 V / 128 over +-2**23 counts, so about 87.6 counts per mN.
DEFAULT_OFFSET = 0
DEFAULT_SCALE_NUM = 10  # mN per count = SCALE_NUM / SCALE_DEN
DEFAULT_SCALE_DEN = 876

_SMALL = const(1 << 30)  # products below this stay MicroPython small ints
_POWER_DOWN_US = const(100)  # SCK high > 60 us powers down; low again resets the chip


def _sleep_us(us):
    sleep = getattr(time, "sleep_us", None)  # None on CPython, whose pins are fakes
    if sleep is not None:
        sleep(us)


# PIO bodies run with only the PIO names as globals: literals, no module constants.
@rp2.asm_pio(
    sideset_init=rp2.PIO.OUT_LOW,  # SCK idles low (high > 60 us = power down)
    in_shiftdir=rp2.PIO.SHIFT_LEFT,  # MSB first
    autopush=True,
    push_thresh=24,
)
def hx711_read():
    wrap_target()
    wait(0, pin, 0).side(0)  # DOUT low: a conversion is ready
    set(x, 23).side(0)  # 24 data bits; also >= 0.1 us from DOUT low to the first rise
    label("bit")
    nop().side(1)  # SCK high 1 cycle: the HX711 shifts the next bit out
    in_(pins, 1).side(0)  # SCK falls; the bit has been valid since 0.1 us after the rise
    jmp(x_dec, "bit").side(0)  # SCK low 2 cycles in all; the 24th bit autopushes
    nop().side(1)  # 25th pulse: channel A, gain 128 for the next conversion
    nop().side(0)  # DOUT is back high before the wait looks at it again
    wrap()


def _field(i):
    """An Hx711 attribute that is the board array's field i."""

    def put(self, v):
        self.board[i] = v

    return property(lambda self: self.board[i], put)


class Hx711:
    """One HX711 read by a PIO state machine; GPIO numbers and SM id from pins.py.

    Its state lives in the board array (board/irq.py, B_HX_*), where the
    timer interrupt keeps it current; `board` is that array (a new one when
    not given). Attributes for the safety monitor and the main loop (plain
    ints and bools, cheap to read): `raw` (latest signed 24-bit reading),
    `samples` (count, wraps below 2**30), `age_ticks` (polls since the last
    sample; starts at its cap, so a cell that never answered reads as
    disconnected), and the properties `disconnected` (no sample for more than
    STALE_TICKS polls) and `saturated` (raw at a 24-bit extreme).
    """

    def __init__(
        self,
        dout_pin_no=_pins.HX711_DOUT,
        sck_pin_no=_pins.HX711_SCK,
        sm_id=_pins.SM_HX711,
        board=None,
    ):
        if sm_id >> 2 != 1:
            raise ValueError("the HX711 reader runs on PIO1 (state machines 4-7)")
        self._dout_no = dout_pin_no
        self._sck_no = sck_pin_no
        self._sm_id = sm_id
        self._sm = None
        b = self.board = board if board is not None else board_irq.new_board()
        b[board_irq.B_SM_HX] = sm_id & 3
        b[board_irq.B_HX_STALE] = STALE_TICKS
        b[board_irq.B_HX_OFFSET] = DEFAULT_OFFSET
        b[board_irq.B_HX_NUM] = DEFAULT_SCALE_NUM
        b[board_irq.B_HX_DEN] = DEFAULT_SCALE_DEN

    raw = _field(board_irq.B_HX_RAW)
    samples = _field(board_irq.B_HX_SAMPLES)
    age_ticks = _field(board_irq.B_HX_AGE)
    offset = _field(board_irq.B_HX_OFFSET)
    scale_num = _field(board_irq.B_HX_NUM)
    scale_den = _field(board_irq.B_HX_DEN)

    def start(self):
        """Reset the chip and start the state machine. Call once, before the tick runs.

        SCK is first driven high for 100 us (power down) and low again, which
        resets the HX711 to channel A, gain 128, and aborts any read a soft
        reset cut in half, so the first word the PIO reads is aligned.
        """
        # A pull-up: a cell unplugged from the board never pulls DOUT low, so
        # it gives no samples (and reads as disconnected) instead of noise.
        dout = Pin(self._dout_no, Pin.IN, Pin.PULL_UP)
        sck = Pin(self._sck_no, Pin.OUT, value=1)
        _sleep_us(_POWER_DOWN_US)
        sck.value(0)
        sm = rp2.StateMachine(self._sm_id, hx711_read, freq=PIO_HZ, in_base=dout, sideset_base=sck)
        sm.active(1)
        self._sm = sm
        return sm

    def stop(self):
        if self._sm is not None:
            self._sm.active(0)

    def poll(self):
        """Drain the RX FIFO into `raw` (board_irq.hx_poll; the timer interrupt calls it itself).

        Returns True if a new sample arrived. The FIFO holds 4 words (50 ms);
        when it is full the PIO waits with SCK low, so nothing breaks, and the
        latest word is the one kept.
        """
        before = self.samples
        board_irq.hx_poll(self.board)
        return self.samples != before

    @property
    def disconnected(self):
        return self.age_ticks > STALE_TICKS

    @property
    def saturated(self):
        return self.raw == RAW_MAX or self.raw == RAW_MIN

    def calibrate(self, offset, scale_num, scale_den):
        """Set force = (raw - offset) * scale_num / scale_den mN.

        The scale is limited so force_mn's integer arithmetic stays within
        MicroPython's small ints (no allocation): scale_den * |scale_num| and
        |scale_num| / scale_den * 2**25 below 2**30.
        """
        if scale_den <= 0 or scale_num == 0:
            raise ValueError("scale_num must be nonzero and scale_den positive")
        if scale_den * abs(scale_num) >= _SMALL or abs(scale_num) >= 32 * scale_den:
            raise ValueError("scale {}/{} too large".format(scale_num, scale_den))
        if not RAW_MIN <= offset <= RAW_MAX:
            raise ValueError("offset {} outside the 24-bit range".format(offset))
        self.offset = offset
        self.scale_num = scale_num
        self.scale_den = scale_den

    def tare(self):
        """The current reading becomes zero force."""
        self.offset = self.raw

    def force_mn(self):
        """Force on the cell in millinewtons (integer, floor; board_irq.hx_mn). No allocation."""
        return board_irq.hx_mn(self.board, self.raw)
