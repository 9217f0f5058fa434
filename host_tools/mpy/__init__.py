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
    return shutil.which("node") is not None and (
        ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript").is_dir()


def run(source, puts=None, heap=2 * 1024 * 1024, timeout=300):
    """Run `source` on MicroPython; `puts` maps host paths to paths inside it. Returns stdout."""
    puts = dict(puts or {})
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
        script = f.name
    try:
        cmd = ["node", str(RUNNER), "--heap", str(heap)]
        for host, target in puts.items():
            cmd += ["--put", "%s=%s" % (host, target)]
        cmd.append(script)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                              env=dict(os.environ, NODE_PATH=str(ROOT / "node_modules")))
    finally:
        os.unlink(script)
    if proc.returncode != 0:
        raise MicroPythonError(proc.stderr.strip() or "MicroPython exited with %d" % proc.returncode)
    return proc.stdout


def run_with_core(source, heap=2 * 1024 * 1024, timeout=300):
    """Run `source` with the firmware core (and its loopback rig, injcore.rig) in /lib."""
    return run(source, {FIRMWARE / "injcore": "/lib/injcore"}, heap, timeout)
