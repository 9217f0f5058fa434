"""SSD1306 128x64 OLED over I2C, written from the controller's command table.

The bus is passed in (the board builds one machine.I2C for everything on it).
Drawing goes into a preallocated framebuffer (`fb`, a framebuf.FrameBuffer in
MONO_VLSB over `buf`), whose layout is the controller's own in horizontal
addressing mode: byte (y // 8) * 128 + x, bit y % 8. show() sends it whole.

I2C framing: after the address, a control byte says what follows. 0x00 means
"a stream of command bytes", 0x40 "a stream of display data", so a whole
command sequence or a whole frame goes in one transaction.
"""

import framebuf

from board import pins
from injcore.compat import const

WIDTH = const(128)
HEIGHT = const(64)
_PAGES = const(HEIGHT // 8)
_CTRL_CMD = const(0x00)  # Co = 0, D/C# = 0: command bytes follow
_CTRL_DATA = b"\x40"  # Co = 0, D/C# = 1: display data follows

_DISPLAY_OFF = const(0xAE)
_DISPLAY_ON = const(0xAF)
_SET_CONTRAST = const(0x81)
_NORMAL = const(0xA6)
_INVERSE = const(0xA7)

# Power-on sequence, each line one command and its arguments.
_INIT = bytes(
    (
        _CTRL_CMD,
        _DISPLAY_OFF,  # off while configuring
        0xD5,
        0x80,  # display clock: divide ratio 1, oscillator at its reset value
        0xA8,
        HEIGHT - 1,  # multiplex ratio: 64 rows
        0xD3,
        0x00,  # display offset 0
        0x40,  # display start line 0
        0x8D,
        0x14,  # charge pump on (the module has no external VCC)
        0x20,
        0x00,  # memory addressing: horizontal, so one write fills the screen
        0xA1,  # segment remap: column 127 on SEG0 (the usual module mounting)
        0xC8,  # COM scan from COM63 to COM0: together with 0xA1, not mirrored
        0xDA,
        0x12,  # COM pins: alternative configuration, no left/right remap (128x64 glass)
        0x81,
        0xCF,  # contrast
        0xD9,
        0xF1,  # pre-charge: phase 1 1 clock, phase 2 15 clocks (internal charge pump)
        0xDB,
        0x30,  # VCOMH deselect level about 0.83 x VCC
        0xA4,  # display follows RAM content
        _NORMAL,  # not inverted
        0x2E,  # no scrolling
        _DISPLAY_ON,
    )
)

# Before each frame: the whole screen as the write window, so the RAM pointer
# restarts at (0, 0) even if a previous transfer was cut short.
_WINDOW = bytes((_CTRL_CMD, 0x21, 0, WIDTH - 1, 0x22, 0, _PAGES - 1))


class Ssd1306:
    """A 128x64 SSD1306 at `addr` on the given I2C bus.

    Draw on `fb` (framebuf.FrameBuffer, MONO_VLSB) and call show(). Nothing
    is sent until init().
    """

    def __init__(self, i2c, addr=pins.OLED_ADDR):
        self.i2c = i2c
        self.addr = addr
        self.buf = bytearray(WIDTH * HEIGHT // 8)
        self.fb = framebuf.FrameBuffer(self.buf, WIDTH, HEIGHT, framebuf.MONO_VLSB)
        self._frame = (_CTRL_DATA, self.buf)  # built once: show() allocates nothing
        self._cmd1 = bytearray(2)  # control byte + a command
        self._cmd2 = bytearray(3)  # control byte + a command + its argument
        self._cmd1[0] = self._cmd2[0] = _CTRL_CMD

    def init(self):
        """Configure the controller, clear the screen and turn it on."""
        self.i2c.writeto(self.addr, _INIT)
        self.fb.fill(0)
        self.show()

    def show(self):
        """Send the whole frame: 7 + 1025 bytes, about 25 ms at 400 kHz (9 bit
        times per byte); the CPU waits for the bus all that time, so call it
        from the main loop only, never from the tick."""
        self.i2c.writeto(self.addr, _WINDOW)
        self.i2c.writevto(self.addr, self._frame)

    def _command1(self, c):
        cmd = self._cmd1
        cmd[1] = c
        self.i2c.writeto(self.addr, cmd)

    def poweroff(self):
        """Panel off (RAM and settings kept); the charge pump stops too."""
        self._command1(_DISPLAY_OFF)

    def poweron(self):
        self._command1(_DISPLAY_ON)

    def contrast(self, value):
        """0..255; higher is brighter and ages the panel faster."""
        cmd = self._cmd2
        cmd[1] = _SET_CONTRAST
        cmd[2] = max(0, min(255, value))
        self.i2c.writeto(self.addr, cmd)

    def invert(self, on):
        """White on black (False) or black on white (True), RAM untouched."""
        self._command1(_INVERSE if on else _NORMAL)
