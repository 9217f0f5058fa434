"""The board wired to the control core: boot, the 1 kHz timer, the main loop.

    from board import app
    app.main()          # what main.py does: boot, then run forever

boot() builds every hardware object (drivers disabled first), the core and
the ports, starts the PIO state machines and then the hard 1 kHz timer. The
timer only runs core.tick(); the display, buttons, buzzer, watchdog and
anything that may allocate or block run in the main loop (App.service).

Nothing moves at boot: the core starts unhomed with the drivers off, and
only the operator starts homing (from the menu: ui/screens.py).
"""

import gc

import machine

from injcore import core as C
from injcore import persist, pio_word
from injcore.fsio import DirFS
from injcore.settings import SettingsError
from injcore.store import Store
from injcore.tlog import Log, Recorder
from injcore.compat import const

from . import clock, pins, pio_step
from ui import keys
from ui.protocols import Protocols
from ui.screens import Ui

from .buttons import Buttons
from .buzzer import ALARM, CLICK, REFUSE, WARNING, Buzzer
from .hx711 import Hx711
from .ports import ROOM_LEVEL, AxisPort, Inputs, Outputs
from .ssd1306 import Ssd1306
from .tmc2209 import Tmc2209

FIRMWARE_VERSION = "0.4.0"

# A hang is caught within 400 ms (H8 asks 500). The main loop blocks at most
# ~25 ms (a display write); flash writes happen only while idle and are short.
WDT_TIMEOUT_MS = const(400)
DISPLAY_PERIOD_MS = const(50)  # at most 20 refreshes a second, only when changed
SAVE_PERIOD_MS = const(500)  # how often the main loop looks for settings to store
STORE_NAME = "settings"  # settings.a / settings.b on the board's littlefs (injcore.store)
LOG_DIR = "log"  # the treatment log's ring of files
# Catch-up bound per interrupt: never more ticks than the FIFO can hold.
_MAX_TICKS_PER_IRQ = pio_word.FIFO_TICKS

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
        self.switch_pins = [machine.Pin(n, machine.Pin.IN, machine.Pin.PULL_UP) for n in (
            pins.NEEDLE_HOME, pins.PLUNGER_REAR, pins.PLUNGER_FRONT, pins.SYRINGE,
            pins.TRIGGER, pins.PEDAL, pins.ESTOP)]
        sys_hz = machine.freq()
        ng, nc = pio_step.start_axis(pins.SM_NEEDLE_GEN, pins.SM_NEEDLE_COUNT,
                                     machine.Pin(pins.NEEDLE_STEP), machine.Pin(pins.NEEDLE_DIR),
                                     sys_hz, run=False)
        pg, pc = pio_step.start_axis(pins.SM_PLUNGER_GEN, pins.SM_PLUNGER_COUNT,
                                     machine.Pin(pins.PLUNGER_STEP), machine.Pin(pins.PLUNGER_DIR),
                                     sys_hz, run=False)
        self.needle = AxisPort(ng, nc, pio_step.pc_of(machine.mem32, pins.SM_NEEDLE_GEN))
        self.plunger = AxisPort(pg, pc, pio_step.pc_of(machine.mem32, pins.SM_PLUNGER_GEN))
        pio_step.run_together(machine.mem32, (pins.SM_NEEDLE_GEN, pins.SM_PLUNGER_GEN))
        self.hx711 = Hx711()
        self.hx711.start()
        self.inputs = Inputs(machine.mem32, self.hx711)
        self.outputs = Outputs(self.needle_driver, self.plunger_driver)
        self.core = C.Core(self.needle, self.plunger, self.inputs, self.outputs,
                           settings=settings, limits=limits, reset_cause=self.reset_cause)
        # Stored settings, limits and calibration (H9): the newest valid generation,
        # or the defaults, which inject nothing until an engineer confirms them.
        self.store = Store(fs if fs is not None else DirFS("/"), STORE_NAME)
        payload, self.load_info = self.store.load()
        pin, self.load_problems = persist.restore(self.core, payload)
        self.core.unconfirmed = self.load_info["defaults"]
        # A record that needed a migration or was partly refused is stored again.
        clean = not (self.load_info["migrated_from"] or self.load_problems or self.load_info["defaults"])
        self._saved = persist.snapshot(self.core, pin) if clean else None
        self._save_ms = clock.ticks_ms()
        self.saves = 0
        self.save_errors = 0
        self.flash_quiet = False  # a flash write is under way: an empty FIFO is not an overrun
        self._quiet_irqs = 0
        # The treatment log (injcore/tlog.py): records buffered in RAM, flushed while idle.
        self.log = Log(self.store.fs, LOG_DIR)
        self.recorder = Recorder(self.core, self.log)
        self.interrupted = self.recorder.boot(self._survivor())  # a session a reset cut short, or None
        self._survivor_word = -1
        self.buttons = Buttons()
        self.buzzer = Buzzer()
        self.display = None
        try:
            i2c = machine.I2C(pins.I2C_ID, scl=machine.Pin(pins.I2C_SCL),
                              sda=machine.Pin(pins.I2C_SDA), freq=pins.I2C_HZ)
            self.display = Ssd1306(i2c)
            self.display.init()
        except OSError as e:  # no display answers: run without one, say so on the console
            print("board: display not found at 0x%02x (%s); running without it" % (pins.OLED_ADDR, e))
            self.display = None
        self.late = 0  # interrupts that had to catch up (the FIFO lead absorbed them)
        self.irqs = 0
        self.protocols = Protocols(self.core, self.store.fs, self.recorder)
        self.ui = Ui(self.core, FIRMWARE_VERSION, self.info, pin, self.recorder.start_session,
                     self.protocols)
        if self.interrupted is not None:
            self.ui.sticky(self.interrupted["text"])
        self._sent = bytearray(len(self.display.buf)) if self.display else None  # the frame on the glass
        self.frames = 0  # frames sent to the display
        self._drawn_ms = clock.ticks_ms()
        self._alarm_seen = C.ALARM_NONE
        self._ticks_fed = 0
        self.timer = None
        self.wdt = None
        self._wdt_timeout_ms = wdt_timeout_ms

    # ---- the 1 kHz interrupt --------------------------------------------------

    def on_timer(self, _timer):
        """Top both FIFOs up to the lead: the PIO's consumption is the motion clock.

        Normally one tick per interrupt; after a late interrupt, the missed
        ticks (the lead kept the motors fed meanwhile). A FIFO found empty
        means the motors were starved: a tick overrun, counted in the core.
        Hard interrupt: no allocation.
        """
        gn = self.needle.gen
        gp = self.plunger.gen
        core = self.core
        running = self.irqs  # the first interrupt fills an empty FIFO: not late
        self.irqs = (running + 1) & 0x3FFFFFFF  # a small int forever: no allocation
        if running and gn.tx_fifo() == 0 and not self.flash_quiet:
            core.overruns += 1
        n = 0
        while n < _MAX_TICKS_PER_IRQ and gn.tx_fifo() <= ROOM_LEVEL and gp.tx_fifo() <= ROOM_LEVEL:
            core.tick(clock.ticks_us())
            n += 1
        if n > 1 and running:
            self.late = (self.late + 1) & 0x3FFFFFFF

    def start(self):
        """Start the watchdog and the timer (after boot has built everything)."""
        self.wdt = machine.WDT(timeout=self._wdt_timeout_ms)
        self.timer = machine.Timer(-1, mode=machine.Timer.PERIODIC, freq=1000,
                                   callback=self.on_timer, hard=True)
        return self

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
        ui.poll(now_ms)
        b.sample(b.pressed_mask(self.inputs.gpio), now_ms)
        ev = b.get()
        while ev is not None:
            ui.button(ev[0], ev[1])  # polled above: no second poll per event
            ev = b.get()
        sound = ui.take_sound()
        if sound == keys.SND_CLICK:
            self.buzzer.play(CLICK)
        elif sound == keys.SND_REFUSE:
            self.buzzer.play(REFUSE)
        level = self.outputs.alarm_level  # set by the core through its alarm port
        if level != self._alarm_seen:
            self._alarm_seen = level
            self.buzzer.stop()
            if level == C.ALARM_FAULT:
                self.buzzer.play(ALARM)
            elif level == C.ALARM_WARNING:
                self.buzzer.play(WARNING)
        self.buzzer.update(now_ms)
        self.led.value(1 if core.state != C.ST_UNHOMED and core.state != C.ST_FAULT else 0)
        if clock.ticks_diff(now_ms, self._drawn_ms) >= DISPLAY_PERIOD_MS:
            self.draw(now_ms)
        self.recorder.poll()
        self._keep_survivor()
        if self.flash_quiet and self.irqs != self._quiet_irqs:
            self.flash_quiet = False  # the timer has run since the write: the FIFOs are full again
        elif self.log.pending():
            self._quiet()
            if not self.recorder.service():  # flushes only with both axes idle
                self.flash_quiet = False
        elif clock.ticks_diff(now_ms, self._save_ms) >= SAVE_PERIOD_MS:
            self._save_ms = now_ms
            self.persist()
        # Fed only by ticks that ran their self-checks (H8): a dead timer, a
        # hung tick or a stuck main loop all end in a reset within WDT_TIMEOUT_MS.
        if core.checked != self._ticks_fed and self.wdt is not None:
            self._ticks_fed = core.checked
            self.wdt.feed()

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
            self.ui.message("settings not stored: %s" % e)
            return False
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
        """A flash write follows: the next interrupt may find the FIFOs dry (not an overrun)."""
        self.flash_quiet = True
        self._quiet_irqs = self.irqs

    def info(self):
        """Board figures for the device-info screen."""
        return [("late irqs", str(self.late)), ("free mem", "%d k" % (gc.mem_free() // 1024)),
                ("stored", "gen %d" % self.load_info["generation"]), ("saves", str(self.saves))]

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
        d.show()

    def run(self):
        """The main loop, forever."""
        gc.collect()
        while True:
            self.service(clock.ticks_ms())
            machine.idle()


def boot(**kw):
    """Build everything and start the timer; returns the running App."""
    app = App(**kw)
    gc.collect()
    return app.start()


def main():
    app = boot()
    print("injector %s: %s, %d bytes free; OK opens the menu, Home first" % (
        FIRMWARE_VERSION, C.RESET_NAMES[app.reset_cause], gc.mem_free()))
    try:
        app.run()
    finally:
        app.stop()  # Ctrl-C from mpremote: leave the axes disabled

