"""`make bench`: figures for the closing note, printed, never asserted.

- simulator speed: simulated seconds per wall second, 1000-puncture session (CPython)
- heap bytes allocated per tick on real MicroPython: idle, ready, continuous
- time per tick on CPython and on MicroPython, each also in reference-loop
  iterations (10,000 x `x = x + 1` in a function, timed in the same run);
  x 4.75 us gives an estimate for the RP2040.
- the operator interface on MicroPython: heap to import it, time to draw a
  screen into the framebuf (main loop, at most 20 a second), in reference
  iterations like the tick
- compiled firmware: bytes of build/mpy (mpy-cross -march=armv6m), per package
- the virtual board: `make deploy` time, and the board self-test's heap figures
  (heap used by importing the core, by importing and booting board.app, and
  gc.mem_free after boot, which means nothing there: the WebAssembly heap is
  whatever the bridge gives it)
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "firmware"), str(ROOT)]

RP2040_US_PER_REF_ITER = 4.75

MP_SCRIPT = """
import gc
from injcore import rig as R
r = R.Rig()
ref_us = R.time_reference_us()
print('ref', ref_us)

def measure(label, rig):
    R.measure_ticks(rig, 5, gc.mem_alloc)
    total, worst, _ = R.measure_ticks(rig, 2000, gc.mem_alloc)
    best = None
    for _ in range(3):
        _t, _w, us = R.measure_ticks(rig, 5000)
        if best is None or us < best:
            best = us
    print(label, total, worst, best / 5000)

R.profile(r, measure)
"""


def line(name, value, unit=""):
    print("%-52s %s %s" % (name + ":", value, unit))


def sim_speed(punctures=1000):
    from sim.session import Simulator

    sim = Simulator(trace=False)
    t0 = time.perf_counter()
    sim.home()
    sim.load(3)
    sim.prime(500)
    sim.configure(mode=1, depth_um=600, dose_nl=2000, speed_um_s=40_000, rate_nl_s=100_000,
                  shot_rate_mhz=5000, suckback_nl=200)
    sim.machine.trigger = True
    sim.run_until(lambda s: s.core.punctures >= punctures, 10 ** 7)
    sim.machine.trigger = False
    sim.run_until(lambda s: s.core.state == 2, 10_000)
    wall = time.perf_counter() - t0
    return sim.now_us / 1e6, wall, sim.core.punctures


def cpython_tick():
    from injcore import rig as R

    ref = R.time_reference_us()
    out = {}

    def measure(label, rig):
        best = min(R.measure_ticks(rig, 500)[2] for _ in range(5))
        out[label] = best / 500

    R.profile(R.Rig(), measure)
    return ref, out


def micropython_tick():
    from host_tools import mpy

    ref = None
    out = {}
    for row in mpy.run_with_core(MP_SCRIPT).splitlines():
        parts = row.split()
        if parts[0] == "ref":
            ref = float(parts[1])
        else:
            out[parts[0]] = (int(parts[1]) / 2000, int(parts[2]), float(parts[3]))
    return ref, out


UI_SCRIPT = """
import gc
import time
import framebuf
from injcore import rig as R
gc.collect()
before = gc.mem_alloc()
from ui import screens
gc.collect()
print('heap', gc.mem_alloc() - before)
import ui_scenes
print('ref', R.time_reference_us())
buf = bytearray(1024)
fb = framebuf.FrameBuffer(buf, 128, 64, framebuf.MONO_VLSB)
for name in ('status_ready', 'menu_end', 'edit_depth', 'alarm_6'):
    core, ui = ui_scenes.scene(name)
    ui.draw(fb, 0)
    best = None
    for _ in range(3):
        t0 = time.ticks_us()
        for _ in range(50):
            ui.draw(fb, 0)
        us = time.ticks_diff(time.ticks_us(), t0) / 50
        if best is None or us < best:
            best = us
    print(name, best)
"""


def micropython_ui():
    from host_tools import mpy

    out = mpy.run(UI_SCRIPT, {
        ROOT / "firmware" / "injcore": "/lib/injcore",
        ROOT / "firmware" / "ui": "/lib/ui",
        ROOT / "host_tools" / "ui_scenes.py": "/lib/ui_scenes.py",
    })
    rows = dict(row.split() for row in out.splitlines())
    return int(rows.pop("heap")), float(rows.pop("ref")), {k: float(v) for k, v in rows.items()}


HEAP_SCRIPT = """
import gc
def used():
    gc.collect()
    return gc.mem_alloc()
base = used()
prev = base
for name in MODULES:
    __import__(name)
    now = used()
    print(name, now - prev)
    prev = now
print("total", prev - base)
"""
# The firmware's pure modules, in import order (board/ needs machine: the fakes would count).
HEAP_MODULES = ("injcore.core", "injcore.store", "injcore.persist", "injcore.tlog", "injcore.calib",
                "injcore.protocol", "ui.screens", "ui.protocols")


def micropython_module_heap():
    """Heap each firmware module keeps after import on MicroPython (from source, collected)."""
    from host_tools import mpy

    out = mpy.run("MODULES = %r\n" % (HEAP_MODULES,) + HEAP_SCRIPT, {
        ROOT / "firmware" / "injcore": "/lib/injcore",
        ROOT / "firmware" / "ui": "/lib/ui",
    })
    return [(row.split()[0], int(row.split()[1])) for row in out.splitlines()]


def compiled_size():
    """Compile with `make mpy`; returns {package: (files, bytes)} of build/mpy and the .py bytes."""
    subprocess.run(["make", "-s", "-o", ".venv/.installed", "mpy", "PY=%s" % sys.executable],
                   cwd=ROOT, check=True, timeout=300, stdout=subprocess.DEVNULL)
    sizes = {}
    for f in sorted((ROOT / "build" / "mpy").rglob("*.mpy")):
        rel = f.relative_to(ROOT / "build" / "mpy")
        if not (ROOT / "firmware" / rel.with_suffix(".py")).is_file():
            continue  # left over from a module that no longer exists
        pkg = rel.parts[0] if len(rel.parts) > 1 else "(top level)"
        n, b = sizes.get(pkg, (0, 0))
        sizes[pkg] = (n + 1, b + f.stat().st_size)
    source = sum(f.stat().st_size for f in (ROOT / "firmware").rglob("*.py")
                 if f.name != "main.py" or f.parent != ROOT / "firmware")
    return sizes, source


def virtual_board_selftest():
    """Deploy to a fresh virtual board and run the self-test; returns (deploy s, fields, lines)."""
    from host_tools.vboard import VirtualBoard

    with tempfile.TemporaryDirectory(prefix="bench-vboard-") as tmp:
        log = open(Path(tmp) / "vboard.log", "w")
        try:
            with VirtualBoard(Path(tmp) / "flash", log=log) as port:
                t0 = time.monotonic()
                r = subprocess.run(
                    ["make", "-s", "-o", ".venv/.installed", "deploy", "PORT=%s" % port,
                     "PY=%s" % sys.executable, "MPY_DIR=%s" % (Path(tmp) / "mpy")],
                    cwd=ROOT, capture_output=True, text=True, timeout=300)
                deploy_s = time.monotonic() - t0
                if r.returncode != 0:
                    raise RuntimeError("make deploy failed: " + (r.stderr or r.stdout).strip()[-300:])
                r = subprocess.run(
                    [sys.executable, "-m", "mpremote", "connect", port, "run",
                     str(ROOT / "host_tools" / "board_selftest.py")],
                    cwd=ROOT, capture_output=True, text=True, timeout=300)
        finally:
            log.close()
    lines = [x for x in r.stdout.splitlines() if x.startswith("selftest: ")]
    fields = {}
    for x in lines:
        fields.update(kv.split("=", 1) for kv in x.split()[2:] if "=" in kv)
    if r.returncode != 0:
        raise RuntimeError("self-test failed: " + "; ".join(lines[-3:] or [r.stderr.strip()[-300:]]))
    return deploy_s, fields, lines


def main():
    sizes, source = compiled_size()
    print("== compiled firmware (mpy-cross -march=armv6m, build/mpy)")
    for pkg, (n, b) in sizes.items():
        line("  %s" % pkg, "%d bytes in %d modules" % (b, n))
    line("  total", "%d bytes (%d bytes of source)" % (sum(b for _, b in sizes.values()), source))

    print("== virtual board: make deploy + board self-test (MicroPython 1.27 WebAssembly)")
    try:
        deploy_s, f, _ = virtual_board_selftest()
    except Exception as e:  # a figure, never an assertion: say why it is missing
        line("  not measured", str(e))
    else:
        line("  make deploy (fresh flash)", "%.1f" % deploy_s, "s")
        line("  self-test", "ok, %s punctures, hash %s" % (f.get("punctures"), f.get("hash")))
        line("  heap per tick (ready + nappage)", f.get("alloc_per_tick"), "bytes")
        line("  heap used by importing the core", f.get("core_heap"), "bytes")
        line("  heap used by boot (imports + app.boot())", f.get("boot_heap"), "bytes")
        line("    of which importing board.app (modules it adds)", f.get("app_import", "n/a"), "bytes")
        line("    of which app.boot() (fake machine/rp2 objects)", f.get("app_boot", "n/a"), "bytes")
        line("  gc.mem_free after boot (meaningless here)", f.get("mem_free"),
             "bytes (the wasm heap is what the bridge gives; a Pico has ~240 KB)")

    sim_s, wall, n = sim_speed()
    print("== simulator (CPython %s)" % sys.version.split()[0])
    line("1000-puncture session: punctures", n)
    line("  simulated time", "%.1f" % sim_s, "s")
    line("  wall time", "%.2f" % wall, "s")
    line("  speed", "%.0f" % (sim_s / wall), "simulated s per wall s")

    ref, ticks = cpython_tick()
    print("== tick on CPython")
    line("reference loop (10,000 x x=x+1)", ref, "us")
    for label, us in ticks.items():
        line("tick, %s" % label, "%.2f us = %.1f reference iterations" % (us, us / (ref / 10000)))

    ref, ticks = micropython_tick()
    print("== tick on MicroPython 1.27 (npm WebAssembly build)")
    line("reference loop (10,000 x x=x+1)", ref, "us")
    for label, (per_tick, worst, us) in ticks.items():
        iters = us / (ref / 10000)
        line("heap per tick, %s" % label, "%.1f bytes (worst tick %d)" % (per_tick, worst))
        line("tick, %s" % label, "%.2f us = %.1f reference iterations = ~%.0f us on an RP2040"
             % (us, iters, iters * RP2040_US_PER_REF_ITER))

    print("== heap each firmware module keeps after import (MicroPython 1.27 wasm, from source)")
    for name, n in micropython_module_heap():
        line("  %s" % name, n, "bytes")
    heap, ref, draws = micropython_ui()
    print("== operator interface on MicroPython 1.27 (npm WebAssembly build)")
    line("heap used by importing ui.screens", heap, "bytes")
    for name, us in draws.items():
        iters = us / (ref / 10000)
        line("draw %s" % name, "%.0f us = %.0f reference iterations = ~%.1f ms on an RP2040"
             % (us, iters, iters * RP2040_US_PER_REF_ITER / 1000))


if __name__ == "__main__":
    main()
