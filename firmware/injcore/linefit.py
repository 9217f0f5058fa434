"""The line's time constant, read from the force's fall after the backlash preload.

The backlash measurement's preload (backlash.py) pushes a step of volume into
the primed line, needle in a cup: the stopper is squeezed, and while the
measurement settles (backlash.BL_SETTLE, machine.BACKLASH_SETTLE_MS) the
pressure drains through the needle as exp(-t / tau), tau being the line's
compliance x the needle's resistance: what pressure advance plans with
(Core.line_tau_us, puncture.py). The main loop feeds a LineFit the load
cell's force while Core.backlash_phase is BL_SETTLE (ui/service.py's poll).
It runs there, never in the tick, so it may allocate; integer maths only.

The fit:
- baseline: the mean force over the settle's last quarter (each force held
  until the next sample, weighted by how long it was held);
- peak: the highest sample; rise = peak - baseline;
- tau: the time the force takes to fall from baseline + FROM_PERMILLE of the
  rise to baseline + FROM_PERMILLE x 1/e of it (368/1000), each crossing
  interpolated linearly between the two samples around it. For an exponential
  that time is tau whatever the levels. Two levels rather than the peak's own
  1/e: the peak sample's time is known only to a sample period, and the
  stopper's sliding friction, part of the force while it moves, is gone a few
  ms after the stop: 45 % of the rise is below what the pressure alone still
  holds by then.

The load cell gives a new force every SAMPLE_US (12.5 ms), and a sample is
dated by the tick the main loop first sees it. A fall between two samples
reads as less than one period: a tau below ~10 ms is only an upper bound
(S_BOUND: tau_us < SAMPLE_US), still the best estimate there is, and the one
applied. A tau above about a third of the settle reads low, by some 10 % at
120 ms (up to 20 % with the load cell's noise): the settle ends before the
fall does, so the baseline is still above the rest. S_SLOW refuses the fits
where that leaves the reading far off.

`status` says what a finished fit found:
    S_NONE   no fit: none finished yet, the settle was cut short, or the load
             cell went invalid
    S_OK     tau_us is the line's time constant
    S_BOUND  tau_us is an upper bound: the fall took less than a sample period
    S_SMALL  not readable: the rise stood too few noise levels above the
             baseline (a dead or flat load cell, a line that drains faster than
             the push fills it)
    S_SLOW   not readable: the force at the settle's end had not come back to
             the force before the push (a tau of ~150 ms or more)
"""

from array import array

from . import machine as M
from .codes import FORCE_INVALID
from .compat import const

S_NONE = const(0)
S_OK = const(1)
S_BOUND = const(2)
S_SMALL = const(3)
S_SLOW = const(4)

SAMPLE_US = 1_000_000 // M.LOAD_CELL_HZ  # a new force from the load cell this often
E_PERMILLE = const(368)  # 1/e
FROM_PERMILLE = const(450)  # the fall is timed from this share of the rise (see above)
# The lower level must stand this many noise levels above the baseline: with
# FROM_PERMILLE, a rise of 18 noise levels (0.36 N) at least.
NOISE_LEVELS = const(3)
# The force at the settle's end may stand this share of the rise above the rest
# (the force before the push): 10 % is what a tau of ~150 ms leaves after 400 ms.
END_PERMILLE = const(100)
# Samples one settle keeps: 400 ms of 80 Hz is 32. More (a faster load cell)
# overwrite the last, so the newest force is always the settle's last.
CAPACITY = const(64)
_TICK_MASK = const(0x3FFFFFFF)  # Core.ticks wraps here


def fit(t_ticks, f_mn, n, end_tick, rest_mn=None):
    """(status, tau_us or None) of n samples: at t_ticks[i] (ticks from the first, rising)
    the force f_mn[i] (mN), held until the next; end_tick ends the last. rest_mn: the
    force before the push (None: unknown, the S_SLOW check is skipped)."""
    if n < 1 or end_tick <= t_ticks[n - 1]:
        return S_NONE, None
    # The baseline: the held force's mean over the last quarter of the settle.
    start = end_tick - end_tick // 4
    if start >= end_tick:
        start = end_tick - 1
    acc = 0
    for i in range(n):
        a = t_ticks[i]
        b = t_ticks[i + 1] if i + 1 < n else end_tick
        if a < start:
            a = start
        if b > a:
            acc += f_mn[i] * (b - a)
    base = acc // (end_tick - start)
    peak = 0
    for i in range(1, n):
        if f_mn[i] > f_mn[peak]:
            peak = i
    rise = f_mn[peak] - base
    if rise * FROM_PERMILLE * E_PERMILLE < NOISE_LEVELS * M.LOAD_CELL_NOISE_MN * 1_000_000:
        return S_SMALL, None
    if rest_mn is not None:
        left = rise * END_PERMILLE // 1000
        if left < NOISE_LEVELS * M.LOAD_CELL_NOISE_MN:
            left = NOISE_LEVELS * M.LOAD_CELL_NOISE_MN
        if base - rest_mn > left:
            return S_SLOW, None
    hi = base + rise * FROM_PERMILLE // 1000
    lo = base + rise * FROM_PERMILLE * E_PERMILLE // 1_000_000
    i = _below(f_mn, n, hi, peak + 1)
    if i >= n:
        return S_SMALL, None  # no fall after the peak
    t_hi = _crossing_us(t_ticks, f_mn, i, hi)
    i = _below(f_mn, n, lo, i)
    if i >= n:
        return S_SMALL, None
    tau_us = _crossing_us(t_ticks, f_mn, i, lo) - t_hi
    if tau_us < 1:
        tau_us = 1  # both crossings on one tick: the least there is
    return (S_BOUND if tau_us < SAMPLE_US else S_OK), tau_us


def _below(f_mn, n, level, i):
    """The first sample from i on below `level` (n: none)."""
    while i < n and f_mn[i] >= level:
        i += 1
    return i


def _crossing_us(t_ticks, f_mn, i, level):
    """When the force crossed `level`, us, linearly between sample i - 1 (at or above
    it) and sample i (below it)."""
    a = f_mn[i - 1]
    t0 = t_ticks[i - 1] * M.TICK_US
    return t0 + (t_ticks[i] - t_ticks[i - 1]) * M.TICK_US * (a - level) // (a - f_mn[i])


class LineFit:
    """The samples of one settle, and the fit of the last one finished (main loop only).

        fit.begin(rest_mn)        a measurement starts (rest: the force before the push, or None)
        fit.add(tick, force_mn)   each main-loop pass while the phase is BL_SETTLE
        fit.finish()              the settle ended: tau_us (or None), status set

    A force equal to the last one kept is the load cell's sample still held: not
    a new sample. An invalid force (FORCE_INVALID) spoils the settle.
    """

    def __init__(self, capacity=CAPACITY):
        self._ticks = array("i", bytes(4 * capacity))  # from the settle's first sample
        self._force_mn = array("i", bytes(4 * capacity))
        self._cap = capacity
        self._n = 0
        self._t0 = 0
        self._end = 0
        self._rest = None
        self._bad = False
        self.running = False  # between begin() and finish()
        self.tau_us = None  # the last fit's: us, or None
        self.status = S_NONE

    def begin(self, rest_mn=None):
        """A new measurement: the samples so far are dropped, the last fit stays until finish()."""
        self._n = 0
        self._rest = None if rest_mn == FORCE_INVALID else rest_mn
        self._bad = False
        self.running = True

    def add(self, tick, force_mn):
        if not self.running:
            return
        if force_mn == FORCE_INVALID:
            self._bad = True
            return
        n = self._n
        if not n:
            self._t0 = tick
        t = (tick - self._t0) & _TICK_MASK
        self._end = t + 1
        if n and self._force_mn[n - 1] == force_mn:
            return  # still the same sample
        if n == self._cap:
            n -= 1  # full: the newest replaces the last
        self._ticks[n] = t
        self._force_mn[n] = force_mn
        self._n = n + 1

    def finish(self):
        """Fit the settle just ended; returns tau_us (or None: `status` says why)."""
        self.running = False
        if self._bad:
            self.status, self.tau_us = S_NONE, None
        else:
            self.status, self.tau_us = fit(
                self._ticks, self._force_mn, self._n, self._end, self._rest
            )
        return self.tau_us

    def cancel(self):
        """The measurement stopped before its settle ended (a fault): no fit."""
        self.running = False
        self.status, self.tau_us = S_NONE, None
