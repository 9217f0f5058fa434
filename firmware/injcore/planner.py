"""Trapezoidal move planning in whole control ticks, integer arithmetic only.

A move of D microsteps is laid on a grid of N ticks: K ticks of constant
acceleration, C = N - 2K ticks of cruise, K ticks of deceleration. Position is
an exact rational function of the tick number k with one denominator
den = 2K(N-K):
    accel   p(k) = D k^2 / den
    cruise  p(k) = D K (2k - K) / den
    decel   p(k) = D - D (N-k)^2 / den
so acceleration D/(K(N-K)) and cruise speed D/(N-K) (per tick) are exact, and
the steps emitted by tick k are floor(p(k)) - floor(p(k-1)). They add up to D
exactly, whatever D, K and N. N is the fewest ticks for which some K keeps
speed and acceleration within the axis limits.

Planning happens when settings change or an action starts; the ramps go into
arrays allocated once, and the cruise is a Bresenham accumulator, so the tick
only reads an array or adds two integers (see axis.py).
"""

from array import array

from .compat import const

# ---- constants written by `make consts` from layout.py: do not edit ----
_R_DIST = const(0)
_R_K = const(1)
_R_CRUISE = const(2)
_R_Q = const(3)
_R_R = const(4)
_R_DEN = const(5)
_R_ACC0 = const(6)
_R_UP = const(7)
_R_DOWN = const(8)
# ---- end of the written constants ----

TICKS_PER_S = const(1000)
RAMP_TICKS_MAX = const(64)  # longest ramp any axis may need (checked when planning)


class PlanError(ValueError):
    pass


class Plan:
    """One planned move, reusable: `set()` overwrites it in place.

    A plan of the core lives in the tick's arrays: `table` is the state
    array and `row` the S index of its row (injcore/layout.py, R_*), its ramps
    sit in `ramps` from `ramp_at`. A plan on its own (tests, tools) keeps
    its ramps in arrays of its own.
    """

    def __init__(
        self, name, ramp_ticks_max=RAMP_TICKS_MAX, table=None, row=0, ramps=None, ramp_at=0
    ):
        self.name = name
        # Short slow moves (homing's settle) need a tick or two of ramp: sizing
        # their arrays to that saves ~0.7 KB of heap per plan.
        self.ramp_ticks_max = ramp_ticks_max
        self.table = table
        self.row = row
        if ramps is None:  # steps per accel tick, then steps per decel tick
            self._ramps = array("H", bytes(4 * ramp_ticks_max))
            self._at = 0
        else:
            self._ramps = ramps
            self._at = ramp_at
        self.distance = 0  # microsteps, >= 0; the direction is given when started
        self.ramp_ticks = 0  # K
        self.cruise_ticks = 0  # C
        self.cruise_q = 0  # whole steps per cruise tick
        self.cruise_r = 0  # remainder added to the accumulator per cruise tick
        self.cruise_den = 1  # accumulator modulus
        self.cruise_acc0 = 0  # accumulator at the start of the cruise
        self.vmax_sps = 0
        self.amax_sps2 = 0

    @property
    def accel(self):
        """Steps per acceleration tick (a copy; the first ramp_ticks count)."""
        return self._ramps[self._at : self._at + self.ramp_ticks_max]

    @property
    def decel(self):
        """Steps per deceleration tick (a copy)."""
        a = self._at + self.ramp_ticks_max
        return self._ramps[a : a + self.ramp_ticks_max]

    @property
    def ticks(self):
        return 2 * self.ramp_ticks + self.cruise_ticks

    def set(self, distance, vmax_sps, amax_sps2):
        """Plan a move of `distance` microsteps under vmax (steps/s) and amax (steps/s^2)."""
        if distance < 0 or vmax_sps <= 0 or amax_sps2 <= 0:
            raise PlanError(
                "%s: bad move (distance %d, speed %d, accel %d)"
                % (self.name, distance, vmax_sps, amax_sps2)
            )
        self.distance = distance
        self.vmax_sps = vmax_sps
        self.amax_sps2 = amax_sps2
        if distance == 0:
            self.ramp_ticks = self.cruise_ticks = 0
            return self._publish()
        n, k = fewest_ticks(distance, vmax_sps, amax_sps2)
        if k > self.ramp_ticks_max:
            raise PlanError("%s: ramp of %d ticks exceeds %d" % (self.name, k, self.ramp_ticks_max))
        d = distance
        den = 2 * k * (n - k)
        up = self._ramps
        at = self._at
        down = at + self.ramp_ticks_max
        prev = 0
        for i in range(1, k + 1):  # accel ramp, floor of D i^2 / den
            p = d * i * i // den
            up[at + i - 1] = p - prev
            prev = p
        # decel: p = D - ceil(D (N-k)^2 / den) at ticks N-K .. N
        prev = d - _ceil_div(d * k * k, den)
        for j in range(k):
            rest = k - 1 - j  # N - tick
            p = d - _ceil_div(d * rest * rest, den)
            up[down + j] = p - prev
            prev = p
        # cruise: p(k) = floor(D (2k - K) / (2 (N - K))): add 2D per tick.
        self.ramp_ticks = k
        self.cruise_ticks = n - 2 * k
        self.cruise_den = 2 * (n - k)
        self.cruise_q = 2 * d // self.cruise_den
        self.cruise_r = 2 * d % self.cruise_den
        self.cruise_acc0 = d * k % self.cruise_den
        return self._publish()

    def _publish(self):
        """Write the plan into its row of the tick's table (a plan on its own has none)."""
        t = self.table
        if t is not None:
            self.write_row(t, self.row, self._at)
        return self

    def write_row(self, t, row, ramp_at):
        """The plan as the tick reads it, at S[row], its ramps at `ramp_at`."""
        t[row + _R_DIST] = self.distance
        t[row + _R_K] = self.ramp_ticks
        t[row + _R_CRUISE] = self.cruise_ticks
        t[row + _R_Q] = self.cruise_q
        t[row + _R_R] = self.cruise_r
        t[row + _R_DEN] = self.cruise_den
        t[row + _R_ACC0] = self.cruise_acc0
        t[row + _R_UP] = ramp_at
        t[row + _R_DOWN] = ramp_at + self.ramp_ticks_max


def _ceil_div(a, b):
    return -((-a) // b)


def feasible_ramp(distance, n, vmax_sps, amax_sps2):
    """The largest ramp K (ticks) that moves `distance` in n ticks within the limits, or 0."""
    # speed:  D / (N - K) <= vmax / 1000       <=>  K <= N - 1000 D / vmax
    # accel:  D / (K (N - K)) <= amax / 10^6   <=>  K (N - K) * amax >= 10^6 D
    k = min(n // 2, n - _ceil_div(TICKS_PER_S * distance, vmax_sps))
    if k < 1:
        return 0
    if k * (n - k) * amax_sps2 < TICKS_PER_S * TICKS_PER_S * distance:
        return 0
    return k


def fewest_ticks(distance, vmax_sps, amax_sps2):
    """(N, K): the shortest tick grid for the move and its ramp length."""
    # Lower bounds: cruise the whole way at vmax, or a triangle at amax.
    n = max(
        _ceil_div(TICKS_PER_S * distance, vmax_sps) + 1,
        2 * _isqrt(TICKS_PER_S * TICKS_PER_S * distance // amax_sps2),
        2,
    )
    while True:
        k = feasible_ramp(distance, n, vmax_sps, amax_sps2)
        if k:
            return n, k
        n += 1


def _isqrt(x):
    if x <= 0:
        return 0
    r = x
    y = (r + 1) // 2
    while y < r:
        r = y
        y = (r + x // r) // 2
    return r
