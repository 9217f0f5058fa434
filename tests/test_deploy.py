"""`make deploy` to the virtual board, then the board self-test through `mpremote run`.

The same Makefile target a developer runs against a Pico (`make deploy
PORT=/dev/ttyACM0`) deploys here to a VirtualBoard on a temporary flash: a
deploy that breaks on a board breaks CI. Each test has its own flash, pty and
build directory (MPY_DIR), so the tests run side by side under pytest-xdist.
Every subprocess has a timeout; the only waits are bounded polls.
"""

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host_tools import vboard
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
    cmd = ["make", "-s", "-o", ".venv/.installed", "deploy", "PORT=%s" % port,
           "PY=%s" % sys.executable, "MPY_DIR=%s" % mpy_dir]
    cmd += ["%s=%s" % kv for kv in variables.items()]
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=DEPLOY_TIMEOUT)
    return r, time.monotonic() - t0


def mpremote(port, *args, timeout=RUN_TIMEOUT):
    return subprocess.run([sys.executable, "-m", "mpremote", "connect", port, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def main_py_report(board, start, timeout):
    """The bridge's lines about main.py since message index `start`, once main.py
    has finished (ended, interrupted, raised, or cut off after ignoring Ctrl-C),
    or as they stand after `timeout` s (main.py still running)."""
    def finished(line):
        return (line.startswith("main.py: ended") or line.startswith("main.py: interrupted")
                or line.startswith("main.py raised") or "ignored Ctrl-C" in line)

    line = board.wait_for_message(finished, timeout, start)
    if line and line.startswith("main.py raised "):
        # the traceback follows; its last line repeats the exception
        last = "  | " + line[len("main.py raised "):]
        board.wait_for_message(lambda m: m == last, 5, start)
    return board.messages[start:]


def check_main_py(lines):
    """main.py ran at the reset and did not raise; fails with its traceback otherwise."""
    assert "main.py: running" in lines, "main.py did not run at the reset: %s" % lines
    raised = [i for i, line in enumerate(lines) if line.startswith("main.py raised")]
    if raised:
        tb = [line for line in lines[raised[0]:] if line.startswith("  |")]
        raise AssertionError("main.py failed on the board: %s\n%s"
                             % (lines[raised[0]], "\n".join(tb)))


def result_line(stdout, kind="ok"):
    for line in stdout.splitlines():
        if line.startswith("selftest: %s " % kind):
            return dict(kv.split("=", 1) for kv in line.split()[2:] if "=" in kv)
    return None


def host_selftest():
    """The same self-test script, on CPython with firmware/ from the repository."""
    r = subprocess.run([sys.executable, str(SELFTEST)], cwd=ROOT, capture_output=True,
                       text=True, timeout=RUN_TIMEOUT)
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
    sources = sorted(p.relative_to(FIRMWARE) for p in FIRMWARE.rglob("*.py")
                     if p != FIRMWARE / "main.py" and "__pycache__" not in p.parts)
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
    assert (ok["hash"], ok["punctures"]) == (host["hash"], host["punctures"]), \
        "the board's scripted session differs from CPython's"
    print(r.stdout)


def test_broken_deploy_is_detected(board, tmp_path):
    # A firmware tree whose main.py imports fine on the host but not on a
    # board: the peripheral it asks `machine` for does not exist.
    tree = tmp_path / "firmware"
    shutil.copytree(FIRMWARE, tree, ignore=shutil.ignore_patterns("__pycache__", "main.py"))
    (tree / "main.py").write_text(
        "from injcore import core\n"
        "from machine import NoSuchPeripheral\n"
        "NoSuchPeripheral(core.ST_READY)\n")
    mpy_dir = tmp_path / "mpy"
    start = len(board.messages)
    r, _ = make_deploy(board.port, mpy_dir, FIRMWARE=tree)
    assert r.returncode == 0, "make deploy failed:\n" + r.stdout + r.stderr
    lines = main_py_report(board, start, 20)
    with pytest.raises(AssertionError, match="main.py failed on the board: main.py raised ImportError"):
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
