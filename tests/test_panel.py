"""The host front panel (host_tools/panel.py) and `injector panel` (host_tools/cli.py).

The panel runs the simulator, the device's Ui and the device's button
debouncer on one simulated clock; these tests drive it through scripts and
directly, decode its screenshots, and check the live terminal panel's pieces
(key decoding, half-block display, real-time pacing) on a fake clock. Nothing
here sleeps on the real clock.
"""

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from injcore import tlog

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "firmware"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from PIL import Image  # noqa: E402

from host_tools import cli  # noqa: E402
from host_tools import panel as P  # noqa: E402
from host_tools.screenshot import read_png  # noqa: E402
from injcore.settings import MODE_CONTINUOUS  # noqa: E402

SCRIPTS = ROOT / "tests" / "panel_scripts"


def decode_png(path):
    """A 4x panel screenshot back to 64 rows of 128 bits, read independently of the panel."""
    img = Image.open(path).convert("L")
    assert img.size == (P.WIDTH * 4, P.HEIGHT * 4)
    px = img.load()
    rows = []
    for y in range(P.HEIGHT):
        row = []
        for x in range(P.WIDTH):
            block = {px[4 * x + i, 4 * y + j] for i in range(4) for j in range(4)}
            assert len(block) == 1, "pixel (%d, %d) is not one flat 4x4 square" % (x, y)
            row.append(1 if block.pop() > 127 else 0)
        rows.append(row)
    return rows


def fresh_draw(panel):
    """What the Ui draws right now, into a framebuffer of its own."""
    import framebuf

    buf = bytearray(1024)
    panel.ui.draw(framebuf.FrameBuffer(buf, 128, 64, framebuf.MONO_VLSB), panel.now_ms)
    return bytes(buf)


# ---- the newcomer's first minute ------------------------------------------------


def test_first_minute_script_homes_loads_primes_sets_the_dose_and_fires(tmp_path):
    err = io.StringIO()
    code, runner = P.execute_script(SCRIPTS / "first_minute.txt", tmp_path, stderr=err)
    assert code == 0, err.getvalue()
    p = runner.panel
    core = p.core
    assert core.homed and core.primed
    assert core.settings.dose_nl == 25_000  # set with UP x5 from 20 uL
    assert core.punctures == 3
    assert [x.dose_set_nl for x in p.sim.punctures] == [25_000] * 3
    for x in p.sim.punctures:  # what the plunger really pushed, within a step
        assert x.dose_nl == pytest.approx(25_000, abs=60)
    assert p.state_name() == "ready" and p.screen_name() == "status"
    assert p.now_ms < 60_000, "the first minute took %d ms" % p.now_ms
    # Every key went through the debouncer: as many PRESS events as script presses.
    presses = [e for e in p.events if e[2] == "PRESS"]
    assert len(presses) == 2 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 3 + 1 + 5 + 1 + 1
    assert all(s == "click" for _, s in p.sounds), p.sounds


def test_screenshots_decode_to_the_frames_shown(tmp_path):
    code, runner = P.execute_script(SCRIPTS / "first_minute.txt", tmp_path, stderr=io.StringIO())
    assert code == 0
    names = ["boot", "menu-home", "syringe-confirm", "primed", "dose-edit", "after-three"]
    assert [Path(s).name for s in runner.shots] == [n + ".png" for n in names]
    frames = {n: decode_png(tmp_path / (n + ".png")) for n in names}
    assert len({str(f) for f in frames.values()}) == len(names), "two screenshots are the same"
    p = runner.panel
    # The last shot is the last command: it is what the panel shows now ...
    assert frames["after-three"] == p.pixels()
    assert read_png(tmp_path / "after-three.png") == p.frame()
    # ... and `shot` waited for the display's refresh: it is not a frame behind.
    assert p.frame() == fresh_draw(p)


def test_screenshot_is_the_framebuffer_pixel_for_pixel(tmp_path):
    p = P.Panel()
    p.press("OK")  # the menu: text, an inverted band and an inverted cursor line
    p.refresh()
    path = p.screenshot(tmp_path / "menu.png")
    px = p.pixels()
    assert decode_png(path) == px
    frame = p.frame()
    assert all(
        px[y][x] == (frame[(y // 8) * 128 + x] >> (y % 8)) & 1
        for y in range(64)
        for x in range(128)
    )
    assert 0 < sum(map(sum, px)) < 128 * 64
    info = Image.open(path).text
    assert info["screen"] == "menu" and info["state"].startswith("unhomed")


def test_other_example_scripts_pass(tmp_path):
    for name in ("nappage.txt", "estop.txt", "protocol.txt"):
        err = io.StringIO()
        code, runner = P.execute_script(SCRIPTS / name, tmp_path / name, stderr=err)
        assert code == 0, "%s: %s" % (name, err.getvalue())
        assert runner.shots
    # nappage.txt: the trigger held 3 s at 2 shots/s with a 1 uL dose
    code, runner = P.execute_script(SCRIPTS / "nappage.txt", tmp_path / "n2", stderr=io.StringIO())
    assert runner.panel.core.settings.mode == MODE_CONTINUOUS
    assert runner.panel.core.punctures == 6


def test_the_panel_carries_the_shipped_protocols_and_logs_their_zones(tmp_path):
    code, runner = P.execute_script(SCRIPTS / "protocol.txt", tmp_path, stderr=io.StringIO())
    assert code == 0
    ui = runner.panel.ui
    assert ui.run is not None and ui.run.protocol.name == "Facial skin booster"
    assert ui.run.index == 1 and ui.run.skipped[0] and ui.run.done[0] == 1
    kinds = [r["kind"] for r in runner.panel.recorder.log.records()]
    assert kinds[:5] == [
        tlog.K_SESSION_START,
        tlog.K_DEVICE,
        tlog.K_CALIBRATION,
        tlog.K_PROTOCOL,
        tlog.K_PROTOCOL_NAME,
    ]


# ---- the device's buttons, on the simulated clock -----------------------------------


def test_a_press_shorter_than_the_debounce_does_nothing():
    p = P.Panel()
    p.press("OK", hold_ms=10)
    assert p.screen_name() == "status" and not p.events
    p.press("OK")
    assert p.screen_name() == "menu"
    assert [e[1:] for e in p.events] == [("OK", "PRESS"), ("OK", "RELEASE")]


def test_holding_down_auto_repeats_and_long_back_goes_home():
    p = P.Panel()
    p.press("OK")
    p.hold("DOWN", 950)  # PRESS, then REPEAT at 500, 600, 700, 800, 900 ms
    assert p.ui.cursor == 6
    assert sum(1 for e in p.events if e[1:] == ("DOWN", "REPEAT")) == 5
    p.press("OK")  # "Speed" opens for editing
    assert p.screen_name() == "edit"
    p.long("BACK")
    assert p.screen_name() == "status"
    assert ("BACK", "LONG") in [e[1:] for e in p.events]


def test_refused_keys_ask_for_the_refuse_sound():
    p = P.Panel()
    p.press("OK")
    p.press("UP")  # already on the first line
    assert p.last_sound() == "refuse"
    p.press("DOWN")
    assert p.last_sound() == "click"


def test_a_tap_while_the_button_is_down_lengthens_the_press():
    p = P.Panel()
    p.press("OK")
    for _ in range(40):  # terminal auto-repeat: a byte every 30 ms for 1.2 s
        p.tap("DOWN")
        p.run(30)
    p.run(200)
    downs = [e[2] for e in p.events if e[1] == "DOWN"]
    assert downs[0] == "PRESS" and downs.count("PRESS") == 1 and downs[-1] == "RELEASE"
    assert "REPEAT" in downs and "LONG" in downs


def test_wait_until_names_and_timeouts():
    p = P.Panel()
    with pytest.raises(P.PanelTimeout, match="ready"):
        p.wait_until("ready", 200)
    assert p.now_ms >= 200
    with pytest.raises(ValueError, match="both a state and a screen"):
        p.wait_until("prime")
    with pytest.raises(ValueError, match="no state or screen"):
        p.wait_until("nowhere")
    p.press("OK")
    assert p.wait_until("menu", 10) == 0


def test_state_line_reads_the_model():
    p = P.Panel(ready=True)
    line = p.state_line()
    assert line.startswith("ready | needle ")
    assert "| #0 |" in line and "screen status" in line
    p.trigger()
    p.wait_until("ready", 10_000)
    assert "| #1 |" in p.state_line()


# ---- the script language ------------------------------------------------------------


BAD_LINES = [
    ("press SIDEWAYS", "no button 'SIDEWAYS'"),
    ("press OK zero", "not a whole number"),
    ("press OK 0", "count must be 1 or more"),
    ("hold DOWN", "usage: hold BUTTON MS"),
    ("wait soon", "not a duration"),
    ("wait 1.5", "whole milliseconds"),
    ("wait-until prime", "both a state and a screen"),
    ("wait-until nowhere 100", "no state or screen"),
    ("trigger sideways", "trigger takes on or off"),
    ("pedal maybe", "pedal takes on or off"),
    ("syringe in 7", "no syringe model 7"),
    ("syringe sideways", "usage: syringe out"),
    ("shot ../escape", "letters, digits"),
    ("expect setting depth 1000", "no setting 'depth'"),
    ("expect screen nowhere", "no screen 'nowhere'"),
    ("expect colour blue", "expect what?"),
    ("frobnicate", "unknown command 'frobnicate'"),
    ("start ready", "start must be the first command"),
]


@pytest.mark.parametrize("line,why", BAD_LINES)
def test_a_malformed_line_exits_2_naming_file_and_line(tmp_path, capsys, line, why):
    script = tmp_path / "bad.txt"
    script.write_text("# a comment\n\npress OK   # fine\n%s\nwait 100\n" % line)
    assert cli.main(["panel", "--script", str(script), "--out", str(tmp_path / "out")]) == 2
    out, err = capsys.readouterr()
    assert "%s:4: " % script in err
    assert why in err
    assert "Traceback" not in err + out
    assert not (tmp_path / "out").exists(), "a bad script ran"


def test_a_failed_expect_exits_1_with_the_line_and_a_screenshot(tmp_path, capsys):
    script = tmp_path / "fail.txt"
    script.write_text("press OK\nexpect screen menu\nexpect setting dose_nl 30000\nwait 10\n")
    assert cli.main(["panel", "--script", str(script), "--out", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "fail.txt:3: expected setting dose_nl 30000, got 20000" in err
    assert decode_png(tmp_path / "fail-failed.png")  # the menu, for the reader
    assert "0 puncture(s)" in out


def test_a_wait_until_that_times_out_fails_like_an_expect(tmp_path, capsys):
    script = tmp_path / "slow.txt"
    script.write_text("wait-until ready 500\n")
    assert cli.main(["panel", "--script", str(script), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "slow.txt:1: wait-until" in err and "500 ms" in err and "unhomed" in err


def test_a_missing_script_exits_2(tmp_path, capsys):
    assert cli.main(["panel", "--script", str(tmp_path / "none.txt")]) == 2
    assert "cannot read script" in capsys.readouterr().err


def test_script_values_and_summary(tmp_path, capsys):
    script = tmp_path / "ok.txt"
    script.write_text(
        "start ready\nexpect setting mode single\nexpect setting needle_length_um 4000\n"
        "trigger\nwait-until ready 10s\nexpect punctures 1\nexpect state ready\nshot done\n"
    )
    assert cli.main(["panel", "--script", str(script), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert (
        "1 screenshot(s)" in out and "1 puncture(s)" in out and (tmp_path / "o/done.png").exists()
    )
    assert P.parse_ms("2s") == 2000 and P.parse_ms("1.5s") == 1500 and P.parse_ms("40ms") == 40


# ---- the live terminal panel ------------------------------------------------------


def test_keys_decode_to_actions():
    assert P.decode_keys(b"\x1b[A\x1bOBkj\r\n") == ["UP", "DOWN", "UP", "DOWN", "OK", "OK"]
    assert P.decode_keys(b"\x7f\x08b\x1b") == ["BACK"] * 4
    assert P.decode_keys(b"B tpesq") == [
        "long-BACK",
        "shot",
        "trigger",
        "pedal",
        "estop",
        "syringe",
        "quit",
    ]
    assert P.decode_keys(b"\x1b[C\x1b[15~xyz") == []  # other keys: nothing


def test_half_block_display_is_the_framebuffer():
    p = P.Panel(ready=True)
    p.refresh()
    lines = P.display_lines(p.pixels())
    assert len(lines) == 34 and all(len(line) == 130 for line in lines)
    back = [[0] * 128 for _ in range(64)]
    for r, line in enumerate(lines[1:-1]):
        for x, ch in enumerate(line[1:-1]):
            back[2 * r][x] = 1 if ch in "█▀" else 0
            back[2 * r + 1][x] = 1 if ch in "█▄" else 0
    assert back == p.pixels()


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def live_run(live, clock, seconds, step_s=0.1):
    for _ in range(round(seconds / step_s)):
        clock.t += step_s
        live.catch_up()


def test_live_panel_homes_and_fires_in_real_time():
    clock = FakeClock()
    live = P.Live(P.Panel(), clock)
    p = live.panel
    assert "Enter opens the menu" in live.screen()[-2]
    live.feed(b"\n")
    live_run(live, clock, 0.3)
    assert p.now_ms == pytest.approx(300, abs=2)  # the simulated clock follows the wall clock
    live.feed(b"\n")
    live_run(live, clock, 0.3)
    assert p.state_name() == "homing"
    live_run(live, clock, 20)
    assert p.state_name() == "ready"
    assert "Load syr." in live.screen()[-2]
    live.key("syringe")
    assert p.machine.syringe_present and "syringe seated" in live.screen()[-3]
    live.feed(b"e")
    live_run(live, clock, 0.3)
    assert p.screen_name() == "alarm"
    assert "release the E-stop" in live.screen()[-2]
    live.feed(b"e")
    live_run(live, clock, 0.3)
    live.feed(b"\n")
    live_run(live, clock, 0.3)
    assert p.state_name() == "unhomed" and p.screen_name() == "status"
    live.feed(b"q")
    assert live.quit


def test_live_panel_falls_behind_rather_than_freezing():
    clock = FakeClock()
    live = P.Live(P.Panel(), clock)
    clock.t += 60  # the host stalled for a minute
    assert live.catch_up() == P.Live.MAX_CATCH_UP_MS
    clock.t += 0.01
    assert live.catch_up() == 10  # real time again from there


def test_run_terminal_restores_the_terminal(monkeypatch):
    import termios

    monkeypatch.setenv("COLUMNS", "140")
    monkeypatch.setenv("LINES", "45")
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        os.write(master, b"\nq")  # the menu, then quit
        out = io.StringIO()
        result = []
        with open(slave, "rb", buffering=0, closefd=False) as tty_in:
            # In a thread only so that a panel deaf to 'q' fails the test, not hangs it.
            t = threading.Thread(
                target=lambda: result.append(P.run_terminal(P.Panel(), stdin=tty_in, stdout=out)),
                daemon=True,
            )
            t.start()
            t.join(60)
        assert result == [0], "the panel did not quit on q"
        assert termios.tcgetattr(slave) == before
        text = out.getvalue()
        assert "\x1b[?1049h" in text and text.index("\x1b[?1049l") > text.index("\x1b[?1049h")
        assert "┌" + "─" * 128 + "┐" in text and P.HINT_KEYS in text
        assert "panel: 0 puncture(s)" in text
    finally:
        os.close(master)
        os.close(slave)


def test_panel_without_a_tty_exits_2_with_the_hint():
    r = subprocess.run(
        [sys.executable, "-m", "host_tools.cli", "panel"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "needs a terminal" in r.stderr and "--script" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_without_a_subcommand_lists_them(capsys):
    assert cli.main([]) == 2
    assert "panel" in capsys.readouterr().err
