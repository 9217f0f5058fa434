"""TMC2209 control pins of one axis: EN (active low) and DIAG (stall flag).

STEP and DIR belong to the PIO step generator (pio_step.py); this class only
switches the driver's output stage and reads its stall flag. The emergency
stop also cuts EN in hardware, so enable(True) is a request, not a guarantee.
"""

from machine import Pin


class Tmc2209:
    """EN and DIAG of one driver, given as GPIO numbers (pins.NEEDLE_EN, ...).

    The driver boots disabled: EN is made an output already high (value=1 is
    written before the output is turned on), so it never glitches low and the
    motor stays unpowered until enable(True).
    """

    def __init__(self, en_pin_no, diag_pin_no):
        self._en = Pin(en_pin_no, Pin.OUT, value=1)
        # DIAG is a push-pull output of the driver; the pull-down keeps a
        # driver board that is unplugged from reading as a stall.
        self._diag = Pin(diag_pin_no, Pin.IN, Pin.PULL_DOWN)

    def enable(self, on):
        """Power the motor (True) or let it go limp (False). Allocation-free."""
        self._en.value(0 if on else 1)

    def enabled(self):
        """Whether EN is driven low (the motor is powered unless the e-stop cut it)."""
        return self._en.value() == 0

    def stalled(self):
        """DIAG high: StallGuard or a driver error flagged. Allocation-free."""
        return self._diag.value() == 1
