"""The host front panel: the simulator, the device's interface and its buttons on one clock.

    panel = Panel()
    panel.press(OK); panel.press(OK)          # menu, Home
    panel.wait_until("ready", 30_000)
    panel.screenshot("build/panel/ready.png")
    print(panel.state_line())

Every simulated millisecond the panel does what the board does: the control
core ticks (sim.session.Simulator), the four operator buttons are sampled as
a pressed bitmask by the device's own debouncer (board.buttons.Buttons, so
debounce, long press and auto-repeat are the firmware's), their events go to
the same ui.screens.Ui the device runs, and every DISPLAY_PERIOD_MS the Ui
draws into a 128x64 MONO_VLSB framebuffer; the frame counts as "sent" only
when it changed, as on the board (board/app.py).

Two front ends use it: the script runner below (`injector panel --script`)
and the live terminal panel (`injector panel`, run_terminal()).
"""

import os
import re
import select
import shutil
import sys
import time
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import sim  # noqa: F401  (puts firmware/ on sys.path)
from host_tools import fakes, screenshot
from host_tools.cliutil import Refusal, TooLarge, clip, out_dir_problem, read_capped

fakes.install()  # board.buttons imports machine; ui draws with framebuf

import framebuf  # noqa: E402  (the host fake, installed above)

# The board's own cadence: at most one draw per DISPLAY_PERIOD_MS, sent only when changed.
from board.app import DISPLAY_PERIOD_MS, FIRMWARE_VERSION  # noqa: E402
from board.buttons import LONG_MS, Buttons  # noqa: E402
from host_tools.simfs import SimFS  # noqa: E402
from injcore import codes as C  # noqa: E402
from injcore import machine as M  # noqa: E402
from injcore import tlog  # noqa: E402
from injcore.protocol import ProtocolStore  # noqa: E402
from injcore.settings import FIELDS, MODE_CONTINUOUS, MODE_NAMES, Limits  # noqa: E402
from sim.session import SIM_DEVICE_ID, Simulator  # noqa: E402
from ui import keys as K  # noqa: E402
from ui.protocols import Protocols  # noqa: E402
from ui.screens import MODE_LABELS, SCREEN_NAMES, Ui  # noqa: E402

PROTOCOLS_DIR = Path(__file__).resolve().parents[1] / "protocols"  # the shipped examples

WIDTH = 128
HEIGHT = 64
PRESS_MS = 80  # a brisk finger on a button
RELEASE_GAP_MS = 80  # up time after a press: the debouncer (20 ms) must see the release
LONG_PRESS_MS = 1200  # comfortably past the debouncer's LONG_MS
SHOT_MS = 150  # a trigger click in single mode
SCREENSHOT_SCALE = 4

BUTTONS = {name: i for i, name in enumerate(K.BUTTON_NAMES)}  # "UP" -> 0 ...
SOUND_NAMES = {K.SND_CLICK: "click", K.SND_REFUSE: "refuse"}
STATES = C.STATE_NAMES
SCREENS = SCREEN_NAMES
assert LONG_PRESS_MS > LONG_MS  # `long BACK` must reach the debouncer's LONG event


class PanelTimeout(Exception):
    """wait_until ran out of simulated time."""


class Panel:
    """The simulated injector with its display and buttons; time is simulated ms."""

    def __init__(self, settings=None, seed=1, ready=False):
        self.sim = Simulator(settings=settings, seed=seed, trace=False)
        if ready:  # homed, a full 1 mL syringe loaded and primed, the quick way
            if not self.sim.home():
                raise RuntimeError("homing failed: %s" % C.FAULT_NAMES[self.sim.core.fault])
            self.sim.load(1)
            self.sim.prime(800)
        # The board's flash, in memory: the shipped example protocols (protocols/*.json)
        # and the treatment log, as the device keeps them.
        self.fs = SimFS()
        store = ProtocolStore(self.fs, self.sim.core.limits)
        for path in sorted(PROTOCOLS_DIR.glob("*.json")):
            store.save(path.read_text())
        self.recorder = tlog.Recorder(
            self.sim.core,
            tlog.Log(self.fs, "log"),
            device_id=SIM_DEVICE_ID,
            firmware=FIRMWARE_VERSION,
        )
        self.ui = Ui(
            self.sim.core,
            version=FIRMWARE_VERSION,
            info=lambda: [("host", "sim panel")],
            new_session=self.recorder.start_session,
            protocols=Protocols(self.sim.core, recorder=self.recorder, store=store),
        )
        self.buttons = Buttons()
        # Per button, the window [start, end) of simulated ms in which it is down.
        self._down = [(0, 0)] * len(K.BUTTON_NAMES)
        self.trigger_held = False  # 't' / `trigger on`: held until released
        self._trigger_until_ms = 0  # a timed click
        self._shown = bytearray(WIDTH * HEIGHT // 8)  # what the display shows
        self._work = bytearray(len(self._shown))  # what the Ui drew last
        self._fb = framebuf.FrameBuffer(self._work, WIDTH, HEIGHT, framebuf.MONO_VLSB)
        self._drawn_ms = (
            self.now_ms
        )  # as on the board: the first frame DISPLAY_PERIOD_MS after boot
        self.draws = 0  # ui.draw calls
        self.frames_sent = 0  # frames that differed from the one shown
        self.sounds = []  # (ms, "click" | "refuse"): what the Ui asked the buzzer for
        self.events = []  # (ms, "UP", "PRESS"): what the debouncer delivered
        self._service()  # the board's first main-loop pass: the buttons' first sample

    # ---- time ------------------------------------------------------------------

    @property
    def core(self):
        return self.sim.core

    @property
    def machine(self):
        return self.sim.machine

    @property
    def now_ms(self):
        return self.sim.now_us // M.TICK_US

    def step(self):
        """One simulated millisecond: inputs, the core's tick, then the main loop."""
        now = self.now_ms + 1
        self.machine.trigger = self.trigger_held or now < self._trigger_until_ms
        self.sim.step()
        self._service()

    def run(self, ms):
        for _ in range(int(ms)):
            self.step()

    wait = run

    def _service(self):
        """board/app.py's service(): buttons, interface, display (the core ticks apart)."""
        now = self.now_ms
        ui = self.ui
        b = self.buttons
        ui.poll(now)
        b.sample(self.pressed_mask(), now)
        ev = b.get()
        while ev is not None:
            self.events.append((now, K.BUTTON_NAMES[ev[0]], K.EVENT_NAMES[ev[1]]))
            ui.button(ev[0], ev[1])  # polled above, as on the board
            ev = b.get()
        snd = ui.take_sound()
        if snd != K.SND_NONE:
            self.sounds.append((now, SOUND_NAMES.get(snd, str(snd))))
        self.recorder.poll()
        self.recorder.service()
        if now - self._drawn_ms >= DISPLAY_PERIOD_MS:
            self._drawn_ms = now
            self.draws += 1
            ui.draw(self._fb)
            if self._work != self._shown:  # the board sends only a changed frame
                self._shown[:] = self._work
                self.frames_sent += 1

    def wait_until(self, name, timeout_ms=60_000, kind=None):
        """Run until the core state or the screen is `name`; returns the ms it took.

        kind is "state", "screen" or None (either; a name that is both needs kind).
        """
        test = condition(name, kind)
        start = self.now_ms
        while not test(self):
            if self.now_ms - start >= timeout_ms:
                raise PanelTimeout(
                    "%s %r not reached in %d ms (state %s, screen %s)"
                    % (
                        kind or "state or screen",
                        name,
                        timeout_ms,
                        self.state_name(),
                        self.screen_name(),
                    )
                )
            self.step()
        return self.now_ms - start

    # ---- inputs -------------------------------------------------------------------

    def pressed_mask(self):
        """The operator buttons down now, bit i = button i (what GPIO_IN would show)."""
        now = self.now_ms
        mask = 0
        for i, (start, end) in enumerate(self._down):
            if start <= now < end:
                mask |= 1 << i
        return mask

    def tap(self, button, hold_ms=PRESS_MS):
        """Put `button` down for hold_ms without running time; returns when it is released.

        A tap while the button is down (or still waiting for its release gap)
        lengthens that press instead of queueing another: a key held on the
        terminal arrives as auto-repeat bytes, and they become one long hold,
        so the device's own auto-repeat and long press take over.
        """
        b = button_number(button)
        now = self.now_ms
        start, end = self._down[b]
        if now < end:  # down now, or a press not started yet
            end = max(end, max(now + 1, start) + hold_ms)
        else:  # from the next sample, once the last release has had its gap
            start = max(now + 1, end + RELEASE_GAP_MS)
            end = start + hold_ms
        self._down[b] = (start, end)
        return end

    def press(self, button, hold_ms=PRESS_MS, count=1):
        """Press and release `button` count times (each held hold_ms, then up RELEASE_GAP_MS)."""
        for _ in range(count):
            end = self.tap(button, hold_ms)
            self.run(end + RELEASE_GAP_MS - self.now_ms)

    def hold(self, button, ms):
        self.press(button, ms)

    def long(self, button):
        self.press(button, LONG_PRESS_MS)

    def trigger(self, ms=SHOT_MS):
        """Click the trigger (single mode: one puncture), then leave it up RELEASE_GAP_MS."""
        self.trigger_click(ms)
        self.run(ms + RELEASE_GAP_MS)

    def trigger_click(self, ms=SHOT_MS):
        """The trigger down for the next `ms` ms, without running time."""
        self._trigger_until_ms = max(self._trigger_until_ms, self.now_ms + 1 + ms)

    def trigger_hold(self, ms):
        """Hold the trigger `ms` ms (nappage, prime), then release it."""
        self.set_trigger(True)
        self.run(ms)
        self.set_trigger(False)
        self.run(RELEASE_GAP_MS)

    def set_trigger(self, on):
        self.trigger_held = bool(on)

    def set_pedal(self, on):
        self.machine.pedal = bool(on)

    def set_estop(self, on):
        self.machine.estop = bool(on)

    def syringe_out(self):
        self.machine.remove_syringe()

    def syringe_in(self, model=None):
        """Seat a full syringe of `model`, an id of machine.SYRINGES (default: the model set,
        or model 1 for a custom one)."""
        if model is None:
            model = self.core.settings.syringe_model
            if model not in M.SYRINGES:
                model = 1
        if model not in M.SYRINGES:
            raise ValueError(no_model(model))
        self.machine.insert_syringe(model)

    # ---- outputs ------------------------------------------------------------------

    def state_name(self):
        return STATES[self.core.state]

    def screen_name(self):
        return self.ui.screen_name()

    def frame(self):
        """The shown frame, 1024 bytes MONO_VLSB (bit y % 8 of byte (y // 8) * 128 + x)."""
        return bytes(self._shown)

    def pixels(self):
        """The shown frame as 64 rows of 128 ints, 1 = lit."""
        buf = self._shown
        return [
            [(buf[(y >> 3) * WIDTH + x] >> (y & 7)) & 1 for x in range(WIDTH)]
            for y in range(HEIGHT)
        ]

    def image(self, scale=SCREENSHOT_SCALE):
        """The shown frame as a Pillow image (lit pixels white), each pixel scale x scale."""
        return screenshot.to_image(self._shown, scale)

    def screenshot(self, path, scale=SCREENSHOT_SCALE):
        """Write the shown frame as a PNG (host_tools.screenshot.read_png decodes it).

        The state line, the screen and the simulated time go in its text chunks.
        """
        from PIL.PngImagePlugin import PngInfo

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = PngInfo()
        meta.add_text("state", self.state_line())
        meta.add_text("screen", self.screen_name())
        meta.add_text("sim_ms", str(self.now_ms))
        self.image(scale).save(path, pnginfo=meta)
        return path

    def refresh(self):
        """Run to the next display refresh (at most DISPLAY_PERIOD_MS) unless one just happened.

        The display lags the machine by up to DISPLAY_PERIOD_MS, as on the
        board; a screenshot taken right after a wait-until would show the
        frame before it.
        """
        while self.draws == 0 or self._drawn_ms != self.now_ms:
            self.step()

    def last_sound(self):
        return self.sounds[-1][1] if self.sounds else "none"

    def setting(self, field):
        """An operator setting or an engineer limit by its field name."""
        if field in FIELDS:
            return getattr(self.core.settings, field)
        if field in Limits.RANGES:
            return getattr(self.core.limits, field)
        raise KeyError(field)

    def state_line(self):
        core, m = self.core, self.machine
        return (
            "%s | needle %+.2f mm | plunger %.2f mm | force %.2f N | left %.2f mL | #%d | "
            "screen %s | %.1fs"
            % (
                self.state_name(),
                m.needle_tip_um() / 1000,
                m.face_um / 1000,
                m.force_n,
                core.volume_left_nl() / 1e6,
                core.punctures,
                self.screen_name(),
                self.now_ms / 1000,
            )
        )


# ---- names ---------------------------------------------------------------------


def button_number(button):
    if isinstance(button, int) and 0 <= button < len(K.BUTTON_NAMES):
        return button
    if isinstance(button, str) and button.upper() in BUTTONS:
        return BUTTONS[button.upper()]
    raise ValueError("no button %r; buttons: %s" % (button, " ".join(K.BUTTON_NAMES)))


def no_model(model):
    """Why `model` cannot be seated: the models there are."""
    return "no syringe model %r; models: %s" % (
        model,
        ", ".join("%d (%s)" % (m, M.SYRINGES[m][M.SYR_NAME]) for m in sorted(M.SYRINGES)),
    )


def condition(name, kind=None):
    """A test panel -> bool for a state name, a screen name, or either."""
    if kind not in (None, "state", "screen"):
        raise ValueError("kind is state or screen, not %r" % kind)
    in_states = name in STATES and kind != "screen"
    in_screens = name in SCREENS and kind != "state"
    if in_states and in_screens:
        raise ValueError(
            "%r is both a state and a screen: say 'state %s' or 'screen %s'" % (name, name, name)
        )
    if in_states:
        return lambda p: p.state_name() == name
    if in_screens:
        return lambda p: p.screen_name() == name
    raise ValueError(
        "%r is no %s; states: %s; screens: %s"
        % (name, kind or "state or screen", " ".join(STATES), " ".join(SCREENS))
    )


# ---- the script runner ----------------------------------------------------------

HELP_SCRIPT = """\
One command a line; '#' starts a comment. Durations are ms (2000, 2000ms) or s (2s, 1.5s),
at most 300 s (a wait, a hold, a timeout); a COUNT is at most 100.
  start ready|unhomed         first line only: ready = homed, 1 mL loaded and primed (--ready)
  press BUTTON [COUNT]        UP DOWN OK BACK: press and release (80 ms each), COUNT times
  hold BUTTON MS              hold a button MS (UP/DOWN auto-repeat after 0.5 s)
  long BUTTON                 hold 1.2 s: long BACK goes straight to the status screen
  trigger                     one trigger click (150 ms): a puncture in single mode
  trigger hold MS             hold the trigger MS (nappage, prime)
  trigger on|off              hold / release the trigger
  pedal on|off
  estop on|off                the emergency stop
  syringe out | syringe in [MODEL]   MODEL: a syringe model id (default: the one set)
  wait MS
  wait-until [state|screen] NAME [TIMEOUT]   default timeout 60 s
  shot NAME                   write OUT/NAME.png (the display, 4x)
  expect screen NAME | expect state NAME
  expect setting FIELD VALUE  e.g. expect setting dose_nl 25000 (settings and limits)
  expect punctures N
  expect sound click|refuse|none   the last sound the latest action (not shot/expect) asked for
"""


class ScriptError(Exception):
    """A line the runner cannot understand (exit 2)."""


class ExpectFailed(Exception):
    """An expectation or a wait-until that did not hold (exit 1)."""


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)?$")
_SHOT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
DEFAULT_WAIT_MS = 60_000
# The longest wait, hold or timeout a script may ask for, simulated: longer than any step
# of a session (homing, loading, a long nappage burst). The panel simulates about 14 s a
# second here, so a slip of a few zeros would otherwise hold the terminal for many minutes.
MAX_WAIT_MS = 300_000
MAX_PRESSES = 100  # `press BUTTON COUNT`: each press takes 160 ms
SCRIPT_MAX_BYTES = 256 * 1024  # thousands of lines; a bigger file is not a script


def parse_ms(word):
    m = _DURATION.match(word.lower())
    if not m:
        raise ScriptError("%r is not a duration (ms, or with s: 2s, 1.5s)" % clip(word))
    if m.group(2) != "s" and "." in m.group(1):
        raise ScriptError("%r: whole milliseconds, please" % clip(word))
    # Decimal, not float: a number of any length is compared, never overflows
    ms = Decimal(m.group(1)) * (1000 if m.group(2) == "s" else 1)
    if ms > MAX_WAIT_MS:
        raise ScriptError(
            "%s is too long; at most %d ms (%d s) of simulated time"
            % (clip(word, 16), MAX_WAIT_MS, MAX_WAIT_MS // 1000)
        )
    return int(ms.to_integral_value(rounding=ROUND_HALF_EVEN))


def parse_int(word, what):
    try:
        return int(word)
    except ValueError:
        raise ScriptError("%s: %r is not a whole number" % (what, clip(word))) from None


def parse_on_off(word, what):
    if word.lower() in ("on", "off"):
        return word.lower() == "on"
    raise ScriptError("%s takes on or off, not %r" % (what, word))


def parse_setting_value(field, word):
    if field == "mode":  # the names the core and the screens use, as well as the number
        names = {n: i for i, n in enumerate(MODE_NAMES)}
        names.update({n: i for i, n in enumerate(MODE_LABELS)})
        if word.lower() in names:
            return names[word.lower()]
    return parse_int(word, field)


def parse_line(line):  # noqa: C901  (one branch per script command: the grammar in one place)
    """One script line -> (command, args) or None for a blank line; raises ScriptError."""
    words = line.split("#", 1)[0].split()
    if not words:
        return None
    cmd, args = words[0].lower(), words[1:]

    def need(lo, hi, usage):
        if not lo <= len(args) <= hi:
            raise ScriptError("usage: " + usage)

    def button(word):
        try:
            return button_number(word)
        except ValueError as e:
            raise ScriptError(str(e)) from None

    if cmd == "start":
        need(1, 1, "start ready|unhomed")
        if args[0].lower() not in ("ready", "unhomed"):
            raise ScriptError("start takes ready or unhomed, not %r" % args[0])
        return cmd, (args[0].lower() == "ready",)
    if cmd == "press":
        need(1, 2, "press BUTTON [COUNT]")
        count = parse_int(args[1], "count") if len(args) > 1 else 1
        if count < 1:
            raise ScriptError("count must be 1 or more")
        if count > MAX_PRESSES:
            raise ScriptError("count %s is too many; at most %d" % (clip(args[1], 12), MAX_PRESSES))
        return cmd, (button(args[0]), count)
    if cmd == "hold":
        need(2, 2, "hold BUTTON MS")
        return cmd, (button(args[0]), parse_ms(args[1]))
    if cmd == "long":
        need(1, 1, "long BUTTON")
        return cmd, (button(args[0]),)
    if cmd == "trigger":
        need(0, 2, "trigger | trigger hold MS | trigger on|off")
        if not args:
            return "trigger", ()
        if args[0].lower() == "hold":
            need(2, 2, "trigger hold MS")
            return "trigger-hold", (parse_ms(args[1]),)
        need(1, 1, "trigger on|off")
        return "trigger-set", (parse_on_off(args[0], "trigger"),)
    if cmd in ("pedal", "estop"):
        need(1, 1, cmd + " on|off")
        return cmd, (parse_on_off(args[0], cmd),)
    if cmd == "syringe":
        need(1, 2, "syringe out | syringe in [MODEL]")
        what = args[0].lower()
        if what == "out" and len(args) == 1:
            return "syringe-out", ()
        if what == "in":
            model = parse_int(args[1], "syringe model") if len(args) > 1 else None
            if model is not None and model not in M.SYRINGES:
                raise ScriptError(no_model(model))
            return "syringe-in", (model,)
        raise ScriptError("usage: syringe out | syringe in [MODEL]")
    if cmd == "wait":
        need(1, 1, "wait MS")
        return cmd, (parse_ms(args[0]),)
    if cmd == "wait-until":
        need(1, 3, "wait-until [state|screen] NAME [TIMEOUT]")
        kind = None
        if args[0].lower() in ("state", "screen") and len(args) > 1:
            kind, args = args[0].lower(), args[1:]
        if len(args) > 2:
            raise ScriptError("usage: wait-until [state|screen] NAME [TIMEOUT]")
        name = args[0].lower()
        try:
            condition(name, kind)
        except ValueError as e:
            raise ScriptError(str(e)) from None
        timeout = parse_ms(args[1]) if len(args) > 1 else DEFAULT_WAIT_MS
        return cmd, (name, kind, timeout)
    if cmd == "shot":
        need(1, 1, "shot NAME")
        if not _SHOT_NAME.match(args[0]):
            raise ScriptError("shot name %r: letters, digits, '.', '_' and '-' only" % args[0])
        return cmd, (args[0],)
    if cmd == "expect":
        if not args:
            raise ScriptError("usage: expect screen|state|setting|punctures|sound ...")
        what, rest = args[0].lower(), args[1:]
        if what in ("screen", "state"):
            if len(rest) != 1:
                raise ScriptError("usage: expect %s NAME" % what)
            name = rest[0].lower()
            known = SCREENS if what == "screen" else STATES
            if name not in known:
                raise ScriptError("no %s %r; %ss: %s" % (what, name, what, " ".join(known)))
            return "expect-" + what, (name,)
        if what == "setting":
            if len(rest) != 2:
                raise ScriptError("usage: expect setting FIELD VALUE")
            field = rest[0]
            if field not in FIELDS and field not in Limits.RANGES:
                raise ScriptError(
                    "no setting %r; settings: %s; limits: %s"
                    % (field, " ".join(FIELDS), " ".join(Limits.RANGES))
                )
            return "expect-setting", (field, parse_setting_value(field, rest[1]))
        if what == "punctures":
            if len(rest) != 1:
                raise ScriptError("usage: expect punctures N")
            return "expect-punctures", (parse_int(rest[0], "punctures"),)
        if what == "sound":
            names = ("none",) + tuple(SOUND_NAMES.values())
            if len(rest) != 1 or rest[0].lower() not in names:
                raise ScriptError("usage: expect sound " + "|".join(names))
            return "expect-sound", (rest[0].lower(),)
        raise ScriptError("expect what? screen, state, setting, punctures or sound, not %r" % what)
    raise ScriptError(
        "unknown command %r (commands: start press hold long trigger pedal estop "
        "syringe wait wait-until shot expect)" % clip(cmd)
    )


def parse_script(text, name="<script>"):
    """[(line number, command, args)]; raises ScriptError naming the file and line."""
    steps = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            parsed = parse_line(line)
        except ScriptError as e:
            raise ScriptError(
                "%s:%d: %s\n    %s" % (name, n, clip(e, 300), clip(line.strip(), 100))
            ) from None
        if parsed:
            if parsed[0] == "start" and steps:
                raise ScriptError(
                    "%s:%d: start must be the first command\n    %s"
                    % (name, n, clip(line.strip(), 100))
                )
            steps.append((n,) + parsed)
    return steps


def starts_ready(steps):
    """True if the script begins with `start ready`."""
    return bool(steps) and steps[0][1] == "start" and steps[0][2][0]


class ScriptRunner:
    """Runs a parsed script on a Panel; shots go to out_dir."""

    def __init__(self, panel, out_dir, name="<script>"):
        self.panel = panel
        self.out_dir = Path(out_dir)
        self.name = name
        self.shots = []  # paths written
        self._sounds_before = 0

    def run(self, steps):
        for line_no, cmd, args in steps:
            try:
                self.do(cmd, args)
            except ExpectFailed as e:
                raise ExpectFailed("%s:%d: %s" % (self.name, line_no, e)) from None
            except PanelTimeout as e:
                raise ExpectFailed("%s:%d: wait-until: %s" % (self.name, line_no, e)) from None
            except (ValueError, KeyError) as e:
                raise ScriptError("%s:%d: %s" % (self.name, line_no, e)) from None
            except BrokenPipeError:
                raise
            except OSError as e:  # a screenshot that cannot be written (permissions, disk)
                raise ScriptError(
                    "%s:%d: cannot write to %s: %s" % (self.name, line_no, self.out_dir, e)
                ) from None

    def do(self, cmd, args):  # noqa: C901  (one branch per script command)
        p = self.panel
        if not cmd.startswith("expect") and cmd not in ("shot", "start"):
            self._sounds_before = len(p.sounds)  # `expect sound`: what the last action asked for
        if cmd == "start":
            pass  # used when the Panel was made (starts_ready)
        elif cmd == "press":
            p.press(args[0], count=args[1])
        elif cmd == "hold":
            p.hold(args[0], args[1])
        elif cmd == "long":
            p.long(args[0])
        elif cmd == "trigger":
            p.trigger()
        elif cmd == "trigger-hold":
            p.trigger_hold(args[0])
        elif cmd == "trigger-set":
            p.set_trigger(args[0])
            p.run(1)
        elif cmd == "pedal":
            p.set_pedal(args[0])
            p.run(1)
        elif cmd == "estop":
            p.set_estop(args[0])
            p.run(1)
        elif cmd == "syringe-out":
            p.syringe_out()
            p.run(1)
        elif cmd == "syringe-in":
            p.syringe_in(args[0])
            p.run(1)
        elif cmd == "wait":
            p.run(args[0])
        elif cmd == "wait-until":
            p.wait_until(args[0], args[2], kind=args[1])
        elif cmd == "shot":
            p.refresh()
            self.shots.append(p.screenshot(self.out_dir / (args[0] + ".png")))
        elif cmd == "expect-screen":
            self._expect("screen", args[0], p.screen_name())
        elif cmd == "expect-state":
            self._expect("state", args[0], p.state_name())
        elif cmd == "expect-setting":
            field = args[0]
            show = (lambda v: "%s (%d)" % (MODE_NAMES[v], v)) if field == "mode" else str
            self._expect("setting " + field, show(args[1]), show(p.setting(field)))
        elif cmd == "expect-punctures":
            self._expect("punctures", args[0], p.core.punctures)
        elif cmd == "expect-sound":
            new = p.sounds[self._sounds_before :]
            self._expect("sound", args[0], new[-1][1] if new else "none")
        else:  # parse_line and this list disagree: a bug here, not in the script
            raise AssertionError("unhandled command %r" % cmd)

    def _expect(self, what, wanted, got):
        if wanted != got:
            raise ExpectFailed(
                "expected %s %s, got %s  [%s]" % (what, wanted, got, self.panel.state_line())
            )

    def summary(self):
        p = self.panel
        lines = [
            "%d screenshot(s)%s" % (len(self.shots), " in %s" % self.out_dir if self.shots else ""),
            "%d puncture(s), %.3f uL delivered, %.3f uL primed"
            % (p.core.punctures, p.core.delivered_nl() / 1000, p.core.primed_nl() / 1000),
            p.state_line(),
        ]
        return "\n".join(lines)


def run_script(path, out_dir="build/panel", ready=False, seed=1, stdout=None, stderr=None):
    """Run the script file; returns the exit code (0 ok, 1 an expect failed, 2 a bad script)."""
    code, runner = execute_script(path, out_dir, ready, seed, stderr)
    if runner is not None:
        print(runner.summary(), file=stdout or sys.stdout)
    return code


def execute_script(path, out_dir="build/panel", ready=False, seed=1, stderr=None):
    """(exit code, the ScriptRunner or None if the script never ran); problems go to stderr."""
    stderr = stderr or sys.stderr
    path = Path(path)
    try:
        text = read_capped(path, SCRIPT_MAX_BYTES).decode("utf-8")
    except TooLarge as e:
        print(
            "injector panel: script %s: %d bytes is too large; a script is at most %d"
            % (path, e.size_bytes, e.max_bytes),
            file=stderr,
        )
        return 2, None
    except Refusal as e:
        print("injector panel: cannot read script %s: %s" % (path, e), file=stderr)
        return 2, None
    except UnicodeDecodeError:
        print("injector panel: cannot read script %s: not UTF-8 text" % path, file=stderr)
        return 2, None
    try:
        steps = parse_script(text, str(path))
        if not steps:
            raise ScriptError("%s: no commands in it" % path)
    except ScriptError as e:
        print("injector panel: %s" % e, file=stderr)
        print("  (the script language: injector panel --help-script)", file=stderr)
        return 2, None
    why = out_dir_problem(out_dir)  # before the run: its screenshots must have somewhere to go
    if why:
        print("injector panel: --out %s" % why, file=stderr)
        return 2, None
    panel = Panel(seed=seed, ready=ready or starts_ready(steps))
    runner = ScriptRunner(panel, out_dir, str(path))
    code = 0
    try:
        runner.run(steps)
    except ExpectFailed as e:
        print("injector panel: FAILED %s" % e, file=stderr)
        code = 1
    except ScriptError as e:
        print("injector panel: %s" % e, file=stderr)
        code = 2
    if code:  # what the display showed when it went wrong
        panel.refresh()
        failed = Path(out_dir) / (path.stem + "-failed.png")
        try:
            runner.shots.append(panel.screenshot(failed))
            print("  the display then: %s" % failed, file=stderr)
        except OSError as e:
            print("  (no screenshot of the display: %s)" % e, file=stderr)
    return code, runner


# ---- the live terminal panel ------------------------------------------------------

HINT_KEYS = (
    "Up/k Down/j  Enter=OK  Bksp/Esc/b=BACK  B=long BACK | space=shot  "
    "t=hold trigger  p=pedal  e=E-stop  s=syringe  q=quit"
)
# Terminal sizes the live panel needs: the 130-column frame and the lines under it.
TERM_COLS = WIDTH + 2
TERM_ROWS = HEIGHT // 2 + 2 + 4


def next_step(panel):
    """One line telling a newcomer what to do now."""
    core = panel.core
    s = core.state
    screen = panel.screen_name()
    if screen == "alarm":
        if core.switches & C.SW_ESTOP:
            return "Alarm: release the E-stop (e), then Enter to acknowledge"
        return "Alarm: Enter acknowledges once the machine has stopped; then home again"
    if s == C.ST_HOMING:
        return "Homing..."
    if s == C.ST_LOAD:
        return "Plunger going back; then s seats a syringe and Enter confirms its size"
    if screen == "prime":
        if core.state == C.ST_PRIME or panel.trigger_held:
            return "Priming: t again releases the trigger, then Esc"
        return "Prime: t holds the trigger (fluid flows), t releases, Esc when done"
    if screen == "syringe":
        if not core.switches & C.SW_SYRINGE:
            return "Load: s seats a syringe of the size shown, then Enter confirms it"
        return "Enter: the syringe seated is the size shown; Esc: it is not (menu > Syringe)"
    if screen == "edit":
        return "Up/Down change the value, Enter sets it, Esc cancels"
    if screen == "menu":
        return "Up/Down choose, Enter opens/does it, Esc back to the status screen"
    if screen != "status":
        return "Esc goes back; B (long BACK) to the status screen"
    return _status_step(core)


def _status_step(core):
    """next_step on the status screen: what the machine still needs before a shot."""
    s = core.state
    if s == C.ST_UNHOMED:
        return "Start: Enter opens the menu, Enter again homes"
    if not core.switches & C.SW_SYRINGE:
        return "No syringe: Enter (menu), Down to Load syr., Enter: the plunger goes back; then s"
    if not core.syringe_confirmed:
        return "Size not confirmed: Enter (menu), Down to Load syr., Enter; Enter confirms it"
    if not core.primed:
        return "Prime: Enter (menu), Up/Down to Prime, Enter; t holds the trigger a second, t, Esc"
    if s in C.PUNCTURE:
        return "Firing..."
    if core.settings.mode == MODE_CONTINUOUS:
        return "Nappage: t holds the trigger (punctures repeat), t releases; menu (Enter) > Mode"
    return "Ready: space fires one puncture; Enter > Dose (Up/Down, Enter) sets the dose"


def display_lines(pixels):
    """The 128x64 pixels as 32 text rows of half blocks inside a frame (130 x 34)."""
    out = ["┌" + "─" * WIDTH + "┐"]
    for y in range(0, HEIGHT, 2):
        top, bottom = pixels[y], pixels[y + 1]
        out.append(
            "│"
            + "".join(
                "█" if t and b else "▀" if t else "▄" if b else " " for t, b in zip(top, bottom)
            )
            + "│"
        )
    out.append("└" + "─" * WIDTH + "┘")
    return out


# Actions the live panel takes for key bytes.
KEY_ACTIONS = {
    b"k": "UP",
    b"j": "DOWN",
    b"\r": "OK",
    b"\n": "OK",
    b"\x7f": "BACK",
    b"\x08": "BACK",
    b"b": "BACK",
    b"\x1b": "BACK",
    b"B": "long-BACK",
    b" ": "shot",
    b"t": "trigger",
    b"p": "pedal",
    b"e": "estop",
    b"s": "syringe",
    b"q": "quit",
    b"\x03": "quit",
}
_ESCAPES = {b"\x1b[A": "UP", b"\x1bOA": "UP", b"\x1b[B": "DOWN", b"\x1bOB": "DOWN"}
_CSI = re.compile(rb"\x1b[\[O][0-9;]*[@-~]")  # any other cursor/function key: ignored


def decode_keys(data):
    """Key bytes from the terminal -> action names (see KEY_ACTIONS); unknown keys skipped."""
    actions = []
    i = 0
    while i < len(data):
        if data[i] == 0x1B:
            m = _CSI.match(data, i)
            if m:
                act = _ESCAPES.get(m.group())
                if act:
                    actions.append(act)
                i = m.end()
                continue
        act = KEY_ACTIONS.get(data[i : i + 1])
        if act:
            actions.append(act)
        i += 1
    return actions


class Live:
    """The live panel without the terminal: keys in, sim time advanced to a wall clock."""

    MAX_CATCH_UP_MS = 250  # a slow host falls behind rather than freezing to catch up

    def __init__(self, panel, clock=time.monotonic):
        self.panel = panel
        self.clock = clock
        self._wall0 = clock()
        self._sim0 = panel.now_ms
        self.quit = False
        self.flash = ""  # what the last toggle did, shown under the display

    def key(self, action):
        p = self.panel
        if action in BUTTONS:
            p.tap(action)
        elif action == "long-BACK":
            p.tap("BACK", LONG_PRESS_MS)
        elif action == "shot":
            if p.trigger_held:
                self.flash = "trigger is held (t releases it)"
            else:
                p.trigger_click()
        elif action == "trigger":
            p.set_trigger(not p.trigger_held)
            self.flash = "trigger held" if p.trigger_held else "trigger released"
        elif action == "pedal":
            p.set_pedal(not p.machine.pedal)
            self.flash = "pedal down" if p.machine.pedal else "pedal up"
        elif action == "estop":
            p.set_estop(not p.machine.estop)
            self.flash = "E-STOP PRESSED" if p.machine.estop else "E-stop released"
        elif action == "syringe":
            if p.machine.syringe_present:
                p.syringe_out()
                self.flash = "syringe removed"
            else:
                p.syringe_in()
                self.flash = "syringe seated"
        elif action == "quit":
            self.quit = True

    def feed(self, data):
        for action in decode_keys(data):
            self.key(action)

    def catch_up(self):
        """Run the simulation up to the wall clock; returns the ms run."""
        p = self.panel
        due = self._sim0 + round((self.clock() - self._wall0) * 1000) - p.now_ms
        if due > self.MAX_CATCH_UP_MS:  # behind: drop the rest, keep real time from here
            self._sim0 -= due - self.MAX_CATCH_UP_MS
            due = self.MAX_CATCH_UP_MS
        p.run(max(0, due))
        return max(0, due)

    def screen(self):
        """Everything the terminal shows, as lines."""
        p = self.panel
        m = p.machine
        inputs = []
        if p.trigger_held:
            inputs.append("TRIGGER HELD")
        if m.pedal:
            inputs.append("PEDAL")
        if m.estop:
            inputs.append("E-STOP")
        inputs.append("syringe in" if m.syringe_present else "no syringe")
        recent = [name for ms, name in p.sounds if p.now_ms - ms < 300]
        if recent:
            inputs.append("beep: " + recent[-1])
        if m.alarm_level == C.ALARM_FAULT:
            inputs.append("ALARM TONE")
        lines = display_lines(p.pixels())
        lines.append(p.state_line())
        lines.append("  ".join(inputs) + ("  | " + self.flash if self.flash else ""))
        lines.append("> " + next_step(p))
        lines.append(HINT_KEYS)
        return lines


def run_terminal(panel, stdin=None, stdout=None):
    """The live panel on a terminal until q; the terminal is restored however it ends."""
    import termios
    import tty

    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    live = Live(panel)
    write = stdout.write
    try:
        # Keys one by one, no echo; output processing and Ctrl-C stay on. TCSANOW
        # keeps the keys typed while the panel started (the default flushes them).
        tty.setcbreak(fd, termios.TCSANOW)
        size = shutil.get_terminal_size()
        if size.columns < TERM_COLS or size.lines < TERM_ROWS:
            write(
                "The panel needs a terminal of at least %d x %d; this one is %d x %d.\n"
                "Enlarge the window (or a smaller font). Any key goes on anyway, q quits.\n"
                % (TERM_COLS, TERM_ROWS, size.columns, size.lines)
            )
            stdout.flush()
            if os.read(fd, 16)[:1] in (b"q", b""):
                return 0
            live = Live(panel)  # real time starts now, not before the question
        write("\x1b[?1049h\x1b[?25l\x1b[2J")  # alternate screen, cursor hidden
        last = None
        next_draw = 0.0
        while not live.quit:
            ready, _, _ = select.select([fd], [], [], 0.005)
            if ready:
                try:
                    data = os.read(fd, 256)
                except OSError:  # the terminal went away (EIO)
                    break
                if not data:
                    break
                live.feed(data)
            live.catch_up()
            now = time.monotonic()
            if now >= next_draw:  # the terminal at most 25 times a second
                next_draw = now + 0.04
                resized = shutil.get_terminal_size()
                if resized != size:
                    size, last = resized, None
                    write("\x1b[2J")
                lines = live.screen()
                if lines != last:
                    last = lines
                    write("\x1b[H" + "\n".join(line + "\x1b[K" for line in lines) + "\x1b[J")
                    stdout.flush()
    except KeyboardInterrupt:  # Ctrl-C: leave as q does
        pass
    finally:
        write("\x1b[?25h\x1b[?1049l")  # cursor back, main screen back
        stdout.flush()
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    print("panel: %d puncture(s); %s" % (panel.core.punctures, panel.state_line()), file=stdout)
    return 0
