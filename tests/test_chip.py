"""The chip tier: the firmware's drivers on an emulated RP2040, against the model around it.

host_tools/chip runs the real MicroPython image for the Pico in rp2040js,
cycle by cycle, inside a model of the machine (host_tools/chip/chip.mjs): the
STEP/DIR pulses counted into positions, the switches from those positions, an
HX711 and an SSD1306 on their pins, the watchdog. These tests check that
model against the firmware's own board drivers, driven from the REPL
(`Chip.exec`), so they hold whatever state the control core (injcore, the
App, main.py) is in: main.py is never put on the chip.

Every test is marked `chip`: where RP2040_DIR lacks the image or the boot ROM
the whole tier is skipped under the one line of host_tools.chip.missing(), and
with INJECTOR_REQUIRE_CHIP=1 that line fails the run instead (tests/conftest.py).
Emulated time is deterministic, so the figures asserted here are exact; each
test keeps its emulated time short (the emulator runs slower than real time).
"""

import pytest

from host_tools.chip import ROOT, Chip, ChipError, figures, machine_model, missing
from host_tools.screenshot import lit, read_png

pytestmark = pytest.mark.chip

GOLDEN = ROOT / "tests" / "golden"


@pytest.fixture(scope="module")
def fw_dir(tmp_path_factory):
    """One build folder per worker: `make mpy` compiles into it once, later chips reuse it."""
    return tmp_path_factory.mktemp("chip_firmware")


def firmware_chip(fw_dir, **kw):
    """A chip with the compiled firmware in its ROMFS and no main.py: the REPL is ours."""
    return Chip.with_firmware(fw_dir, main=False, **kw)


def ints(out):
    return [int(w) for w in out.split()]


# ---- the step generator ---------------------------------------------------------------

_AXES = """
import time
from machine import Pin, freq
from board import pins, pio_step
from injcore import pio_word as W
Pin(pins.NEEDLE_EN, Pin.OUT, value=0)  # drivers on (EN is active low)
Pin(pins.PLUNGER_EN, Pin.OUT, value=0)
ng, nc = pio_step.start_axis(pins.SM_NEEDLE_GEN, pins.SM_NEEDLE_COUNT,
                             Pin(pins.NEEDLE_STEP), Pin(pins.NEEDLE_DIR), freq())
pg, pc = pio_step.start_axis(pins.SM_PLUNGER_GEN, pins.SM_PLUNGER_COUNT,
                             Pin(pins.PLUNGER_STEP), Pin(pins.PLUNGER_DIR), freq())

def move(gen, forward, counts):
    # one tick (two words) per count, as the board's tick feeds the FIFO
    for n in counts:
        s, p = W.tick_words(n)
        gen.put(s | forward)
        gen.put(p | forward)
"""

_READ = """
time.sleep_ms(6)  # every queued tick has run
print(pio_step.read_count(nc), pio_step.read_count(pc))
"""


def test_step_generator_steps_are_counted_alike_by_the_model_and_the_chip(fw_dir):
    """board/pio_step fed with injcore/pio_word ticks from the REPL: the steps the model
    counts on the STEP/DIR pins equal those asked for and the chip's own step_count."""
    model = machine_model()
    n0, p0 = model["needle_start_steps"], model["plunger_start_steps"]
    phases = [
        # (needle: forward?, counts), (plunger: forward?, counts)
        ((1, (300, 211, 0)), (0, (120,))),  # 511 forward over three ticks (one without a step)
        ((0, (200,)), (1, (97, 223))),  # back 200; the plunger reverses
    ]
    with firmware_chip(fw_dir) as chip:
        chip.exec(_AXES)
        want_n = want_p = 0
        fwd = {"needle": 0, "plunger": 0}
        bwd = {"needle": 0, "plunger": 0}
        for (nd, ncounts), (pd, pcounts) in phases:
            chip.exec("move(ng, %d, %r)\nmove(pg, %d, %r)" % (nd, ncounts, pd, pcounts))
            counted_n, counted_p = ints(chip.exec(_READ))
            st = chip.status()
            for axis, d, counts in (("needle", nd, ncounts), ("plunger", pd, pcounts)):
                (fwd if d else bwd)[axis] += sum(counts)
            want_n += sum(ncounts) if nd else -sum(ncounts)
            want_p += sum(pcounts) if pd else -sum(pcounts)
            # the model, from the pins
            assert st["needle"]["pos"] - n0 == want_n
            assert st["plunger"]["pos"] - p0 == want_p
            for axis in ("needle", "plunger"):
                assert (st[axis]["fwd"], st[axis]["bwd"]) == (fwd[axis], bwd[axis]), axis
                assert st[axis]["disabledSteps"] == 0, axis
            # the chip's own counters
            assert (counted_n, counted_p) == (want_n, want_p)
        assert (want_n, want_p) == (311, 200)  # the phases above did move both ways


# ---- switches and inputs --------------------------------------------------------------

_PINS = """
import time
from machine import Pin
from board import pins

def inp(p):
    return Pin(p, Pin.IN, Pin.PULL_UP)  # as the board sets its contacts up

def levels(*names):
    print(' '.join(str(inp(getattr(pins, n)).value()) for n in names))

def steps(axis, forward, n, switch):
    # bit-banged pulses (the PIO is not involved): the switch's level before and after each
    Pin(pins.NEEDLE_EN, Pin.OUT, value=0)
    Pin(pins.PLUNGER_EN, Pin.OUT, value=0)
    Pin(getattr(pins, axis + '_DIR'), Pin.OUT, value=forward)
    s = Pin(getattr(pins, axis + '_STEP'), Pin.OUT, value=0)
    r = inp(getattr(pins, switch))
    out = [r.value()]
    for _ in range(n):
        s.value(1)
        time.sleep_us(5)
        s.value(0)
        time.sleep_us(5)
        out.append(r.value())
    print(' '.join(str(v) for v in out))
"""


def test_switches_follow_the_model_positions_with_the_pins_polarity(fw_dir):
    """Contacts close to GND (closed reads 0); the needle home switch is closed at
    position <= 0, the plunger's rear at <= 0 and front at >= travel; the E-stop is
    normally closed (pressed reads 1); DIAG is active high (board/pins.py)."""
    travel = 3
    model = machine_model(needle_start_steps=2, plunger_start_steps=1, plunger_travel_steps=travel)
    with firmware_chip(fw_dir, model=model) as chip:
        chip.exec(_PINS)
        # needle 2 -> -2 backward, then -2 -> 1 forward: home reads 0 exactly at pos <= 0
        back = ints(chip.exec("steps('NEEDLE', 0, 4, 'NEEDLE_HOME')"))
        assert back == [int(pos > 0) for pos in (2, 1, 0, -1, -2)] == [1, 1, 0, 0, 0]
        fwd = ints(chip.exec("steps('NEEDLE', 1, 3, 'NEEDLE_HOME')"))
        assert fwd == [int(pos > 0) for pos in (-2, -1, 0, 1)] == [0, 0, 0, 1]
        assert chip.status()["needle"]["pos"] == 1
        # plunger 1 -> 0: rear closes; 0 -> travel: front closes there
        rear = ints(chip.exec("steps('PLUNGER', 0, 1, 'PLUNGER_REAR')"))
        assert rear == [1, 0]
        front = ints(chip.exec("steps('PLUNGER', 1, %d, 'PLUNGER_FRONT')" % travel))
        assert front == [1] * travel + [0]
        assert chip.status()["plunger"]["pos"] == travel

        # (pin name, model input, level when idle, level when on)
        table = [
            ("SYRINGE", "syringe", 1, 0),
            ("TRIGGER", "trigger", 1, 0),
            ("PEDAL", "pedal", 1, 0),
            ("ESTOP", "estop", 0, 1),  # normally closed: pressed opens the contact
            ("BTN_UP", "up", 1, 0),
            ("BTN_DOWN", "down", 1, 0),
            ("BTN_OK", "ok", 1, 0),
            ("BTN_BACK", "back", 1, 0),
            ("NEEDLE_DIAG", "needle_stall", 0, 1),
            ("PLUNGER_DIAG", "plunger_stall", 0, 1),
        ]
        read = "levels(%s)" % ", ".join(repr(row[0]) for row in table)
        idle = [row[2] for row in table]
        assert ints(chip.exec(read)) == idle
        for i, (_pin, name, _idle, on) in enumerate(table):  # each input on its own
            chip.set(**{name: True})
            got = ints(chip.exec(read))
            chip.set(**{name: False})
            assert got == idle[:i] + [on] + idle[i + 1 :], name
        assert ints(chip.exec(read)) == idle


# ---- HX711 ----------------------------------------------------------------------------

# Polled at 1 kHz from a hard Timer, as the board's tick polls it: the PIO's RX FIFO (4 words,
# 50 ms) never fills, so the reader never stalls in the middle of a read.
_HX = """
import time
from machine import Timer
from board.hx711 import Hx711
hx = Hx711()
hx.start()

def _poll(t):
    hx.poll()

tick = Timer(freq=1000, mode=Timer.PERIODIC, callback=_poll, hard=True)
"""

_HX_READ = """
n = hx.samples
time.sleep_ms(30)  # two conversions (12.5 ms apart), all after the force was set
print(hx.samples - n, hx.raw, hx.force_mn(), int(hx.saturated), int(hx.disconnected))
"""


def test_hx711_driver_reads_the_model_force(fw_dir):
    """board/hx711.Hx711 (its PIO reader) on the chip gets the model's force as the
    24-bit word the model's HX711 sends and converts it back to mN within a count."""
    per_mn = machine_model()["hx711_counts_per_mn"]
    with firmware_chip(fw_dir) as chip:
        chip.exec(_HX)
        for force in (1234, -4321, 0, 25_000):
            chip.set(force_mn=force)
            new, raw, mn, sat, gone = ints(chip.exec(_HX_READ))
            assert new >= 2 and not gone, "no new sample at %d mN" % force
            assert raw == round(force * per_mn), force  # no x.5 ties among these forces
            # the driver's integer conversion with its default scale (10 mN per 876 counts)
            assert mn == raw * 10 // 876
            assert force - 1 <= mn <= force, (force, mn)
            assert not sat
        # beyond the 24-bit range the HX711 clips and the driver says so
        chip.set(force_mn=200_000)
        _, raw, _, sat, _ = ints(chip.exec(_HX_READ))
        assert (raw, sat) == (0x7FFFFF, 1)
        # the force back to the fluid model: no syringe, no force
        chip.set(force_mn=None)
        chip.run_ms(2)
        assert chip.status()["force_mn"] == 0
        assert ints(chip.exec(_HX_READ))[1] == 0


# ---- SSD1306 --------------------------------------------------------------------------

SCENE = "status_unhomed"
FLIP = (64, 40)  # the pixel a second frame changes

_OLED = """
from machine import I2C, Pin
from board import pins
from board.ssd1306 import Ssd1306
d = Ssd1306(I2C(pins.I2C_ID, sda=Pin(pins.I2C_SDA), scl=Pin(pins.I2C_SCL), freq=pins.I2C_HZ))
d.init()
"""


def golden_frame(name=SCENE):
    return bytes(read_png(GOLDEN / (name + ".png")))


def assert_one_pixel_off(chip, golden, was):
    """Change FLIP on the chip's framebuffer, send the frame again: it no longer matches the
    golden, and differs in that pixel only."""
    n = len(chip.frames())
    chip.exec("d.fb.pixel(%d, %d, %d)\nd.show()" % (FLIP + (1 - was,)))
    frames = chip.frames(start=n)
    assert len(frames) == 1
    changed = frames[0][1]
    assert changed != golden
    diff = [
        (x, y) for y in range(64) for x in range(128) if lit(changed, x, y) != lit(golden, x, y)
    ]
    assert diff == [FLIP]


def test_ssd1306_driver_sends_a_golden_frame_pixel_for_pixel(fw_dir):
    """board/ssd1306 on the chip (init, window, data over I2C1): the model's SSD1306 RAM
    ends up byte for byte as the frame the driver holds, here a golden screenshot
    copied into its buffer; one pixel set through framebuf on the chip is that pixel
    of the PNG (the same MONO_VLSB layout on both sides)."""
    golden = golden_frame()
    with firmware_chip(fw_dir) as chip:
        was = int(
            chip.exec(
                _OLED
                + "d.buf[:] = bytes.fromhex(%r)\nd.show()\nprint(d.fb.pixel(*%r))"
                % (golden.hex(), FLIP)
            )
        )
        frames = chip.frames()
        assert chip.status()["display_on"]
        assert [f for _, f in frames] == [bytes(1024), golden]  # init()'s blank frame, then ours
        assert was == lit(golden, *FLIP)
        assert_one_pixel_off(chip, golden, was)


def test_ui_draws_a_golden_screen_on_the_chip(fw_dir):
    """The ui package draws a scene of host_tools/ui_scenes on the chip, into board/ssd1306's
    framebuffer; the frame the model's SSD1306 receives is the golden PNG, pixel for pixel.
    (The scene builds a core on the loopback rig: injcore must run on the chip.)"""
    golden = golden_frame()
    files = {"ui_scenes.py": (ROOT / "host_tools" / "ui_scenes.py").read_bytes()}
    with firmware_chip(fw_dir, files=files) as chip:
        was = int(
            chip.exec(
                _OLED
                + """
import ui_scenes
core, ui = ui_scenes.scene(%r)
ui.draw(d.fb, 0)
d.show()
print(d.fb.pixel(*%r))
"""
                % (SCENE, FLIP)
            )
        )
        frames = chip.frames()
        assert len(frames) == 2 and frames[0][1] == bytes(1024)
        assert frames[1][1] == golden, "the chip drew %s differently from its golden" % SCENE
        assert was == lit(golden, *FLIP)
        assert_one_pixel_off(chip, golden, was)


# ---- the watchdog ---------------------------------------------------------------------


def test_watchdog_resets_the_chip_unless_fed():
    """machine.WDT(timeout=100): fed every 50 ms it does not fire; not fed, it resets the
    chip 100 ms after the last feed, and the firmware sees a watchdog reset."""
    with Chip() as chip:
        assert chip.exec("import machine; print(machine.reset_cause())").strip() == "1"  # power-on
        chip.exec("""
import time
from machine import WDT
w = WDT(timeout=100)
for _ in range(8):
    time.sleep_ms(50)
    w.feed()
""")
        st = chip.status()
        assert st["resets"] == 0 and st["watchdog"]["expired"] == 0
        assert st["watchdog"]["feeds"] == 8
        assert 49_000 < st["watchdog"]["gap_max_us"] < 52_000
        fed_at = st["t_ms"]  # the last feed came just before the REPL answered
        chip.uart()
        assert chip.wait_uart("reset by the watchdog (expired)", 300)
        st = chip.status()
        assert st["resets"] == 1 and st["watchdog"]["expired"] == 1
        assert 99 < st["t_ms"] - fed_at <= 100  # 100 ms after the last feed
        out = chip.exec("import machine; print(machine.reset_cause(), machine.WDT_RESET)")
        assert out.split() == ["3", "3"]


# ---- a chip that cannot start ---------------------------------------------------------


def test_a_missing_or_wrong_image_is_a_clear_error_not_a_hang(tmp_path, monkeypatch):
    with pytest.raises(ChipError, match=r"^no MicroPython image at .*nope\.uf2: no such file$"):
        Chip(uf2=tmp_path / "nope.uf2")
    text = tmp_path / "text.uf2"
    text.write_text("not an image\n" * 100)
    with pytest.raises(ChipError) as e:
        Chip(uf2=text)
    assert str(e.value) == (
        "the emulated Pico did not start: chip.mjs: the MicroPython image "
        "%s is not a UF2 file (no UF2 blocks in its 1300 bytes)" % text
    )
    with pytest.raises(ChipError, match=r"^no flash image at .*gone\.img: no such file$"):
        Chip(flash=[(0x60000, tmp_path / "gone.img")])
    big = tmp_path / "big.img"
    big.write_bytes(bytes(8192))
    with pytest.raises(ChipError, match=r"not start: chip\.mjs: the flash image .* does not fit"):
        Chip(flash=[(0x1FF000, big)])
    # RP2040_DIR without the files: the same one line as the tier's skip
    monkeypatch.setenv("RP2040_DIR", str(tmp_path))
    why = missing()
    assert why and "RP2040_DIR=%s" % tmp_path in why and "\n" not in why
    with pytest.raises(ChipError) as e:
        Chip()
    assert str(e.value) == why


# ---- memory figures -------------------------------------------------------------------


def test_memory_figures_are_sane(fw_dir):
    """host_tools/chip/figures on the chip: the heap after boot, and each firmware module's
    share of it, imported from ROMFS after its dependencies."""
    with firmware_chip(fw_dir) as chip:
        boot = figures.heap_after_boot(chip)
        mods = figures.module_heap(chip)
        later = figures.heap_after_boot(chip)  # an independent reading, everything imported
    assert 200_000 < boot["size"] < 264 * 1024  # the RP2040 has 264 KB of RAM in all
    assert 0 < boot["free"] < boot["size"] and boot["alloc"] > 0
    assert not mods["errors"], mods["errors"]
    names = set(figures.firmware_modules())
    assert set(mods["modules"]) == names and len(mods["order"]) == len(names)
    for pkg in figures.PACKAGES:
        assert pkg in names and any(n.startswith(pkg + ".") for n in names)
    for name, size in mods["modules"].items():
        assert size > 0, name
        where = mods["files"][name]
        assert where.startswith("/rom/") and where.endswith(".mpy"), (name, where)
    order = mods["order"]
    paths = figures.firmware_modules()
    for i, name in enumerate(order):  # every module after the firmware modules it imports
        assert all(order.index(d) < i for d in figures.module_deps(name, paths[name], paths)), name
    assert order.index("injcore.compat") < order.index("board.pins") < order.index("board.hx711")
    assert mods["total"] < boot["free"] <= mods["free_before"] + 4096
    # the modules' figures account for the heap the imports took, read again afterwards
    # (beyond them only the measuring script's own few globals and interned names)
    assert later["size"] == boot["size"]
    assert mods["total"] <= boot["free"] - later["free"] <= mods["total"] + 4096
