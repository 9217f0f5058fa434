"""Wrap-safe time for the board layer: ticks_ms()/ticks_us() and their arithmetic.

On MicroPython the clocks are time.ticks_ms/ticks_us (period 2**30). On
CPython, where the board layer only runs in host tests, they read the fake
machine's simulated clock, so no test waits on the real one. ticks_add and
ticks_diff are written out (same results as time.ticks_add/ticks_diff) so that
host tests run the wrap too; every intermediate stays a small int.
"""

from injcore.compat import const

try:
    from time import ticks_ms, ticks_us  # type: ignore[attr-defined]
except ImportError:  # CPython host tests
    import machine

    def ticks_ms():
        return machine.now_ms() & _TICKS_MASK  # type: ignore[attr-defined]

    def ticks_us():
        return machine.now_ms() * 1000 & _TICKS_MASK  # type: ignore[attr-defined]


_TICKS_MASK = const(0x3FFFFFFF)
_TICKS_HALF = const(0x20000000)


def ticks_add(t, delta):
    """t + delta on the ticks circle (|delta| < 2**29)."""
    if delta >= 0:
        if t > _TICKS_MASK - delta:
            return t - (_TICKS_MASK - delta) - 1
        return t + delta
    t += delta
    if t < 0:
        t = t + _TICKS_MASK + 1
    return t


def ticks_diff(a, b):
    """a - b on the ticks circle, in [-2**29, 2**29)."""
    d = a - b
    if d >= _TICKS_HALF:
        return d - _TICKS_MASK - 1
    if d < -_TICKS_HALF:
        return d + _TICKS_MASK + 1
    return d
