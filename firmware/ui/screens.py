"""The operator interface: the Ui, and the tables of its screens and actions.

    ui = Ui(core, version="0.4.0")
    ui.button(OK, PRESS, now_ms)   # from the debouncer (board.buttons), main loop only
    ui.poll(now_ms)                # every main-loop pass: alarms, timers
    ui.draw(fb, now_ms)            # into a 128x64 framebuf.FrameBuffer (MONO_VLSB)
    ui.take_sound()                # SND_* for the buzzer, once

Pure Python on the framebuf API: the board draws it on the SSD1306, the host
front panel (host_tools/panel.py) on its own framebuf, from the same code.

The screens live in modules by purpose, each with its entries:
    ui/status.py    the status screen, and the alarm over every screen
    ui/menu.py      the main menu, value edits, the words of a refusal
    ui/session.py   home, load, prime, new session and lot, protocols, skip
    ui/service.py   the service code and menu, calibration, backlash, info
A screen is (name, key(ui, button) -> bool, draw(ui, fb), BACK target or
None: the key handler gets BACK then); an action, what a menu line does, is
(name, do(ui) -> bool, state(ui) -> the line's right column, or None: ">").
Adding one is its entry and its handlers in one of those modules. The Ui
dispatches keys and drawing through SCREENS, menu lines through ACTIONS,
and keeps what every screen shares: the screen shown, the message, the sound.

Rules the screens keep:
- A value changes only when OK confirms it, and only through the core's
  validation (Core.configure, Core.set_limits); BACK cancels. UP/DOWN stop at
  the limits (the engineer's included) and say which limit.
- An alarm (a latched fault, or the relief move before it) takes over every
  screen; an edit in progress is dropped. OK acknowledges once the machine
  has stopped. A warning shows as a banner on the status screen.
- Every screen has a way back: BACK goes up one level, a long BACK straight to
  the status screen.
- Every text fits its box: a message, a note or a banner wraps to at most two
  lines of 16 characters (draw.foot, status.py's banner), an alarm as its fault
  row allows (codes.FAULTS); tests/test_ui.py walks them all.
"""

from injcore import codes as C
from injcore.compat import const

from . import menu, service, session, status
from .keys import BACK, DOWN, LONG, PRESS, REPEAT, SND_CLICK, SND_NONE, SND_REFUSE, UP

# The names tests and host tools import from here.
from .menu import (  # noqa: F401
    A_HOME,
    A_LOAD,
    A_PRIME,
    A_PROTOCOL,
    A_SERVICE,
    A_SESSION,
    MAIN_MENU,
    MODE_LABELS,
    REPEAT_STEPS,
)
from .menu import ACTION as _ACTION  # noqa: F401
from .menu import LIMIT as _LIMIT  # noqa: F401
from .menu import NUM as _NUM  # noqa: F401
from .service import (  # noqa: F401
    A_BACKLASH,
    A_CALIB,
    A_CONFIRM,
    A_INFO,
    A_NEW_PIN,
    A_REMOVE,
    CAL_DENSITY,
    CAL_MASS,
    CAL_SHOTS,
    PIN_LOCK_MS,
    PIN_TRIES,
    SERVICE_MENU,
    SERVICE_PIN,
)
from .session import LOT_LEN  # noqa: F401

MESSAGE_MS = const(3000)  # how long a one-off message stays

_SCREENS = status.SCREENS + menu.SCREENS + session.SCREENS + service.SCREENS
SCREENS = {e[0]: e for e in _SCREENS}  # name -> (name, key, draw, back)
SCREEN_NAMES = tuple(e[0] for e in _SCREENS)
_ACTIONS = status.ACTIONS + menu.ACTIONS + session.ACTIONS + service.ACTIONS
ACTIONS = {e[0]: e for e in _ACTIONS}  # name -> (name, do, state)
assert len(SCREENS) == len(_SCREENS) and len(ACTIONS) == len(_ACTIONS), "a name used twice"
del _SCREENS, _ACTIONS
_KEY = const(1)
_DRAW = const(2)
_BACK = const(3)
_SETUPS = (menu.setup, session.setup, service.setup)  # the fields each part's screens keep
_POLLS = (session.poll, service.poll)  # every pass: the protocol run, priming, calibration


class Ui:
    def __init__(
        self, core, version="", info=None, service_pin=SERVICE_PIN, new_session=None, protocols=None
    ):
        self.core = core
        # What "New session" does: the board's log recorder ends the open session
        # and starts one (tlog.Recorder.start_session); bare, the core's counters.
        self.new_session = new_session or (lambda lot="": core.new_session())
        # Protocols (ui/protocols.py's Protocols, or None on a device without storage):
        # names() and start(name, lot) -> a running injcore.protocol.Run.
        self.protocols = protocols
        self.service_pin = tuple(service_pin)
        self.version = version
        self.info = info  # callable -> extra (label, value) pairs for the info screen
        self.screen = "status"  # a name in SCREENS
        self.sound = SND_NONE
        self.note = ""  # footer line of the edit, pin and prime screens
        self._msg = ""  # one-off message on the status screen and menus
        self._sticky = ""  # until BACK
        self._msg_until = 0
        self._now = 0
        self.up_ms = 0  # time the interface has run (device info)
        self._last_ms = None
        self._pressed_ms = 0  # up_ms when the key held was pressed
        self.held_ms = 0  # how long it has been held, at its latest event (0: a press)
        self._alarm = False
        for setup in _SETUPS:
            setup(self)

    # What tests and tools ask the screens' modules through the Ui.
    banner = status.banner
    state_text = status.state_text
    bounds = menu.bounds

    # ---- state -------------------------------------------------------------

    def alarm_on(self):
        s = self.core.state
        return s == C.ST_FAULT or s == C.ST_RELIEF

    def screen_name(self):
        return "alarm" if self.alarm_on() else self.screen

    def take_sound(self):
        s = self.sound
        self.sound = SND_NONE
        return s

    def sticky(self, text):
        """A message that stays on the status screen until BACK (a boot report)."""
        self._sticky = text

    def message(self, text):
        self._msg = text
        self._msg_until = self._now + MESSAGE_MS

    def go(self, screen):
        """Show the screen named `screen` (an entry of SCREENS)."""
        self.screen = screen
        self.note = ""

    def to_status(self):
        self.go("status")
        self.menu = MAIN_MENU

    def act(self, name):
        """Do the action `name` (a menu line's); True if it did something."""
        return ACTIONS[name][1](self)

    def action_state(self, name):
        """The right-hand column of the action's menu line."""
        state = ACTIONS[name][2]
        return state(self) if state is not None else ">"

    def poll(self, now_ms):
        """Timers and takeovers; call every main-loop pass, before button()."""
        if self._last_ms is not None:
            d = now_ms - self._last_ms
            if 0 < d < 1_000_000:  # a ticks_ms wrap or a jump counts as nothing
                self.up_ms += d
        self._last_ms = now_ms
        self._now = self.up_ms
        if self.alarm_on():
            if not self._alarm:
                self._alarm = True
                self.to_status()  # an edit in progress is dropped, never applied
        else:
            self._alarm = False
        if self._msg and self.up_ms - self._msg_until >= 0:
            self._msg = ""
        for poll in _POLLS:
            poll(self)

    # ---- buttons and drawing -------------------------------------------------

    def button(self, b, event, now_ms=None):
        """One debounced button event (ui.keys). Returns True if it did something."""
        if now_ms is not None:
            self.poll(now_ms)
        if event == PRESS:
            self._pressed_ms = self.up_ms
            self.held_ms = 0
        elif event == REPEAT:
            if b != UP and b != DOWN:
                return False
            self.held_ms = self.up_ms - self._pressed_ms
        elif event == LONG:
            if b == BACK and self.screen != "status" and not self.alarm_on():
                self.to_status()
                self.sound = SND_CLICK
                return True
            return False
        else:
            return False
        if self.alarm_on():
            return SCREENS["alarm"][_KEY](self, b)  # it sets its own sound
        screen = SCREENS[self.screen]
        if b == BACK and screen[_BACK] is not None:  # up one level
            self.go(screen[_BACK])
            done = True
        else:
            done = screen[_KEY](self, b)
        if self.sound == SND_NONE:
            self.sound = SND_CLICK if done else SND_REFUSE
        return done

    def draw(self, fb, now_ms=None):
        """The whole screen into `fb` (128x64); the caller sends it if it changed."""
        if now_ms is not None:
            self.poll(now_ms)
        fb.fill(0)
        SCREENS[self.screen_name()][_DRAW](self, fb)
