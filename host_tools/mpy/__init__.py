"""Run code on the real MicroPython interpreter (the npm WebAssembly build) from CPython."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("run.mjs")
FIRMWARE = ROOT / "firmware"


class MicroPythonError(RuntimeError):
    pass


def available():
    return (
        shutil.which("node") is not None
        and (ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript").is_dir()
    )


# The hot path is compiled to machine code on the device (`@micropython.viper`,
# injcore/tick.py). This MicroPython has no native emitter, so the firmware it
# runs has those decorator lines blanked: the same functions then run as
# bytecode (same results, line numbers kept; see injcore/compat.py).
NATIVE_DECORATORS = ("@micropython.viper", "@micropython.native")


def portable_source(text):
    """Python source with the native-code decorators blanked (for a MicroPython without them)."""
    return "\n".join("" if line.strip() in NATIVE_DECORATORS else line for line in text.split("\n"))


def portable_copy(src, dst):
    """Copy a file or a tree of .py/.mpy files, the .py files made portable."""
    src, dst = Path(src), Path(dst)
    files = (
        [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.suffix in (".py", ".mpy"))
    )
    for p in files:
        out = dst if src.is_file() else dst / p.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix == ".py":
            out.write_text(portable_source(p.read_text()))
        else:
            shutil.copyfile(p, out)


def run(source, puts=None, heap=2 * 1024 * 1024, timeout=300):
    """Run `source` on MicroPython; `puts` maps host paths to paths inside it. Returns stdout."""
    puts = dict(puts or {})
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
        script = f.name
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = ["node", str(RUNNER), "--heap", str(heap)]
            for i, (host, target) in enumerate(puts.items()):
                local = Path(tmp) / str(i) / Path(host).name
                portable_copy(host, local)
                cmd += ["--put", "%s=%s" % (local, target)]
            cmd.append(script)
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=ROOT,
                env=dict(os.environ, NODE_PATH=str(ROOT / "node_modules")),
            )
    finally:
        os.unlink(script)
    if proc.returncode != 0:
        raise MicroPythonError(
            proc.stderr.strip() or "MicroPython exited with %d" % proc.returncode
        )
    return proc.stdout


def run_with_core(source, heap=2 * 1024 * 1024, timeout=300):
    """Run `source` with the firmware core (and its loopback rig, injcore.rig) in /lib."""
    return run(source, {FIRMWARE / "injcore": "/lib/injcore"}, heap, timeout)
