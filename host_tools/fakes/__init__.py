"""Explicit host fakes of MicroPython-only modules (no MagicMock).

machine.py, rp2.py and framebuf.py record what the board layer did; they run
on CPython (host tests) and inside the virtual board. install() puts them in
sys.modules so that `import machine` in firmware/board finds them.
"""


def install():
    """Make machine, rp2 and framebuf the fakes; returns the three modules.

    Refuses if another module already holds one of the names (the real
    framebuf of some package, say), rather than testing against it.
    """
    import sys

    from . import framebuf, machine, rp2

    for name, mod in (("machine", machine), ("rp2", rp2), ("framebuf", framebuf)):
        if sys.modules.setdefault(name, mod) is not mod:
            raise ImportError("sys.modules[{!r}] is not the host fake".format(name))
    rp2._install_views()
    return machine, rp2, framebuf
