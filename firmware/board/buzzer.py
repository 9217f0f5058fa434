"""Piezo buzzer on PWM: named beep patterns, played without blocking.

play(pattern) starts a pattern, update(now_ms) from the main loop steps it
(frequency and duty only change when a step or phase begins), stop() silences
it. A pattern is (priority, repeat, steps) with steps as (freq_hz, on_ms,
off_ms) tuples; while a repeating pattern plays, one of lower priority is
refused, so a key click can never cut an alarm short.
"""

from machine import PWM, Pin

from board import pins
from board.clock import ticks_add, ticks_diff
from injcore.compat import const

# A passive piezo is loudest near its resonance (2.7-4 kHz for the usual 12 mm
# parts); distinct pitches tell the patterns apart.
CLICK = (0, False, ((4000, 15, 0),))  # key click: one short beep
REFUSE = (0, False, ((1500, 60, 40), (1500, 60, 0)))  # a key refused: two low blips
WARNING = (1, True, ((2700, 120, 120), (2700, 120, 1640)))  # two beeps every 2 s
ALARM = (2, True, ((3200, 150, 0), (2400, 150, 0)))  # two-tone, continuous until stop()
# No display: three long low beeps every 3 s, until a restart finds one (board/app.py).
BLIND = (1, True, ((1200, 300, 150), (1200, 300, 150), (1200, 300, 1800)))

_DUTY_ON = const(32768)  # 50 %: the loudest square wave for a piezo
_IDLE_HZ = const(2000)  # frequency set while silent (duty 0)


class Buzzer:
    """The buzzer on GPIO `pin_no`, silent until play()."""

    def __init__(self, pin_no=pins.BUZZER):
        self._pwm = PWM(Pin(pin_no), freq=_IDLE_HZ, duty_u16=0)
        self._hz = _IDLE_HZ
        self._pattern = None
        self._step = 0
        self._sounding = False
        self._due_ms = 0
        self._started = False

    @property
    def playing(self):
        return self._pattern

    def play(self, pattern):
        """Start `pattern` (CLICK, WARNING, ALARM or a tuple of the same shape)
        at the next update(). Returns False, and changes nothing, if a
        repeating pattern of higher priority is playing."""
        for step in pattern[2]:
            if step[1] <= 0 or step[2] < 0:  # a zero-length step would spin update()
                raise ValueError("pattern step needs on_ms > 0 and off_ms >= 0")
        current = self._pattern
        if current is not None and current[1] and current[0] > pattern[0]:
            return False
        if current is pattern and pattern[1]:
            return True  # already looping: do not restart its rhythm
        self._pattern = pattern
        self._step = 0
        self._started = False
        return True

    def stop(self):
        self._pattern = None
        self._silence()

    def _silence(self):
        if self._sounding:
            self._pwm.duty_u16(0)
            self._sounding = False

    def _sound(self, hz):
        if hz != self._hz:
            self._pwm.freq(hz)
            self._hz = hz
        self._pwm.duty_u16(_DUTY_ON)
        self._sounding = True

    def update(self, now_ms):
        """Advance the pattern to now_ms (time.ticks_ms()). Call every few ms."""
        pattern = self._pattern
        if pattern is None:
            return
        steps = pattern[2]
        if not self._started:
            self._started = True
            self._begin(steps[0], now_ms)
        # A late call catches up phase by phase rather than skipping to the end.
        while ticks_diff(now_ms, self._due_ms) >= 0:
            hz, on_ms, off_ms = steps[self._step]
            if self._sounding and off_ms:
                self._silence()
                self._due_ms = ticks_add(self._due_ms, off_ms)
                continue
            self._step += 1
            if self._step == len(steps):
                if not pattern[1]:
                    self.stop()
                    return
                self._step = 0
            self._begin(steps[self._step], self._due_ms)

    def _begin(self, step, start_ms):
        self._sound(step[0])
        self._due_ms = ticks_add(start_ms, step[1])
