"""Time for the board layer: wrap-safe ticks_ms()/ticks_us() and their arithmetic, and
the date (time_s) from the RP2040's real-time clock.

On MicroPython the clocks are time.ticks_ms/ticks_us (period 2**30). On
CPython, where the board layer only runs in host tests, they read the fake
machine's simulated clock, so no test waits on the real one. ticks_add and
ticks_diff are written out (same results as time.ticks_add/ticks_diff) so that
host tests run the wrap too; every intermediate stays a small int.

The date: the host tools set machine.RTC in UTC whenever they connect
(host_tools/settings_tool.py, `set_clock`), and restart the application with a
soft reset, which the RTC survives. A power-on or a hard reset starts it again
at 2021-01-01 (MicroPython's rp2 port): a year before CLOCK_SET_FROM means
nobody set it, and time_s() says 0 (the log's "no clock").
"""

import machine

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


CLOCK_SET_FROM = const(2024)  # an RTC year before it: never set since power-on


def unix_s(dt):
    """Seconds since 1970-01-01 of an RTC datetime (year, month, day, weekday, h, m, s, ...)."""
    y = dt[0]
    m = dt[1]
    if m <= 2:  # the year counted from March: the leap day comes last
        y -= 1
    m = m + 9 if m <= 2 else m - 3  # March 0 .. February 11
    days = y * 365 + y // 4 - y // 100 + y // 400 + (153 * m + 2) // 5 + dt[2] - 1
    return (days - 719468) * 86400 + dt[4] * 3600 + dt[5] * 60 + dt[6]  # 719468: 0000-03-01


def time_s():
    """The device time, seconds since 1970-01-01 UTC, or 0 if the RTC was never set.

    Main loop only (it allocates: the figure is beyond a small int)."""
    try:
        dt = machine.RTC().datetime()
    except Exception:  # an RTC that does not answer: no clock
        return 0
    if dt[0] < CLOCK_SET_FROM:
        return 0
    return unix_s(dt)
