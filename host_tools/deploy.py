"""`make deploy`: the compiled firmware and main.py onto a board, then a reset.

    python -m host_tools.deploy --port /dev/ttyACM0 --mpy-dir build/mpy \\
        --main firmware/main.py injcore/core.mpy board/app.mpy ...

The modules (paths relative to --mpy-dir, the same paths the board imports)
go where the board runs them best. A first, read-only mpremote connection asks
the board; then this script decides:

- The board has a ROMFS partition (the project's image, boards/INJECTOR_PICO,
  MicroPython 1.28). One ROMFS image of the modules (host_tools.flash_images)
  is written to it with `mpremote romfs deploy`, unless the partition already
  holds that same image. The board imports them from /rom and runs their
  bytecode in place from flash. An image larger than the partition is refused
  before anything is written. Copies of the firmware's packages on littlefs
  are removed afterwards: on MicroPython 1.28's rp2 port sys.path is
  ['', '.frozen', '/rom', '/rom/lib', '/lib'] and '' is littlefs' root, so any
  of them would be imported instead of /rom. That includes an empty package
  folder, which MicroPython imports as a namespace package.
- The board has no ROMFS (a stock MicroPython image, the virtual board). Every
  .mpy is copied to the same path on littlefs (mpremote skips unchanged files),
  after stale .py copies and retired modules are removed.

Either way main.py is copied to :main.py and the board is reset, in one second
mpremote session. host_tools/deploy_prep.py is the part that runs on the board.
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from mpremote.transport import TransportError

from host_tools import flash_images
from host_tools.cliutil import missing_port

PREP = Path(__file__).with_name("deploy_prep.py")

# Runs on the board (MicroPython; CPython in the tests, with a fake `vfs`).
# _deploy_romfs() is the ROMFS partition's size in bytes, or a string saying
# why there is none; _deploy_sha256(n) the SHA-256 of its first n bytes, or
# None if the board cannot say.
PROBE = """
def _deploy_romfs():
    try:
        import vfs
    except ImportError:
        return 'no vfs module'
    if not hasattr(vfs, 'rom_ioctl'):
        return 'ROMFS is not enabled in this MicroPython image'
    if vfs.rom_ioctl(1) <= 0:
        return 'no ROMFS partition'
    dev = vfs.rom_ioctl(2, 0)
    if isinstance(dev, int):
        return 'ROMFS partition not found'
    if hasattr(dev, 'ioctl'):
        return dev.ioctl(4, 0) * dev.ioctl(5, 0)
    return len(dev)

def _deploy_sha256(n):
    import vfs
    try:
        import hashlib, binascii
        rom = memoryview(vfs.rom_ioctl(2, 0))
        return binascii.hexlify(hashlib.sha256(rom[:n]).digest()).decode()
    except Exception:
        return None
"""


class DeployError(Exception):
    """The deploy cannot go ahead; the message says why, in one line."""


def connect(port):
    """An mpremote transport to `port`, in the raw REPL after a soft reset."""
    from mpremote.commands import CommandError, do_connect

    why = missing_port(port)
    if why:
        raise DeployError(why)
    state = SimpleNamespace(transport=None, _auto_soft_reset=True)
    try:
        do_connect(state, SimpleNamespace(device=[port]))
    except CommandError as e:
        raise DeployError(str(e)) from None
    try:
        state.transport.enter_raw_repl(soft_reset=True)
    except TransportError as e:
        state.transport.close()
        raise DeployError("%s: %s" % (port, e)) from None
    return state.transport


def probe_romfs(transport):
    """(size of the board's ROMFS partition in bytes, or 0; why there is none)."""
    transport.exec(PROBE)
    answer = transport.eval("_deploy_romfs()")
    if isinstance(answer, int) and answer > 0:
        return answer, None
    return 0, answer if isinstance(answer, str) else "empty ROMFS partition"


def board_sha256(transport, n):
    return transport.eval("_deploy_sha256(%d)" % n)


def romfs_image(mpy_dir, modules, partition_bytes):
    """The ROMFS image of exactly `modules` (a build folder may hold retired ones)."""
    with tempfile.TemporaryDirectory(prefix="romfs-") as stage:
        for rel in modules:
            dest = Path(stage, rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes((mpy_dir / rel).read_bytes())
        try:
            return flash_images.romfs_image(stage, partition_bytes)
        except flash_images.ImageError as e:
            raise DeployError(str(e)) from None


def prep_script(modules, romfs):
    """deploy_prep.py with what it needs to know prepended."""
    head = "KEEP = (%s)\nROMFS = %r\n" % ("".join("%r," % m for m in modules), bool(romfs))
    return head + PREP.read_text()


def copy_args(mpy_dir, modules):
    """`fs cp` commands for littlefs: one per folder, then each top-level module."""
    by_dir = {}
    for rel in modules:
        folder, _, _ = rel.rpartition("/")
        by_dir.setdefault(folder, []).append(rel)
    args = []
    for folder in sorted(d for d in by_dir if d):
        files = [str(mpy_dir / m) for m in sorted(by_dir[folder])]
        args += ["+", "fs", "cp", *files, ":%s/" % folder]
    for rel in sorted(by_dir.get("", ())):
        args += ["+", "fs", "cp", str(mpy_dir / rel), ":%s" % rel]
    return args


def _write(path, data):
    """Written under a temporary name and renamed: a concurrent reader never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("%s.%d.tmp" % (path.name, os.getpid()))
    tmp.write_bytes(data)
    tmp.replace(path)


def beside(mpy_dir, suffix):
    """build/mpy -> build/mpy.romfs: next to the folder, so a ROMFS image of it stays clean."""
    d = mpy_dir if mpy_dir.name else mpy_dir.resolve()
    return d.with_name(d.name + suffix)


def check_files(mpy_dir, main, modules):
    if not main.is_file():
        raise DeployError("%s not found" % main)
    if not modules:
        raise DeployError("no modules to deploy")
    for rel in modules:
        if not rel.endswith(".mpy") or rel.startswith("/") or ".." in rel.split("/"):
            raise DeployError("%s: not a compiled module path relative to %s" % (rel, mpy_dir))
        if not (mpy_dir / rel).is_file():
            raise DeployError("%s not found (run `make mpy`)" % (mpy_dir / rel))


def run_mpremote(args):
    return subprocess.run([sys.executable, "-m", "mpremote", *args]).returncode


def deploy(port, mpy_dir, main, modules, *, connect_to=None, run=None, log=print):
    """Deploy to the board on `port`; mpremote's exit status.

    Raises DeployError, before anything is written, if it cannot go ahead.
    `connect_to(port)` gives the transport the board is asked through and
    `run(args)` runs mpremote with `args`: this module's connect() and
    run_mpremote() unless given.
    """
    run = run or run_mpremote
    mpy_dir, main = Path(mpy_dir), Path(main)
    modules = sorted(set(modules))
    check_files(mpy_dir, main, modules)

    image = None
    transport = (connect_to or connect)(port)
    try:
        romfs_bytes, why = probe_romfs(transport)
        if romfs_bytes:
            image = romfs_image(mpy_dir, modules, romfs_bytes)
            same = board_sha256(transport, len(image)) == hashlib.sha256(image).hexdigest()
    except TransportError as e:
        raise DeployError(
            "%s: asking the board for its ROMFS partition failed: %s"
            % (port, " ".join(str(e).split()))
        ) from None
    finally:
        try:
            transport.exit_raw_repl()
        except (OSError, TransportError):
            pass
        transport.close()

    args = ["connect", port]
    if image is not None:
        log(
            "deploy: %s has a %d KB ROMFS partition: the %d modules go there "
            "(image %d bytes, %d %%)"
            % (port, romfs_bytes // 1024, len(modules), len(image), 100 * len(image) // romfs_bytes)
        )
        if same:
            log("deploy: the ROMFS partition already holds this image: not rewritten")
        else:
            image_path = beside(mpy_dir, ".romfs")
            _write(image_path, image)
            args += ["romfs", "deploy", str(image_path), "+"]
    else:
        log("deploy: %s: %s: the %d modules go onto littlefs" % (port, why, len(modules)))
    prep = beside(mpy_dir, ".deploy_prep.py")
    (mpy_dir / "deploy_prep.py").unlink(missing_ok=True)  # where older versions wrote it
    _write(prep, prep_script(modules, image is not None).encode())
    args += ["run", str(prep)]
    if image is None:
        args += copy_args(mpy_dir, modules)
    args += ["+", "fs", "cp", str(main), ":main.py", "+", "reset"]
    log("deploy: mpremote " + " ".join(args))
    return run(args)


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m host_tools.deploy", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "--port", required=True, help="the board's serial port (or a virtual board's pty)"
    )
    ap.add_argument("--mpy-dir", default="build/mpy", help="where `make mpy` put the modules")
    ap.add_argument("--main", default="firmware/main.py", help="copied to :main.py")
    ap.add_argument("modules", nargs="+", help="compiled modules, relative to --mpy-dir")
    args = ap.parse_args(argv)
    try:
        return deploy(args.port, args.mpy_dir, args.main, args.modules)
    except DeployError as e:
        print("deploy: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
