"""Self-test of a deployed board (a Pico or the virtual board), run after `make deploy`:

    mpremote connect PORT run host_tools/board_selftest.py

Nothing moves: the core runs against its loopback rig (injcore.rig), not the
motors. It imports the deployed core, runs the scripted session (home, load,
prime, 3 single punctures, a nappage burst), checks the outcome, measures the
heap allocated per control tick (must be 0) and, if board.app is deployed,
the heap that importing and booting the application takes (drivers stay
disabled; the app is stopped again). Output is machine-readable, one line
per step, ending with either

    selftest: ok punctures=11 hash=... alloc_per_tick=0 core_heap=... boot_heap=... mem_free=...
              firmware=micropython-1.27.0 board=Raspberry_Pi_Pico_with_RP2040

or `selftest: FAIL ...` lines and an exception (mpremote then exits non-zero).

The same file runs on CPython with firmware/ on sys.path (`python
host_tools/board_selftest.py`): the session hash must be the same on both
runtimes. There the heap figures read "n/a" and the app part is skipped.

Heap figures (bytes, after gc.collect): core_heap is what importing the core
and its rig takes, boot_heap what importing the core and board.app plus
app.boot() take (n/a when board.app is not deployed), mem_free the free heap
after that.

mpremote soft-resets the board before `run`, so main.py has not run and the
heap figures start from a fresh interpreter. On the virtual board mem_free
means nothing (the WebAssembly build grows its heap on demand, so it reports
whatever the bridge's memory allows, not a Pico's ~240 KB); the heap *used*
(core_heap, boot_heap) is the meaningful figure there.
"""

import gc
import sys

MICROPYTHON = sys.implementation.name == "micropython"
if not MICROPYTHON:  # CPython: the firmware tree next to this file
    _here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    sys.path.insert(0, _here + "/../firmware")

IDLE_TICKS = 1000
BURST_TICKS = 1500

failures = []


def out(line):
    print("selftest: " + line)


def check(ok, what):
    if not ok:
        failures.append(what)
        out("FAIL " + what)
    return ok


def firmware_id():
    impl = sys.implementation
    version = ".".join(str(v) for v in impl.version[:3])
    machine = getattr(impl, "_machine", None) or sys.platform
    return "%s-%s" % (impl.name, version), machine.replace(" ", "_")


def heap_alloc():
    gc.collect()
    return gc.mem_alloc() if MICROPYTHON else None


def module_file_present(path):
    """True if path (.py or .mpy, relative to a sys.path entry) exists on the board."""
    import os

    for base in sys.path:
        if base == ".frozen":
            continue
        prefix = base.rstrip("/") + "/" if base else ""
        for suffix in (".mpy", ".py"):
            try:
                os.stat(prefix + path + suffix)
                return True
            except OSError:
                pass
    return False


def app_figures(base):
    """Heap taken since `base` by importing and booting board.app; (used, free) or None."""
    if not MICROPYTHON:
        out("app skipped: CPython has no board peripherals")
        return None
    if not module_file_present("board/app"):
        out("app skipped: board/app is not deployed")
        return None
    from board import app  # deployed: an import error is a failure, not a skip

    imported = heap_alloc()
    inst = app.boot()
    booted = heap_alloc()
    free = gc.mem_free()  # type: ignore[attr-defined]  # MicroPython gc
    try:
        out(
            "heap app_import=%d app_boot=%d boot_heap=%d mem_free=%d"
            % (imported - base, booted - imported, booted - base, free)
        )
        out("app booted: %s" % type(inst).__name__)
    finally:
        inst.stop()
    return booted - base, free


class Hasher:
    """sha256 of the session's log lines (repr, one a line), same on both runtimes."""

    def __init__(self):
        import hashlib

        self.h = hashlib.sha256()
        self.lines = 0
        self.digest = None

    def __call__(self, line):
        self.h.update(repr(line).encode())
        self.h.update(b"\n")
        self.lines += 1

    def hexdigest(self):
        # MicroPython's hash objects end at digest(): take it once.
        if self.digest is None:
            import binascii

            self.digest = binascii.hexlify(self.h.digest()).decode()[:16]
        return self.digest


def run_session():
    from injcore import codes as C
    from injcore import rig as R

    rig = R.Rig()
    log = Hasher()
    R.scripted_session(rig, log)
    core = rig.core
    out(
        "session lines=%d ticks=%d state=%d punctures=%d needle=%d/%d plunger=%d/%d hash=%s"
        % (
            log.lines,
            core.ticks,
            core.state,
            core.punctures,
            core.needle.pos,
            rig.needle.pos,
            core.plunger.pos,
            rig.plunger.pos,
            log.hexdigest(),
        )
    )
    check(
        getattr(core, "homed", True) and core.state == C.ST_READY,
        "session did not end homed and ready (state %d, fault %d)"
        % (core.state, getattr(core, "fault", -1)),
    )
    check(core.punctures >= 4, "only %d punctures (3 single + a burst expected)" % core.punctures)
    check(
        core.needle.pos == rig.needle.pos and core.plunger.pos == rig.plunger.pos,
        "positions disagree: core needle %d plunger %d, emitted needle %d plunger %d"
        % (core.needle.pos, core.plunger.pos, rig.needle.pos, rig.plunger.pos),
    )
    check(not rig.outputs.enabled or core.state == C.ST_READY, "drivers left enabled")
    return rig, log.hexdigest()


def measure_alloc(rig):
    """Bytes allocated over IDLE_TICKS ready ticks and BURST_TICKS ticks of nappage."""
    from injcore import codes as C
    from injcore import rig as R

    if not MICROPYTHON:
        out("alloc skipped: CPython has no gc.mem_alloc")
        return None
    heap = gc.mem_alloc  # type: ignore[attr-defined]
    core = rig.core
    R.measure_ticks(rig, 5, heap)
    idle, idle_worst, _ = R.measure_ticks(rig, IDLE_TICKS, heap)
    p0 = core.punctures
    rig.inputs.trigger = True
    R.measure_ticks(rig, 5, heap)
    burst, burst_worst, _ = R.measure_ticks(rig, BURST_TICKS, heap)
    fired = core.punctures - p0
    rig.inputs.trigger = False
    rig.run(3000, lambda c: c.state == C.ST_READY)
    out(
        "alloc idle=%d continuous=%d worst_tick=%d ticks=%d punctures=%d"
        % (idle, burst, max(idle_worst, burst_worst), IDLE_TICKS + BURST_TICKS, fired)
    )
    check(fired >= 2, "the measured nappage burst fired only %d punctures" % fired)
    check(
        idle == 0 and burst == 0,
        "the tick allocates: %d bytes over %d ready ticks, %d over %d nappage ticks"
        % (idle, IDLE_TICKS, burst, BURST_TICKS),
    )
    return (idle + burst) // (IDLE_TICKS + BURST_TICKS)


def na(value):
    return "n/a" if value is None else value


def main():
    firmware, board = firmware_id()
    out("start firmware=%s board=%s" % (firmware, board))
    base = heap_alloc()
    from injcore import core
    from injcore import rig as _rig  # noqa: F401  (its heap is part of the core figure)

    core_heap = heap_alloc()
    out(
        "core %s core_heap=%s"
        % (getattr(core, "__file__", "?"), "n/a" if base is None else core_heap - base)
    )
    boot = app_figures(base)
    if boot is None and MICROPYTHON:
        boot = (None, gc.mem_free())  # type: ignore[attr-defined]
    rig, digest = run_session()
    punctures = rig.core.punctures
    alloc = measure_alloc(rig)
    result = (
        "punctures=%d hash=%s alloc_per_tick=%s core_heap=%s boot_heap=%s mem_free=%s"
        " firmware=%s board=%s"
    ) % (
        punctures,
        digest,
        na(alloc),
        na(None if base is None else core_heap - base),
        na(boot and boot[0]),
        na(boot and boot[1]),
        firmware,
        board,
    )
    if failures:
        out("FAIL %d check(s) failed: %s" % (len(failures), result))
        if not MICROPYTHON:
            raise SystemExit(1)
        raise AssertionError("board self-test failed: " + "; ".join(failures))
    out("ok " + result)


main()
