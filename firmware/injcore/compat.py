"""The few names that differ between MicroPython and CPython.

const: MicroPython's compile-time constants; on CPython the value itself.

micropython: the hot path (injcore/tick.py and its rooms, board/irq.py) is written under
`@micropython.viper`, which the RP2040's MicroPython compiles to machine code.
On CPython that decorator is the identity, so the same source runs as plain
Python (the simulator, the tests). ptr32/ptr16 are viper's casts; inside a
viper function the compiler resolves them itself, whatever this module binds.
Outside viper (CPython, or a MicroPython without the native emitter, where
the tests strip the decorator) they leave an array as it is, so `p[i]` indexes
the array. Viper arithmetic is 32-bit: the hot path keeps every value a small
int (below 2**30), where both runtimes agree.
"""

import sys

if sys.implementation.name == "micropython":
    import micropython  # type: ignore  # noqa: F401
    from micropython import const  # type: ignore  # noqa: F401  (compile-time constants on the device)
else:  # CPython (a `micropython` stub package may be installed: never use it)

    def const(value):
        return value

    class micropython:  # noqa: N801  (stands in for the module)
        @staticmethod
        def viper(f):
            return f

        @staticmethod
        def native(f):
            return f


def ptr32(buf):
    return buf


def ptr16(buf):
    return buf
