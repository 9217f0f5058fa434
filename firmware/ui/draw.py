"""Drawing helpers on the framebuf API: large digits, text fitting, bars.

Everything here draws with FrameBuffer.text (the built-in 8x8 font: 16
characters to a 128-pixel line), fill_rect, rect and hline, so the same calls
render identically on the device and on the host's framebuf.
"""

from injcore.compat import const

CHAR_W = const(8)  # the built-in font's cell
LINE_CHARS = const(16)
FOOT_LINES = const(2)  # a message or note at the bottom of a screen: at most two lines

# Large digits as seven segments (drawn with fill_rect, cheap on the device).
BIG_W = const(10)  # one digit's width ...
BIG_H = const(20)  # ... and height
BIG_T = const(2)  # segment thickness
BIG_GAP = const(2)  # between digits
BIG_DOT_W = const(4)  # a decimal point's cell: 2 pixels and a 2-pixel gap

# Segment bits: a top, b top right, c bottom right, d bottom, e bottom left,
# f top left, g middle.
_SEGMENTS = (0x3F, 0x06, 0x5B, 0x4F, 0x66, 0x6D, 0x7D, 0x07, 0x7F, 0x6F)
_MINUS = const(0x40)


def big_width(s):
    """Width in pixels of `s` (digits, '.', '-') drawn with big()."""
    w = 0
    for ch in s:
        w += BIG_DOT_W if ch == "." else BIG_W + BIG_GAP
    return w - BIG_GAP if w and s[-1] != "." else w


def big(fb, s, x, y, c=1, h=BIG_H):
    """Draw digits, '.' and '-' of `s` `h` pixels high with their top left at (x, y);
    returns the end x."""
    half = (h - BIG_T) // 2
    for ch in s:
        if ch == ".":
            fb.fill_rect(x, y + h - BIG_T, BIG_T, BIG_T, c)
            x += BIG_DOT_W
            continue
        if ch == "-":
            seg = _MINUS
        elif "0" <= ch <= "9":
            seg = _SEGMENTS[ord(ch) - 48]
        else:
            seg = 0  # anything else is a blank cell
        if seg & 0x01:
            fb.fill_rect(x, y, BIG_W, BIG_T, c)
        if seg & 0x02:
            fb.fill_rect(x + BIG_W - BIG_T, y, BIG_T, half + BIG_T, c)
        if seg & 0x04:
            fb.fill_rect(x + BIG_W - BIG_T, y + half, BIG_T, h - half, c)
        if seg & 0x08:
            fb.fill_rect(x, y + h - BIG_T, BIG_W, BIG_T, c)
        if seg & 0x10:
            fb.fill_rect(x, y + half, BIG_T, h - half, c)
        if seg & 0x20:
            fb.fill_rect(x, y, BIG_T, half + BIG_T, c)
        if seg & 0x40:
            fb.fill_rect(x, y + half, BIG_W, BIG_T, c)
        x += BIG_W + BIG_GAP
    return x


def right(fb, s, y, c=1, x_end=128):
    """Text ending at x_end (right-aligned)."""
    fb.text(s, x_end - len(s) * CHAR_W, y, c)


def center(fb, s, y, c=1):
    fb.text(s, (128 - len(s) * CHAR_W) // 2, y, c)


LIST_Y = const(11)  # a list's first line: its highlight leaves a pixel row under the title


def list_row(fb, row, text, value="", selected=False):
    """Line `row` of a list under a title bar, inverted when selected; `value` right-aligned."""
    y = LIST_Y + row * 9
    c = 1
    if selected:
        fb.fill_rect(0, y - 1, 128, 9, 1)
        c = 0
    fb.text(text, 0, y, c)
    if value:
        right(fb, value, y, c)


def bar(fb, x, y, w, h, part, whole):
    """A frame w x h filled in proportion part/whole (clamped to 0..1)."""
    fb.rect(x, y, w, h, 1)
    if whole > 0 and part > 0:
        inner = (w - 2) * min(part, whole) // whole
        fb.fill_rect(x + 1, y + 1, inner, h - 2, 1)


def inverted(fb, s, y, h=9):
    """A full-width light band with `s` dark on it (titles and fixed footers: a text
    that may need two lines goes through band() or foot())."""
    fb.fill_rect(0, y, 128, h, 1)
    fb.text(s[:LINE_CHARS], 0, y + (h - 8) // 2 + (h - 8) % 2, 0)


def band(fb, lines, y):
    """`lines` dark on a full-width light band from y, 9 pixels a line."""
    fb.fill_rect(0, y, 128, 9 * len(lines), 1)
    for i in range(len(lines)):
        fb.text(lines[i], 0, y + 1 + 9 * i, 0)


def foot(fb, text):
    """The screen's bottom line, inverted; a text that needs two (a message, a note)
    takes the two bottom lines. Longer texts never come here (tests/test_ui.py)."""
    lines = wrap(text)[:FOOT_LINES]
    band(fb, lines, 64 - 9 * len(lines))


def wrap(text, width=LINE_CHARS):
    """Split text into lines of at most `width` characters at spaces."""
    lines = []
    line = ""
    for word in text.split(" "):
        while len(word) > width:  # a word longer than a line is cut
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:width])
            word = word[width:]
        if not line:
            line = word
        elif len(line) + 1 + len(word) <= width:
            line += " " + word
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines
