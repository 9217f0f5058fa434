"""`injector settings show|push` and `injector calibrate` (host_tools/settings_tool.py,
calibrate_tool.py): the device's record (injcore.store) read and written with the firmware's
code."""

import json
import re
from pathlib import Path

import pytest

from host_cli import cli, run
from host_tools import calibrate_tool, mpy, settings_tool
from injcore import calib
from injcore import machine as M
from injcore import store as S
from injcore.fsio import DirFS
from injcore.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def store(folder):
    return S.Store(DirFS(str(folder)), "settings")


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


def record(**settings):
    p = S.defaults()
    p["settings"].update(settings)
    return p


@pytest.fixture
def dev(tmp_path):
    """A folder of two generations: settings.a gen 1, settings.b gen 2 (dose 30 uL, PIN 0123)."""
    d = tmp_path / "dev"
    d.mkdir()
    st = store(d)
    st.save(record(dose_nl=25000))
    p = record(dose_nl=30000)
    p["service_pin"] = "0123"
    st.save(p)
    return d


def write_json(tmp_path, value, name="change.json"):
    f = tmp_path / name
    f.write_text(json.dumps(value) if not isinstance(value, str) else value)
    return f


def test_store_name_is_the_boards():
    src = (ROOT / "firmware" / "board" / "app.py").read_text()
    assert re.search(r'^STORE_NAME = "%s"' % settings_tool.STORE_NAME, src, re.M)


# ---- show ----------------------------------------------------------------------


def test_show_prints_the_newest_record_with_units(capsys, dev):
    code, out, err = run(capsys, "settings", "show", "--dir", dev)
    assert code == 0, err
    assert "record: settings.b, generation 2" in out
    assert re.search(r"dose_nl\s+30000 nL\s+\(30 uL\)", out)
    assert re.search(r"depth_um\s+1000 um", out)
    assert re.search(r"needle_length_um\s+4000 um", out)
    assert re.search(r"dose_factor_ppm\s+1000000 ppm", out)
    assert re.search(r"line_tau_us\s+-1\s+\(not measured", out)
    assert "service_pin: 0123" in out and "DEFAULTS" not in out


def test_show_json_is_the_payload(capsys, dev):
    code, out, err = run(capsys, "settings", "show", "--dir", dev, "--json")
    assert code == 0
    assert json.loads(out) == store(dev).load()[0]
    assert "settings.b, generation 2" in err


@pytest.mark.hazard("H9")
def test_garbage_files_show_the_defaults_and_why(capsys, tmp_path):
    d = tmp_path / "garbage"
    d.mkdir()
    (d / "settings.a").write_bytes(b"\x00garbage, not a record at all" * 3)
    (d / "settings.b").write_bytes(b"INJS")
    code, out, err = run(capsys, "settings", "show", "--dir", d)
    assert code == 1  # no valid record: the defaults are shown
    assert "DEFAULTS: no valid record" in out
    assert "skipped settings.a: not a record (bad magic)" in out
    assert "skipped settings.b: short file (4 bytes)" in out
    assert re.search(r"dose_nl\s+%d nL" % S.defaults()["settings"]["dose_nl"], out)
    code, out, err = run(capsys, "settings", "show", "--dir", d, "--json")
    assert code == 1 and json.loads(out) == S.defaults()
    assert "no valid record" in err and "bad magic" in err


@pytest.mark.hazard("H9")
def test_a_damaged_newest_slot_falls_back_and_says_so(capsys, dev):
    data = bytearray((dev / "settings.b").read_bytes())
    data[-3] ^= 0x01
    (dev / "settings.b").write_bytes(bytes(data))
    code, out, _ = run(capsys, "settings", "show", "--dir", dev)
    assert code == 0
    assert "record: settings.a, generation 1" in out
    assert "skipped settings.b: CRC mismatch" in out
    assert re.search(r"dose_nl\s+25000 nL", out)


def test_show_says_when_a_record_was_migrated(capsys, tmp_path):
    old = dict(record(dose_nl=40000)["settings"], **S.defaults()["limits"], service_pin="1111")
    (tmp_path / "settings.a").write_bytes(S.pack(old, 3, schema=1))
    code, out, _ = run(capsys, "settings", "show", "--dir", tmp_path)
    assert code == 0
    assert "generation 3" in out and "stored as schema 1" in out
    assert re.search(r"dose_nl\s+40000 nL", out) and "service_pin: 1111" in out


# ---- push ----------------------------------------------------------------------


def test_a_schema_3_record_lacks_only_the_line_time_constant(capsys, tmp_path, dev):
    """A record stored before line_tau_us (schema 3) shows and pushes with its default."""
    old = store(dev).load()[0]
    del old["calibration"]["line_tau_us"]
    d = tmp_path / "v3"
    d.mkdir()
    (d / "settings.a").write_bytes(S.pack(old, 4, schema=3))
    code, out, _ = run(capsys, "settings", "show", "--dir", d)
    assert code == 0 and "stored as schema 3: migrated to 4" in out
    assert re.search(r"line_tau_us\s+%d\s+\(not measured" % M.LINE_TAU_ESTIMATE, out)
    change = {"calibration": {"line_tau_us": 52_000}}
    code, out, err = run(capsys, "settings", "push", write_json(tmp_path, change), "--dir", d)
    assert code == 0, err
    assert "calibration.line_tau_us: %d -> 52000" % M.LINE_TAU_ESTIMATE in out
    got, info = store(d).load()
    assert got["calibration"]["line_tau_us"] == 52_000 and info["migrated_from"] is None


def test_push_full_then_show_round_trip(capsys, tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    p = record(
        dose_nl=50000, depth_um=2500, mode=1, syringe_model=0, syringe_id_um=8000, needle_count=5
    )
    p["limits"]["session_cap_nl"] = 2_000_000
    p["calibration"] = {"dose_factor_ppm": 1_010_000, "backlash_steps": 10, "line_tau_us": 45_000}
    p["service_pin"] = "0042"
    code, out, err = run(capsys, "settings", "push", write_json(tmp_path, p), "--dir", d)
    assert code == 0, err
    assert "saved to %s: settings.a, generation 1" % d in out
    code, out, _ = run(capsys, "settings", "show", "--dir", d, "--json")
    assert code == 0 and json.loads(out) == p
    assert (d / "settings.a").read_bytes() == S.pack(p, 1)
    assert sorted(x.name for x in d.iterdir()) == ["settings.a"]  # no .tmp left


@pytest.mark.hazard("H9")
def test_partial_push_merges_onto_the_stored_record(capsys, tmp_path, dev):
    before, info = store(dev).load()
    code, out, err = run(
        capsys,
        "settings",
        "push",
        write_json(tmp_path, {"settings": {"dose_nl": 26000}}),
        "--dir",
        dev,
    )
    assert code == 0, err
    assert "settings.dose_nl: 30000 -> 26000" in out
    assert "saved to %s: settings.a, generation 3" % dev in out
    after, info = store(dev).load()
    want = json.loads(json.dumps(before))
    want["settings"]["dose_nl"] = 26000
    assert after == want and info["generation"] == 3
    assert after["service_pin"] == "0123"  # everything else as the device had it
    assert store(dev).read_slot("b")[0] == 2  # the previous generation is kept


def test_pushing_the_same_record_writes_nothing(capsys, tmp_path, dev):
    files = snapshot(dev)
    code, out, _ = run(
        capsys,
        "settings",
        "push",
        write_json(tmp_path, {"settings": {"dose_nl": 30000}}),
        "--dir",
        dev,
    )
    assert code == 0 and "no change" in out
    assert snapshot(dev) == files


@pytest.mark.hazard("H9")
def test_partial_push_onto_defaults_needs_the_flag(capsys, tmp_path):
    d = tmp_path / "fresh"
    d.mkdir()
    change = write_json(tmp_path, {"settings": {"dose_nl": 25000}})
    code, out, err = run(capsys, "settings", "push", change, "--dir", d)
    assert code == 2 and "no valid record" in err and "--onto-defaults" in err
    assert list(d.iterdir()) == []
    code, out, err = run(capsys, "settings", "push", change, "--dir", d, "--onto-defaults")
    assert code == 0, err
    assert store(d).load()[0] == record(dose_nl=25000)


BAD = [  # (change, the field the message must name)
    ({"settings": {"dose_nl": 25001}}, "settings.dose_nl: 25001 is out of range"),
    ({"settings": {"dose_nl": 25000.0}}, "settings.dose_nl: 25000.0 is not an integer"),
    ({"settings": {"depth_um": 4100}}, "settings.depth_um: 4100 is out of range"),
    ({"settings": {"mode": 7}}, "settings.mode: 7 is not a mode"),
    ({"settings": {"syringe_model": 2}}, "settings.syringe_model: 2 is not a syringe"),
    (
        {"settings": {"syringe_model": 0, "syringe_id_um": 5}},
        "settings.syringe_id_um: 5 is out of range",
    ),
    ({"settings": {"needle_count": 2}}, "settings.needle_count: 2 is not allowed"),
    ({"settings": {"speed_um_s": True}}, "settings.speed_um_s: True is not an integer"),
    ({"settings": {"dose_ul": 25}}, "settings.dose_ul: unknown setting"),
    ({"settings": 5}, "settings: not a dict"),
    ({"limits": {"occlusion_kpa": 10}}, "limits.occlusion_kpa: 10 is out of range"),
    ({"limits": {"needle_length_um": 500}}, "settings.depth_um: 1000 is out of range"),
    ({"limits": {"max_dose": 1}}, "limits.max_dose: unknown limit"),
    (
        {"calibration": {"dose_factor_ppm": "1e6"}},
        "calibration.dose_factor_ppm: '1e6' is not an integer",
    ),
    (
        {"calibration": {"dose_factor_ppm": 700_000}},
        "calibration.dose_factor_ppm: 700000 is out of range",
    ),
    ({"calibration": {"backlash_steps": -1}}, "calibration.backlash_steps: -1 is out of range"),
    (
        {"calibration": {"line_tau_us": M.LINE_TAU_MAX_US + 1}},
        "calibration.line_tau_us: %d is out of range" % (M.LINE_TAU_MAX_US + 1),
    ),
    ({"service_pin": 1234}, "service_pin: not 4 digits"),
    ({"service_pin": "12345"}, "service_pin: not 4 digits"),
    ({"firmware": "0.4.0"}, "firmware: unknown entry"),
]


@pytest.mark.hazard("H9")
@pytest.mark.parametrize(
    "change,message", BAD, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD)]
)
def test_an_invalid_field_is_named_and_nothing_is_written(capsys, tmp_path, dev, change, message):
    files = snapshot(dev)
    code, out, err = run(capsys, "settings", "push", write_json(tmp_path, change), "--dir", dev)
    assert code == 2
    assert "refused, nothing written" in err and message in err
    assert snapshot(dev) == files  # byte for byte, and no settings.tmp


@pytest.mark.hazard("H9")
def test_every_invalid_field_is_reported_at_once(capsys, tmp_path, dev):
    change = {
        "settings": {"dose_nl": 25001, "depth_um": 99999, "mode": 1.5, "bogus": 1},
        "limits": {"occlusion_kpa": 5},
        "calibration": {"dose_factor_ppm": 5},
        "service_pin": "12a4",
        "extra": 1,
    }
    files = snapshot(dev)
    code, out, err = run(capsys, "settings", "push", write_json(tmp_path, change), "--dir", dev)
    assert code == 2 and out == ""
    for field in (
        "settings.dose_nl:",
        "settings.depth_um:",
        "settings.mode:",
        "settings.bogus:",
        "limits.occlusion_kpa:",
        "calibration.dose_factor_ppm:",
        "service_pin:",
        "extra:",
    ):
        assert field in err, field
    assert "(8 problems)" in err
    assert snapshot(dev) == files


def test_merge_keeps_the_sections_it_is_not_given():
    cur = S.defaults()
    m = settings_tool.merge(cur, {"settings": {"dose_nl": 1000}, "service_pin": "9999"})
    assert m["settings"]["dose_nl"] == 1000 and m["service_pin"] == "9999"
    assert m["limits"] == cur["limits"] and cur["settings"]["dose_nl"] == 20000  # not mutated
    assert settings_tool.is_full(S.defaults()) and not settings_tool.is_full({"settings": {}})


# ---- calibrate -------------------------------------------------------------------


def test_calibrate_uses_the_stored_factor_and_syringe(capsys, tmp_path):
    d = tmp_path / "dev"
    d.mkdir()
    p = record(syringe_model=0, syringe_id_um=8000)
    p["calibration"]["dose_factor_ppm"] = 990_000
    store(d).save(p)
    files = snapshot(d)
    code, out, err = run(
        capsys, "calibrate", "--counted-ul", "200", "--mass-mg", "203.5", "--dir", d
    )
    assert code == 0, err
    area = Settings(**p["settings"]).syringe()[0]
    measured = calib.weighed_nl(2035, M.WATER_MG_PER_ML)
    new, before, after = calib.gravimetric(200_000, measured, 990_000, area)
    assert new and "new:      %d ppm" % new in out
    assert "factor:   990000 ppm now" in out
    assert "%+.2f %% before" % (before / 100) in out and "%+.2f %% after" % (after / 100) in out
    assert "weighed:  %s uL" % calibrate_tool._ul(measured) in out
    assert "not applied" in out and snapshot(d) == files


@pytest.mark.hazard("H9")
def test_calibrate_apply_writes_the_factor_like_push(capsys, dev):
    before, _ = store(dev).load()
    code, out, err = run(
        capsys,
        "calibrate",
        "--counted-ul",
        "100",
        "--mass-mg",
        "101",
        "--density",
        "1010",
        "--dir",
        dev,
        "--apply",
    )
    assert code == 0, err
    area = M.SYRINGES[1][M.SYR_AREA_CMM2]
    new = calib.gravimetric(100_000, calib.weighed_nl(1010, 1010), 1_000_000, area)[0]
    assert new == 1_000_000 * 100_000 // 100_000  # 101 mg at 1010 mg/mL is 100 uL: no change
    code, out, err = run(
        capsys, "calibrate", "--counted-ul", "100", "--mass-mg", "97", "--dir", dev, "--apply"
    )
    assert code == 0, err
    after, info = store(dev).load()
    want = json.loads(json.dumps(before))
    want["calibration"]["dose_factor_ppm"] = calib.gravimetric(
        100_000, calib.weighed_nl(970, M.WATER_MG_PER_ML), 1_000_000, area
    )[0]
    assert after == want and info["generation"] == 3
    assert (
        "calibration.dose_factor_ppm: 1000000 -> %d" % want["calibration"]["dose_factor_ppm"] in out
    )


def test_calibrate_out_of_range_refuses_and_writes_nothing(capsys, dev):
    files = snapshot(dev)
    code, out, err = run(
        capsys, "calibrate", "--counted-ul", "200", "--mass-mg", "100", "--dir", dev, "--apply"
    )
    assert code == 2
    assert "out of range (800000..1200000 ppm)" in err and "nothing changed" in err
    assert snapshot(dev) == files


def test_calibrate_without_a_source_uses_the_defaults(capsys):
    code, out, err = run(capsys, "calibrate", "--counted-ul", "20", "--mass-mg", "20")
    assert code == 0 and "the firmware's defaults" in out and "1 mL" in out
    code, out, err = run(capsys, "calibrate", "--counted-ul", "20", "--mass-mg", "20", "--apply")
    assert code == 2 and "--apply needs --port PORT or --dir DIR" in err


# ---- errors: one line, exit 2, never a traceback ------------------------------------


@pytest.mark.parametrize(
    "args,message",
    [
        (("settings", "show", "--dir", "{tmp}/missing"), "no such folder"),
        (("settings", "show", "--dir", "{tmp}/file.txt"), "is not a folder"),
        (("settings", "show", "--port", "{tmp}/no-such-tty"), "no-such-tty: no such device"),
        (("settings", "push", "{tmp}/missing.json", "--dir", "{tmp}"), "cannot read"),
        (("settings", "push", "{tmp}/bad.json", "--dir", "{tmp}"), "is not valid JSON"),
        (("settings", "push", "{tmp}/list.json", "--dir", "{tmp}"), "must hold a JSON object"),
        (("settings", "push", "{tmp}/list.json"), "one of the arguments --port --dir is required"),
        (
            ("settings", "push", "{tmp}/bad.json", "--dir", "{tmp}", "--port", "x"),
            "not allowed with",
        ),
        (("settings",), "usage: injector settings"),
        (("calibrate", "--counted-ul", "0", "--mass-mg", "1"), "--counted-ul must be more than 0"),
        (
            ("calibrate", "--counted-ul", "1", "--mass-mg", "1", "--density", "1.5"),
            "integer in mg/mL",
        ),
        (
            ("calibrate", "--counted-ul", "1", "--mass-mg", "1", "--dir", "{tmp}/missing"),
            "no such folder",
        ),
    ],
)
def test_errors_are_one_clear_line_with_exit_2(tmp_path, args, message):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "bad.json").write_text('{"settings": {"dose_nl": 25000,}}')
    (tmp_path / "list.json").write_text("[1, 2]")
    r = cli(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    if "--port" in args and "--dir" not in args:  # never connected: no reset tried, one line
        assert len(r.stderr.strip().splitlines()) == 1


def test_help_warns_that_mpremote_interrupts_main_py():
    for args in (
        ("settings", "show", "--help"),
        ("settings", "push", "--help"),
        ("calibrate", "--help"),
    ):
        r = cli(*args)
        assert r.returncode == 0
        assert "interrupts the running main.py" in " ".join(r.stdout.split())


# ---- end to end on the virtual board ------------------------------------------------

CORE_FILES = (
    "__init__",
    "compat",
    "machine",
    "settings",
    "store",
    "fsio",
    "codes",
)  # what the Store needs

# Reports the record the app would boot with, then ends: the virtual board writes its
# flash back to the host folder when the board is idle, not while main.py runs.
BOOT_MAIN = """\
from injcore.fsio import DirFS
from injcore.store import Store
p, info = Store(DirFS("/"), "settings").load()
with open("boots.txt", "a") as f:
    f.write("%d %d\\n" % (info["generation"], p["settings"]["dose_nl"]))
"""


def _boots(board, flash, n, timeout=30):
    """The lines of boots.txt once it has n, or as it stands after `timeout` s.

    Waits on the board's "flash saved: ..." status lines (the write-back of its
    flash to the host folder), never on the clock."""
    f = flash / "boots.txt"

    def saved_boots(line):
        return line.startswith("flash saved:") and "boots.txt" in line.split()

    while True:
        start = len(board.messages)  # before reading: a write-back after this is waited for
        lines = f.read_text().splitlines() if f.exists() else []
        if len(lines) >= n or board.wait_for_message(saved_boots, timeout, start) is None:
            return lines


@pytest.mark.micropython
@pytest.mark.hazard("H9")
def test_push_and_show_over_the_virtual_board(tmp_path):
    from host_tools import vboard

    if not vboard.available():
        pytest.fail("node or the MicroPython npm package is missing: run `make test`")
    flash = tmp_path / "flash"
    lib = flash / "lib" / "injcore"
    lib.mkdir(parents=True)
    for name in CORE_FILES:
        mpy.portable_copy(ROOT / "firmware" / "injcore" / (name + ".py"), lib / (name + ".py"))
    (flash / "main.py").write_text(BOOT_MAIN)  # a main loop that reports the record it booted with
    full = record(dose_nl=30000)
    full["service_pin"] = "0123"
    full_json = write_json(tmp_path, full, "full.json")
    board = vboard.VirtualBoard(flash)
    with board as port:
        assert _boots(board, flash, 1) == ["0 20000"]  # power-on: no record, the defaults
        r = cli(
            "settings",
            "push",
            write_json(tmp_path, {"settings": {"dose_nl": 25000}}),
            "--port",
            port,
        )
        assert r.returncode == 2 and "no valid record" in r.stderr  # partial onto defaults
        assert not (flash / "settings.a").exists()
        assert len(_boots(board, flash, 2)) == 2  # reset even so (mpremote had stopped main.py)
        r = cli("settings", "push", full_json, "--port", port)
        assert r.returncode == 0, r.stderr
        assert "saved to %s: settings.a, generation 1" % port in r.stdout
        assert _boots(board, flash, 3)[2] == "1 30000"  # the app booted with the new record
        r = cli("settings", "show", "--port", port, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == full
        assert len(_boots(board, flash, 4)) == 4
        r = cli(
            "settings",
            "push",
            write_json(tmp_path, {"settings": {"dose_nl": 27000}}),
            "--port",
            port,
        )
        assert r.returncode == 0 and "settings.b, generation 2" in r.stdout, r.stderr
        assert len(_boots(board, flash, 5)) == 5
        r = cli("settings", "show", "--port", port)
        assert r.returncode == 0, r.stderr
        assert "record: settings.b, generation 2" in r.stdout
        assert re.search(r"dose_nl\s+27000 nL", r.stdout)
        # each action reset the board: the app booted again, with the new record once saved
        boots = _boots(board, flash, 6)
    assert boots == ["0 20000", "0 20000", "1 30000", "1 30000", "2 27000", "2 27000"]
    # written by MicroPython's Store: the same bytes CPython's would write; no temp file left
    assert (flash / "settings.a").read_bytes() == S.pack(full, 1)
    assert store(flash).load()[0] == dict(full, settings=dict(full["settings"], dose_nl=27000))
    assert not (flash / settings_tool.PUSH_NAME).exists()
    assert not (flash / "settings.tmp").exists()


def test_the_restart_keeps_the_clock_and_falls_back_to_a_reset_with_a_warning(monkeypatch, capsys):
    calls = []
    real_soft_restart = settings_tool.soft_restart
    monkeypatch.setattr(settings_tool, "reset", lambda port: calls.append(("reset", port)))
    monkeypatch.setattr(settings_tool, "soft_restart", lambda port: calls.append("soft") or True)
    src = settings_tool.Source("PORT")
    assert src.finish() and calls == []  # nothing connected: nothing to restart
    src.touched = True
    assert src.finish() and calls == ["soft"]  # the soft reset: the RTC survives it
    monkeypatch.setattr(settings_tool, "soft_restart", lambda port: False)
    src.touched = True
    assert src.finish() and calls[-1] == ("reset", "PORT")
    assert "did not take a soft reset" in capsys.readouterr().err
    # The bytes: Ctrl-C, Ctrl-B (the friendly REPL), then Ctrl-D, which runs main.py.
    assert settings_tool.RESTART_BYTES.endswith(b"\x02\x04")
    assert real_soft_restart("/no/such/port", timeout=0.1) is False
