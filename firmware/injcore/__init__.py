"""Control core of the injector: pure Python, integer units.

Runs unchanged on the RP2040 (MicroPython), on MicroPython on a host and on
CPython. Nothing here imports `machine` or `rp2`: the board layer hands the
core its ports (see ports.py) and calls `Core.tick()` every millisecond; on
the board its interrupt runs the tick on the state array (board/irq.py).
"""
