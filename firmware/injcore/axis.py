"""Runs planned moves on one axis, one tick at a time, without allocating.

Each tick an axis takes the next step count from its move (ramp array or
cruise accumulator), turns it into the two PIO words for that tick through
tables built once at import, and hands them to its port. Position is kept in
microsteps from the axis's zero (set by homing).
"""

from array import array

from . import machine as M
from . import pio_word
from .compat import const

IDLE = const(0)
ACCEL = const(1)
CRUISE = const(2)
DECEL = const(3)

FORWARD = const(1)
BACKWARD = const(0)


def _tables():
    steps = array("I", bytes(4 * (M.MAX_STEPS_PER_TICK + 1)))
    pads = array("I", bytes(4 * (M.MAX_STEPS_PER_TICK + 1)))
    for n in range(M.MAX_STEPS_PER_TICK + 1):
        steps[n], pads[n] = pio_word.tick_words(n)
    return steps, pads


_NO_RAMP = array("H")  # an idle axis's ramp arrays

# Direction-less words per step count; the tick ORs the direction bit in.
STEP_WORDS, PAD_WORDS = _tables()


class Axis:
    def __init__(self, name, port):
        self.name = name
        self.port = port  # put(words), emitted(), halt(): see core.py
        self.origin = 0  # port's emitted count at this axis's zero
        self.seg = array("I", [STEP_WORDS[0], PAD_WORDS[0]])
        self.pos = 0  # commanded position, microsteps from zero
        self.phase = IDLE
        self.dirbit = FORWARD
        self.sign = 1
        self.last_dir = -1  # direction of the last move that stepped; -1 unknown
        self.steps = 0  # steps the current move has made (unsigned)
        self.last_n = 0  # steps in the latest tick (unsigned)
        # the running move, copied out of its Plan so the tick reads locals only
        self._ramp_up = _NO_RAMP
        self._ramp_down = _NO_RAMP
        self._i = 0
        self._k = 0
        self._cruise_left = 0
        self._q = 0
        self._r = 0
        self._den = 1
        self._acc = 0

    def start(self, plan, direction):
        """Begin a planned move (outside the hot path of a steady tick)."""
        self._ramp_up = plan.accel
        self._ramp_down = plan.decel
        self._k = plan.ramp_ticks
        self._cruise_left = plan.cruise_ticks
        self._q = plan.cruise_q
        self._r = plan.cruise_r
        self._den = plan.cruise_den
        self._acc = plan.cruise_acc0
        self._i = 0
        self.steps = 0
        self.dirbit = direction
        self.sign = 1 if direction == FORWARD else -1
        self.phase = ACCEL if plan.distance else IDLE
        if plan.distance:
            self.last_dir = direction

    def stop(self):
        """Decelerate to a stop along the move's own ramp (switch found, trigger released)."""
        ph = self.phase
        if ph == ACCEL:
            if self._i == 0:  # not a step made yet
                self.phase = IDLE
                return
            self._i = self._k - self._i  # the decel tick whose speed matches
            self.phase = DECEL
        elif ph == CRUISE:
            self._i = 0
            self.phase = DECEL

    def halt(self):
        """Stop generating steps now (faults): words already queued are dropped too."""
        self.phase = IDLE
        self.port.halt()

    def rezero(self, steps):
        """Move this axis's zero `steps` forward (homing found the switch there)."""
        self.pos -= steps
        self.origin += steps

    def emitted(self):
        """Steps the motor has actually been sent, in this axis's frame."""
        return self.port.emitted() - self.origin

    @property
    def busy(self):
        return self.phase != IDLE

    def tick(self):
        """Emit this tick's words; return the step count (unsigned)."""
        ph = self.phase
        n = 0
        if ph == CRUISE:
            n = self._q
            acc = self._acc + self._r
            if acc >= self._den:
                acc -= self._den
                n += 1
            self._acc = acc
            self._cruise_left -= 1
            if self._cruise_left <= 0:
                self._i = 0
                self.phase = DECEL
        elif ph == ACCEL:
            i = self._i
            n = self._ramp_up[i]
            i += 1
            if i >= self._k:
                i = 0
                self.phase = CRUISE if self._cruise_left > 0 else DECEL
            self._i = i
        elif ph == DECEL:
            i = self._i
            n = self._ramp_down[i]
            i += 1
            if i >= self._k:
                self.phase = IDLE
            self._i = i
        seg = self.seg
        d = self.dirbit
        seg[0] = STEP_WORDS[n] | d
        seg[1] = PAD_WORDS[n] | d
        self.port.put(seg)
        self.steps += n
        self.pos += n * self.sign
        self.last_n = n
        return n
