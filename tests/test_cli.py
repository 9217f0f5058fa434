"""The `injector` command as a whole (host_tools/cli.py, cliutil.py): its version, and the
inputs that used to end in a traceback: deep JSON, huge files, an output folder that is a
file, a closed pipe, a port that does not exist. tests/test_cli_fuzz.py throws broken
input at every command; these pin the particular answers."""

import argparse
import io
import json
import os
import subprocess
import sys
import tomllib
import tracemalloc
from pathlib import Path

import pytest

from host_cli import ROOT, cli, run
from host_tools import cli as C
from host_tools import cliutil, mpy
from injcore import protocol as P
from injcore import store as S

PROTOCOL = ROOT / "protocols" / "pain-low-back.json"
SCRIPT = ROOT / "tests" / "panel_scripts" / "estop.txt"
MB = 1024 * 1024


def one_line(err):
    """The single line of a refusal: no traceback, nothing after it."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


# ---- versions -------------------------------------------------------------------------


def firmware_version():
    from board.version import FIRMWARE_VERSION

    return FIRMWARE_VERSION


def test_version_is_the_firmwares(capsys):
    code, out, err = run(capsys, "--version")
    assert code == 0 and err == ""
    assert out == "injector %s (host tools)\n" % firmware_version()


def test_the_package_and_the_firmware_have_one_version():
    """pyproject.toml names no version of its own: setuptools reads the firmware's, and
    the board's app shows that same constant."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "firmware.board.version.FIRMWARE_VERSION"
    # what a build reads: setuptools' own static reading of that attribute
    from setuptools.config.expand import read_attr

    assert read_attr(attr, root_dir=str(ROOT)) == firmware_version()
    from host_tools import fakes

    fakes.install()  # board.app imports machine
    from board import app

    assert app.FIRMWARE_VERSION is firmware_version()
    # a version string is never written anywhere else in the firmware
    for path in (ROOT / "firmware").rglob("*.py"):
        if path.name != "version.py":
            assert "FIRMWARE_VERSION = " not in path.read_text(), path


def test_an_editable_install_of_this_checkout_has_its_version():
    import importlib.metadata as md

    try:
        dist = md.distribution("injector")
    except md.PackageNotFoundError:
        pytest.skip("injector is not installed (make setup installs it)")
    url = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
    if url and url != ROOT.as_uri():  # a fresh clone's own install names no url
        pytest.skip("the installed injector is another checkout's (%s)" % url)
    assert dist.version == firmware_version(), "stale install: run `make setup`"


def test_version_from_a_port_that_does_not_exist(capsys, tmp_path):
    code, out, err = run(capsys, "--version", "--port", tmp_path / "no-such-tty")
    assert code == 2 and out.startswith("injector %s" % firmware_version())
    assert one_line(err).endswith("no-such-tty: no such device " + NO_DEVICE_HINT)


def test_port_before_a_command_goes_with_version(capsys, tmp_path):
    code, out, err = run(capsys, "--port", "x", "settings", "show", "--dir", tmp_path)
    assert code == 2 and "go with --version" in one_line(err)


@pytest.mark.micropython
def test_version_over_the_virtual_board(tmp_path):
    from host_tools import vboard

    if not vboard.available():
        pytest.fail("node or the MicroPython npm package is missing: run `make test`")
    flash = tmp_path / "flash"
    (flash / "lib" / "board").mkdir(parents=True)
    for name in ("__init__", "version"):
        src = ROOT / "firmware" / "board" / (name + ".py")
        mpy.portable_copy(src, flash / "lib" / "board" / (name + ".py"))
    with vboard.VirtualBoard(flash) as port:
        r = cli("--version", "--port", port)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [
            "injector %s (host tools)" % firmware_version(),
            "firmware %s on %s" % (firmware_version(), port),
        ]
    empty = tmp_path / "empty"
    empty.mkdir()
    with vboard.VirtualBoard(empty) as port:  # MicroPython without the firmware
        r = cli("--version", "--port", port)
        assert r.returncode == 2
        assert "could not ask %s for its firmware version" % port in one_line(r.stderr)


# ---- deep and huge files -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "[" * 2000 + "]" * 2000,  # the decoder's recursion limit
        '{"a":' * 17 + "1" + "}" * 17,  # decodes, but deeper than any file the tools take
        '{"zones": ' + "[" * 40 + "]" * 40 + "}",
    ],
    ids=["recursion", "objects", "inside"],
)
def test_deep_json_is_one_line(capsys, tmp_path, text):
    f = tmp_path / "deep.json"
    f.write_text(text)
    why = "nested deeper than %d levels of arrays and objects" % cliutil.MAX_JSON_DEPTH
    for args in (
        ("protocol", "validate", f),
        ("protocol", "push", f, "--port", tmp_path / "no-such-tty"),
        ("settings", "push", f, "--dir", tmp_path),
        ("sim", "--protocol", f, "--out", tmp_path / "out"),
    ):
        code, out, err = run(capsys, *args)
        assert code == 2 and why in one_line(err), args
    assert tree(tmp_path) == ["deep.json"]


def test_a_huge_protocol_file_is_refused_by_its_size_unread(capsys, tmp_path):
    notes = tmp_path / "notes.json"
    with open(notes, "w") as f:  # a protocol whose notes run to 50 MB
        f.write('{"format": 1, "name": "x", "notes": "')
        f.write("NOTES" * (10 * MB))
        f.write('"}')
    size = notes.stat().st_size
    for args in (
        ("protocol", "validate", notes),
        ("protocol", "push", notes, "--port", tmp_path / "no-such-tty"),
        ("sim", "--protocol", notes, "--out", tmp_path / "out"),
    ):
        tracemalloc.start()
        try:
            code, out, err = run(capsys, *args)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        line = one_line(err)
        assert (
            code == 2
            and "%d bytes is too large; allowed at most %d"
            % (
                size,
                P.MAX_FILE_BYTES,
            )
            in line
        )
        assert "the largest protocol file the device stores" in line
        assert "NOTES" not in out + err
        assert peak < 4 * MB, "read %d bytes of a 50 MB file" % peak
    assert not (tmp_path / "out").exists()


def test_a_huge_settings_file_and_script_are_refused_by_their_size(capsys, tmp_path):
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(50 * MB)  # sparse: all zeros
    code, out, err = run(capsys, "settings", "push", big, "--dir", tmp_path)
    assert code == 2
    assert "%d bytes is too large; a settings record is at most %d" % (
        50 * MB,
        S.MAX_PAYLOAD,
    ) in one_line(err)
    code, out, err = run(capsys, "panel", "--script", big, "--out", tmp_path / "shots")
    assert code == 2 and "%d bytes is too large" % (50 * MB) in one_line(err)
    assert tree(tmp_path) == ["big"]


# ---- outputs -------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["file", "file/sub"])
def test_an_output_folder_that_cannot_be_is_one_line(capsys, tmp_path, where):
    (tmp_path / "file").write_text("x")
    out_dir = tmp_path / where
    cases = [
        ("sim", "--out", out_dir, "--no-plot"),
        ("sim", "--protocol", PROTOCOL, "--out", out_dir),
        ("panel", "--script", SCRIPT, "--out", out_dir),
        ("protocol", "pull", "--port", tmp_path / "no-such-tty", "--out", out_dir),
        ("logs", "pull", "--port", tmp_path / "no-such-tty", "--out", out_dir),
    ]
    for args in cases:
        code, out, err = run(capsys, *args)
        line = one_line(err)
        assert code == 2 and "file is a file, not a folder" in line, args
    assert tree(tmp_path) == ["file"]


def test_logs_export_makes_no_folders(capsys, tmp_path):
    log = ROOT / "tests" / "golden"  # any folder: the refusal comes before the records
    missing = tmp_path / "a" / "b"
    code, out, err = run(capsys, "logs", "export", log, "--csv", missing / "log.csv")
    assert code == 2 and "no such folder: %s" % missing in one_line(err)
    code, out, err = run(capsys, "logs", "export", log, "--csv", tmp_path)
    assert code == 2 and "is a folder; give a file name" in one_line(err)
    assert tree(tmp_path) == []


def test_a_failed_logs_pull_leaves_no_folder(capsys, tmp_path):
    out_dir = tmp_path / "pulled" / "here"
    # a path that exists but is no board: mpremote starts and fails
    code, out, err = run(capsys, "logs", "pull", "--port", os.devnull, "--out", out_dir)
    assert code == 2 and "mpremote could not copy :log" in one_line(err)
    code, out, err = run(capsys, "logs", "pull", "--port", tmp_path / "nope", "--out", out_dir)
    assert code == 2 and "no such device" in one_line(err)
    assert tree(tmp_path) == []


# ---- ports -----------------------------------------------------------------------------

NO_DEVICE_HINT = "(is the board plugged in? `mpremote connect list` lists the ports)"


def board_commands(tmp_path, port):
    """Each command that talks to a board, with inputs that are fine but for the port."""
    change = tmp_path / "change.json"
    change.write_text('{"settings": {"dose_nl": 25000}}')
    return {
        ("logs", "pull"): ("--port", port, "--out", tmp_path / "o"),
        ("settings", "show"): ("--port", port),
        ("settings", "push"): (change, "--port", port),
        ("calibrate",): ("--counted-ul", "200", "--mass-mg", "199.6", "--port", port),
        ("protocol", "validate"): (PROTOCOL, "--port", port),
        ("protocol", "push"): (PROTOCOL, "--port", port),
        ("protocol", "pull"): ("--port", port, "--out", tmp_path / "o"),
        ("protocol", "list"): ("--port", port),
        ("protocol", "remove"): ("Some name", "--port", port),
    }


def leaves(parser, path=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for name, sub in subs[0].choices.items() if subs else ():
        yield from leaves(sub, path + (name,))


def test_every_command_with_a_port_says_no_such_device(capsys, tmp_path):
    port = tmp_path / "no-such-tty"
    commands = board_commands(tmp_path, port)
    with_port = {
        path
        for path, p in leaves(C.build_parser())
        if any("--port" in a.option_strings for a in p._actions)
    }
    assert with_port == set(commands), "a new command with --port: add it to board_commands"
    for path, args in commands.items():
        code, out, err = run(capsys, *path, *args)
        assert code == 2, (path, err)
        assert one_line(err).endswith("%s: no such device %s" % (port, NO_DEVICE_HINT)), path
    assert tree(tmp_path) == ["change.json"]


def test_missing_port_knows_what_mpremote_resolves(tmp_path):
    assert cliutil.missing_port(os.devnull) is None  # exists (mpremote decides the rest)
    for port in ("auto", "id:1234", "socket://localhost:1", "rfc2217://h:1"):
        assert cliutil.missing_port(port) is None
    assert "no such device" in cliutil.missing_port("port:%s/x" % tmp_path)
    assert "no such device" in cliutil.missing_port("COM99")


# ---- panel scripts --------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "wait 300001",
        "wait 301s",
        "wait " + "9" * 5000,
        "hold OK 1000000",
        "trigger hold 400s",
        "wait-until ready 999999",
    ],
)
def test_script_waits_have_an_upper_bound(capsys, tmp_path, line):
    from host_tools import panel

    script = tmp_path / "long.txt"
    script.write_text(line + "\n")
    code, out, err = run(capsys, "panel", "--script", script, "--out", tmp_path / "shots")
    assert code == 2 and "Traceback" not in err
    assert "at most %d ms (300 s) of simulated time" % panel.MAX_WAIT_MS in err
    assert err.splitlines()[0].startswith("injector panel: %s:1: " % script)
    assert tree(tmp_path) == ["long.txt"]


def test_the_longest_wait_is_allowed():
    from host_tools import panel

    assert panel.parse_line("wait 300s") == ("wait", (panel.MAX_WAIT_MS,))
    assert panel.parse_line("wait-until ready 300000") == (
        "wait-until",
        ("ready", None, panel.MAX_WAIT_MS),
    )
    with pytest.raises(panel.ScriptError, match="at most 100"):
        panel.parse_line("press OK 101")


def test_an_empty_script_is_refused(capsys, tmp_path):
    script = tmp_path / "empty.txt"
    script.write_text("# only a comment\n\n")
    code, out, err = run(capsys, "panel", "--script", script, "--out", tmp_path / "shots")
    assert code == 2 and "%s: no commands in it" % script in err.splitlines()[0]
    assert tree(tmp_path) == ["empty.txt"]


# ---- the command line itself ----------------------------------------------------------


@pytest.mark.parametrize(
    "args,message",
    [
        (("sim", "--shots", "x"), "injector sim: argument --shots: 'x' is not a whole number"),
        (("sim", "--shots", "101"), "101 is out of range; allowed 0..100"),
        (("sim", "--seed", "9" * 5000), "--seed: 999999999999... is out of range"),
        (("protocol", "validate"), "injector protocol validate: the following arguments"),
        (("protocol", "validate", "f", "--zz"), "protocol validate: unrecognized arguments: --zz"),
        (("report", "65536"), "65536 is out of range; allowed 0..65535"),
        (("protocol",), "usage: injector protocol ACTION ...: the action is one of validate"),
        (("calibrate", "--counted-ul", "1e9", "--mass-mg", "1"), "1e9 is too large; at most"),
    ],
)
def test_argument_errors_are_one_line(capsys, args, message):
    code, out, err = run(capsys, *args)
    assert code == 2 and message in one_line(err)
    assert one_line(err).endswith("--help)")


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`injector sim | head -1`: the reader gone before the table is printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "host_tools.cli", "sim", "--out", tmp_path, "--no-plot"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the simulation takes a second: nothing is written yet
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1  # what Python's documentation advises after EPIPE
    assert err == ""


class _ClosedPipe(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_pipe_in_process(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert C.main(["--version"]) == 1
    assert capsys.readouterr().err == ""


def test_a_bug_is_one_line_and_the_traceback_on_request(capsys, monkeypatch):
    def broken(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(C, "run_version", broken)
    code, out, err = run(capsys, "--version")
    assert code == 2
    assert one_line(err) == (
        "injector: internal error (a bug; please report it): ZeroDivisionError: division by "
        "zero (INJECTOR_TRACEBACK=1 shows where)"
    )
    monkeypatch.setenv("INJECTOR_TRACEBACK", "1")
    with pytest.raises(ZeroDivisionError):
        C.main(["--version"])


def test_ctrl_c_says_so(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(C, "run_version", interrupted)
    assert C.main(["--version"]) == 130
    assert capsys.readouterr().err == "injector: interrupted\n"


def test_clip_escapes_and_shortens():
    assert cliutil.clip("a\nb\x1b[2J") == "a\\nb\\x1b[2J"
    assert cliutil.clip("x" * 100, 10) == "x" * 10 + "..."
