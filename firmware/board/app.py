"""The board wired to the control core: boot, the 1 kHz timer, the main loop.

    from board import app
    app.main()          # what main.py does: boot, then run forever

boot() builds every hardware object (drivers disabled first), the core and
the ports, starts the PIO state machines and then the hard 1 kHz timer. The
timer only runs core.tick(); the display, buttons, buzzer, watchdog and
anything that may allocate or block run in the main loop (App.service).

Nothing moves at boot: the core starts unhomed with the drivers off, and
only the operator starts homing (from the menu: ui/screens.py).

No display, nothing fired blind: a board that finds no display at boot (or
loses it) tells the core (Core.no_display: no shot, no prime), says so on the
console and beeps BLIND until it restarts with one.
"""

import gc

import machine

from injcore import codes as C
from injcore import persist, pio_word
from injcore.axis import WORDS
from injcore.compat import const
from injcore.core import Core
from injcore.fsio import DirFS
from injcore.machine import WDT_TIMEOUT_MS
from injcore.settings import SettingsError
from injcore.store import Store
from injcore.tlog import Log, Recorder
from ui import keys
from ui.protocols import Protocols
from ui.screens import Ui

from . import clock, irq, pins, pio_step, ports
from .buttons import Buttons
from .buzzer import ALARM, BLIND, CLICK, REFUSE, WARNING, Buzzer
from .hx711 import Hx711
from .ports import ROOM_LEVEL, AxisPort, Inputs, Outputs
from .ssd1306 import Ssd1306
from .tmc2209 import Tmc2209
from .version import FIRMWARE_VERSION

DISPLAY_PERIOD_MS = const(50)  # at most 20 refreshes a second, only when changed
SAVE_PERIOD_MS = const(500)  # how often the main loop looks for settings to store
STORE_NAME = "settings"  # settings.a / settings.b on the board's littlefs (injcore.store)
LOG_DIR = "log"  # the treatment log's ring of files

# RP2040 watchdog scratch registers. SCRATCH0 is ours: the SDK never touches
# it and only a power-on or a hardware reset clears it, so a value left by
# the previous boot means this is a soft reset. SCRATCH4 holds the pico-sdk's
# magic: watchdog_enable (machine.WDT) writes _WDT_ENABLE_MAGIC, watchdog_reboot
# (machine.reset) writes another one.
_WATCHDOG_SCRATCH0 = 0x4005800C
_WATCHDOG_SCRATCH4 = 0x4005801C
# SCRATCH1 holds (session << 16 | punctures) of the open log session, SCRATCH2
# the same XOR a magic: they survive a watchdog or soft reset (not a power
# cut), so the next boot knows exactly how many punctures the log missed.
_WATCHDOG_SCRATCH1 = 0x40058010
_WATCHDOG_SCRATCH2 = 0x40058014
_SURVIVOR_MAGIC = 0x5EC7104D
_BOOT_MAGIC = 0x1B7EC7ED
_WDT_ENABLE_MAGIC = 0x6AB73121
_WATCHDOG_CTRL = 0x40058000
_WATCHDOG_ENABLE = 0x40000000  # CTRL bit 30


def device_id():
    """The RP2040's unique id (its flash chip's 64 bits) as 16 hex digits: the log's device."""
    return "".join("%02x" % b for b in machine.unique_id())


def reset_cause(mem32=None):
    """Why this boot happened, as one of injcore.core's RC_* codes.

    machine.reset_cause() on the rp2 port says only power-on or watchdog; a
    soft reset keeps the power-on cause, and machine.reset() is a watchdog
    reboot too. The scratch registers tell them apart (see above).
    """
    mem = machine.mem32 if mem32 is None else mem32
    cause = machine.reset_cause()
    booted_before = mem[_WATCHDOG_SCRATCH0] == _BOOT_MAGIC
    mem[_WATCHDOG_SCRATCH0] = _BOOT_MAGIC
    if cause == machine.WDT_RESET:
        if mem[_WATCHDOG_SCRATCH4] == _WDT_ENABLE_MAGIC:
            return C.RC_WATCHDOG  # our watchdog expired: the firmware hung
        return C.RC_HARD  # machine.reset() / mpremote reset
    if booted_before:
        return C.RC_SOFT
    if cause == machine.PWRON_RESET:
        return C.RC_POWER_ON
    return C.RC_HARD


class App:
    def __init__(self, wdt_timeout_ms=WDT_TIMEOUT_MS, settings=None, limits=None, fs=None):
        self.reset_cause = reset_cause()
        # Drivers first: their EN pins come up high (disabled) before anything else.
        self.needle_driver = Tmc2209(pins.NEEDLE_EN, pins.NEEDLE_DIAG)
        self.plunger_driver = Tmc2209(pins.PLUNGER_EN, pins.PLUNGER_DIAG)
        self.led = machine.Pin(pins.LED, machine.Pin.OUT, value=0)
        # Switches close to GND; the pull-ups make an open contact read 1 (the
        # normally-closed E-stop: a cut wire reads as pressed).
        self.switch_pins = [
            machine.Pin(n, machine.Pin.IN, machine.Pin.PULL_UP)
            for n in (
                pins.NEEDLE_HOME,
                pins.PLUNGER_REAR,
                pins.PLUNGER_FRONT,
                pins.SYRINGE,
                pins.TRIGGER,
                pins.PEDAL,
                pins.ESTOP,
            )
        ]
        sys_hz = machine.freq()
        ng, nc = pio_step.start_axis(
            pins.SM_NEEDLE_GEN,
            pins.SM_NEEDLE_COUNT,
            machine.Pin(pins.NEEDLE_STEP),
            machine.Pin(pins.NEEDLE_DIR),
            sys_hz,
            run=False,
        )
        pg, pc = pio_step.start_axis(
            pins.SM_PLUNGER_GEN,
            pins.SM_PLUNGER_COUNT,
            machine.Pin(pins.PLUNGER_STEP),
            machine.Pin(pins.PLUNGER_DIR),
            sys_hz,
            run=False,
        )
        # The board array: what the timer interrupt (board/irq.py) works with
        # besides the core's own state.
        b = self.board = irq.new_board()
        self.needle = AxisPort(
            ng, nc, pio_step.pc_of(machine.mem32, pins.SM_NEEDLE_GEN), b, irq.B_HALTS_N
        )
        self.plunger = AxisPort(
            pg, pc, pio_step.pc_of(machine.mem32, pins.SM_PLUNGER_GEN), b, irq.B_HALTS_P
        )
        pio_step.run_together(machine.mem32, (pins.SM_NEEDLE_GEN, pins.SM_PLUNGER_GEN))
        self.hx711 = Hx711(board=b)
        self.hx711.start()
        self.inputs = Inputs(machine.mem32, self.hx711)
        self.outputs = Outputs(self.needle_driver, self.plunger_driver)
        self.core = Core(
            self.needle,
            self.plunger,
            self.inputs,
            self.outputs,
            settings=settings,
            limits=limits,
            reset_cause=self.reset_cause,
        )
        # Stored settings, limits and calibration (H9): the newest valid generation,
        # or the defaults, which inject nothing until an engineer confirms them.
        self.store = Store(fs if fs is not None else DirFS("/"), STORE_NAME)
        payload, self.load_info = self.store.load()
        pin, self.load_problems = persist.restore(self.core, payload)
        self.core.require_confirmation(self.load_info["defaults"])
        # A record that needed a migration or was partly refused is stored again.
        clean = not (
            self.load_info["migrated_from"] or self.load_problems or self.load_info["defaults"]
        )
        self._saved = persist.snapshot(self.core, pin) if clean else None
        self._save_ms = clock.ticks_ms()
        self.saves = 0
        self.save_errors = 0
        # The treatment log (injcore/tlog.py): records buffered in RAM, flushed while idle.
        self.log = Log(self.store.fs, LOG_DIR)
        self.recorder = Recorder(
            self.core, self.log, clock.time_s, device_id(), FIRMWARE_VERSION
        )  # each session names the device, the firmware and the time (the RTC the host set)
        self.interrupted = self.recorder.boot(
            self._survivor()
        )  # a session a reset cut short, or None
        self._survivor_word = -1
        self.buttons = Buttons()
        self._attach_interrupt()
        self.buzzer = Buzzer()
        self.display = None
        try:
            i2c = machine.I2C(
                pins.I2C_ID,
                scl=machine.Pin(pins.I2C_SCL),
                sda=machine.Pin(pins.I2C_SDA),
                freq=pins.I2C_HZ,
            )
            self.display = Ssd1306(i2c)
            self.display.init()
        except OSError as e:  # no display answers: nothing is fired blind
            self.display = None
            self._no_display(e)
        self.protocols = Protocols(self.core, self.store.fs, self.recorder, flash=self._flash_write)
        self.ui = Ui(
            self.core, FIRMWARE_VERSION, self.info, pin, self.recorder.start_session, self.protocols
        )
        if self.interrupted is not None:
            print("board: " + self.interrupted["text"])
            self.ui.sticky(interrupted_text(self.interrupted))
        self._sent = (
            bytearray(len(self.display.buf)) if self.display else None
        )  # the frame on the glass
        self.frames = 0  # frames sent to the display
        self.passes = 0  # main-loop passes
        self._btn_tail = 0  # button changes replayed (board/irq.py logs them)
        self.pass_us_max = 0
        self._drawn_ms = clock.ticks_ms()
        self._alarm_seen = C.ALARM_NONE
        self._ticks_fed = 0
        self.timer = None
        self.wdt = None
        self._wdt_timeout_ms = wdt_timeout_ms

    # ---- the 1 kHz interrupt --------------------------------------------------

    def _attach_interrupt(self):
        """Fill the board array and hand the interrupt its arrays (board/irq.py)."""
        b = self.board
        b[irq.B_SM_NGEN] = pins.SM_NEEDLE_GEN
        b[irq.B_SM_NCOUNT] = pins.SM_NEEDLE_COUNT
        b[irq.B_SM_PGEN] = pins.SM_PLUNGER_GEN
        b[irq.B_SM_PCOUNT] = pins.SM_PLUNGER_COUNT
        for sm in (
            pins.SM_NEEDLE_GEN,
            pins.SM_NEEDLE_COUNT,
            pins.SM_PLUNGER_GEN,
            pins.SM_PLUNGER_COUNT,
        ):
            if sm >> 2:
                raise ValueError("the axes' state machines must be on PIO0 (0-3)")
        b[irq.B_ENTRY_N] = self.needle.entry_pc
        b[irq.B_ENTRY_P] = self.plunger.entry_pc
        b[irq.B_COUNT_BIAS] = pio_step.COUNT_BIAS
        b[irq.B_EXEC_IN_Y] = pio_step.EXEC_IN_Y
        b[irq.B_EXEC_PULL] = pio_step.EXEC_PULL_NOBLOCK
        b[irq.B_EXEC_JMP] = pio_step.EXEC_JMP
        b[irq.B_EXEC_OSR_NULL] = pio_step.EXEC_MOV_OSR_NULL
        b[irq.B_TICKS_MAX] = pio_word.FIFO_TICKS  # never more ticks than the FIFO can hold
        b[irq.B_ROOM] = ROOM_LEVEL
        first = self.buttons.pin_nos[0]
        if self.buttons.pin_nos != tuple(range(first, first + 4)):
            raise ValueError(
                "the four operator buttons must be consecutive GPIOs (UP, DOWN, OK, BACK)"
            )
        b[irq.B_BTN_SHIFT] = first
        # A button held at boot is the buttons' first level: locked out until released.
        self._btn_level = b[irq.B_BTN_LAST] = self.buttons.pressed_mask(
            machine.mem32[ports.SIO_GPIO_IN]
        )
        core = self.core
        irq.attach(core.S, core.ramps, WORDS, b, self.outputs.drivers)

    @staticmethod
    def on_timer(timer):
        """The hard 1 kHz interrupt: board/irq.py's on_timer (no allocation)."""
        irq.on_timer(timer)

    # Counters the interrupt keeps in the board array
    irqs = property(lambda self: self.board[irq.B_IRQS])
    late = property(lambda self: self.board[irq.B_LATE])  # interrupts that had to catch up

    def _set_quiet(self, on):
        self.board[irq.B_QUIET] = 1 if on else 0

    # A flash write is under way: an empty FIFO is not an overrun.
    flash_quiet = property(lambda self: bool(self.board[irq.B_QUIET]), _set_quiet)

    def start(self):
        """Start the watchdog and the timer (after boot has built everything)."""
        self.wdt = machine.WDT(timeout=self._wdt_timeout_ms)
        self.timer = machine.Timer(-1)
        self._arm_timer()
        return self

    def _arm_timer(self):
        self.timer.init(  # pyright: ignore[reportOptionalMemberAccess]
            mode=machine.Timer.PERIODIC, freq=1000, callback=irq.on_timer, hard=True
        )

    def stop(self):
        """Timer off, drivers off, state machines and watchdog stopped.

        For an engineer who breaks into the REPL (Ctrl-C from mpremote): the
        axes stay disabled and the board does not reset 2 s later. MicroPython
        has no WDT.stop(), so the watchdog's enable bit is cleared directly.
        """
        if self.wdt is not None:
            machine.mem32[_WATCHDOG_CTRL] = machine.mem32[_WATCHDOG_CTRL] & ~_WATCHDOG_ENABLE
            self.wdt = None
        if self.timer is not None:
            self.timer.deinit()
            self.timer = None
        self.outputs.drivers(False)
        for port in (self.needle, self.plunger):
            port.gen.active(0)
            port.count.active(0)
        self.hx711.stop()
        self.buzzer.stop()

    # ---- the main loop ----------------------------------------------------------

    def service(self, now_ms):
        """One pass of the main loop: buttons, interface, alarm, display, watchdog."""
        core = self.core
        ui = self.ui
        b = self.buttons
        self.passes += 1
        ui.poll(now_ms)
        self._replay_buttons(now_ms)
        ev = b.get()
        while ev is not None:
            ui.button(ev[0], ev[1])  # polled above: no second poll per event
            ev = b.get()
        sound = ui.take_sound()
        if sound == keys.SND_CLICK:
            self.buzzer.play(CLICK)
        elif sound == keys.SND_REFUSE:
            self.buzzer.play(REFUSE)
        level = core.alarm  # set by the tick
        if level != self._alarm_seen:
            self._alarm_seen = level
            self.buzzer.stop()
            if level == C.ALARM_FAULT:
                self.buzzer.play(ALARM)
            elif level == C.ALARM_WARNING:
                self.buzzer.play(WARNING)
            elif core.no_display:
                self.buzzer.play(BLIND)
        self.buzzer.update(now_ms)
        self.led.value(1 if core.state != C.ST_UNHOMED and core.state != C.ST_FAULT else 0)
        drew = clock.ticks_diff(now_ms, self._drawn_ms) >= DISPLAY_PERIOD_MS
        if drew:
            self.draw(now_ms)
        self.recorder.poll()
        self._keep_survivor()
        if drew:
            pass  # flash waits a pass: a display write and a flash write together made the longest
        elif self.log.pending():
            if self.core.at_rest():  # flushes only with both axes idle
                self._quiet()
                try:
                    self.recorder.service()
                finally:
                    self._resume()
        elif clock.ticks_diff(now_ms, self._save_ms) >= SAVE_PERIOD_MS:
            self._save_ms = now_ms
            self.persist()
        # Fed only by ticks that ran their self-checks (H8): a dead timer, a
        # hung tick or a stuck main loop all end in a reset within WDT_TIMEOUT_MS.
        if core.checked != self._ticks_fed and self.wdt is not None:
            self._ticks_fed = core.checked
            self.wdt.feed()

    def _replay_buttons(self, now_ms):
        """Feed the buttons the changes the interrupt logged since the last pass, each at its time.

        Before each change the level it replaces is sampled once more just
        before it, so the debounce sees how long that level held, as if the
        main loop had sampled every millisecond.
        """
        board = self.board
        b = self.buttons
        ticks = self.core.ticks
        head = board[irq.B_BTN_HEAD]
        if (
            head - self._btn_tail
        ) & 0x3FFFFFFF > irq.BTN_LOG_SIZE:  # the log ran over: lost changes
            self._btn_tail = (head - irq.BTN_LOG_SIZE) & 0x3FFFFFFF
        while self._btn_tail != head:
            at = irq.B_BTN_LOG + 2 * (self._btn_tail & (irq.BTN_LOG_SIZE - 1))
            t_ms = clock.ticks_add(now_ms, -((ticks - board[at + 1]) & 0x3FFFFFFF))
            b.sample(self._btn_level, clock.ticks_add(t_ms, -1))
            self._btn_level = board[at]
            b.sample(self._btn_level, t_ms)
            self._btn_tail = (self._btn_tail + 1) & 0x3FFFFFFF
        b.sample(self._btn_level, now_ms)

    def persist(self):
        """Store the settings if they changed, only while both axes are idle (H9).

        Writing the RP2040's flash stops interrupts for the erase and program
        (tens of ms): the FIFOs may run dry meanwhile, which is harmless with
        the axes idle, so the next interrupt does not count it as an overrun.
        """
        core = self.core
        if core.unconfirmed or not core.at_rest():
            return False
        record = persist.snapshot(core, self.ui.service_pin)
        if record == self._saved:
            return False
        self._quiet()
        try:
            self.store.save(record)
        except (OSError, SettingsError) as e:
            self.save_errors += 1
            print("board: settings not stored: %s" % e)
            self.ui.message("settings not stored")
            return False
        finally:
            self._resume()
        self._saved = record
        self.saves += 1
        return True

    def _survivor(self):
        """(session, punctures) the previous run left in the scratch registers, or None."""
        if self.reset_cause == C.RC_POWER_ON:
            return None
        mem = machine.mem32
        word = mem[_WATCHDOG_SCRATCH1] & 0xFFFFFFFF
        if mem[_WATCHDOG_SCRATCH2] & 0xFFFFFFFF != word ^ _SURVIVOR_MAGIC:
            return None
        return word >> 16, word & 0xFFFF

    def _keep_survivor(self):
        rec = self.recorder
        word = (rec.session & 0xFFFF) << 16 | (self.core.punctures & 0xFFFF) if rec.session else 0
        if word != self._survivor_word:
            self._survivor_word = word
            machine.mem32[_WATCHDOG_SCRATCH1] = word
            machine.mem32[_WATCHDOG_SCRATCH2] = word ^ _SURVIVOR_MAGIC

    def _quiet(self):
        """A flash write follows (axes idle): pause the timer until _resume().

        Writing the flash stops every interrupt for tens of ms. A timer left
        running would then call the interrupt once per missed period in one
        burst; paused, it is simply restarted. Meanwhile the FIFOs run dry,
        which with the axes idle is harmless: B_QUIET tells the interrupt not
        to count that as an overrun, and it refills them two ticks per
        interrupt until they have their lead again (irq.on_timer).
        """
        self.flash_quiet = True
        if self.timer is not None:
            self.timer.deinit()

    def _resume(self):
        if self.timer is not None:
            self._arm_timer()

    def _flash_write(self, fn, *args):
        """fn(*args), a flash write (axes idle: the caller checked), with the timer paused."""
        self._quiet()
        try:
            return fn(*args)
        finally:
            self._resume()

    def info(self):
        """Board figures for the device-info screen."""
        return [
            ("late irqs", str(self.late)),
            ("free mem", "%d k" % (gc.mem_free() // 1024)),
            ("stored", "gen %d" % self.load_info["generation"]),
            ("saves", str(self.saves)),
        ]

    def draw(self, now_ms):
        """Draw the interface; send it only if a pixel changed (at most every DISPLAY_PERIOD_MS).

        Main loop only: the transfer takes about 25 ms at 400 kHz while the
        timer interrupt keeps running the tick.
        """
        self._drawn_ms = now_ms
        d = self.display
        sent = self._sent
        if d is None or sent is None:
            return
        self.ui.draw(d.fb)  # service() polled the interface this pass
        if d.buf == sent:
            return
        sent[:] = d.buf
        self.frames += 1
        try:
            d.show()
        except OSError as e:  # the display stopped answering: nothing more is fired blind
            self.display = self._sent = None
            self._no_display(e)

    def _no_display(self, why):
        """No display (at boot, or lost): the core fires and primes nothing, the console
        and the buzzer say why."""
        self.core.no_display = True
        print(
            "board: no display at 0x%02x (%s): nothing is fired or primed without one;"
            " connect it and restart" % (pins.OLED_ADDR, why)
        )
        self.buzzer.play(BLIND)

    def run(self):
        """The main loop, forever."""
        gc.collect()
        while True:
            t0 = clock.ticks_us()
            self.service(clock.ticks_ms())
            took = clock.ticks_diff(clock.ticks_us(), t0)
            if took > self.pass_us_max:
                self.pass_us_max = took  # the longest pass: how late a button can be seen
            machine.idle()


def interrupted_text(info):
    """The status banner for a session a reset cut short (tlog.Recorder.boot's `info`):
    two display lines; the console gets the whole story."""
    if info["lost_max"]:
        return "session cut off: max %d unlogged" % info["lost_max"]
    return "session cut off: %d not logged" % info["lost"]


current = None  # the running App, for an engineer at the REPL after Ctrl-C


def boot(**kw):
    """Build everything and start the timer; returns the running App."""
    global current
    app = App(**kw)
    gc.collect()
    current = app
    return app.start()


def main():
    app = boot()
    print(
        "injector %s: %s, %d bytes free; OK opens the menu, Home first"
        % (FIRMWARE_VERSION, C.RESET_NAMES[app.reset_cause], gc.mem_free())
    )
    try:
        app.run()
    finally:
        app.stop()  # Ctrl-C from mpremote: leave the axes disabled
