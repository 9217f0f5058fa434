"""The core's ports on the real board: PIO axes, switches, load cell, drivers.

Everything the tick calls here allocates nothing and stays on small ints: it
runs in a hard timer interrupt. See injcore/core.py for the port contract.
"""

from injcore import codes as C
from injcore.compat import const
from injcore.pio_word import FIFO_WORDS

from . import irq, pins, pio_step

SIO_GPIO_IN = const(0xD0000004)  # all GPIO input levels in one read

# Room for one more tick (two words) in a joined TX FIFO.
ROOM_LEVEL = FIFO_WORDS - 2


class AxisPort:
    """One axis: step_gen fed with the tick's words, step_count read back."""

    def __init__(self, gen, count, entry_pc, board=None, halts_field=irq.B_HALTS_N):
        self.gen = gen
        self.count = count
        self.entry_pc = entry_pc
        self.board = board if board is not None else irq.new_board()
        self._halts = halts_field  # the interrupt counts its halts there

    @property
    def halts(self):
        return self.board[self._halts]

    def put(self, seg):
        # The timer tops the FIFO up only while it has room, so this never blocks.
        self.gen.put(seg)

    def emitted(self):
        return pio_step.read_count(self.count)

    def halt(self):
        pio_step.halt_axis(self.gen, self.entry_pc)
        self.board[self._halts] += 1

    def level(self):
        """Words waiting in the TX FIFO."""
        return self.gen.tx_fifo()


def switch_layout():
    """(shift, invert mask) turning the GPIO word into the core's SW_* mask.

    The switch pins in pins.py are consecutive, in the order of the SW_* bits,
    so one shift and one XOR map all of them (closed contacts read 0; the
    normally-closed E-stop reads 1 when pressed, so it is not inverted).
    Raises ValueError at boot if someone rewires them out of order.
    """
    order = (
        pins.NEEDLE_HOME,
        pins.PLUNGER_REAR,
        pins.PLUNGER_FRONT,
        pins.SYRINGE,
        pins.TRIGGER,
        pins.PEDAL,
        pins.ESTOP,
    )
    bits = (
        C.SW_NEEDLE_HOME,
        C.SW_PLUNGER_REAR,
        C.SW_PLUNGER_FRONT,
        C.SW_SYRINGE,
        C.SW_TRIGGER,
        C.SW_PEDAL,
        C.SW_ESTOP,
    )
    base = order[0]
    for k in range(len(order)):
        if order[k] != base + k or bits[k] != 1 << k:
            raise ValueError("switch pins must be consecutive GPIOs in SW_* order")
    invert = (1 << len(order)) - 1 & ~C.SW_ESTOP
    return base, invert


class Inputs:
    """Switches from one GPIO read; force from the HX711 reader.

    The timer interrupt reads them itself (board/irq.py, with the layout put
    into the board array here); these methods are the core's input port for
    a Core.tick() called outside it.
    """

    def __init__(self, mem32, hx711):
        self.mem32 = mem32
        self.hx711 = hx711
        self.shift, self.invert = switch_layout()
        self.mask = (1 << 7) - 1
        self.needle_diag = 1 << pins.NEEDLE_DIAG
        self.plunger_diag = 1 << pins.PLUNGER_DIAG
        self.diag_mask = self.needle_diag | self.plunger_diag
        b = self.board = hx711.board
        b[irq.B_SW_SHIFT] = self.shift
        b[irq.B_SW_INVERT] = self.invert
        b[irq.B_DIAG_N] = self.needle_diag
        b[irq.B_DIAG_P] = self.plunger_diag

    @property
    def gpio(self):
        """The last GPIO word, for the main loop (buttons)."""
        return self.board[irq.B_GPIO]

    def switches(self):
        g = self.mem32[SIO_GPIO_IN]
        self.board[irq.B_GPIO] = g
        sw = ((g >> self.shift) ^ self.invert) & self.mask
        if g & self.diag_mask:  # a stall flag: rare, so the common path pays one test
            if g & self.needle_diag:
                sw |= C.SW_NEEDLE_STALL
            if g & self.plunger_diag:
                sw |= C.SW_PLUNGER_STALL
        return sw

    def force_mn(self):
        return irq.hx_poll(self.board)


class Outputs:
    """Both TMC2209s' EN lines (the E-stop also cuts them in hardware)."""

    def __init__(self, needle_driver, plunger_driver):
        self.needle = needle_driver
        self.plunger = plunger_driver

        self.alarm_level = 0  # the main loop turns it into sound and screen

    def drivers(self, on):
        """EN of both (the interrupt calls it with 0/1 when the tick changes them)."""
        self.needle.enable(on)
        self.plunger.enable(on)

    def alarm(self, level):
        self.alarm_level = level
