"""The board app (firmware/board/app.py and ports.py) on the host fakes.

machine, rp2 and framebuf are the recording fakes of host_tools/fakes. The
step generators are replaced after boot by a small live model of a PIO state
machine with its FIFO (LivePio below): words queue up to the joined FIFO's 8,
each simulated millisecond the PIO executes one tick's two words, and the
counter reports the steps executed. The test plays the PIO clock and fires
the fake hard timer, so the app's FIFO policy, overrun counting, halt flush,
switch mapping and boot safety are checked without hardware or real time.
"""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "firmware"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from host_tools import fakes  # noqa: E402
from host_tools.simfs import SimFS  # noqa: E402

fake_machine, fake_rp2, fake_framebuf = fakes.install()

from board import app as A  # noqa: E402
from board import pins, pio_step, ports  # noqa: E402
from injcore import codes as C  # noqa: E402
from injcore import pio_word as pw  # noqa: E402
from ui import draw as D  # noqa: E402

M = fake_machine


class LivePio:
    """A step_gen with a joined TX FIFO and its step_count, executed tick by tick."""

    def __init__(self, sm):
        self.sm = sm  # the recording fake, still sees active/exec/restart
        self.fifo = []
        self.count = 0  # executed signed steps: what step_count reports
        self.starved = 0

    # step_gen side
    def put(self, seg):
        words = [seg] if isinstance(seg, int) else list(seg)  # TXF writes one word
        assert len(self.fifo) + len(words) <= pw.FIFO_WORDS, "put() would block in the interrupt"
        self.fifo.extend(words)

    def tx_fifo(self):
        return len(self.fifo)

    def active(self, v=None):
        return self.sm.active(v)

    def restart(self):
        self.sm.restart()

    def exec(self, op):
        self.sm.exec(op)
        if op == pio_step.EXEC_PULL_NOBLOCK and self.fifo:
            self.fifo.pop(0)

    def run_tick(self):
        """One millisecond of PIO time: the next two words, or a stall."""
        if len(self.fifo) < 2:
            self.starved += 1
            return
        for w in (self.fifo.pop(0), self.fifo.pop(0)):
            d, n, _t = pw.decode(w)
            self.count += n if d else -n

    # step_count side
    def rx_fifo(self):
        return 0

    def get(self):
        return self.count + pio_step.COUNT_BIAS


class Rig:
    """Boots the app on the fakes and plays PIO time, switches and the timer."""

    def __init__(
        self,
        needle_start=3000,
        plunger_start=20000,
        reset_cause=M.PWRON_RESET,
        fs=None,
        confirmed=True,
        display=True,
    ):
        M.set_reset_cause(reset_cause)
        M.set_input(pins.ESTOP, 0)  # normally closed: released
        # The SSD1306 on the I2C bus, as on every board that may fire (app.py refuses to
        # without one); .writes are its transactions.
        self.oled = M.add_i2c_device(pins.OLED_ADDR, bus=pins.I2C_ID) if display else None
        self.fs = fs if fs is not None else SimFS()
        self.app = A.boot(fs=self.fs)
        if confirmed:  # as after an engineer confirmed the defaults once
            self.app.core.unconfirmed = False
        self.timer = M.timers()[-1]
        self.live = {}
        for name, gen, count in (
            ("needle", pins.SM_NEEDLE_GEN, pins.SM_NEEDLE_COUNT),
            ("plunger", pins.SM_PLUNGER_GEN, pins.SM_PLUNGER_COUNT),
        ):
            port = getattr(self.app, name)
            live = LivePio(port.gen)
            port.gen = live
            port.count = live  # read_count: exec(in y) then get()
            live.exec = self._exec_both(live)
            fake_rp2.bind(gen, live)  # the interrupt reads and writes the PIO's registers
            fake_rp2.bind(count, live)
            self.live[name] = live
        self.start = {"needle": needle_start, "plunger": plunger_start}
        self.syringe = False
        self.model_switches = True  # home/rear/syringe switches follow the motors
        self.load_cell = True  # the HX711 delivers samples
        self.update_switches()

    @staticmethod
    def _exec_both(live):
        ex = LivePio.exec

        def exec_(op):
            if op == pio_step.EXEC_IN_Y:
                return None  # the counter publishes on request; get() reads it
            return ex(live, op)

        return exec_

    def motor(self, name):
        return self.start[name] + self.live[name].count

    def update_switches(self):
        if not self.model_switches:
            return
        M.set_input(pins.NEEDLE_HOME, 0 if self.motor("needle") <= 0 else 1)
        M.set_input(pins.PLUNGER_REAR, 0 if self.motor("plunger") <= 0 else 1)
        M.set_input(pins.SYRINGE, 0 if self.syringe else 1)

    def ms(self, n=1, fire=True):
        for _ in range(n):
            for live in self.live.values():
                live.run_tick()
            M.advance_ms(1)
            if self.load_cell and M.now_ms() % 12 == 0:  # the HX711's 80 samples/s
                fake_rp2.StateMachine(pins.SM_HX711).rx.append(0)
            self.update_switches()
            if fire:
                self.timer.fire()
            self.app.service(M.now_ms() & 0x3FFFFFFF)

    def press(self, pin, hold_ms=60):
        M.set_input(pin, 0)
        self.ms(hold_ms)
        M.set_input(pin, 1)
        self.ms(30)


@pytest.fixture(autouse=True)
def fresh_fakes():
    M.reset_fake()
    fake_rp2.reset()
    yield


@pytest.mark.hazard("H3")
def test_boot_is_safe_drivers_disabled_first_and_nothing_moves():
    rig = Rig()
    app = rig.app
    # EN lines were driven high (disabled) and never low.
    assert set(M.driven(pins.NEEDLE_EN)) == {1}
    assert set(M.driven(pins.PLUNGER_EN)) == {1}
    # The hard timer at 1 kHz calls on_timer; the watchdog is armed.
    t = rig.timer
    assert (t.mode, t.freq, t.hard) == (M.Timer.PERIODIC, 1000, True)
    assert M.watchdog() is not None
    # Even with the trigger held, a second of ticks moves nothing.
    M.set_input(pins.TRIGGER, 0)
    rig.ms(1000)
    assert rig.live["needle"].count == rig.live["plunger"].count == 0
    assert app.core.state == C.ST_UNHOMED
    assert set(M.driven(pins.NEEDLE_EN)) == {1}


@pytest.mark.hazard("H6")
def test_switch_word_maps_onto_the_core_bits():
    rig = Rig()
    rig.model_switches = False
    core = rig.app.core
    rig.ms(2)
    assert core.switches == 0  # open contacts, E-stop closed: nothing
    for pin, bit in (
        (pins.NEEDLE_HOME, C.SW_NEEDLE_HOME),
        (pins.PLUNGER_REAR, C.SW_PLUNGER_REAR),
        (pins.PLUNGER_FRONT, C.SW_PLUNGER_FRONT),
        (pins.TRIGGER, C.SW_TRIGGER),
        (pins.PEDAL, C.SW_PEDAL),
    ):
        M.set_input(pin, 0)
        rig.ms(1)
        assert core.switches == bit, pin
        M.set_input(pin, 1)
    M.set_input(pins.ESTOP, 1)  # normally closed: open = pressed or cut wire
    rig.ms(1)
    assert core.switches & C.SW_ESTOP and core.state == C.ST_FAULT


@pytest.mark.hazard("H8")
def test_fifo_is_kept_at_the_lead_and_a_late_interrupt_catches_up():
    rig = Rig()
    rig.ms(1)
    # The first interrupt fills the FIFO: 4 ticks of words.
    assert rig.live["needle"].tx_fifo() == pw.FIFO_WORDS
    rig.live["needle"].starved = 0  # the PIO waited for that first fill
    ticks = rig.app.core.ticks
    rig.ms(10)
    assert rig.app.core.ticks == ticks + 10  # one tick per interrupt, locked to the PIO
    assert rig.app.late == 0 and rig.app.core.overruns == 0
    # Two interrupts lost (flash write, say): the lead keeps the PIO fed, the
    # next interrupt runs the missed ticks.
    rig.ms(2, fire=False)
    ticks = rig.app.core.ticks
    rig.ms(1)
    assert rig.app.core.ticks == ticks + 3
    assert rig.app.late == 1 and rig.app.core.overruns == 0
    assert rig.live["needle"].starved == 0
    # Four lost: the FIFO ran dry, the motors stalled: that is an overrun.
    rig.ms(5, fire=False)
    rig.ms(1)
    assert rig.app.core.overruns == 1
    assert rig.live["needle"].starved >= 1


def test_operator_homes_from_the_menu_and_zero_is_where_the_switch_closed():
    rig = Rig()
    rig.ms(50)
    rig.press(pins.BTN_OK)  # the menu opens on Home while not homed
    core = rig.app.core
    assert core.state == C.ST_UNHOMED and rig.app.ui.screen_name() == "menu"
    rig.press(pins.BTN_OK)
    assert core.state == C.ST_HOMING
    assert set(M.driven(pins.NEEDLE_EN)) == {0, 1}  # enabled for homing
    for _ in range(40):
        rig.ms(500)
        if core.state != C.ST_HOMING:
            break
    assert core.state == C.ST_READY and core.homed
    rig.ms(pw.FIFO_TICKS + 1)  # the queued settle steps
    assert rig.motor("needle") == 0 and rig.motor("plunger") == 0
    assert core.needle.pos == 0 and core.plunger.pos == 0
    assert core.needle.emitted() == 0 and core.plunger.emitted() == 0


@pytest.mark.hazard("H6")
def test_a_fault_flushes_the_queued_words_at_once():
    rig = Rig()
    rig.ms(50)
    rig.press(pins.BTN_OK)
    rig.press(pins.BTN_OK)  # menu, Home
    rig.ms(20)  # seeking home: words with steps queued
    live = rig.live["needle"]
    assert any(pw.decode(w)[1] for w in live.fifo)
    M.set_input(pins.ESTOP, 1)
    rig.ms(1)
    core = rig.app.core
    assert core.state == C.ST_FAULT and core.fault == C.F_ESTOP
    assert not any(pw.decode(w)[1] for w in live.fifo)  # only pad words after the flush
    assert M.pin_level(pins.NEEDLE_EN) == 1 and M.pin_level(pins.PLUNGER_EN) == 1
    execs = live.sm.execs
    assert pio_step.EXEC_JMP | rig.app.needle.entry_pc in execs
    assert execs[-1] == pio_step.EXEC_MOV_OSR_NULL
    before = live.count
    rig.ms(10)
    assert live.count == before  # nothing moves after the fault
    assert rig.app.needle.halts == 1


@pytest.mark.hazard("H3", "H6")
def test_fault_sounds_the_alarm_and_ok_acknowledges():
    rig = Rig()
    rig.ms(30)
    M.set_input(pins.ESTOP, 1)
    rig.ms(5)
    assert rig.app.buzzer.playing
    assert rig.app.ui.screen_name() == "alarm"
    rig.press(pins.BTN_OK)  # refused while the stop is still pressed
    assert rig.app.core.state == C.ST_FAULT
    M.set_input(pins.ESTOP, 0)
    rig.press(pins.BTN_OK)
    assert rig.app.core.state == C.ST_UNHOMED  # homing is needed again
    assert rig.app.ui.screen_name() == "status"


@pytest.mark.hazard("H8")
@pytest.mark.parametrize(
    "cause, scratch0, scratch4, expected",
    [
        (M.PWRON_RESET, 0, 0, C.RC_POWER_ON),
        (M.PWRON_RESET, A._BOOT_MAGIC, 0, C.RC_SOFT),
        (M.WDT_RESET, A._BOOT_MAGIC, A._WDT_ENABLE_MAGIC, C.RC_WATCHDOG),
        (M.WDT_RESET, A._BOOT_MAGIC, 0xB007C0D3, C.RC_HARD),
    ],
)
def test_reset_cause(cause, scratch0, scratch4, expected):
    M.set_reset_cause(cause)
    M.mem32[A._WATCHDOG_SCRATCH0] = scratch0
    M.mem32[A._WATCHDOG_SCRATCH4] = scratch4
    assert A.reset_cause() == expected
    assert M.mem32[A._WATCHDOG_SCRATCH0] == A._BOOT_MAGIC


@pytest.mark.hazard("H8")
def test_watchdog_reset_reaches_the_core():
    M.set_reset_cause(M.WDT_RESET)
    M.mem32[A._WATCHDOG_SCRATCH4] = A._WDT_ENABLE_MAGIC
    rig = Rig(reset_cause=M.WDT_RESET)
    assert rig.app.core.reset_cause == C.RC_WATCHDOG
    assert rig.app.core.notice == C.N_WATCHDOG_RESET


@pytest.mark.hazard("H8")
def test_watchdog_is_fed_only_while_the_tick_runs():
    rig = Rig()
    wdt = M.watchdog()
    rig.ms(100)
    fed = wdt.feeds
    assert fed > 0
    for _ in range(50):  # timer dead: the main loop alone must not feed
        M.advance_ms(1)
        rig.app.service(M.now_ms())
    assert wdt.feeds == fed


def test_stop_leaves_everything_disabled():
    rig = Rig()
    rig.ms(5)
    rig.app.stop()
    assert M.pin_level(pins.NEEDLE_EN) == 1 and M.pin_level(pins.PLUNGER_EN) == 1
    assert rig.timer.callback is None or not rig.timer.active
    assert M.mem32[A._WATCHDOG_CTRL] & A._WATCHDOG_ENABLE == 0


def test_switch_layout_refuses_out_of_order_pins(monkeypatch):
    monkeypatch.setattr(pins, "PEDAL", 27)
    with pytest.raises(ValueError):
        ports.switch_layout()


# -- on the real MicroPython: the interrupt path allocates nothing ----------------

ON_MICROPYTHON = r"""
import gc
import machine
from array import array
machine.set_input(16, 0)  # E-stop released (normally closed)
from board import app as A
from board import pio_step
from injcore import codes as C


class Pio:
    # step_gen + step_count without recording: a ring of 8 words, no allocation
    def __init__(self):
        self.ring = array('I', [0] * 8)
        self.head = 0
        self.n = 0
        self.count = 0
        self.on = 1

    def put(self, word):  # a write to the TX FIFO register
        self.ring[(self.head + self.n) & 7] = word
        self.n += 1

    def tx_fifo(self):
        return self.n

    def rx_fifo(self):
        return 0

    def get(self):
        return self.count + pio_step.COUNT_BIAS

    def active(self, v=None):
        if v is not None:
            self.on = v
        return self.on

    def restart(self):
        pass

    def exec(self, op):
        if op == pio_step.EXEC_PULL_NOBLOCK and self.n:
            self.head = (self.head + 1) & 7
            self.n -= 1

    def run_tick(self):
        for k in range(2):
            if self.n:
                w = self.ring[self.head]
                c = (w >> 1) & 511
                self.count += c if w & 1 else -c
                self.head = (self.head + 1) & 7
                self.n -= 1


class QuietPin:
    # the fake Pin logs every write (that allocates); the device's does not
    def __init__(self):
        self.v = 1

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v


a = A.App()
a.needle_driver._en = QuietPin()
a.plunger_driver._en = QuietPin()
import rp2

for port, gen, count in ((a.needle, 0, 1), (a.plunger, 2, 3)):
    p = Pio()
    port.gen = p
    port.count = p
    rp2.bind(gen, p)  # the interrupt works on the PIO's registers
    rp2.bind(count, p)
gens = (a.needle.gen, a.plunger.gen)

hx = rp2.StateMachine(4)


def run(ms):
    worst = 0
    total = 0
    for i in range(ms):
        gens[0].run_tick()
        gens[1].run_tick()
        if i % 12 == 0:
            hx.rx.append(0)  # an HX711 sample (allocates here, outside the measurement)
        m0 = gc.mem_alloc()
        a.on_timer(None)
        d = gc.mem_alloc() - m0
        total += d
        if d > worst:
            worst = d
    return total, worst


res = {}
run(10)
res['idle'] = run(300)
a.core.start_homing()
run(5)
res['homing'] = run(300)
res['moved'] = gens[0].count
machine.set_input(16, 1)  # E-stop: fault, halt, flush inside the interrupt
gens[0].run_tick(); gens[1].run_tick()


def one_tick():  # measured inside a function: a new global would grow the module's dict
    m0 = gc.mem_alloc()
    a.on_timer(None)
    return gc.mem_alloc() - m0


res['fault'] = (one_tick(), a.core.state == C.ST_FAULT, a.needle_driver._en.v)
res['after'] = run(100)
print(res)
"""


def test_the_interrupt_path_allocates_nothing_on_micropython():
    from host_tools import mpy

    if not mpy.available():
        pytest.fail("MicroPython (npm) is not installed: run `make test`, which installs it")
    out = mpy.run(
        ON_MICROPYTHON,
        {
            ROOT / "host_tools" / "fakes" / "machine.py": "/lib/machine.py",
            ROOT / "host_tools" / "fakes" / "rp2.py": "/lib/rp2.py",
            ROOT / "firmware" / "board": "/lib/board",
            ROOT / "firmware" / "ui": "/lib/ui",
            ROOT / "firmware" / "injcore": "/lib/injcore",
        },
        timeout=120,
    )
    res = eval(out.strip().splitlines()[-1])  # a dict of ints and tuples printed by MicroPython
    assert res["moved"] < 0  # the needle really was seeking home (backward)
    assert res["idle"] == (0, 0)
    assert res["homing"] == (0, 0)
    assert res["fault"] == (0, True, 1)  # no allocation, fault latched, EN high
    assert res["after"] == (0, 0)


def _frames(oled):
    """Display frames sent: I2C transactions that start with the data control byte."""
    return sum(1 for w in oled.writes if w[:1] == b"\x40")


def test_display_is_sent_from_the_main_loop_only_on_change_and_at_most_20_per_second():
    rig = Rig()
    oled = rig.oled
    assert rig.app.display is not None and not rig.app.core.no_display
    booted = _frames(oled)  # init() clears the glass
    rig.ms(1000)
    assert _frames(oled) == booted + 1  # idle: the first frame, then nothing changes
    # The 1 kHz timer alone never touches the display (a refresh never delays a tick).
    sent = len(oled.writes)
    for _ in range(200):
        for live in rig.live.values():
            live.run_tick()
        M.advance_ms(1)
        rig.timer.fire()
    assert len(oled.writes) == sent
    rig.press(pins.BTN_OK)  # the menu: a new frame
    assert _frames(oled) == booted + 2
    # DOWN held: auto-repeat moves the cursor on every repeat;
    # the display still gets at most one frame per 50 ms.
    M.set_input(pins.BTN_DOWN, 0)
    start = _frames(oled)
    rig.ms(3000)
    M.set_input(pins.BTN_DOWN, 1)
    rig.ms(30)
    sent = _frames(oled) - start
    assert 3 <= sent <= 3000 // A.DISPLAY_PERIOD_MS + 1
    assert rig.app.ui.cursor == len(rig.app.ui.menu) - 1  # held to the end of the menu
    # What was sent is what the interface drew.
    last = [w for w in oled.writes if w[:1] == b"\x40"][-1]
    assert last[1:] == bytes(rig.app.display.buf)


def _ready_to_fire(core):
    """Homed, a syringe seated, confirmed and primed (poked: the rig has no machine)."""
    core.state, core.homed, core.primed, core.syringe_confirmed = C.ST_READY, True, True, True
    M.set_input(pins.SYRINGE, 0)


def test_without_a_display_nothing_fires_and_the_console_and_buzzer_say_so(capsys):
    rig = Rig(display=False)
    app, core = rig.app, rig.app.core
    assert app.display is None and core.no_display
    assert "no display" in capsys.readouterr().out  # the console line at boot
    rig.ms(50)
    assert app.buzzer.playing is A.BLIND
    rig.syringe = True
    _ready_to_fire(core)
    rig.ms(5)
    assert not core.can_fire() and core.notice == C.N_NO_DISPLAY
    core.notice = C.N_NONE
    M.set_input(pins.TRIGGER, 0)  # the trigger: nothing moves
    rig.ms(300)
    M.set_input(pins.TRIGGER, 1)
    rig.ms(20)
    assert core.notice == C.N_NO_DISPLAY and core.punctures == 0 and core.state == C.ST_READY
    assert rig.live["needle"].count == rig.live["plunger"].count == 0
    core.configure(mode=C.MODE_PRIME)  # nor does it prime
    M.set_input(pins.TRIGGER, 0)
    rig.ms(300)
    M.set_input(pins.TRIGGER, 1)
    rig.ms(20)
    assert rig.live["plunger"].count == 0 and core.notice == C.N_NO_DISPLAY
    # A fault still sounds the alarm; once it is acknowledged the beeps come back.
    M.set_input(pins.ESTOP, 1)
    rig.ms(5)
    assert app.buzzer.playing is A.ALARM
    M.set_input(pins.ESTOP, 0)
    rig.ms(5)
    core.acknowledge()
    rig.ms(5)
    assert app.buzzer.playing is A.BLIND
    # The settings bit and the display bit hold injection back apart (codes.HOLD_*).
    core.unconfirmed = True
    core.unconfirmed = False
    assert core.no_display


def test_a_display_that_stops_answering_stops_the_firing(capsys):
    rig = Rig()
    app, core = rig.app, rig.app.core
    rig.ms(100)
    assert not core.no_display
    rig.syringe = True
    _ready_to_fire(core)
    rig.ms(5)
    assert core.can_fire()

    def unplugged():
        raise OSError(5)  # EIO: no ACK on the bus

    app.display.show = unplugged
    rig.press(pins.BTN_OK)  # a new frame to send: the write fails
    assert app.display is None and core.no_display
    assert "no display" in capsys.readouterr().out
    assert not core.can_fire() and core.notice == C.N_NO_DISPLAY
    assert app.buzzer.playing is A.BLIND


def test_buttons_reach_the_interface_and_sound_the_buzzer():
    rig = Rig()
    rig.ms(50)
    rig.press(pins.BTN_BACK)  # nothing to go back from on the status screen: refused
    assert rig.app.buzzer.playing is A.REFUSE
    rig.press(pins.BTN_OK)
    assert rig.app.ui.screen_name() == "menu"
    for _ in range(4):
        rig.press(pins.BTN_DOWN)
    assert rig.app.ui.menu[rig.app.ui.cursor].label == "Depth"
    rig.press(pins.BTN_OK)
    assert rig.app.ui.screen_name() == "edit"
    depth0 = rig.app.core.settings.depth_um
    rig.press(pins.BTN_UP)
    assert rig.app.core.settings.depth_um == depth0  # not before OK
    rig.press(pins.BTN_OK)
    assert rig.app.core.settings.depth_um == depth0 + 100
    assert rig.app.ui.screen_name() == "menu"


# -- stored settings (H9) ----------------------------------------------------------------


def _service(rig, label):
    """Menu > Service, the code, then the item `label` (through the real buttons)."""
    ui = rig.app.ui
    rig.press(pins.BTN_OK)
    while ui.menu[ui.cursor].label != "Service":
        rig.press(pins.BTN_DOWN)
    rig.press(pins.BTN_OK)
    for digit in ui.service_pin:
        for _ in range(digit):
            rig.press(pins.BTN_UP)
        rig.press(pins.BTN_OK)
    assert ui.screen_name() == "service"
    while ui.menu[ui.cursor].label != label:
        rig.press(pins.BTN_DOWN)


@pytest.mark.hazard("H9")
def test_no_stored_settings_means_defaults_and_no_injection_until_confirmed():
    fs = SimFS()
    rig = Rig(fs=fs, confirmed=False)
    core = rig.app.core
    assert rig.app.load_info["defaults"] and core.unconfirmed
    rig.ms(100)
    assert rig.app.ui.banner() == C.NOTICE_NAMES[C.N_UNCONFIRMED]
    core.state, core.homed, core.primed = C.ST_READY, True, True
    assert not core.can_fire() and core.notice == C.N_UNCONFIRMED
    rig.ms(1000)
    assert rig.app.saves == 0 and not fs.exists("settings.a")  # defaults are not stored unconfirmed
    _service(rig, "Confirm")
    rig.press(pins.BTN_OK)
    assert not core.unconfirmed
    rig.ms(600)
    assert rig.app.saves == 1 and fs.exists("settings.a")
    # The next boot finds them: no confirmation needed.
    rig2 = Rig(fs=fs, confirmed=False)
    assert not rig2.app.load_info["defaults"] and not rig2.app.core.unconfirmed


@pytest.mark.hazard("H9")
def test_a_setting_changed_in_the_menu_survives_a_reboot():
    fs = SimFS()
    rig = Rig(fs=fs)
    rig.ms(600)  # the confirmed defaults are stored first
    base = rig.app.saves
    ui = rig.app.ui
    rig.press(pins.BTN_OK)
    while ui.menu[ui.cursor].label != "Dose":
        rig.press(pins.BTN_DOWN)
    rig.press(pins.BTN_OK)
    rig.press(pins.BTN_UP)
    rig.press(pins.BTN_OK)
    assert rig.app.core.settings.dose_nl == 21_000
    rig.ms(600)
    assert rig.app.saves == base + 1
    rig2 = Rig(fs=fs)
    assert rig2.app.core.settings.dose_nl == 21_000
    assert rig2.app.load_info["generation"] == base + 1


@pytest.mark.hazard("H9")
def test_settings_are_stored_only_while_the_axes_are_idle_and_the_flash_write_is_no_overrun():
    fs = SimFS()
    rig = Rig(fs=fs)
    core = rig.app.core
    rig.ms(50)
    rig.press(pins.BTN_OK)
    rig.press(pins.BTN_OK)  # Home
    assert core.state == C.ST_HOMING
    core.settings.dose_nl = 30_000  # a change while moving (poked: the menu refuses it)
    rig.ms(1200)
    assert core.state == C.ST_HOMING and rig.app.saves == 0
    for _ in range(40):
        rig.ms(500)
        if core.state != C.ST_HOMING:
            break
    assert core.state == C.ST_READY
    rig.ms(600)
    assert rig.app.saves == 1
    # A write that starved the FIFOs (flash stops the interrupts) counts no overrun.
    core.settings.dose_nl = 31_000
    saved = rig.app.persist

    def slow_save():
        ok = saved()
        for live in rig.live.values():  # 10 ms without interrupts: the FIFOs run dry
            for _ in range(10):
                live.run_tick()
        return ok

    rig.app.persist = slow_save
    rig.app._save_ms -= A.SAVE_PERIOD_MS
    rig.ms(20)
    assert rig.app.saves == 2 and core.overruns == 0 and core.state == C.ST_READY


@pytest.mark.hazard("H9")
def test_a_line_time_constant_applied_is_stored_and_applied_at_the_next_boot():
    from injcore import machine as IM
    from injcore import store as S

    fs = SimFS()
    rig = Rig(fs=fs)
    rig.ms(600)  # the confirmed defaults are stored first
    estimate = rig.app.core.line_tau_us  # not measured: the reference line's, for the syringe
    assert rig.app.core.line_tau_stored == IM.LINE_TAU_ESTIMATE
    rig.app.core.set_line_tau(42_300)  # what the backlash screen's OK applies
    rig.ms(600)
    got = A.Store(fs, A.STORE_NAME).load()[0]
    assert got["calibration"]["line_tau_us"] == 42_300
    assert Rig(fs=fs).app.core.line_tau_us == 42_300
    # A record of schema 3 (no line_tau_us) boots with the default and is stored again.
    old = dict(got, calibration=dict(got["calibration"]))
    del old["calibration"]["line_tau_us"]
    fs2 = SimFS()
    fs2.write_bytes("settings.a", S.pack(old, 7, schema=3))
    rig3 = Rig(fs=fs2)
    assert rig3.app.load_info["migrated_from"] == 3 and not rig3.app.core.unconfirmed
    assert rig3.app.core.line_tau_us == estimate
    rig3.ms(600)
    assert rig3.app.saves == 1
    stored = A.Store(fs2, A.STORE_NAME).load()[0]["calibration"]["line_tau_us"]
    assert stored == IM.LINE_TAU_ESTIMATE


@pytest.mark.hazard("H9")
def test_a_corrupt_newest_record_falls_back_to_the_older_one():
    fs = SimFS()
    rig = Rig(fs=fs)
    for dose in (21_000, 22_000):
        rig.app.core.configure(dose_nl=dose)
        rig.app._save_ms -= A.SAVE_PERIOD_MS
        rig.ms(2)
    newest = "settings." + A.Store(fs, A.STORE_NAME).load()[1]["slot"]
    data = bytearray(fs.read_bytes(newest))
    data[-3] ^= 0x10
    fs.write_bytes(newest, bytes(data))
    rig2 = Rig(fs=fs)
    assert rig2.app.core.settings.dose_nl == 21_000
    assert "b" in rig2.app.load_info["problems"]


# -- the treatment log (H9) ------------------------------------------------------------------


def _power_cut():
    """A power-on reset clears the watchdog's scratch registers."""
    for reg in (A._WATCHDOG_SCRATCH0, A._WATCHDOG_SCRATCH1, A._WATCHDOG_SCRATCH2):
        M.mem32[reg] = 0


def _logged_session():
    """A board whose log holds a session of three punctures, flushed: (fs, rig, core)."""
    fs = SimFS()
    rig = Rig(fs=fs)
    core = rig.app.core
    rig.ms(50)  # the load cell's first samples
    core.state = C.ST_READY
    for n in (1, 2, 3):
        _fake_puncture(core, n)
        rig.ms(3)
    assert rig.app.log.pending() == 0
    return fs, rig, core


def _fake_puncture(core, number):
    """What the core leaves after a finished puncture (its tick is tested elsewhere)."""
    core.punctures = number
    core.last_puncture[0] = number
    core.last_puncture[2] = 4000  # dose steps
    core.last_puncture[3] = 300  # ticks


@pytest.mark.hazard("H9")
def test_puncture_records_are_flushed_from_the_main_loop_only_while_idle():
    from injcore import tlog

    fs = SimFS()
    rig = Rig(fs=fs)
    core = rig.app.core
    rig.ms(50)  # the load cell's first samples
    core.state = C.ST_READY
    core.needle.start(core.plan_needle_approach, 0)  # an axis still moving: nothing is written
    _fake_puncture(core, 1)
    rig.ms(5)
    assert rig.app.log.pending() >= 1
    files = (
        [n for n in fs.listdir(A.LOG_DIR) if n.endswith(tlog.NAME_SUFFIX)]
        if fs.exists(A.LOG_DIR)
        else []
    )
    written = sum(fs.size(A.LOG_DIR + "/" + n) for n in files)
    assert written == 0 and core.needle.phase
    for _ in range(200):
        rig.ms(50)
        if not core.needle.phase:
            break
    rig.ms(2)
    assert rig.app.log.pending() == 0 and core.overruns == 0
    recs = list(rig.app.log.records())
    assert [r["kind"] for r in recs] == [
        tlog.K_SESSION_START,
        tlog.K_DEVICE,
        tlog.K_CALIBRATION,
        tlog.K_PUNCTURE,
    ]
    # The RTC was never set (as after a power-on): no time. The RP2040's id and the firmware.
    assert recs[0]["time_s"] == 0
    assert recs[1]["device_id"] == fake_machine.unique_id().hex() == A.device_id()
    assert recs[1]["firmware"] == A.FIRMWARE_VERSION


def test_sessions_carry_the_time_the_host_set_on_the_rtc():
    from board import clock
    from injcore import tlog

    assert clock.time_s() == 0  # 2021-01-01: the power-on value, never set
    fake_machine.RTC().datetime((2025, 3, 14, 4, 15, 9, 26, 0))  # what the host tools do
    fs = SimFS()
    rig = Rig(fs=fs)
    rig.app.recorder.start_session("LOT")
    rig.app.recorder.end_session()
    start, device = list(rig.app.log.records())[:2]
    assert start["kind"] == tlog.K_SESSION_START and start["time_s"] == 1741964966
    assert device["kind"] == tlog.K_DEVICE and device["device_id"] == A.device_id()


def test_removing_a_protocol_pauses_the_timer_for_the_flash_write():
    import json

    from injcore.protocol import ProtocolStore

    fs = SimFS()
    doc = json.loads((ROOT / "protocols" / "pain-low-back.json").read_text())
    ProtocolStore(fs).save(doc)
    rig = Rig(fs=fs)
    rig.ms(5)
    before = len(M.log)
    rig.app.protocols.remove(doc["name"])  # Service > Protocols, OK (at rest)
    done = [e[0] for e in M.log[before:] if e[0] in ("timer_deinit", "timer_init")]
    assert done == ["timer_deinit", "timer_init"]  # paused around the write, then running
    assert ProtocolStore(fs).names() == []


@pytest.mark.hazard("H9")
def test_a_session_cut_by_a_power_loss_is_reported_at_the_next_boot():
    fs, rig, core = _logged_session()
    _power_cut()
    rig2 = Rig(fs=fs)  # power back: the session has no end record
    info = rig2.app.interrupted
    assert info is not None and info["punctures"] == 3 and info["lost_max"] == 1
    rig2.ms(60)
    assert rig2.app.ui.banner() == "session cut off: max 1 unlogged"  # two display lines
    assert len(D.wrap(rig2.app.ui.banner())) == 2
    rig2.press(pins.BTN_BACK)
    assert not rig2.app.ui.banner().startswith("session")
    assert Rig(fs=fs).app.interrupted is None  # reported once: the log now closes it


@pytest.mark.hazard("H9")
def test_after_a_watchdog_reset_the_lost_punctures_are_counted_exactly():
    fs, rig, core = _logged_session()
    core.needle.start(core.plan_needle_approach, 0)  # moving: what follows stays in RAM
    for n in (4, 5):
        _fake_puncture(core, n)
        rig.ms(3)
    assert rig.app.log.pending() == 2
    M.mem32[A._WATCHDOG_SCRATCH4] = A._WDT_ENABLE_MAGIC  # the watchdog bit: a hang
    rig2 = Rig(fs=fs, reset_cause=M.WDT_RESET)
    info = rig2.app.interrupted
    assert rig2.app.reset_cause == C.RC_WATCHDOG
    assert info["punctures"] == 3 and info["lost"] == 2 and info["lost_max"] == 0
    assert "2 not logged" in info["text"]
    assert rig2.app.ui.banner() == "session cut off: 2 not logged"


@pytest.mark.hazard("H11")
def test_a_new_service_code_is_stored_with_the_settings():
    fs = SimFS()
    rig = Rig(fs=fs)
    rig.ms(50)
    rig.app.ui.service_pin = (4, 3, 2, 1)  # what Service > New code sets
    rig.ms(600)
    assert Rig(fs=fs).app.ui.service_pin == (4, 3, 2, 1)
