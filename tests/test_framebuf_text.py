"""FrameBuffer.text of the host fake (host_tools/fakes/framebuf.py) against the
real MicroPython framebuf, pixel for pixel.

As in tests/test_drivers.py (FRAMEBUF_SCRIPT, mp_results), one script draws
on both interpreters: on CPython with the fake, on the npm MicroPython with
the real module. Every case (each printable ASCII character, strings across
every edge of a 128x64 and of a 37x13 buffer with a stride, colour 0 over
set pixels, out-of-range characters, a hypothesis batch) goes to ONE
MicroPython run, which also draws the font table the fake derives its glyphs
from (host_tools/fakes/font8x8.py).
"""

import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from host_tools import fakes  # noqa: E402
from host_tools.fakes import font8x8  # noqa: E402

fake_machine, fake_rp2, fake_framebuf = fakes.install()

# Runs on both interpreters with CASES and emit() given: one [label, result]
# per case, the result being the buffer in hex or "EXC <exception type>".
TEXT_SCRIPT = """
import framebuf
def render(case):
    label, w, h, stride, ops = case
    buf = bytearray(stride * ((h + 7) // 8))
    fb = framebuf.FrameBuffer(buf, w, h, framebuf.MONO_VLSB, stride)
    try:
        for op in ops:
            if op[0] == 'fill':
                fb.fill(op[1])
            elif op[0] == 'rect':
                fb.fill_rect(op[1], op[2], op[3], op[4], op[5])
            else:
                fb.text(*op[1:])
    except Exception as e:
        return [label, 'EXC ' + type(e).__name__]
    return [label, buf.hex()]
for case in CASES:
    emit(render(case))
"""

CHECKER = chr(127)  # the glyph of 127 sets pixels in all 8 rows and all 8 columns


def ascii_cases():
    # Each printable character alone, off the origin, and all in one line.
    cases = [("ascii %d" % i, 10, 11, 10, [("text", chr(i), 1, 2)]) for i in range(32, 127)]
    line = "".join(chr(i) for i in range(32, 127))
    cases.append(("ascii line", 8 * len(line), 8, 8 * len(line), [("text", line, 0, 0, 1)]))
    return cases


def edge_cases(tag, w, h, stride, xs, ys, s):
    return [
        ("%s x=%d y=%d" % (tag, x, y), w, h, stride, [("text", s, x, y, 1)]) for x in xs for y in ys
    ]


EDGE_128 = edge_cases(
    "edge128",
    128,
    64,
    128,
    (-41, -20, -9, -8, -7, -1, 0, 1, 3, 100, 120, 121, 127, 128, 130),
    (-9, -8, -7, -3, -1, 0, 5, 56, 57, 63, 64),
    CHECKER + "Hg#" + CHECKER,
)
# 37 x 13 in a buffer 41 bytes wide: the 4 padding columns must stay clear.
EDGE_ODD = edge_cases(
    "odd",
    37,
    13,
    41,
    (-17, -9, -8, -7, -1, 0, 1, 5, 29, 30, 31, 36, 37, 38),
    (-9, -8, -7, -1, 0, 1, 5, 6, 7, 12, 13),
    CHECKER + "jQ" + CHECKER,
)

COLOUR = [
    (
        "colour0 over rect",
        128,
        64,
        128,
        [("rect", 5, 3, 60, 20, 1), ("text", "Mixed 0 ink" + CHECKER, 2, 8, 0)],
    ),
    ("colour0 over fill", 37, 13, 41, [("fill", 1), ("text", CHECKER + "AB", 3, 3, 0)]),
    ("colour0 A over fill", 8, 8, 8, [("fill", 1), ("text", "A", 0, 0, 0)]),
    ("colour0 on blank", 40, 8, 40, [("text", "AB", 0, 0, 0)]),
    ("colour1 over rect", 64, 16, 64, [("rect", 3, 2, 20, 9, 1), ("text", "ok!", 1, 4, 1)]),
    ("colour default", 40, 8, 40, [("text", "c2", 0, 0)]),
    ("colour 2", 40, 8, 40, [("text", "c2", 0, 0, 2)]),
    ("colour -1", 40, 8, 40, [("text", "c2", 0, 0, -1)]),
    ("colour 255", 40, 8, 40, [("text", "c2", 0, 0, 255)]),
    ("colour 65535", 40, 8, 40, [("text", "c2", 0, 0, 65535)]),
    ("colour True", 40, 8, 40, [("text", "c2", 0, 0, True)]),
]

# What the real text draws for things outside 32..127, one string per case.
RANGE_STRINGS = [
    "\n",
    "\t",
    "\x01",
    "\x1f",
    " ",
    CHECKER,
    "\x80",
    "\xb5",
    chr(200),
    chr(255),
    "\u20ac",
    "\U0001f600",
    "a\x00b",
    "\x00",
    "",
    "A\nB",
    "ab\x00",
    b"A",
    b"\x80",
    b"\xff",
    b"\x80\xff",
    b"ab\x00cd",
    b"\x00A",
    b"\x7f",
]
RANGE = [("range %r" % (s,), 48, 8, 48, [("text", s, 0, 0, 1)]) for s in RANGE_STRINGS]

TYPE_ERRORS = [
    ("type bytearray", 16, 8, 16, [("text", bytearray(b"A"), 0, 0)]),
    ("type int", 16, 8, 16, [("text", 5, 0, 0)]),
    ("type None", 16, 8, 16, [("text", None, 0, 0)]),
    ("type float x", 16, 8, 16, [("text", "A", 1.5, 0)]),
    ("type float y", 16, 8, 16, [("text", "A", 0, 2.0)]),
    ("type float c", 16, 8, 16, [("text", "A", 0, 0, 1.0)]),
]

SIZES = [(128, 64, 128), (37, 13, 41), (8, 8, 8), (1, 1, 1), (13, 17, 13), (200, 9, 203)]
STRINGS = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=127), max_size=12),
    st.text(max_size=6),  # any code point: controls, NUL, Latin-1, astral
    st.binary(max_size=6),
)


@st.composite
def random_case(draw):
    w, h, stride = draw(st.sampled_from(SIZES))
    ops = []
    background = draw(st.sampled_from(["blank", "fill", "rect"]))
    if background == "fill":
        ops.append(("fill", 1))
    elif background == "rect":
        ops.append(
            (
                "rect",
                draw(st.integers(-5, w)),
                draw(st.integers(-5, h)),
                draw(st.integers(1, w + 5)),
                draw(st.integers(1, h + 5)),
                1,
            )
        )
    for _ in range(draw(st.integers(1, 3))):
        s = draw(STRINGS)
        x = draw(st.integers(-8 * 6 - 2, w + 2))
        y = draw(st.integers(-10, h + 2))
        c = draw(st.sampled_from([None, 0, 1, 2, -1, 255]))
        ops.append(("text", s, x, y) if c is None else ("text", s, x, y, c))
    return (w, h, stride, ops)


def random_cases(n=300):
    """n cases drawn by hypothesis, the same ones on every run (derandomize)."""
    drawn = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(random_case())
    def collect(case):
        drawn.append(case)

    collect()
    return [("random %d" % i,) + case for i, case in enumerate(drawn)]


RANDOM = random_cases()
CASES = ascii_cases() + EDGE_128 + EDGE_ODD + COLOUR + RANGE + TYPE_ERRORS + RANDOM
SIZE_OF = {c[0]: c[1:4] for c in CASES}
assert len(SIZE_OF) == len(CASES), "case labels must be unique"


@pytest.fixture(scope="module")
def mp_text():
    """{label: result} from the real MicroPython, and the font table it draws."""
    mpy = pytest.importorskip("host_tools.mpy")
    if not mpy.available():
        pytest.fail("MicroPython (npm) is not installed: run `make test`, which installs it")
    src = (
        "import json\ndef emit(v):\n    print(json.dumps(v))\n"
        + "CASES = "
        + ascii(CASES)
        + "\n"
        + TEXT_SCRIPT
        + font8x8.SCRIPT
    )
    out = mpy.run(src, heap=32 * 1024 * 1024, timeout=300)
    results = dict(json.loads(line) for line in out.splitlines() if line.startswith("["))
    assert len(results) == len(CASES)
    return results, font8x8.parse(out)


@pytest.fixture(scope="module")
def host_text():
    got = []
    exec(TEXT_SCRIPT, {"__name__": "cpython", "emit": got.append, "CASES": CASES})
    return dict(got)


def picture(result, label):
    """The buffer as rows of '#' and '.' (padding columns after a '|')."""
    if result.startswith("EXC"):
        return result
    w, h, stride = SIZE_OF[label]
    buf = bytes.fromhex(result)
    rows = []
    for y in range(h):
        row = "".join(
            "#" if buf[(y >> 3) * stride + x] >> (y & 7) & 1 else "." for x in range(stride)
        )
        rows.append(row[:w] + ("|" + row[w:] if stride > w else ""))
    return "\n".join(rows)


def compare(prefix, mp_text, host_text):
    real = mp_text[0]
    labels = [c[0] for c in CASES if c[0].startswith(prefix)]
    assert labels
    bad = [lb for lb in labels if host_text[lb] != real[lb]]
    if bad:
        lb = bad[0]
        pytest.fail(
            "%d of %d cases differ; first %r\nreal:\n%s\nfake:\n%s"
            % (len(bad), len(labels), lb, picture(real[lb], lb), picture(host_text[lb], lb))
        )
    return real


def lit(result, label):
    """Set pixels as a set of (x, y)."""
    w, h, stride = SIZE_OF[label]
    buf = bytes.fromhex(result)
    return {(x, y) for y in range(h) for x in range(w) if buf[(y >> 3) * stride + x] >> (y & 7) & 1}


@pytest.mark.micropython
def test_the_font_table_is_what_micropython_draws(mp_text):
    table = mp_text[1]
    assert font8x8.font() == table
    # Not all blank: 'A' has pixels, ' ' has none.
    assert any(table[65 * 8 : 66 * 8]) and not any(table[32 * 8 : 33 * 8])


@pytest.mark.micropython
def test_every_printable_ascii_char(mp_text, host_text):
    real = compare("ascii", mp_text, host_text)
    # 94 distinct glyphs (space is blank): a shifted or empty table would not do.
    assert len({real["ascii %d" % i] for i in range(33, 127)}) == 94


@pytest.mark.micropython
def test_clipped_at_every_edge_of_a_128x64_buffer(mp_text, host_text):
    real = compare("edge128", mp_text, host_text)
    assert not lit(real["edge128 x=-41 y=0"], "edge128 x=-41 y=0")  # wholly off the left
    assert not lit(real["edge128 x=128 y=0"], "edge128 x=128 y=0")  # wholly off the right
    assert not lit(real["edge128 x=0 y=64"], "edge128 x=0 y=64")
    assert lit(real["edge128 x=-1 y=-7"], "edge128 x=-1 y=-7")  # one row shows


@pytest.mark.micropython
def test_clipped_on_an_odd_size_buffer_with_a_stride(mp_text, host_text):
    real = compare("odd", mp_text, host_text)
    # Drawn up to the right edge, nothing in the 4 padding bytes of each page.
    right = "odd x=36 y=0"
    rows = picture(real[right], right).splitlines()
    assert rows[1][36] == "#" and all(row.endswith("|....") for row in rows)


@pytest.mark.micropython
def test_colour_0_clears_only_the_glyph_pixels(mp_text, host_text):
    real = compare("colour", mp_text, host_text)
    # 'A' in colour 0 over a full 8x8: exactly the pixels of 'A' are cleared.
    a = lit(real["ascii 65"], "ascii 65")  # drawn at (1, 2)
    a_at_0 = {(x - 1, y - 2) for x, y in a}
    cleared = {(x, y) for x in range(8) for y in range(8)} - lit(
        real["colour0 A over fill"], "colour0 A over fill"
    )
    assert cleared == a_at_0 and a_at_0
    assert not lit(real["colour0 on blank"], "colour0 on blank")
    # Any nonzero colour sets, like 1.
    for c in ("default", "2", "-1", "255", "65535", "True"):
        assert real["colour " + c] == real["colour 2"] != "00" * 40


@pytest.mark.micropython
def test_chars_outside_32_to_127(mp_text, host_text):
    real = compare("range", mp_text, host_text)

    def r(s):
        return real["range %r" % (s,)]

    checker = r(CHECKER)
    cell = checker[:16]
    assert cell != "00" * 8
    for s in ("\n", "\t", "\x01", "\x1f", b"\x80", b"\xff", b"\x7f"):
        assert r(s) == checker  # one byte: one checker cell
    for s in ("\x80", "\xb5", chr(200), chr(255), b"\x80\xff"):
        assert r(s) == cell * 2 + "00" * 32  # two UTF-8 bytes, two cells
    assert r("\u20ac") == cell * 3 + "00" * 24
    assert r("\U0001f600") == cell * 4 + "00" * 16
    # The string ends at a NUL.
    assert r("a\x00b")[:16] == r("ab\x00")[:16] != "00" * 8
    assert r("a\x00b")[16:] == "00" * 40  # no 'b'
    assert r("ab\x00")[16:32] != "00" * 8 and r("ab\x00")[32:] == "00" * 32
    assert r("\x00") == r("") == r(b"\x00A") == "00" * 48
    assert r(b"ab\x00cd")[32:] == "00" * 32
    assert r(b"A") == r("A\nB")[:16] + "00" * 40


@pytest.mark.micropython
def test_bad_arguments_raise_type_error(mp_text, host_text):
    real = compare("type", mp_text, host_text)
    assert {real[c[0]] for c in TYPE_ERRORS} == {"EXC TypeError"}


@pytest.mark.micropython
def test_a_hypothesis_batch_of_random_strings_and_positions(mp_text, host_text):
    assert len(RANDOM) >= 200
    real = compare("random", mp_text, host_text)
    # The batch draws something and clips something: not all blank, not all whole.
    assert sum(r != "00" * (len(r) // 2) for lb, r in real.items() if lb.startswith("random")) > 50


def test_the_font_cache_is_written_once_and_whole(tmp_path, monkeypatch):
    table = bytes(range(256)) * 8
    calls = []
    monkeypatch.setattr(font8x8, "derive", lambda: calls.append(1) or table)
    path = tmp_path / "new" / "font8x8.bin"
    assert font8x8.load(path) == table and calls == [1]
    assert path.read_bytes() == table
    assert sorted(p.name for p in path.parent.iterdir()) == ["font8x8.bin"]  # no temp file left
    assert font8x8.load(path) == table and calls == [1]  # read back, not derived again
    path.write_bytes(table[:100])  # a damaged cache is derived again
    assert font8x8.load(path) == table and calls == [1, 1]
    assert path.read_bytes() == table


def test_without_node_the_error_says_make_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no node on it
    with pytest.raises(font8x8.FontUnavailable, match="make setup"):
        font8x8.load(tmp_path / "font8x8.bin")
    assert not (tmp_path / "font8x8.bin").exists()


def test_the_default_cache_is_build_font8x8_bin():
    assert font8x8.CACHE == ROOT / "build" / "font8x8.bin"
