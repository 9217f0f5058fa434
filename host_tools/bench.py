"""`make bench`: figures for the closing note, printed, never asserted.

- compiled firmware: bytes of build/mpy (mpy-cross -march=armv6m), per package
- the emulated Pico (RP2040 at 125 MHz, deterministic: host_tools/chip/, the
  MicroPython 1.28 image from RP2040_DIR; one line says why where it cannot run).
  The device's own figures, measured in emulated cycles:
  * one scripted session through main.py (host_tools/chip/session.py): the whole
    timer interrupt per core state (mean, worst, count over 500 us, count), the
    CPU share left to the main loop, main-loop passes and display frames per
    second, the longest main-loop pass, overruns, watchdog feeds and longest gap;
  * the heap: free after boot, and what each firmware module takes when imported
    from ROMFS (host_tools/chip/figures.py);
  * free heap after 500 punctures in one nappage burst at the highest shot rate
    the core accepts, with the treatment log (records on flash, pending, dropped).
- the virtual board: `make deploy` time, and the board self-test's heap figures
  (heap used by importing the core, by importing and booting board.app, and
  gc.mem_free after boot, which means nothing there: the WebAssembly heap is
  whatever the bridge gives it)
- simulator speed: simulated seconds per wall second, 1000-puncture session (CPython)
- the dose table (`python host_tools/bench.py dose` prints only it): single shots of
  1-200 uL from every syringe model on the reference line (the fluid model,
  sim/dose.py), measured on the model's side: the drug out of the needle against
  the dose set, the share that left in the skin and with the tip at its set depth,
  and the highest nappage rate the core accepts at 0.5 mm/1 uL and 1 mm/2 uL
- time per tick on CPython and, heap per tick and time per tick, on MicroPython's
  WebAssembly build, each also in reference-loop iterations (10,000 x `x = x + 1`
  in a function, timed in the same run). x 4.75 us per iteration gives an
  ESTIMATE for the RP2040, from the WebAssembly interpreter running the core's
  Python as bytecode (host_tools/mpy.portable_source strips the
  @micropython.viper the device compiles the hot path with): superseded by the
  emulated Pico's figures, kept to compare runtimes.
- the operator interface on MicroPython's WebAssembly build: heap to import it,
  time to draw a screen into the framebuf (main loop, at most 20 a second), in
  reference iterations like the tick (the same kind of estimate)
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
    sim.configure(
        mode=1,
        depth_um=600,
        dose_nl=2000,
        speed_um_s=40_000,
        rate_nl_s=100_000,
        shot_rate_mhz=5000,
        suckback_nl=200,
    )
    sim.machine.trigger = True
    sim.run_until(lambda s: s.core.punctures >= punctures, 10**7)
    sim.machine.trigger = False
    sim.run_until(lambda s: s.core.state == 2, 10_000)
    wall = time.perf_counter() - t0
    return sim.now_us / 1e6, wall, sim.core.punctures


DOSE_TABLE_UL = (1, 2, 10, 20, 100, 200)
NAPPAGE_POINTS = ((500, 1000), (1000, 2000))  # (depth um, dose nL): nappage's figures


def dose_table():
    """Where the doses go on the reference line, per syringe model; printed."""
    from injcore import machine as M
    from injcore.settings import Settings
    from sim.dose import steady_shots
    from sim.session import AT_DEPTH_UM, Simulator

    t0 = time.monotonic()
    st = Settings()
    print(
        "== dose table: reference line %d G x %.0f mm, viscosity %.3f mPa s; single shots "
        "%.1f mm deep at %d mm/s, %d uL/s, suck-back %.1f uL (the defaults)"
        % (
            M.REF_NEEDLE_GAUGE,
            M.REF_NEEDLE_LENGTH_UM / 1000,
            M.REF_VISCOSITY_UPA_S / 1e6 * 1000,
            st.depth_um / 1000,
            st.speed_um_s // 1000,
            st.rate_nl_s // 1000,
            st.suckback_nl / 1000,
        )
    )
    print(
        "   measured on the model's side, the second of two shots of each dose: dose out"
        " = all the drug out of the needle; at depth = tip within %d um of the set depth"
        % AT_DEPTH_UM
    )
    rates_head = "  ".join("max Hz %.1fmm/%guL" % (d / 1000, n / 1000) for d, n in NAPPAGE_POINTS)
    head = "  %-6s %9s %7s %12s %9s %10s %8s  %s" % (
        "syr",
        "tau ms",
        "dose uL",
        "dose out err",
        "in skin",
        "at depth",
        "tail",
        rates_head,
    )
    print(head)
    probe = Simulator(trace=False)  # asks the core only: never moves
    for model in sorted(M.SYRINGES):
        e = M.SYRINGES[model]
        rates = [
            probe.highest_shot_rate_mhz(syringe_model=model, depth_um=d, dose_nl=n)
            for d, n in NAPPAGE_POINTS
        ]
        rates_txt = "  ".join(
            "%18s" % ("%.1f" % (r / 1000) if r is not None else "refused") for r in rates
        )
        tau_ms = M.line_tau_us(e[M.SYR_COMPLIANCE_NL_KPA]) / 1000
        shots = steady_shots(model, [d * 1000 for d in DOSE_TABLE_UL])
        for i, (dose_nl, p) in enumerate(shots.items()):
            print(
                "  %-6s %9s %7g %11.2f%% %8.1f%% %9.1f%% %7.1f%%  %s"
                % (
                    e[M.SYR_NAME] if i == 0 else "",
                    "%.1f" % tau_ms if i == 0 else "",
                    dose_nl / 1000,
                    p.dose_error * 100,
                    p.in_skin_share * 100,
                    p.at_depth_share * 100,
                    p.tail_nl / dose_nl * 100,
                    rates_txt if i == 0 else "",
                )
            )
    line("  wall time", "%.1f" % (time.monotonic() - t0), "s")


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

    out = mpy.run(
        UI_SCRIPT,
        {
            ROOT / "firmware" / "injcore": "/lib/injcore",
            ROOT / "firmware" / "ui": "/lib/ui",
            ROOT / "host_tools" / "ui_scenes.py": "/lib/ui_scenes.py",
        },
    )
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
HEAP_MODULES = (
    "injcore.core",
    "injcore.store",
    "injcore.persist",
    "injcore.tlog",
    "injcore.calib",
    "injcore.linefit",
    "injcore.protocol",
    "ui.screens",
    "ui.protocols",
)


def micropython_module_heap():
    """Heap each firmware module keeps after import on MicroPython (from source, collected)."""
    from host_tools import mpy

    out = mpy.run(
        "MODULES = %r\n" % (HEAP_MODULES,) + HEAP_SCRIPT,
        {
            ROOT / "firmware" / "injcore": "/lib/injcore",
            ROOT / "firmware" / "ui": "/lib/ui",
        },
    )
    return [(row.split()[0], int(row.split()[1])) for row in out.splitlines()]


def compiled_size():
    """Compile with `make mpy`; returns {package: (files, bytes)} of build/mpy and the .py bytes."""
    subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "mpy", "PY=%s" % sys.executable],
        cwd=ROOT,
        check=True,
        timeout=300,
        stdout=subprocess.DEVNULL,
    )
    sizes = {}
    for f in sorted((ROOT / "build" / "mpy").rglob("*.mpy")):
        rel = f.relative_to(ROOT / "build" / "mpy")
        if not (ROOT / "firmware" / rel.with_suffix(".py")).is_file():
            continue  # left over from a module that no longer exists
        pkg = rel.parts[0] if len(rel.parts) > 1 else "(top level)"
        n, b = sizes.get(pkg, (0, 0))
        sizes[pkg] = (n + 1, b + f.stat().st_size)
    source = sum(
        f.stat().st_size
        for f in (ROOT / "firmware").rglob("*.py")
        if f.name != "main.py" or f.parent != ROOT / "firmware"
    )
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
                    [
                        "make",
                        "-s",
                        "-o",
                        ".venv/.installed",
                        "deploy",
                        "PORT=%s" % port,
                        "PY=%s" % sys.executable,
                        "MPY_DIR=%s" % (Path(tmp) / "mpy"),
                        "MPY_NATIVE=0",
                    ],  # no native emitter on the WebAssembly board: viper blanked
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                deploy_s = time.monotonic() - t0
                if r.returncode != 0:
                    raise RuntimeError(
                        "make deploy failed: " + (r.stderr or r.stdout).strip()[-300:]
                    )
                r = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "mpremote",
                        "connect",
                        port,
                        "run",
                        str(ROOT / "host_tools" / "board_selftest.py"),
                    ],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
        finally:
            log.close()
    lines = [x for x in r.stdout.splitlines() if x.startswith("selftest: ")]
    fields = {}
    for x in lines:
        fields.update(kv.split("=", 1) for kv in x.split()[2:] if "=" in kv)
    if r.returncode != 0:
        raise RuntimeError(
            "self-test failed: " + "; ".join(lines[-3:] or [r.stderr.strip()[-300:]])
        )
    return deploy_s, fields, lines


CHIP_PUNCTURES = 500


def _irq_line(name, f):
    line(
        name,
        "mean %.1f us, worst %.1f us, %d over 500 us, %d interrupts"
        % (f["mean_us"], f["max_us"], f["over_500us"], f["n"]),
    )


def chip_session():
    """One Session.run through main.py on the emulated Pico, printed."""
    from host_tools.chip import figures as F
    from host_tools.chip.session import BURST_MS, SINGLE_PUNCTURES

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-chip-") as tmp:
        f = F.session_figures(tmp)
    wall = time.monotonic() - t0
    irq, wd = f["irq"], f["watchdog"]
    print(
        "-- one scripted session through main.py: home, load, prime, %d single punctures, "
        "a %.1f s nappage burst, E-stop (%d punctures)"
        % (SINGLE_PUNCTURES, BURST_MS / 1000, f["punctures"])
    )
    for state, name, b in irq["states"]:
        _irq_line("  timer interrupt, state %d %s" % (state, name), b)
    _irq_line("  timer interrupt, every state", irq)
    line("  CPU left to the main loop (1 - timer/span cycles)", "%.1f" % irq["main_share_pct"], "%")
    line(
        "  main-loop passes",
        "%.0f per s (%d in %.2f s emulated)" % (f["passes_per_s"], f["passes"], f["seconds"]),
    )
    line("  display frames sent", "%.1f per s (%d)" % (f["frames_per_s"], f["frames"]))
    line("  longest main-loop pass", "%.1f ms" % (f["pass_us_max"] / 1000))
    line("  overruns", f["overruns"])
    line("  late timer interrupts (caught up)", f["late"])
    line(
        "  watchdog",
        "%d feeds, longest gap %.1f ms, %d expired"
        % (wd["feeds"], wd["gap_max_us"] / 1000, wd["expired"]),
    )
    line("  free heap after main.py's boot", f["free_at_boot"], "bytes")
    line("  free heap at the end (collected)", f["free_after"], "bytes")
    line("  wall time", "%.1f s (%.1f x emulated time)" % (wall, wall / f["seconds"]))


def chip_heap(top=10):
    """Free heap after boot and each module's heap, on a chip without main.py, printed."""
    from host_tools.chip import figures as F

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-chip-") as tmp:
        boot, mods = F.boot_heap_figures(tmp)
    print("-- heap (REPL of a fresh chip, main.py not run; modules run from ROMFS)")
    line("  free heap after boot", "%d bytes of %d" % (boot["free"], boot["size"]))
    ranked = sorted(mods["modules"].items(), key=lambda kv: -kv[1])
    line("  heap each module takes on import, top %d" % top, "")
    for name, n in ranked[:top]:
        line("    %s" % name, n, "bytes")
    line("    the other %d modules" % len(ranked[top:]), sum(n for _, n in ranked[top:]), "bytes")
    line("  all %d firmware modules" % len(ranked), mods["total"], "bytes")
    line("  free heap with every module imported", mods["free_after"], "bytes")
    for name, err in mods["errors"].items():
        line("  import failed: %s" % name, err)
    line("  wall time", "%.1f" % (time.monotonic() - t0), "s")


def chip_punctures(n=CHIP_PUNCTURES):
    """Free heap after n punctures in one nappage burst with the treatment log, printed."""
    from host_tools.chip import figures as F
    from injcore import machine as M
    from ui.screens import MODE_LABELS  # what the operator reads: single, nappage, prime

    with tempfile.TemporaryDirectory(prefix="bench-chip-") as tmp:
        f = F.puncture_heap(tmp, punctures=n)
    s, core, irq = f["settings"], f["core"], f["irq"]
    print("-- %d punctures in one nappage burst, with the treatment log" % n)
    line(
        "  settings",
        "%s, %d um deep, %d nL a shot, %s syringe, %d mHz"
        % (
            MODE_LABELS[s["mode"]],
            s["depth_um"],
            s["dose_nl"],
            M.SYRINGES[s["syringe_model"]][M.SYR_NAME],
            s["shot_rate_mhz"],
        ),
    )
    if f["cycle_ticks"]:
        line(
            "    the highest rate the core accepts",
            "one puncture takes %d ms: 1,000,000 // %d"
            " = %d mHz, in steps of 100"
            % (f["cycle_ticks"], f["cycle_ticks"], 1_000_000 // f["cycle_ticks"]),
        )
    line(
        "  needle excursions (machine model)",
        "%d in %.1f s emulated (%.2f per s)"
        % (f["excursions"], f["burst_ms"] / 1000, f["excursions"] / (f["burst_ms"] / 1000)),
    )
    line(
        "  punctures the core counted",
        "%d (delivered %d nL)" % (core["punctures"], core["delivered_nl"]),
    )
    line("  free heap after main.py's boot", f["free_at_boot"], "bytes")
    line("  free heap after the punctures (collected)", f["free_after"], "bytes")
    line("  treatment log: records on flash", "%d in %d file(s)" % (f["logged"], core["files"]))
    line("  treatment log: records pending in RAM", core["pending"])
    line("  treatment log: records dropped (RAM buffer full)", core["dropped"])
    line("  treatment log: punctures the main loop missed", core["missed"])
    if core["errno"]:
        line("  treatment log: last flush error", "errno %d" % core["errno"])
    line(
        "  flash erases / programs",
        "%s / %s" % (f["flash"].get("erases"), f["flash"].get("programs")),
    )
    _irq_line("  timer interrupt, burst and flush", irq)
    for state, name, b in irq["states"]:
        _irq_line("    state %d %s" % (state, name), b)
    line("  CPU left to the main loop", "%.1f" % irq["main_share_pct"], "%")
    line("  longest main-loop pass (since boot)", "%.1f ms" % (core["pass_us_max"] / 1000))
    line("  overruns / late interrupts", "%d / %d" % (core["overruns"], core["late"]))
    line(
        "  watchdog",
        "%d feeds, longest gap %.1f ms, %d expired"
        % (f["watchdog"]["feeds"], f["watchdog"]["gap_max_us"] / 1000, f["watchdog"]["expired"]),
    )
    line("  wall time", "%.1f" % f["wall_s"], "s")


def chip_figures():
    from host_tools.chip import missing

    print("== the emulated Pico (RP2040 at 125 MHz, deterministic)")
    why = missing()
    if why:
        print("  " + why)  # "emulated Pico skipped: ..., set RP2040_DIR ..."
        return
    for part in (chip_session, chip_heap, chip_punctures):
        try:
            part()
        except Exception as e:  # a figure, never an assertion: say why it is missing
            line("  %s: not measured" % part.__name__, "%s: %s" % (type(e).__name__, str(e)[-500:]))


def main():
    t_bench = time.monotonic()
    sizes, source = compiled_size()
    print("== compiled firmware (mpy-cross -march=armv6m, build/mpy)")
    for pkg, (n, b) in sizes.items():
        line("  %s" % pkg, "%d bytes in %d modules" % (b, n))
    line("  total", "%d bytes (%d bytes of source)" % (sum(b for _, b in sizes.values()), source))

    chip_figures()

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
        line(
            "    of which importing board.app (modules it adds)",
            f.get("app_import", "n/a"),
            "bytes",
        )
        line(
            "    of which app.boot() (fake machine/rp2 objects)", f.get("app_boot", "n/a"), "bytes"
        )
        line(
            "  gc.mem_free after boot (meaningless here)",
            f.get("mem_free"),
            "bytes (the wasm heap is what the bridge gives; a Pico has ~240 KB)",
        )

    sim_s, wall, n = sim_speed()
    print("== simulator (CPython %s)" % sys.version.split()[0])
    line("1000-puncture session: punctures", n)
    line("  simulated time", "%.1f" % sim_s, "s")
    line("  wall time", "%.2f" % wall, "s")
    line("  speed", "%.0f" % (sim_s / wall), "simulated s per wall s")

    dose_table()

    ref, ticks = cpython_tick()
    print("== tick on CPython")
    line("reference loop (10,000 x x=x+1)", ref, "us")
    for label, us in ticks.items():
        line("tick, %s" % label, "%.2f us = %.1f reference iterations" % (us, us / (ref / 10000)))

    ref, ticks = micropython_tick()
    print("== tick on MicroPython 1.27 (npm WebAssembly build): an ESTIMATE for the RP2040,")
    print("   from the WebAssembly interpreter running the core's Python as bytecode (without")
    print("   the viper compilation the device uses); superseded by the emulated Pico above")
    line("reference loop (10,000 x x=x+1)", ref, "us")
    for label, (per_tick, worst, us) in ticks.items():
        iters = us / (ref / 10000)
        line("heap per tick, %s" % label, "%.1f bytes (worst tick %d)" % (per_tick, worst))
        line(
            "tick, %s" % label,
            "%.2f us = %.1f reference iterations = ~%.0f us on an RP2040 "
            "(estimate)" % (us, iters, iters * RP2040_US_PER_REF_ITER),
        )

    print("== heap each firmware module keeps after import (MicroPython 1.27 wasm, from source;")
    print("   the emulated Pico's per-module figures above are the device's)")
    for name, n in micropython_module_heap():
        line("  %s" % name, n, "bytes")
    heap, ref, draws = micropython_ui()
    print("== operator interface on MicroPython 1.27 (npm WebAssembly build): the draw times")
    print("   are an ESTIMATE for the RP2040 from the WebAssembly interpreter, like the tick's")
    line("heap used by importing ui.screens", heap, "bytes")
    for name, us in draws.items():
        iters = us / (ref / 10000)
        line(
            "draw %s" % name,
            "%.0f us = %.0f reference iterations = ~%.1f ms on an RP2040 "
            "(estimate)" % (us, iters, iters * RP2040_US_PER_REF_ITER / 1000),
        )
    print("== bench")
    line("wall time of the whole bench", "%.0f" % (time.monotonic() - t_bench), "s")


if __name__ == "__main__":
    if sys.argv[1:] == ["dose"]:
        dose_table()
    else:
        main()
