"""`make deploy` to the virtual board, then the board self-test through `mpremote run`.

The same Makefile target a developer runs against a Pico (`make deploy
PORT=/dev/ttyACM0`) deploys here to a VirtualBoard on a temporary flash: a
deploy that breaks on a board breaks CI. Each test has its own flash, pty and
build directory (MPY_DIR), so the tests run side by side under pytest-xdist.
Every subprocess has a timeout; the only waits are bounded polls.

The virtual board has no ROMFS partition. host_tools/deploy.py's choice
between ROMFS and littlefs is tested against a fake board (its probe run on
CPython with a fake `vfs` module) and against the emulated Pico's MicroPython
1.28, which has the partition; the ROMFS-mode clean-up of littlefs runs on the
virtual board.
"""

import ast
import os
import re
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from host_tools import deploy, flash_images, vboard
from host_tools.vboard import VirtualBoard

pytestmark = [pytest.mark.micropython, pytest.mark.deploy]

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
SELFTEST = ROOT / "host_tools" / "board_selftest.py"
DEPLOY_TIMEOUT = 120  # s, one `make deploy`
RUN_TIMEOUT = 90  # s, one self-test run


@pytest.fixture(scope="module", autouse=True)
def need_tools():
    if not vboard.available():
        pytest.fail("node or the MicroPython npm package is missing: run `make test`")
    if shutil.which("make") is None:
        pytest.fail("make is not installed")


@pytest.fixture
def board(tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    log = (tmp_path / "vboard.log").open("w")
    b = VirtualBoard(flash, log=log)
    b.start()
    try:
        yield b
    finally:
        b.stop()
        log.close()


def make_deploy(port, mpy_dir, **variables):
    """`make -s deploy PORT=...`: the target a developer uses, with this Python.

    `-o` keeps make from reinstalling the virtual environment (the caller
    runs inside it); MPY_DIR gives each test its own build directory.
    """
    cmd = [
        "make",
        "-s",
        "-o",
        ".venv/.installed",
        "deploy",
        "PORT=%s" % port,
        "PY=%s" % sys.executable,
        "MPY_DIR=%s" % mpy_dir,
        "MPY_NATIVE=0",
    ]  # a WebAssembly board
    cmd += ["%s=%s" % kv for kv in variables.items()]
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=DEPLOY_TIMEOUT)
    return r, time.monotonic() - t0


def mpremote(port, *args, timeout=RUN_TIMEOUT):
    return subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", port, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def main_py_report(board, start, timeout):
    """The bridge's lines about main.py since message index `start`, once main.py
    has finished (ended, interrupted, raised, or cut off after ignoring Ctrl-C),
    or as they stand after `timeout` s (main.py still running)."""

    def finished(line):
        return (
            line.startswith("main.py: ended")
            or line.startswith("main.py: interrupted")
            or line.startswith("main.py raised")
            or "ignored Ctrl-C" in line
        )

    line = board.wait_for_message(finished, timeout, start)
    if line and line.startswith("main.py raised "):
        # the traceback follows; its last line repeats the exception
        last = "  | " + line[len("main.py raised ") :]
        board.wait_for_message(lambda m: m == last, 5, start)
    return board.messages[start:]


def check_main_py(lines):
    """main.py ran at the reset and did not raise; fails with its traceback otherwise."""
    assert "main.py: running" in lines, "main.py did not run at the reset: %s" % lines
    raised = [i for i, line in enumerate(lines) if line.startswith("main.py raised")]
    if raised:
        tb = [line for line in lines[raised[0] :] if line.startswith("  |")]
        raise AssertionError(
            "main.py failed on the board: %s\n%s" % (lines[raised[0]], "\n".join(tb))
        )


def result_line(stdout, kind="ok"):
    for line in stdout.splitlines():
        if line.startswith("selftest: %s " % kind):
            return dict(kv.split("=", 1) for kv in line.split()[2:] if "=" in kv)
    return None


def host_selftest():
    """The same self-test script, on CPython with firmware/ from the repository."""
    r = subprocess.run(
        [sys.executable, str(SELFTEST)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert r.returncode == 0, "self-test fails on CPython:\n" + r.stdout + r.stderr
    return result_line(r.stdout)


def test_deploy_runs_main_and_selftest_passes(board, tmp_path):
    flash = board.flash_dir
    # leftovers of an older install: a source copy that would shadow the .mpy,
    # and a compiled module that no longer exists
    (flash / "injcore").mkdir()
    (flash / "injcore" / "core.py").write_text("raise ImportError('stale source copy')\n")
    (flash / "injcore" / "retired.mpy").write_bytes(b"M\x06\x00\x1f")
    (flash / "data.txt").write_text("not ours: left alone\n")
    mpy_dir = tmp_path / "mpy"
    start = len(board.messages)

    r, seconds = make_deploy(board.port, mpy_dir)
    assert r.returncode == 0, "make deploy failed:\n" + r.stdout + r.stderr
    print("make deploy: %.1f s" % seconds)

    compiled = sorted(p.relative_to(mpy_dir) for p in mpy_dir.rglob("*.mpy"))
    sources = sorted(
        p.relative_to(FIRMWARE)
        for p in FIRMWARE.rglob("*.py")
        if p != FIRMWARE / "main.py" and "__pycache__" not in p.parts
    )
    assert compiled == [p.with_suffix(".mpy") for p in sources]
    for rel in compiled:
        assert (flash / rel).read_bytes() == (mpy_dir / rel).read_bytes(), rel
    on_board = sorted(p.relative_to(flash) for p in flash.rglob("*") if p.is_file())
    assert sorted(on_board) == sorted(compiled + [Path("main.py"), Path("data.txt")])
    assert (flash / "main.py").read_bytes() == (FIRMWARE / "main.py").read_bytes()

    assert board.wait_for_message("main.py: running", 20, start), board.messages[start:]
    r = mpremote(board.port, "run", str(SELFTEST))
    # mpremote interrupted main.py if it was still running: it must not have raised
    check_main_py(main_py_report(board, start, 10))
    assert r.returncode == 0, "self-test failed on the board:\n" + r.stdout + r.stderr
    ok = result_line(r.stdout)
    assert ok is not None, r.stdout
    assert "selftest: core injcore/core.mpy" in r.stdout  # the compiled core, not a source copy
    assert ok["alloc_per_tick"] == "0"
    assert int(ok["core_heap"]) > 0
    host = host_selftest()
    assert (ok["hash"], ok["punctures"]) == (host["hash"], host["punctures"]), (
        "the board's scripted session differs from CPython's"
    )
    print(r.stdout)


def test_broken_deploy_is_detected(board, tmp_path):
    # A firmware tree whose main.py imports fine on the host but not on a
    # board: the peripheral it asks `machine` for does not exist.
    tree = tmp_path / "firmware"
    shutil.copytree(FIRMWARE, tree, ignore=shutil.ignore_patterns("__pycache__", "main.py"))
    (tree / "main.py").write_text(
        "from injcore import core\n"
        "from machine import NoSuchPeripheral\n"
        "NoSuchPeripheral(core.ST_READY)\n"
    )
    mpy_dir = tmp_path / "mpy"
    start = len(board.messages)
    r, _ = make_deploy(board.port, mpy_dir, FIRMWARE=tree)
    assert r.returncode == 0, "make deploy failed:\n" + r.stdout + r.stderr
    lines = main_py_report(board, start, 20)
    with pytest.raises(
        AssertionError, match="main.py failed on the board: main.py raised ImportError"
    ):
        check_main_py(lines)
    assert any("line 2" in line for line in lines), lines  # with its traceback

    # A core module that breaks at import: the deploy goes through (only the
    # changed file is copied), the self-test fails and says so.
    settings = tree / "injcore" / "settings.py"
    settings.write_text(settings.read_text() + "\nraise RuntimeError('broken on purpose')\n")
    r, _ = make_deploy(board.port, mpy_dir, FIRMWARE=tree)
    assert r.returncode == 0, "make deploy failed:\n" + r.stdout + r.stderr
    assert re.search(r"Up to date: injcore/core\.mpy", r.stdout), r.stdout
    r = mpremote(board.port, "run", str(SELFTEST))
    assert r.returncode != 0
    assert "RuntimeError: broken on purpose" in r.stdout + r.stderr
    assert result_line(r.stdout) is None


def test_deploy_to_a_missing_port_fails(tmp_path):
    main = tmp_path / "main.py"
    main.write_text("print('hello')\n")
    r, _ = make_deploy(tmp_path / "no-such-tty", tmp_path / "mpy", MAIN=main)
    assert r.returncode != 0
    assert "no-such-tty" in r.stdout + r.stderr


def test_the_freeze_manifest_lists_every_firmware_package():
    """manifest.py (a frozen MicroPython build) names each package under firmware/."""
    frozen = []
    calls = {
        "include": lambda path: None,
        "package": lambda name, base_path=".": frozen.append((name, base_path)),
    }
    exec((ROOT / "manifest.py").read_text(), calls)
    packages = sorted(p.parent.name for p in (ROOT / "firmware").glob("*/__init__.py"))
    assert sorted(name for name, _ in frozen) == packages
    assert all((ROOT / base / name / "__init__.py").exists() for name, base in frozen)


# ---- where the modules go: ROMFS or littlefs (host_tools/deploy.py) ---------

MODULES = [
    "board/__init__.mpy",
    "board/app.mpy",
    "injcore/__init__.mpy",
    "injcore/core.mpy",
    "top.mpy",
]


def compiled_tree(tmp_path, big=()):
    """A build folder with MODULES (made-up bytes: nothing imports them) and
    a retired module that must not be deployed; `big` ones are 300 KB."""
    mpy = tmp_path / "mpy"
    for i, rel in enumerate(MODULES + ["injcore/retired.mpy"]):
        f = mpy / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"M\x06\x00\x1f" + (bytes([i]) * (300_000 if rel in big else 100 + i)))
    main = tmp_path / "main.py"
    main.write_text("print('main')\n")
    return mpy, main


def expected_image(mpy, modules=MODULES):
    """What deploy must write: a ROMFS image of exactly `modules`."""
    stage = mpy.parent / "expected"
    for rel in modules:
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / rel).write_bytes((mpy / rel).read_bytes())
    return flash_images.romfs_image(stage)


class RomPartition(bytearray):
    """The ROMFS partition as rp2 hands it out: a block device with a readable buffer."""

    def ioctl(self, op, arg):
        return {4: len(self) // 4096, 5: 4096}[op]  # block count, block size


def fake_vfs(rom=None, segments=1, ioctl=True):
    """A stand-in for MicroPython's `vfs` module; rom=None: a build without ROMFS."""
    m = types.ModuleType("vfs")
    if ioctl:

        def rom_ioctl(op, *args):
            if op == 1:
                return segments
            if op == 2:
                return rom if rom is not None else -22  # -EINVAL: no such segment
            return -22

        m.rom_ioctl = rom_ioctl
    return m


class FakeBoard:
    """An mpremote transport whose board is CPython: exec/eval of what deploy sends."""

    def __init__(self):
        self.ns = {}
        self.sent = []
        self.closed = False

    def exec(self, code):
        self.sent.append(code)
        exec(code, self.ns)

    def eval(self, expr):
        self.sent.append(expr)
        return ast.literal_eval(repr(eval(expr, self.ns)))  # as print(repr()) over the wire

    def exit_raw_repl(self):
        pass

    def close(self):
        self.closed = True


def run_deploy(board, mpy, main, modules=MODULES):
    runs, logs = [], []

    def run(args):
        runs.append(args)
        return 0

    rc = deploy.deploy(
        "PORT", mpy, main, modules, connect_to=lambda port: board, run=run, log=logs.append
    )
    assert rc == 0
    assert board.closed
    assert len(runs) == 1
    return runs[0], "\n".join(logs)


def test_romfs_board_gets_an_image_of_the_modules(tmp_path, monkeypatch):
    mpy, main = compiled_tree(tmp_path)
    monkeypatch.setitem(sys.modules, "vfs", fake_vfs(RomPartition(b"\xff" * 256 * 1024)))
    args, log = run_deploy(FakeBoard(), mpy, main)

    image_path = tmp_path / "mpy.romfs"
    prep = tmp_path / "mpy.deploy_prep.py"
    assert args == [
        "connect",
        "PORT",
        "romfs",
        "deploy",
        str(image_path),
        "+",
        "run",
        str(prep),
        "+",
        "fs",
        "cp",
        str(main),
        ":main.py",
        "+",
        "reset",
    ]
    image = image_path.read_bytes()
    assert image == expected_image(mpy)
    assert b"retired" not in image
    assert "256 KB ROMFS partition" in log
    head = prep.read_text().splitlines()[:2]
    assert head == ["KEEP = (%s)" % "".join("%r," % m for m in MODULES), "ROMFS = True"]


def test_romfs_image_already_on_the_board_is_not_rewritten(tmp_path, monkeypatch):
    mpy, main = compiled_tree(tmp_path)
    image = expected_image(mpy)
    rom = RomPartition(image + b"\xff" * (256 * 1024 - len(image)))
    monkeypatch.setitem(sys.modules, "vfs", fake_vfs(rom))
    args, log = run_deploy(FakeBoard(), mpy, main)
    assert "romfs" not in args
    assert args[2:4] == ["run", str(tmp_path / "mpy.deploy_prep.py")]
    assert "not rewritten" in log
    assert not (tmp_path / "mpy.romfs").exists()

    # one module changed: the image differs from the partition's, it is written
    (mpy / "injcore" / "core.mpy").write_bytes(b"M\x06\x00\x1f changed")
    args, log = run_deploy(FakeBoard(), mpy, main)
    assert args[2:5] == ["romfs", "deploy", str(tmp_path / "mpy.romfs")]
    assert "not rewritten" not in log


@pytest.mark.parametrize(
    "vfs, why",
    [
        (None, "no vfs module"),
        (fake_vfs(ioctl=False), "ROMFS is not enabled"),
        (fake_vfs(segments=0), "no ROMFS partition"),
        (fake_vfs(rom=None), "ROMFS partition not found"),
    ],
    ids=["no-vfs", "no-rom_ioctl", "no-segment", "segment-error"],
)
def test_board_without_romfs_gets_the_modules_on_littlefs(tmp_path, monkeypatch, vfs, why):
    mpy, main = compiled_tree(tmp_path)
    monkeypatch.setitem(sys.modules, "vfs", vfs)  # None: `import vfs` raises ImportError
    args, log = run_deploy(FakeBoard(), mpy, main)
    prep = tmp_path / "mpy.deploy_prep.py"
    assert args == [
        "connect",
        "PORT",
        "run",
        str(prep),
        "+",
        "fs",
        "cp",
        str(mpy / "board/__init__.mpy"),
        str(mpy / "board/app.mpy"),
        ":board/",
        "+",
        "fs",
        "cp",
        str(mpy / "injcore/__init__.mpy"),
        str(mpy / "injcore/core.mpy"),
        ":injcore/",
        "+",
        "fs",
        "cp",
        str(mpy / "top.mpy"),
        ":top.mpy",
        "+",
        "fs",
        "cp",
        str(main),
        ":main.py",
        "+",
        "reset",
    ]
    assert why in log
    assert "ROMFS = False" in prep.read_text()
    assert not (tmp_path / "mpy.romfs").exists()


def test_image_too_big_for_the_partition_is_refused_before_anything_is_written(
    tmp_path, monkeypatch, capsys
):
    mpy, main = compiled_tree(tmp_path, big=("injcore/core.mpy",))
    monkeypatch.setitem(sys.modules, "vfs", fake_vfs(RomPartition(b"\xff" * 256 * 1024)))
    board = FakeBoard()
    monkeypatch.setattr(deploy, "connect", lambda port: board)
    monkeypatch.setattr(
        deploy, "run_mpremote", lambda args: pytest.fail("mpremote ran: %s" % " ".join(args))
    )

    rc = deploy.main(["--port", "PORT", "--mpy-dir", str(mpy), "--main", str(main), *MODULES])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert re.fullmatch(
        r"deploy: the firmware is \d+ bytes, the ROMFS partition holds 262144: "
        r"nothing written\n",
        err,
    ), err
    assert board.closed
    assert not any(code.startswith("_deploy_sha256") for code in board.sent)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["main.py", "mpy"]


def test_deploy_refuses_a_module_that_was_not_compiled(tmp_path, monkeypatch):
    mpy, main = compiled_tree(tmp_path)
    monkeypatch.setattr(deploy, "connect", lambda port: pytest.fail("connected"))
    with pytest.raises(deploy.DeployError, match=r"ui/screens\.mpy not found \(run `make mpy`\)"):
        deploy.deploy("PORT", mpy, main, MODULES + ["ui/screens.mpy"])


class ChipTransport:
    """The emulated Pico's REPL as an mpremote transport."""

    def __init__(self, chip):
        self.chip = chip
        self.closed = False

    def exec(self, code):
        return self.chip.exec(code)

    def eval(self, expr):
        return ast.literal_eval(self.chip.exec("print(repr(%s))" % expr).strip())

    def exit_raw_repl(self):
        pass

    def close(self):
        self.closed = True


def test_romfs_probe_on_micropython_1_28(tmp_path):
    """The probe on the real MicroPython 1.28 rp2 image with ROMFS (the emulated
    Pico, which cannot write its flash): it finds the 256 KB partition, sees
    that the image placed there is the one it would write, and refuses one
    that does not fit."""
    from host_tools import chip as emulated

    why = emulated.missing()
    if why:
        if os.environ.get("INJECTOR_REQUIRE_CHIP") == "1":
            pytest.fail(why + " (INJECTOR_REQUIRE_CHIP=1)")
        pytest.skip(why)
    mpy, main = compiled_tree(tmp_path)
    image = tmp_path / "placed.img"
    image.write_bytes(expected_image(mpy))
    with emulated.Chip(flash=[(flash_images.ROMFS_OFFSET, image)], timeout=120) as chip:
        board = ChipTransport(chip)
        args, log = run_deploy(board, mpy, main)
        assert "256 KB ROMFS partition" in log
        assert "romfs" not in args and "not rewritten" in log

        (mpy / "board" / "app.mpy").write_bytes(b"M\x06\x00\x1f other")
        board.closed = False
        args, log = run_deploy(board, mpy, main)
        assert args[2:5] == ["romfs", "deploy", str(tmp_path / "mpy.romfs")]

        big = tmp_path / "big"
        mpy_big, _ = compiled_tree(big, big=("injcore/core.mpy",))
        with pytest.raises(deploy.DeployError, match="holds 262144: nothing written"):
            deploy.deploy(
                "PORT",
                mpy_big,
                main,
                MODULES,
                connect_to=lambda port: board,
                run=lambda args: pytest.fail("mpremote ran"),
                log=lambda line: None,
            )


LIST_FLASH = """
import os
def walk(d):
    for e in os.ilistdir(d or '/'):
        p = d + '/' + e[0] if d else e[0]
        if e[1] & 0x4000:
            print('dir', p)
            walk(p)
        else:
            print('file', p)
walk('')
"""


def board_tree(port):
    """The board's littlefs as the board sees it: {'dir x', 'file x/y', ...}."""
    r = mpremote(port, "exec", LIST_FLASH)
    assert r.returncode == 0, r.stdout + r.stderr
    return set(line.strip() for line in r.stdout.splitlines() if line.strip())


def test_romfs_prep_clears_littlefs_copies_that_would_hide_rom(board, tmp_path):
    flash = board.flash_dir
    leftovers = [
        "injcore/core.mpy",
        "injcore/core.py",
        "injcore/retired.mpy",
        "injcore/sub/deep.mpy",
        "board/app.mpy",
        "ui.py",
        "top.py",
        "top.mpy",
    ]
    kept = ["data.txt", "main.py", "log/0001.bin", "lib/other.mpy"]
    for rel in leftovers + kept:
        (flash / rel).parent.mkdir(parents=True, exist_ok=True)
        (flash / rel).write_bytes(b"x")
    prep = tmp_path / "prep.py"
    prep.write_text(deploy.prep_script(MODULES + ["ui/__init__.mpy"], romfs=True))

    # a package folder that holds something else: refused, nothing removed
    (flash / "board" / "notes.txt").write_text("not firmware")
    r = mpremote(board.port, "run", str(prep))
    assert r.returncode != 0
    assert "deploy: FAILED: :board/notes.txt is not firmware" in r.stdout
    before = board_tree(board.port)
    assert {"file " + rel for rel in leftovers + kept} <= before

    mpremote(board.port, "exec", "import os; os.remove('board/notes.txt')")
    r = mpremote(board.port, "run", str(prep))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "board ready for 6 modules in /rom (8 stale copies removed from littlefs)" in r.stdout
    assert board_tree(board.port) == {
        "file data.txt",
        "file main.py",
        "dir log",
        "file log/0001.bin",
        "dir lib",
        "file lib/other.mpy",
    }


# MicroPython: a `vfs` with a 256 KB ROMFS partition kept in the file :romfs.bin,
# for mpremote's own `romfs deploy` on the virtual board (which has no ROMFS).
# Installed in sys.modules, where `import vfs` looks first.
FAKE_ROMFS = """
import sys
class _Rom:
    def __init__(self):
        with open('romfs.bin', 'wb') as f:
            f.write(bytes(b'\\xff' * 262144))
    def ioctl(self, op, arg):
        return {4: 64, 5: 4096, 6: 0}[op]
    def writeblocks(self, block, buf, offset=0):
        with open('romfs.bin', 'r+b') as f:
            f.seek(block * 4096 + offset)
            f.write(buf)
class _Vfs:
    pass
_rom = []
def _rom_ioctl(op, *args):
    if op == 1:
        return 1
    if op == 2:
        if not _rom:
            _rom.append(_Rom())
        return _rom[0]
    return -22
def _umount(path):
    raise OSError(22)
_vfs = _Vfs()
_vfs.rom_ioctl = _rom_ioctl
_vfs.umount = _umount
sys.modules['vfs'] = _vfs
"""


def test_romfs_deploy_through_mpremote(board, tmp_path):
    """The whole ROMFS path with the real mpremote: probe, `romfs deploy` of the
    image, the clean-up of littlefs, main.py, reset. Only the partition is fake."""
    flash = board.flash_dir
    for rel in ("injcore/core.py", "injcore/core.mpy", "board/app.mpy", "data.txt"):
        (flash / rel).parent.mkdir(parents=True, exist_ok=True)
        (flash / rel).write_bytes(b"x")
    mpy, main = compiled_tree(tmp_path)
    start = len(board.messages)

    def connect_to(port):
        transport = deploy.connect(port)
        transport.exec(FAKE_ROMFS)
        return transport

    def run(args):
        assert args[:2] == ["connect", board.port]
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "mpremote",
                "connect",
                board.port,
                "exec",
                FAKE_ROMFS,
                "+",
                *args[2:],
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=DEPLOY_TIMEOUT,
        )
        runs.append(r)
        return r.returncode

    runs = []
    rc = deploy.deploy(
        board.port, mpy, main, MODULES, connect_to=connect_to, run=run, log=lambda line: None
    )
    out = runs[0].stdout + runs[0].stderr
    assert rc == 0, out
    assert "ROMFS image deployed" in out
    assert board.wait_for_message("main.py: running", 20, start), board.messages[start:]
    image = (tmp_path / "mpy.romfs").read_bytes()
    assert image == expected_image(mpy)
    assert board_tree(board.port) == {"file data.txt", "file main.py", "file romfs.bin"}
    written = (flash / "romfs.bin").read_bytes()
    assert len(written) == 262144 and written[: len(image)] == image
    assert (flash / "main.py").read_bytes() == main.read_bytes()
