"""Memory figures of the firmware, measured on the emulated Pico.

For bench code (host_tools/bench.py) and the chip tier's tests: each function
takes a running `Chip` (host_tools.chip), reads its heap in the REPL and
returns a dict; nothing is printed. A chip built with
`Chip.with_firmware(work_dir, main=False)` has the compiled modules in its
ROMFS partition, so imports run the bytecode in place from flash, as on a
board that `make deploy` filled; main.py does not run, so the figures do not
depend on the App.

    with Chip.with_firmware(tmp, main=False) as chip:
        boot = heap_after_boot(chip)
        mods = module_heap(chip)

A module's figure is the heap its import leaves taken after a collection:
its globals, functions and classes, and whatever its top level builds. Its
firmware dependencies are imported before it (`import_order`), so each figure
is the module's own.
"""

import ast
from pathlib import Path

from host_tools.chip import ROOT

FIRMWARE = ROOT / "firmware"
PACKAGES = ("injcore", "board", "ui")


def firmware_modules(root=FIRMWARE, packages=PACKAGES):
    """{dotted module name: source path} of the firmware's packages (main.py excluded)."""
    mods = {}
    for pkg in packages:
        for path in sorted((Path(root) / pkg).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            rel = path.relative_to(root).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            mods[".".join(parts)] = path
    return mods


def _top_level_imports(tree):
    """Import statements that run when the module is imported: not those in functions or
    classes, nor under `if TYPE_CHECKING:` (false on the chip)."""
    out = []

    def walk(body):
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                out.append(node)
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    walk(node.body)
                walk(node.orelse)
            elif isinstance(node, ast.Try):
                walk(node.body)
                for h in node.handlers:
                    walk(h.body)
                walk(node.orelse)
                walk(node.finalbody)
            elif isinstance(node, (ast.With,)):
                walk(node.body)

    walk(tree.body)
    return out


def module_deps(name, path, known):
    """The firmware modules `name` imports at its top level (its package included)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    deps = set()
    if "." in name:
        deps.add(name.rpartition(".")[0])
    for node in _top_level_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            targets = [
                mod + "." + a.name if mod + "." + a.name in known else mod for a in node.names
            ]
        for t in targets:
            # a.b.c needs a and a.b first
            parts = t.split(".")
            for i in range(1, len(parts) + 1):
                dotted = ".".join(parts[:i])
                if dotted in known and dotted != name:
                    deps.add(dotted)
    return deps


def import_order(root=FIRMWARE, packages=PACKAGES):
    """The firmware's modules, each after the firmware modules it imports.

    Depth first over the packages in the order given and the modules in name
    order, so the order is the same on every run; an import cycle (none today)
    is broken where the walk meets it.
    """
    mods = firmware_modules(root, packages)
    deps = {name: module_deps(name, path, mods) for name, path in mods.items()}
    order, state = [], {}

    def visit(name):
        if state.get(name):
            return  # done, or on the stack (a cycle)
        state[name] = 1
        for d in sorted(deps[name]):
            visit(d)
        order.append(name)

    for name in mods:
        visit(name)
    return order


_HEAP_SCRIPT = """
import gc
gc.collect()
print('free', gc.mem_free(), 'alloc', gc.mem_alloc())
"""

# One collection per module: the free heap after module i is the figure before module i+1
# (nothing else runs between them). A collection of the whole heap costs the emulator about
# 15 ms of emulated time.
_MODULE_SCRIPT = """
import gc, sys
_names = %r
_free = [0] * (len(_names) + 1)
_errors = {}
gc.collect()
_free[0] = gc.mem_free()
for _i in range(len(_names)):
    try:
        __import__(_names[_i])
    except Exception as e:
        _errors[_names[_i]] = '%%s: %%s' %% (type(e).__name__, e)
    gc.collect()
    _free[_i + 1] = gc.mem_free()
for _i in range(len(_names)):
    _m = sys.modules.get(_names[_i])
    print(_names[_i], _free[_i], _free[_i + 1], getattr(_m, '__file__', '-') if _m else '-')
for _n in _errors:
    print('!', _n, _errors[_n])
"""


def heap_after_boot(chip):
    """The heap in the REPL of a freshly booted chip: {"free", "alloc", "size"} in bytes
    (size = free + alloc, the whole MicroPython heap). Run it before anything is imported."""
    words = chip.exec(_HEAP_SCRIPT).split()
    fig = {words[i]: int(words[i + 1]) for i in range(0, len(words), 2)}
    return {"free": fig["free"], "alloc": fig["alloc"], "size": fig["free"] + fig["alloc"]}


def module_heap(chip, modules=None):
    """Heap each firmware module takes when imported on the chip, in import order.

    Returns {"modules": {name: bytes}, "files": {name: where it was loaded from},
    "order": [names], "total": bytes, "free_before": bytes, "free_after": bytes,
    "errors": {name: "Exception: message"}}. A module whose import raised keeps
    the heap it took up to the error, and is listed in errors. Imported on a
    chip that has not imported them yet (each module is measured once: a second
    call finds them loaded and gives 0).
    """
    names = list(modules) if modules is not None else import_order()
    out = chip.exec(_MODULE_SCRIPT % (names,), max_ms=120_000)
    heap, files, errors = {}, {}, {}
    first = last = None
    for line in out.splitlines():
        words = line.split(None, 3) if line.startswith("!") else line.split()
        if not words:
            continue
        if words[0] == "!":
            errors[words[1]] = line.split(None, 2)[2].strip()
            continue
        name, before, after, where = words[0], int(words[1]), int(words[2]), words[3]
        heap[name] = before - after
        files[name] = where
        first = before if first is None else first
        last = after
    return {
        "modules": heap,
        "files": files,
        "order": names,
        "total": sum(heap.values()),
        "free_before": first,
        "free_after": last,
        "errors": errors,
    }


# ---- timing figures of a session through main.py (host_tools/chip/session.py) ----------

_FREE_AT_BOOT = r"(\d+) bytes free"


def free_at_boot(uart_text):
    """The free heap main.py prints once the App is built (after a collection), or None."""
    import re

    from host_tools.chip import session

    for ln in uart_text.splitlines():
        m = re.search(_FREE_AT_BOOT, ln) if session.BOOT_TEXT in ln else None
        if m:
            return int(m.group(1))
    return None


def max_shot_rate_mhz(**settings):
    """The highest shot rate (mHz) the core accepts with these settings, computed on the host.

    The core refuses a continuous-mode rate whose period is shorter than one puncture
    (plans().cycle_ticks, in 1 ms ticks): the rate is 1_000_000 // cycle_ticks rounded
    down to a step of Settings' shot_rate_mhz range, then checked with configure() itself
    (lowered a step at a time should the core still refuse it).
    Returns (rate_mhz, cycle_ticks).
    """
    from injcore.rig import Rig
    from injcore.settings import RANGES, SettingsError

    lo, hi, step, _unit = RANGES["shot_rate_mhz"]
    core = Rig().core
    core.configure(**dict(settings, shot_rate_mhz=lo))
    cycle = core.plans().cycle_ticks
    rate = min(hi, 1_000_000 // cycle)
    rate = lo + (rate - lo) // step * step
    while rate >= lo:
        try:
            Rig().core.configure(**dict(settings, shot_rate_mhz=rate))
            return rate, cycle
        except SettingsError:
            rate -= step
    raise ValueError("no shot rate is accepted with %r" % (settings,))


def irq_figures(status, clk_hz=None):
    """The timer interrupt of a chip's status (status()["irq"], counted per core state).

    Returns {"states": [(state, name, {"n", "mean_us", "max_us", "over_500us"})] in state
    order, "n", "mean_us", "max_us", "over_500us" (every timer interrupt),
    "main_share_pct" (the CPU left to everything but the timer interrupt:
    1 - timer_cycles / span_cycles)}. Cycles are turned into us at clk_hz (the chip's
    125 MHz by default).
    """
    from host_tools.chip import CLK_HZ
    from injcore.codes import STATE_NAMES

    per_us = (clk_hz or CLK_HZ) / 1e6
    irq = status["irq"]
    states = []
    for key in sorted(irq["by_state"], key=int):
        b = irq["by_state"][key]
        i = int(key)
        name = STATE_NAMES[i] if 0 <= i < len(STATE_NAMES) else "?"
        mean = b["cycles"] / b["n"] / per_us if b["n"] else 0.0
        states.append(
            (
                i,
                name,
                {
                    "n": b["n"],
                    "mean_us": mean,
                    "max_us": b["max"] / per_us,
                    "over_500us": b["over500"],
                },
            )
        )
    n = irq["timer_n"]
    return {
        "states": states,
        "n": n,
        "mean_us": irq["timer_cycles"] / n / per_us if n else 0.0,
        "max_us": irq["timer_max"] / per_us,
        "over_500us": irq["timer_over_500us"],
        "main_share_pct": 100.0 * (1 - irq["timer_cycles"] / irq["span_cycles"])
        if irq["span_cycles"]
        else None,
    }


def session_figures(work_dir):
    """One scripted session through main.py (session.Session.run) on a fresh chip.

    Returns {"irq": irq_figures(...), "seconds" (emulated, main-loop start to the end of
    the script), "passes_per_s", "frames_per_s" (the App's own counts over that time),
    "pass_us_max", "overruns", "late", "watchdog" {"feeds", "gap_max_us", "expired"},
    "free_at_boot" (main.py's figure), "free_after" (gc.mem_free at the end, collected),
    "punctures" (the core's), "report" (Session.run's report)}.
    """
    from host_tools.chip import Chip
    from host_tools.chip.session import Session, settings_files

    with Chip.with_firmware(work_dir, files=settings_files()) as chip:
        run = Session(chip)
        rep = run.run()
        boot_free = free_at_boot(chip.uart())
    st, core = rep["status"], rep["core"]
    seconds = (st["t_ms"] - run.main_ms) / 1000
    return {
        "irq": irq_figures(st, st.get("clk_hz")),
        "seconds": seconds,
        "passes_per_s": core["passes"] / seconds,
        "frames_per_s": core["frames"] / seconds,
        "passes": core["passes"],
        "frames": core["frames"],
        "pass_us_max": core["pass_us_max"],
        "overruns": core["overruns"],
        "late": core["late"],
        "watchdog": dict(st["watchdog"]),
        "free_at_boot": boot_free,
        "free_after": core["mem_free"],
        "punctures": core["punctures"],
        "report": rep,
    }


_LOG_READBACK = """
import gc
from board import app
a = app.current
gc.collect()
f = gc.mem_free()
l = a.log
c = a.core
print('mem_free=%d punctures=%d pending=%d dropped=%d files=%d newest_recs=%d file_recs=%d '
      'missed=%d session=%d errno=%d state=%d fault=%d overruns=%d late=%d passes=%d '
      'pass_us_max=%d delivered_nl=%d' % (
      f, c.punctures, l.pending(), l.dropped, len(l.seqs), l._cur_n if l.seqs else 0, l.file_recs,
      a.recorder.missed, a.recorder.session, l.error.errno if l.error else 0, c.state, c.fault,
      c.overruns, a.late, a.passes, a.pass_us_max, c.delivered_nl()))
"""


def puncture_heap(work_dir, punctures=500, chunk_ms=2000, settings=None, quiet_ms=1000):
    """Free heap after a long nappage burst with its treatment log, on a fresh chip.

    Boots main.py with stored `settings` (default: nappage, 500 um deep, 1 uL doses at the
    highest shot rate the core accepts for them with the 1 mL syringe), homes, loads and
    primes from the buttons as Session.run does, holds the trigger until the machine
    model has seen `punctures` more needle excursions (run in chunks of chunk_ms), releases
    it, waits for the motors to stop and quiet_ms more (the log flushes at rest), then
    reads the heap, the core and the log back in the REPL.

    Returns {"settings", "cycle_ticks", "free_at_boot" (main.py's figure), "free_after",
    "excursions" (the model's, during the burst), "burst_ms" (emulated), "core"
    {punctures, pending, dropped, files, newest_recs, file_recs, missed, session, errno,
    state, fault, overruns, late, passes, pass_us_max, delivered_nl, mem_free},
    "logged" (records on flash: full files and the newest one's), "flash" (erases and
    programs the model saw), "irq": irq_figures(...) of the burst, "watchdog",
    "wall_s"}.
    """
    import time

    from host_tools.chip import Chip
    from host_tools.chip.session import Session, settings_files

    t0 = time.monotonic()
    if settings is None:
        settings = dict(mode=1, depth_um=500, dose_nl=1000, syringe_model=1)
        rate, cycle = max_shot_rate_mhz(**settings)
        settings["shot_rate_mhz"] = rate
    else:
        cycle = None
    with Chip.with_firmware(work_dir, files=settings_files(**settings)) as chip:
        run = Session(chip)
        run.prime()
        boot_free = free_at_boot(chip.uart())
        chip.reset_stats()
        st = chip.status()
        p0, ms0 = st["punctures"], st["t_ms"]
        chip.set(trigger=True)
        seen, seen_ms = p0, ms0  # the last new excursion: a burst that stops is an error
        while st["punctures"] - p0 < punctures:
            done = st["punctures"] - p0
            step = chunk_ms
            if done:  # the last chunks no longer than the punctures left take, at the rate so far
                per = (st["t_ms"] - ms0) / done
                step = int(min(chunk_ms, max(50, (punctures - done) * per)))
            st = chip.run_ms(step)
            if st["punctures"] != seen:
                seen, seen_ms = st["punctures"], st["t_ms"]
            elif st["t_ms"] - seen_ms > max(chunk_ms, 2000):
                raise RuntimeError(
                    "no puncture for %d ms after %d of %d"
                    % (st["t_ms"] - seen_ms, seen - p0, punctures)
                )
        chip.set(trigger=False)
        burst_ms = st["t_ms"] - ms0
        excursions = st["punctures"] - p0
        run.wait_idle()
        st = chip.run_ms(quiet_ms)
        out = chip.exec(_LOG_READBACK)
    core = {k: int(v) for k, v in (kv.split("=") for kv in out.split())}
    logged = (core["files"] - 1) * core["file_recs"] + core["newest_recs"] if core["files"] else 0
    return {
        "settings": settings,
        "cycle_ticks": cycle,
        "free_at_boot": boot_free,
        "free_after": core["mem_free"],
        "excursions": excursions,
        "burst_ms": burst_ms,
        "core": core,
        "logged": logged,
        "flash": dict(st.get("flash", {})),
        "irq": irq_figures(st, st.get("clk_hz")),
        "watchdog": dict(st["watchdog"]),
        "wall_s": time.monotonic() - t0,
    }


def boot_heap_figures(work_dir):
    """heap_after_boot and module_heap on one fresh chip without main.py (compiled modules in
    ROMFS): ({"free", "alloc", "size"}, module_heap's dict)."""
    from host_tools.chip import Chip

    with Chip.with_firmware(work_dir, main=False) as chip:
        chip.run_ms(1500)
        boot = heap_after_boot(chip)
        mods = module_heap(chip)
    return boot, mods
