"""The scripted session on the emulated Pico: main.py, driven as an operator would.

boot -> OK, OK (home) -> Load syringe, a syringe seated, OK (its size) -> Prime
(trigger held) -> single punctures -> Mode: nappage, a burst with the trigger
held -> the emergency stop and its acknowledgement; then Ctrl-C into the REPL
to read the core's own counts back. Every step is a button, a switch or emulated time; the
figures come from the pins (the machine model) and from the chip.

Used by tests/test_chip.py (which asserts) and host_tools/bench.py (which prints).
"""

import tempfile
from pathlib import Path

from host_tools.chip import CLK_HZ, Chip

# The stored settings are the defaults (injcore/settings.py), confirmed, so the
# screens match the golden screenshots drawn with them; only the shot rate,
# which those screens do not show, is lowered to what a 20 uL puncture allows.
SETTINGS = dict(shot_rate_mhz=1500)
SINGLE_PUNCTURES = 2
BURST_MS = 1500
BOOT_TEXT = "OK opens the menu"  # main.py's line once the App is up: the main loop starts after it
PRESS_MS = 50  # a quick operator press (debounce 20 ms); the interrupt logs it, however long a pass


def settings_files(**changes):
    """The board's stored settings (settings.a), as the firmware's own Store writes them."""
    from injcore import persist
    from injcore.fsio import DirFS
    from injcore.rig import Rig
    from injcore.store import Store

    rig = Rig()
    core = rig.core
    core.configure(**dict(SETTINGS, **changes))
    record = persist.snapshot(core, persist.pin_digits(""))
    with tempfile.TemporaryDirectory() as d:
        Store(DirFS(d), "settings").save(record)
        return {p.name: p.read_bytes() for p in Path(d).iterdir() if p.is_file()}


def menu_labels():
    from ui.screens import MAIN_MENU

    return [item.label for item in MAIN_MENU]


class Session:
    """One run of the script on a chip; `marks` records what was seen at each step."""

    def __init__(self, chip, press_ms=PRESS_MS):
        self.chip = chip
        self.press_ms = press_ms
        self.marks = []  # (name, t_ms, frame index)
        self.menu = menu_labels()
        self.cursor = 0  # where the main menu's cursor is
        self.main_ms = None  # emulated ms when main.py's main loop started (boot())

    def mark(self, name):
        """Note the step: (name, emulated ms, frames sent so far, needle excursions so far)."""
        st = self.chip.status()
        self.marks.append((name, st["t_ms"], st["frames"], st["punctures"]))
        return st

    def press(self, button, times=1):
        for _ in range(times):
            self.chip.press(button, self.press_ms, self.press_ms)

    def menu_to(self, label):
        """From the menu, the cursor to `label` (the menu does not wrap)."""
        target = self.menu.index(label)
        if target > self.cursor:
            self.press("down", target - self.cursor)
        elif target < self.cursor:
            self.press("up", self.cursor - target)
        self.cursor = target

    def wait_idle(self, quiet_ms=300, max_ms=30_000):
        """Run until neither motor has stepped for quiet_ms; the status then."""
        st = self.chip.status()
        last = (
            st["needle"]["fwd"],
            st["needle"]["bwd"],
            st["plunger"]["fwd"],
            st["plunger"]["bwd"],
        )
        quiet = 0
        waited = 0
        while waited < max_ms:
            st = self.chip.run_ms(50)
            waited += 50
            now = (
                st["needle"]["fwd"],
                st["needle"]["bwd"],
                st["plunger"]["fwd"],
                st["plunger"]["bwd"],
            )
            quiet = quiet + 50 if now == last else 0
            last = now
            if quiet >= quiet_ms:
                return st
        raise TimeoutError("the motors did not stop within %d ms" % max_ms)

    def watch_core_state(self):
        """Find the core's state array in the chip's RAM; count interrupts per core state."""
        from injcore import layout as L
        from injcore.rig import Rig

        s = Rig().core.S  # the configuration slots the board's core holds too
        slots = (
            L.PAD_WORDS,
            L.LOST_TOL,
            L.BL_DETECT_MN,
            L.BL_SETTLE_TICKS,
            L.HOME_STUCK_N,
            L.RELEASE_P,
            L.HOME_STUCK_P,
        )
        found = self.chip.find_words({4 * i: s[i] for i in slots})
        if len(found) != 1:
            raise RuntimeError("the core's state array: %d candidates in RAM" % len(found))
        self.state_addr = found[0]
        self.chip.watch_state(self.state_addr + 4 * L.STATE)

    def boot(self):
        """Wait for main.py's banner (main_ms: when its main loop started), then settle."""
        c = self.chip
        if not c.wait_uart(BOOT_TEXT, 10_000):
            raise RuntimeError("main.py did not start: " + c.uart())
        self.main_ms = c.status()["t_ms"]
        c.run_ms(200)
        self.watch_core_state()
        c.reset_stats()
        self.mark("boot")

    def prime(self):
        """Boot, home, load a syringe (its size confirmed) and prime it from the buttons; back
        on the status screen."""
        c = self.chip
        self.boot()
        # Home: OK opens the menu on Home, OK homes.
        self.press("ok")
        self.mark("menu")
        self.press("ok")
        self.wait_idle(500)
        self.mark("homed")
        # Load: the plunger back to its rear switch; a syringe seated; OK: it is the size set.
        self.press("ok")
        self.menu_to("Load syr.")
        self.press("ok")
        self.wait_idle()
        c.set(syringe=True)
        c.run_ms(100)
        self.press("ok")
        self.mark("loaded")
        # Prime: hold the trigger, release, back to the status screen.
        self.press("ok")
        self.menu_to("Prime")
        self.press("ok")
        c.set(trigger=True)
        c.run_ms(400)
        c.set(trigger=False)
        self.wait_idle()
        self.mark("primed")
        self.press("back")
        self.press("back")

    def run(self):
        """The whole script; the report (see report())."""
        c = self.chip
        self.prime()
        # Single punctures, one trigger press each.
        for _ in range(SINGLE_PUNCTURES):
            self.press("trigger")
            self.wait_idle()
        self.mark("single")
        # Nappage: Mode -> nappage, then the trigger held.
        self.press("ok")
        self.menu_to("Mode")
        self.press("ok")
        self.press("up")
        self.press("ok")
        self.press("back")
        c.set(trigger=True)
        c.run_ms(BURST_MS)
        c.set(trigger=False)
        self.wait_idle()
        self.mark("nappage")
        # The emergency stop, refused while held, acknowledged once released.
        c.set(estop=True)
        c.run_ms(100)
        self.mark("estop")
        self.press("ok")
        c.set(estop=False)
        c.run_ms(200)
        self.press("ok")
        c.run_ms(200)
        self.mark("acknowledged")
        return self.report()

    def report(self):
        """The model's figures, then the core's own (read in the REPL after Ctrl-C)."""
        st = self.chip.status()
        out = self.chip.exec(READBACK)
        core = dict(kv.split("=") for kv in out.split())
        return {
            "status": st,
            "core": {k: int(v) for k, v in core.items()},
            "punctures": self.chip.punctures(),
            "marks": list(self.marks),
        }


READBACK = """
import gc
from board import app
a = app.current
c = a.core
gc.collect()
print('needle_pos=%d needle_emitted=%d needle_count=%d plunger_pos=%d plunger_emitted=%d '
      'plunger_count=%d punctures=%d overruns=%d late=%d irqs=%d ticks=%d state=%d fault=%d '
      'fluid=%d delivered=%d dose_steps=%d depth_steps=%d passes=%d frames=%d pass_us_max=%d '
      'mem_free=%d log_pending=%d' % (
      c.needle.pos, c.needle.emitted(), c.needle.port.emitted(), c.plunger.pos, c.plunger.emitted(),
      c.plunger.port.emitted(), c.punctures, c.overruns, a.late, a.irqs, c.ticks, c.state, c.fault,
      c.fluid_steps, c.delivered_steps, c.plans().dose_steps, c.plans().depth_steps, a.passes,
      a.frames, a.pass_us_max, gc.mem_free(), a.log.pending()))
"""


def run_session(work_dir, **chip_kw):
    """Boot the firmware on a fresh chip with the session's settings and run the script."""
    with Chip.with_firmware(work_dir, files=settings_files(), **chip_kw) as chip:
        rep = Session(chip).run()
        rep["clk_hz"] = CLK_HZ
        return rep
