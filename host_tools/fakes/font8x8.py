"""MicroPython's built-in 8x8 font, read off the installed interpreter (host only).

The fake framebuf's ``text`` needs the glyphs of MicroPython's framebuf font.
They are not written down in this repository: the first time they are needed,
the npm MicroPython (host_tools/mpy, node + run.mjs) draws every byte value
0..255 with the real ``FrameBuffer.text`` into an 8x8 MONO_VLSB buffer, and
the 256 x 8 bytes it leaves are kept in build/font8x8.bin (rebuilt when
missing or the wrong size; ``make clean`` deletes it).

Entry ``b`` of the table is what the real ``text`` draws for the byte ``b`` of
a string: 8 bytes, one per column left to right, bit k = row k. The real
``text`` walks the UTF-8 bytes of the string and stops at the first NUL, so
entry 0 is blank and never used; bytes outside 32..127 all get the same
glyph there (that of 127), which the table simply records.
"""

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "font8x8.bin"
SIZE = 256 * 8
MARK = "FONT8X8 "

# Runs on MicroPython: one line, MARK then 256 x 8 bytes in hex.
SCRIPT = (
    """
import framebuf
_buf = bytearray(8)
_fb = framebuf.FrameBuffer(_buf, 8, 8, framebuf.MONO_VLSB)
_hex = []
for _b in range(256):
    _fb.fill(0)
    _fb.text(bytes([_b]), 0, 0, 1)
    _hex.append(''.join('%02x' % v for v in _buf))
print('"""
    + MARK
    + """' + ''.join(_hex))
"""
)


class FontUnavailable(RuntimeError):
    """The font cache is missing and the npm MicroPython is not installed."""


_font = None


def font():
    """The 2048-byte table (bytes), loaded or derived once per process."""
    global _font
    if _font is None:
        _font = load()
    return _font


def parse(stdout):
    """The table from what SCRIPT printed (other lines are ignored)."""
    for line in stdout.splitlines():
        if line.startswith(MARK):
            data = bytes.fromhex(line[len(MARK) :].strip())
            if len(data) != SIZE:
                break
            return data
    raise RuntimeError("font8x8: MicroPython did not print the 256 glyphs:\n" + stdout[-500:])


def derive():
    """Draw the 256 glyphs on the npm MicroPython and return the table."""
    from .. import mpy

    if not mpy.available():
        raise FontUnavailable(
            "the framebuf fake's text() needs MicroPython's 8x8 font, which is derived from "
            "the npm MicroPython into %s; that file is missing and node or "
            "node_modules/@micropython/micropython-webassembly-pyscript is not installed: "
            "run `make setup`" % CACHE
        )
    return parse(mpy.run(SCRIPT, timeout=120))


def load(path=None):
    """The table from the cache file `path` (default build/font8x8.bin); if
    it is missing or damaged, derive it and write the file.

    The file is written to a temporary name in the same directory and renamed
    into place, so a parallel reader sees either no file or the whole file.
    """
    path = CACHE if path is None else Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    if len(data) == SIZE:
        return data
    data = derive()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return data
