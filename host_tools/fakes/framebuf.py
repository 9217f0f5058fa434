"""Host fake of MicroPython's ``framebuf`` for CPython tests: MONO_VLSB only.

Install it as ``sys.modules["framebuf"]`` on CPython (MicroPython, the
WebAssembly build included, has the real module). It draws into the buffer it
is given, bit for bit as MicroPython does: pixel (x, y) is bit y % 8 of byte
(y // 8) * stride + x; any nonzero colour sets the bit. Out-of-range pixels
are clipped (a pixel read outside returns None). tests/test_drivers.py runs
the same drawing on the real interpreter and compares the bytes.

``text`` draws MicroPython's built-in 8x8 font, whose glyphs are not written
down here but read off the real interpreter once and cached in
build/font8x8.bin (see font8x8.py; deriving them needs the npm MicroPython of
`make setup`). tests/test_framebuf_text.py compares it with the real one.

Left out: the other pixel formats, ``ellipse`` and ``poly``.
"""

import operator

from . import font8x8

MONO_VLSB = 0
MVLSB = MONO_VLSB
RGB565 = 1
GS4_HMSB = 2
MONO_HLSB = 3
MONO_HMSB = 4
GS2_HMSB = 5
GS8 = 6


class FrameBuffer:
    def __init__(self, buffer, width, height, format, stride=None):
        if format != MONO_VLSB:
            raise NotImplementedError("the framebuf fake only does MONO_VLSB")
        if stride is None:
            stride = width
        if width < 1 or height < 1 or stride < width:
            raise ValueError("invalid size")
        if len(buffer) < stride * ((height + 7) // 8):
            raise ValueError("buffer too small")
        self.buf = buffer
        self.width = width
        self.height = height
        self.stride = stride

    # -- the two primitives everything else is made of ----------------------

    def _get(self, x, y):
        return (self.buf[(y >> 3) * self.stride + x] >> (y & 7)) & 1

    def _span(self, x, y, w, h, c):
        """Set or clear a rectangle already clipped to the buffer."""
        buf = self.buf
        stride = self.stride
        for yy in range(y, y + h):
            bit = 1 << (yy & 7)
            row = (yy >> 3) * stride
            for i in range(row + x, row + x + w):
                if c:
                    buf[i] |= bit
                else:
                    buf[i] &= ~bit & 0xFF

    # -- the public API --------------------------------------------------------

    def fill(self, c):
        self._span(0, 0, self.width, self.height, c)

    def pixel(self, x, y, c=None):
        if not (0 <= x < self.width and 0 <= y < self.height):
            return None
        if c is None:
            return self._get(x, y)
        self._span(x, y, 1, 1, c)
        return None

    def fill_rect(self, x, y, w, h, c):
        if w < 1 or h < 1 or x + w <= 0 or y + h <= 0 or x >= self.width or y >= self.height:
            return
        x_end = min(self.width, x + w)
        y_end = min(self.height, y + h)
        x = max(x, 0)
        y = max(y, 0)
        self._span(x, y, x_end - x, y_end - y, c)

    def hline(self, x, y, w, c):
        self.fill_rect(x, y, w, 1, c)

    def vline(self, x, y, h, c):
        self.fill_rect(x, y, 1, h, c)

    def rect(self, x, y, w, h, c, f=False):
        if f:
            self.fill_rect(x, y, w, h, c)
            return
        self.fill_rect(x, y, w, 1, c)
        self.fill_rect(x, y + h - 1, w, 1, c)
        self.fill_rect(x, y, 1, h, c)
        self.fill_rect(x + w - 1, y, 1, h, c)

    def line(self, x1, y1, x2, y2, c):
        """Bresenham along the longer axis; on a tie the minor axis steps.
        The end point is drawn last, on its own."""
        dx, sx = abs(x2 - x1), 1 if x2 > x1 else -1
        dy, sy = abs(y2 - y1), 1 if y2 > y1 else -1
        steep = dy > dx
        # Walk along the major axis (a, stepping sa), the minor one is b.
        if steep:
            a, b, da, db, sa, sb = y1, x1, dy, dx, sy, sx
        else:
            a, b, da, db, sa, sb = x1, y1, dx, dy, sx, sy
        err = 2 * db - da
        for _ in range(da):
            px, py = (b, a) if steep else (a, b)
            self.pixel(px, py, c)
            while err >= 0:
                b += sb
                err -= 2 * da
            a += sa
            err += 2 * db
        self.pixel(x2, y2, c)

    def blit(self, fbuf, x, y, key=-1, palette=None):
        """Copy `fbuf` (another MONO_VLSB FrameBuffer) with its corner at (x, y).

        Source pixels equal to `key` are skipped; `palette` (a FrameBuffer one
        pixel high) maps a source value v to palette.pixel(v, 0).
        """
        if not isinstance(fbuf, FrameBuffer):
            raise NotImplementedError("the framebuf fake blits FrameBuffers only")
        if x >= self.width or y >= self.height or -x >= fbuf.width or -y >= fbuf.height:
            return
        for ty in range(max(0, y), min(self.height, y + fbuf.height)):
            for tx in range(max(0, x), min(self.width, x + fbuf.width)):
                c = fbuf._get(tx - x, ty - y)
                if palette is not None:
                    c = palette._get(c, 0)
                if c != key:
                    self._span(tx, ty, 1, 1, c)

    def scroll(self, xstep, ystep):
        """Move the content by (xstep, ystep); what is uncovered keeps its old pixels."""
        w, h = self.width, self.height
        if xstep < 0:
            xs = range(0, w + xstep)
        else:
            xs = range(w - 1, xstep - 1, -1)
        if ystep < 0:
            ys = range(0, h + ystep)
        else:
            ys = range(h - 1, ystep - 1, -1)
        # Visit the destination from the side the content moves towards, so
        # every source pixel is read before it is overwritten.
        for y in ys:
            for x in xs:
                self._span(x, y, 1, 1, self._get(x - xstep, y - ystep))

    def text(self, s, x, y, c=1):
        """Draw `s` (str or bytes) in the 8x8 font with its top-left corner at (x, y).

        As MicroPython does: each UTF-8 byte of `s` is one 8-pixel-wide cell,
        the string ends at its first NUL, bytes outside 32..127 all draw the
        font's glyph of 127 (a checkerboard), only the glyph's set pixels are
        drawn (colour 0 clears them, any other colour sets them, the
        background is left alone), and each pixel is clipped on its own.
        """
        if isinstance(s, str):
            s = s.encode("utf-8", "surrogatepass")
        elif not isinstance(s, bytes):
            raise TypeError("can't convert '%s' object to str implicitly" % type(s).__name__)
        x = operator.index(x)
        y = operator.index(y)
        c = operator.index(c)
        nul = s.find(0)
        if nul >= 0:
            s = s[:nul]
        table = font8x8.font()
        width, height, stride, buf = self.width, self.height, self.stride, self.buf
        # Rows of the cell inside the buffer, with their byte offset and bit.
        rows = [
            (k, ((y + k) >> 3) * stride, 1 << ((y + k) & 7))
            for k in range(8)
            if 0 <= y + k < height
        ]
        for b in s:
            glyph = table[b * 8 : b * 8 + 8]
            for j in range(8):
                xx = x + j
                if not 0 <= xx < width:
                    continue
                column = glyph[j]
                for k, row, bit in rows:
                    if column >> k & 1:
                        if c:
                            buf[row + xx] |= bit
                        else:
                            buf[row + xx] &= ~bit & 0xFF
            x += 8

    def ellipse(self, *args):
        raise NotImplementedError("framebuf fake: ellipse() is not implemented")

    def poly(self, *args):
        raise NotImplementedError("framebuf fake: poly() is not implemented")


def FrameBuffer1(buffer, width, height, stride=None):  # noqa: N802  (MicroPython's name)
    """The old name: a MONO_VLSB FrameBuffer."""
    return FrameBuffer(buffer, width, height, MONO_VLSB, stride)
