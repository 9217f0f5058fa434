"""The few names that differ between MicroPython and CPython."""

try:
    from micropython import const  # type: ignore  # noqa: F401  (compile-time constants on the device)
except ImportError:  # CPython

    def const(value):
        return value
