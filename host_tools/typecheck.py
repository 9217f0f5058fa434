"""`make typecheck`: pyright on firmware/ against the MicroPython rp2 stubs.

The stubs come from two PyPI packages, dev dependencies of the project:
micropython-rp2-rpi-pico-stubs (machine, rp2, micropython, time, gc, ... of
the RPI_PICO port) and micropython-stdlib-stubs (MicroPython's builtins and
stdlib, a typeshed). pip installs their files loose into site-packages, next
to packages that would shadow them (adafruit-blinka, pulled in by the PIO
assembler, brings a CPython `micropython` module), so this script links just
their files into build/typings, which pyrightconfig.json names as both
stubPath and typeshedPath. The configuration's Python environment is an empty
one (build/nopython/env), so nothing resolves from a CPython installation:
a module the device does not have is reported missing. Then it runs pyright
and returns its exit status.

    python -m host_tools.typecheck [pyright arguments...]
"""

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TYPINGS = ROOT / "build" / "typings"
NO_PYTHON = ROOT / "build" / "nopython" / "env"  # venvPath/venv of pyrightconfig.json
CONFIG = ROOT / "pyrightconfig.json"
STUB_PACKAGES = ("micropython-rp2-rpi-pico-stubs", "micropython-stdlib-stubs")
_SKIP_NAMES = {"README.md", "LICENSE.md", "pyproject.toml"}


def _stub_files():
    for name in STUB_PACKAGES:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise SystemExit(
                "typecheck: %s is not installed (it is a dev dependency: make setup)" % name
            ) from None
        for f in dist.files or ():
            parts = f.parts
            if (
                parts[0].endswith(".dist-info")
                or "__pycache__" in parts
                or (len(parts) == 1 and f.name in _SKIP_NAMES)
            ):
                continue
            yield name, dist.version, Path(*parts), Path(str(f.locate())).resolve()


def build_typings(target=TYPINGS):
    """Link the stub packages' files into `target` (rebuilt when their versions change)."""
    files = list(_stub_files())
    stamp = "\n".join(sorted({"%s==%s" % (n, v) for n, v, _, _ in files})) + "\n"
    stamp_file = target / ".packages"
    if stamp_file.is_file() and stamp_file.read_text() == stamp:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".typings-", dir=target.parent))
    try:
        for _, _, rel, src in files:
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                os.symlink(src, dst)
        (tmp / ".packages").write_text(stamp)
        if stamp_file.is_file() and stamp_file.read_text() == stamp:
            return target  # another process built it meanwhile
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:  # another process built it meanwhile
            if not (stamp_file.is_file() and stamp_file.read_text() == stamp):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def run_pyright(*args, capture=False, timeout=300):
    build_typings()
    site = NO_PYTHON / "lib" / ("python%d.%d" % sys.version_info[:2]) / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pyright", "--project", str(CONFIG), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=capture, text=True, timeout=timeout)


def main(argv=None):
    return run_pyright(*(sys.argv[1:] if argv is None else argv)).returncode


if __name__ == "__main__":
    sys.exit(main())
