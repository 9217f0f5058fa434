"""Debounced buttons with press, release, long-press and auto-repeat events.

The board reads every GPIO in one load (SIO GPIO_IN, `machine.mem32[GPIO_IN]`),
turns it into a bitmask of pressed buttons with Buttons.pressed_mask(), and
hands that to sample(levels, now_ms) every millisecond or so. sample() is
allocation-free and short, so the 1 kHz tick may call it; events go into a
preallocated ring that the main loop empties with get().

A button's level counts as changed only when a sample still shows it
DEBOUNCE_MS after the first sample that showed it, so contact bounce (or a
pulse) no longer than that produces no event. Hold times are measured from
that first sample (the physical edge), not from the PRESS event. A button
already held at the first sample is locked out: it gives no event until it is
released (silently) and pressed again, so a button jammed or held at power-up
does nothing.
"""

from machine import Pin

from board import pins
from board.clock import ticks_add, ticks_diff
from injcore.compat import const

# Button numbers (the index of the pin in the tuple the Buttons was built on)
# and events live in ui.keys, shared with the interface.
from ui.keys import BACK, DOWN, EVENT_NAMES, LONG, OK, PRESS, RELEASE, REPEAT, UP  # noqa: F401

GPIO_IN = const(0xD0000004)  # SIO GPIO_IN: bit n is the level of GPIO n

OPERATOR_PINS = (pins.BTN_UP, pins.BTN_DOWN, pins.BTN_OK, pins.BTN_BACK)

DEBOUNCE_MS = const(20)  # a level must hold this long to count
LONG_MS = const(1000)
REPEAT_FIRST_MS = const(500)  # first REPEAT this long after the press
REPEAT_MS = const(100)  # then one every REPEAT_MS, steadily: the interface speeds the
# change up with the time held (ui/menu.py REPEAT_STEPS), so it stays even and foreseeable

_RING = const(16)  # ring slots, a power of two; one stays free, so 15 events can wait
_MAX_BUTTONS = const(8)  # an event is one byte: button * 8 + event
_NEVER = const(-1)


class Buttons:
    """Buttons on the GPIOs `pin_nos` (closed = 0, internal pull-ups).

    Button i is pin_nos[i]; for the operator panel UP, DOWN, OK, BACK. The
    same class serves any set of switches that wants these events (trigger,
    pedal, ...). repeat_mask selects the buttons that auto-repeat (bit i for
    button i; default all).
    """

    def __init__(self, pin_nos=OPERATOR_PINS, repeat_mask=0xFF):
        n = len(pin_nos)
        if not 0 < n <= _MAX_BUTTONS:
            raise ValueError("1 to 8 buttons")
        self.pin_nos = tuple(pin_nos)
        self._pins = tuple(Pin(p, Pin.IN, Pin.PULL_UP) for p in self.pin_nos)
        self.count = n
        self.repeat_mask = repeat_mask
        self._stable = 0  # debounced pressed mask
        self._candidate = 0  # the last raw mask seen
        self._locked = 0  # held at boot: ignored until released
        self._started = False
        self._since = [0] * n  # when the button's raw level last changed
        self._pressed_at = [0] * n  # the edge of the current press
        self._next_repeat = [_NEVER] * n
        self._long_done = 0  # bit i: LONG already sent for this press
        self._ring = bytearray(_RING)
        self._head = 0  # written only by sample()
        self._tail = 0  # written only by get()
        self.dropped = 0  # events lost to a full ring
        # get() returns these, so popping allocates nothing either.
        self._pairs = tuple(tuple((b, e) for e in range(len(EVENT_NAMES))) for b in range(n))

    def pressed_mask(self, gpio_word):
        """Bitmask of pressed buttons (bit i = button i) from a SIO GPIO_IN word."""
        mask = 0
        i = 0
        for p in self.pin_nos:
            if not (gpio_word >> p) & 1:  # closed contact reads 0
                mask |= 1 << i
            i += 1
        return mask

    def read_mask(self):
        """pressed_mask() of the pins read one by one (for boards without mem32)."""
        mask = 0
        i = 0
        for pin in self._pins:
            if not pin.value():
                mask |= 1 << i
            i += 1
        return mask

    def _put(self, button, event):
        head = self._head
        nxt = (head + 1) & (_RING - 1)
        if nxt == self._tail:  # full: one slot stays free to tell full from empty
            self.dropped += 1
            return
        self._ring[head] = button * _MAX_BUTTONS + event
        self._head = nxt

    def sample(self, levels, now_ms):
        """Take the pressed mask `levels` seen at now_ms (time.ticks_ms()).

        Allocation-free: call it from the tick or the main loop, at least
        every few ms (the debounce and repeat times are only as fine as that).
        """
        if not self._started:
            self._started = True
            self._stable = self._candidate = self._locked = levels
            for i in range(self.count):
                self._since[i] = now_ms
            return
        changed = levels ^ self._candidate
        self._candidate = levels
        for i in range(self.count):
            bit = 1 << i
            if changed & bit:
                self._since[i] = now_ms  # a new raw level: restart the debounce
                continue
            if (levels ^ self._stable) & bit:
                if ticks_diff(now_ms, self._since[i]) >= DEBOUNCE_MS:
                    self._settle(i, bit, levels & bit, now_ms)
            elif self._stable & bit and not self._locked & bit:
                self._held(i, bit, now_ms)

    def _settle(self, i, bit, pressed, now_ms):
        self._stable ^= bit
        if self._locked & bit:
            if not pressed:
                self._locked &= ~bit  # released at last: armed from now on
            return
        if pressed:
            self._pressed_at[i] = self._since[i]
            self._long_done &= ~bit
            if self.repeat_mask & bit:
                self._next_repeat[i] = ticks_add(self._since[i], REPEAT_FIRST_MS)
            self._put(i, PRESS)
            self._held(i, bit, now_ms)  # a late sample may already be past LONG
        else:
            self._next_repeat[i] = _NEVER
            self._put(i, RELEASE)

    def _held(self, i, bit, now_ms):
        held_ms = ticks_diff(now_ms, self._pressed_at[i])
        if held_ms >= LONG_MS and not self._long_done & bit:
            self._long_done |= bit
            self._put(i, LONG)
        due = self._next_repeat[i]
        if due != _NEVER and ticks_diff(now_ms, due) >= 0:
            due = ticks_add(due, REPEAT_MS)
            if ticks_diff(now_ms, due) >= 0:  # sampled late: no burst of repeats
                due = ticks_add(now_ms, REPEAT_MS)
            self._next_repeat[i] = due
            self._put(i, REPEAT)

    def get(self):
        """The oldest (button, event) pair, or None. Allocation-free."""
        tail = self._tail
        if tail == self._head:
            return None
        code = self._ring[tail]
        self._tail = (tail + 1) & (_RING - 1)
        return self._pairs[code // _MAX_BUTTONS][code % _MAX_BUTTONS]

    def pending(self):
        return (self._head - self._tail) & (_RING - 1)

    def pressed(self):
        """The debounced pressed mask (buttons locked at boot included)."""
        return self._stable
