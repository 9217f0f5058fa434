"""The treatment log (injcore.tlog), its host decoder (host_tools.logs) and report (H9)."""

import csv
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host_cli import cli
from host_tools import logs, mpy
from host_tools.simfs import PowerCut, SimFS
from injcore import codes as C
from injcore import machine as M
from injcore import tlog
from injcore.fsio import DirFS

ROOT = Path(__file__).resolve().parents[1]

PUNCTURE = {
    "mode": 1,
    "alarm": 1,
    "warning": 1,
    "partial": 1,
    "zone": 7,
    "session": 65535,
    "number": 40000,
    "t_ms": (1 << 24) - 1,
    "fault": 15,
    "depth_set_um": 6000,
    "depth_um": -1000,
    "dose_set_nl": 200_000,
    "dose_nl": -12345,
    "force_mn": 65534,
}
START = {
    "syringe_model": 10,
    "session": 12,
    "time_s": 0xFFFFFFFF,
    "syringe_id_um": 30000,
    "lot": "LOT-2024/a_Z",
}
SYRINGE = {
    "syringe_model": 0,
    "session": 12,
    "time_s": 1_700_000_000,
    "syringe_id_um": 30000,
    "punctures": 65535,
}
CALIBRATION = {
    "session": 12,
    "time_s": 1_700_000_000,
    "punctures": 65535,
    "line_tau_us": (1 << 26) - 1,
    "backlash_steps": 640,
    "dose_factor_ppm": 1_200_000,
}
DEVICE = {"session": 12, "device_id": "e6614104032a5c2b", "firmware": "0.4.0"}
PROTOCOL_NAME = {"session": 12, "name": "ter v3!"}
END = {
    "interrupted": 1,
    "session": 12,
    "time_s": 1_700_000_000,
    "punctures": 20000,
    "delivered_nl": 20_000_000,
    "primed_nl": 10_000_000,
    "alarms": 255,
    "partials": 3,
    "lost": 4095,
    "lost_max": 32,
}


def puncture(session, number, **kw):
    v = {
        "session": session,
        "number": number,
        "t_ms": number * 500,
        "depth_set_um": 1000,
        "depth_um": 1000,
        "dose_set_nl": 20000,
        "dose_nl": 20000,
        "force_mn": 900,
    }
    v.update(kw)
    return bytes(tlog.encode(tlog.K_PUNCTURE, v))


def good(data):
    return [it[2] for it in tlog.scan(data) if it[0] == "rec"]


# ---- records ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,values",
    [
        (tlog.K_PUNCTURE, PUNCTURE),
        (tlog.K_SESSION_START, START),
        (tlog.K_SESSION_END, END),
        (tlog.K_SYRINGE, SYRINGE),
        (tlog.K_CALIBRATION, CALIBRATION),
        (tlog.K_DEVICE, DEVICE),
        (tlog.K_PROTOCOL_NAME, PROTOCOL_NAME),
        (tlog.K_PUNCTURE, {"session": 1, "number": 1}),
    ],
)
def test_record_round_trip_every_kind(kind, values):
    rec = tlog.encode(kind, values)
    assert len(rec) == tlog.REC_BYTES == 24
    back = tlog.decode(rec)
    assert back.pop("kind") == kind
    for name, v in values.items():
        assert back.get(name, 0) == v, name


def test_values_saturate_and_lot_is_printable_ascii():
    rec = tlog.decode(
        tlog.encode(
            tlog.K_PUNCTURE,
            {"dose_nl": 10**9, "depth_um": -(10**6), "force_mn": 10**7, "number": 70000},
        )
    )
    assert rec["dose_nl"] == (1 << 18) - 1 and rec["depth_um"] == -(1 << 13)
    assert rec["force_mn"] == 0xFFFF and rec["number"] == 0xFFFF
    s = tlog.decode(tlog.encode(tlog.K_SESSION_START, {"lot": "é\x01ABCDEFGHIJKLMNOP"}))
    assert s["lot"] == "??ABCDEFGHIJ"


@pytest.mark.hazard("H9")
@pytest.mark.parametrize("kind,values", [(tlog.K_PUNCTURE, PUNCTURE), (tlog.K_DEVICE, DEVICE)])
def test_every_single_bit_flip_is_caught(kind, values):
    rec = tlog.encode(kind, values)
    for i in range(24 * 8):
        bad = bytearray(rec)
        bad[i // 8] ^= 1 << (i % 8)
        assert tlog.decode(bad) is None


def test_kinds_past_seven_are_kind_0_and_an_ext_field():
    for kind in tlog._FIELDS:
        assert 3 + sum(b for _, b, _ in tlog._FIELDS[kind]) <= tlog.PAYLOAD_BYTES * 8, kind
    dev = tlog.encode(tlog.K_DEVICE, DEVICE)
    name = tlog.encode(tlog.K_PROTOCOL_NAME, PROTOCOL_NAME)
    assert dev[0] & 7 == 0 and dev[0] >> 3 == 0 and name[0] & 7 == 0 and name[0] >> 3 == 1
    assert tlog.KIND_NAMES[tlog.K_DEVICE] == "device"
    assert tlog.KIND_NAMES[tlog.K_PROTOCOL_NAME] == "protocol_name"
    # A kind this firmware does not know (a later one's): its record is skipped as bad.
    later = bytearray(24)
    later[0] = 5 << 3
    struct_crc = tlog.crc32(bytes(later[:20]), tlog.CRC_SEED)
    later[20:] = struct_crc.to_bytes(4, "little")
    assert tlog.check(later) == 0 and [it[0] for it in tlog.scan(bytes(later))] == ["bad"]


def test_device_record_texts():
    r = tlog.decode(tlog.encode(tlog.K_DEVICE, {"session": 1, "firmware": "0.4.0-rc12+dirty"}))
    assert r == {"kind": tlog.K_DEVICE, "session": 1, "device_id": "", "firmware": "0.4.0-rc12"}
    r = tlog.decode(tlog.encode(tlog.K_DEVICE, {"device_id": "ABCDEF0123456789ff"}))
    assert r["device_id"] == "abcdef0123456789"  # 8 bytes, lower case
    r = tlog.decode(tlog.encode(tlog.K_DEVICE, {"device_id": "12zz"}))
    assert r["device_id"] == "1200000000000000"  # what is not hex is 0


def test_crc_is_zlib_crc32():
    import zlib

    from injcore import store

    assert tlog.crc32 is store.crc32  # one CRC function in the firmware
    assert tlog.crc32(b"123456789") == zlib.crc32(b"123456789") == store.crc32_soft(b"123456789")
    assert store.crc32_soft(b"abc", tlog.CRC_SEED) == zlib.crc32(b"abc", tlog.CRC_SEED)


# ---- the ring ---------------------------------------------------------------


def write(log, recs, flush_every=None):
    for i, r in enumerate(recs):
        assert log.add(r)
        if flush_every and (i + 1) % flush_every == 0:
            assert log.flush()
    assert log.flush()


@pytest.mark.hazard("H9")
def test_ring_wraps_keeping_the_newest_files():
    fs = SimFS()
    log = tlog.Log(fs, nfiles=3, file_recs=4)
    recs = [puncture(1, n) for n in range(1, 31)]
    write(log, recs, flush_every=3)
    assert fs.listdir("log") == ["00000006.tlg", "00000007.tlg", "00000008.tlg"]
    got = [r["number"] for r in log.records()]
    assert got == list(range(21, 31))  # the oldest files went, the newest 3 stay whole
    # a fresh start finds the newest file and its fill, and goes on from there
    log2 = tlog.Log(fs.after_cut(), nfiles=3, file_recs=4)
    write(log2, [puncture(1, 31), puncture(1, 32)])
    assert [r["number"] for r in log2.records()] == list(range(21, 33))
    write(log2, [puncture(1, 33)])  # file 8 was full: 9 starts, 6 goes
    assert fs.listdir("log") == ["00000006.tlg", "00000007.tlg", "00000008.tlg"]
    assert [r["number"] for r in log2.records()] == list(range(25, 34))


def test_capacity_figures():
    assert tlog.FILE_RECS * tlog.REC_BYTES <= 16 * 1024
    assert tlog.NFILES * tlog.FILE_RECS * tlog.REC_BYTES <= 512 * 1024
    kept_min = (tlog.NFILES - 1) * tlog.FILE_RECS
    assert kept_min == 21_142 and tlog.NFILES * tlog.FILE_RECS == 21_824
    assert kept_min - 3 * 380 >= 20_000  # the docstring's sessions allowance


@pytest.mark.hazard("H9")
def test_capacity_by_writing_to_simfs():
    fs = SimFS()
    log = tlog.Log(fs)
    total = 23_000  # more than the ring holds: it has wrapped
    n = 0
    for s in range(1, 12):
        log.add(tlog.encode(tlog.K_SESSION_START, {"session": s, "lot": "L%d" % s}))
        for _ in range(total // 11):
            n += 1
            log.add(puncture(s, n))
            if log.pending() == tlog.BUF_RECS:
                log.flush()
        log.add(tlog.encode(tlog.K_SESSION_END, {"session": s, "punctures": n}))
    log.flush()
    assert sum(len(d) for d in fs.files().values()) <= 512 * 1024
    assert len(fs.listdir("log")) == tlog.NFILES
    recs = list(log.records())
    assert len(recs) >= (tlog.NFILES - 1) * tlog.FILE_RECS
    nums = [r["number"] for r in recs if r["kind"] == tlog.K_PUNCTURE]
    assert len(nums) >= 20_000
    assert nums == list(range(nums[0], n + 1))  # the newest, none missing


def test_add_allocates_nothing_and_counts_what_it_drops():
    log = tlog.Log(SimFS(), buf_recs=4)
    rec = puncture(1, 1)
    assert all(log.add(rec) for _ in range(4))
    assert not log.add(rec) and log.dropped == 1 and log.pending() == 4
    import tracemalloc

    log.flush()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(4):
        log.add(rec)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(
        s.size_diff
        for s in after.compare_to(before, "filename")
        if s.traceback[0].filename.endswith("tlog.py")
    )
    assert grown <= 0


# ---- power cuts -------------------------------------------------------------


@pytest.mark.hazard("H9")
def test_power_cut_at_every_byte_of_a_flush_leaves_a_prefix():
    old = [puncture(1, n) for n in range(1, 4)]
    new = [puncture(1, n) for n in range(4, 16)]  # crosses three file boundaries and a removal
    base = SimFS()
    write(tlog.Log(base, nfiles=3, file_recs=4), old)
    probe = base.clone()
    log = tlog.Log(probe, nfiles=3, file_recs=4)
    write(log, new)
    full = [r["number"] for r in log.records()]
    total = probe.counters()["bytes"]
    assert total == 12 * 24
    cuts = (
        [dict(n_bytes=n) for n in range(1, total + 1)]
        + [dict(n_removes=1)]
        + [dict(n_removes=1, n_bytes=9999)]
    )
    for cut in cuts:
        fs = base.clone()
        log = tlog.Log(fs, nfiles=3, file_recs=4)
        for r in new:
            log.add(r)
        fs.cut_after(**cut)
        with pytest.raises(PowerCut):
            log.flush()
        fs = fs.after_cut()
        log = tlog.Log(fs, nfiles=3, file_recs=4)
        got = [r["number"] for r in log.records()]
        # a prefix of old + new, minus only files the ring had dropped anyway
        assert got == list(range(got[0], got[0] + len(got))) if got else True, cut
        assert not got or got[-1] <= 15
        if "n_bytes" in cut and cut["n_bytes"] <= total:
            whole = (cut["n_bytes"] - 1) // 24  # records written completely before the cut
            assert got[-1] == 3 + whole, cut
        bad = [it for seq in log.seqs for it in tlog.scan(log.read_file(seq)) if it[0] == "bad"]
        assert len(bad) <= 1 and all(b[3] == "truncated" for b in bad), (cut, bad)
        # the log goes on after the reboot, and still decodes in order
        write(log, [puncture(1, 50), puncture(1, 51)])
        again = [r["number"] for r in log.records()]
        assert again[-2:] == [50, 51] and again[:-2] == got[len(got) - len(again) + 2 :]
        assert full == list(range(5, 16))


@pytest.mark.hazard("H9")
def test_bad_crc_and_truncated_records_are_skipped_and_reported(tmp_path):
    d = tmp_path / "log"
    d.mkdir()
    recs = [puncture(3, n) for n in range(1, 7)]
    data = bytearray(b"".join(recs))
    data[2 * 24 + 5] ^= 0x40  # record 3 corrupt
    (d / "00000001.tlg").write_bytes(bytes(data) + recs[0][:10])  # and a torn tail
    (d / "00000002.tlg").write_bytes(b"\x00" * 7 + puncture(3, 7))  # garbage before a good one
    (d / "notes.txt").write_text("hi")
    dec = logs.read_dir(tmp_path)
    assert [r["number"] for r in dec.records] == [1, 2, 4, 5, 6, 7]
    text = "\n".join(dec.problems)
    assert "00000001.tlg @48: bad CRC, 24 bytes skipped" in text
    assert "00000001.tlg @144: truncated record (torn write), 10 bytes skipped" in text
    assert "00000002.tlg @0: bad CRC, 7 bytes skipped" in text
    assert "notes.txt" in text
    assert dec.sessions[3].gaps == [(2, 4)]


@pytest.mark.hazard("H9")
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_corruption_never_crashes_nor_invents_records(tmp_path_factory, data):
    recs = [puncture(2, n, dose_nl=n * 7) for n in range(1, 30)]
    recs.insert(0, bytes(tlog.encode(tlog.K_SESSION_START, {"session": 2, "lot": "X"})))
    blob = bytearray(b"".join(recs))
    for _ in range(data.draw(st.integers(0, 12))):
        op = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        i = data.draw(st.integers(0, len(blob) - 1))
        if op == "flip":
            blob[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set":
            blob[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            blob[i:i] = data.draw(st.binary(min_size=1, max_size=30))
        elif len(blob) > 1:
            del blob[i : i + data.draw(st.integers(1, 30))]
    blob = blob[: data.draw(st.integers(0, len(blob)))]
    d = tmp_path_factory.mktemp("c")
    (d / "00000001.tlg").write_bytes(bytes(blob))
    dec = logs.read_dir(d)
    originals = [tlog.decode(r) for r in recs]
    got = [{k: v for k, v in r.items() if k not in ("file", "offset")} for r in dec.records]
    for r in got:
        assert r in originals
    nums = [r["number"] for r in got if r["kind"] == tlog.K_PUNCTURE]
    assert nums == sorted(nums)
    covered = sum(int(p.split(", ")[-1].split()[0]) for p in dec.problems)
    assert covered + 24 * len(got) == len(blob)
    logs.export_csv(dec, d / "out.csv")


# ---- the recorder on the simulator ----------------------------------------------


class Driven:
    """A simulator whose main loop polls a Recorder every `every_ms`."""

    def __init__(self, sim, fs, every_ms=3, **kw):
        self.sim = sim
        self.fs = fs
        self.log = tlog.Log(fs, **kw)
        self.rec = tlog.Recorder(sim.core, self.log, clock=lambda: 1_700_000_000)
        orig = sim.step
        self.flushes = 0

        def step():
            orig()
            if sim.now_us // 1000 % every_ms == 0:
                self.rec.poll()
                self.flushes += self.rec.service()

        sim.step = step


def cut_shot(sim):
    """One shot stopped by the emergency stop mid-injection, then acknowledged and rehomed."""
    m = sim.machine
    m.trigger = True
    sim.run_until(lambda s: s.core.state == C.ST_INJECT, 2000)
    sim.run_ms(20)
    m.trigger = False
    m.estop = True
    sim.run_until(lambda s: s.core.state == C.ST_FAULT, 2000)
    sim.run_ms(10)
    m.estop = False
    sim.run_ms(5)
    assert sim.core.acknowledge()
    assert sim.home()
    sim.load(1)  # homing took the plunger back: a fresh syringe, primed
    sim.prime(800)


@pytest.mark.hazard("H9")
def test_simulated_session_through_log_csv_and_report(ready_sim, tmp_path):
    sim = ready_sim
    d = Driven(sim, DirFS(str(tmp_path)))
    d.rec.zone = 1
    assert d.rec.start_session(lot="AB123") == 1
    for _ in range(3):
        assert sim.shot()
    d.rec.zone = 2
    cut_shot(sim)
    sim.configure(dose_nl=10_000)
    for _ in range(2):
        assert sim.shot()
    sim.run_ms(10)
    assert d.log.pending() == 0 and d.flushes >= 6  # flushed after every single shot
    d.rec.end_session()
    core = sim.core
    dec = logs.read_dir(tmp_path)
    assert not dec.problems
    s = dec.sessions[1]
    assert s.start["lot"] == "AB123" and s.start["syringe_model"] == 1
    assert [p["number"] for p in s.punctures] == [1, 2, 3, 4, 4, 5]
    cut = s.punctures[3]
    assert cut["alarm"] and cut["partial"] and cut["fault"] == C.F_ESTOP and cut["zone"] == 2
    assert 0 < cut["dose_nl"] < 20_000
    assert [p["dose_set_nl"] for p in s.complete] == [20_000] * 3 + [10_000] * 2
    for p, q in zip(s.complete, sim.punctures):
        assert p["dose_nl"] == q.dose_nl and abs(p["depth_um"] - q.depth_core_um) <= 1
        assert p["depth_set_um"] == 1000 and p["force_mn"] > 0 and p["mode"] == 0
    assert s.end["delivered_nl"] == core.delivered_nl()
    assert abs(sum(p["dose_nl"] for p in s.punctures) - core.delivered_nl()) <= len(s.punctures)
    assert s.end["punctures"] == 5 and s.end["alarms"] == 1 and s.end["partials"] == 1
    assert s.lost_known == 0 and not s.gaps
    ts = [p["t_ms"] for p in s.punctures]
    assert ts == sorted(ts) and ts[0] > 0

    out_csv = tmp_path / "out" / "log.csv"
    out_csv.parent.mkdir()  # export makes no folders
    assert cli("logs", "export", str(tmp_path), "--csv", str(out_csv)).returncode == 0
    rows = list(csv.DictReader(open(out_csv)))
    # After the cut shot a syringe was loaded again (cut_shot): its record comes before
    # the punctures from it.
    assert [r["kind"] for r in rows] == ["session_start", "device", "calibration"] + [
        "puncture"
    ] * 4 + ["syringe"] + ["puncture"] * 2 + ["session_end"]
    assert rows[6]["fault_name"] == "emergency stop" and rows[6]["partial"] == "1"
    assert rows[2]["line_tau_us"] == str(core.line_tau_us)
    # The device's clock (1_700_000_000: 2023-11-14 22:13:20 UTC) dates every row.
    assert rows[0]["time_utc"] == "2023-11-14T22:13:20Z"
    assert rows[3]["time_utc"] == "2023-11-14T22:13:%02dZ" % (20 + s.punctures[0]["t_ms"] // 1000)
    assert sum(int(r["dose_nl"]) for r in rows if r["kind"] == "puncture") == sum(
        p["dose_nl"] for p in s.punctures
    )

    out = tmp_path / "report"
    r = cli("report", "1", "--log", str(tmp_path), "--out", str(out))
    assert r.returncode == 0, r.stderr
    for name in ("dose.png", "depth.png", "force.png", "summary.png", "summary.md"):
        assert (out / name).stat().st_size > (200 if name.endswith(".md") else 5000), name
    assert not (out / "zones.png").exists()  # zones set by hand, no protocol: no zone chart
    md = (out / "summary.md").read_text()
    assert "AB123" in md and "%.1f uL" % (core.delivered_nl() / 1000) in md
    assert "5 complete, 1 cut by a fault" in md and "emergency stop" in md


@pytest.mark.hazard("H13")
def test_a_syringe_changed_mid_session_is_logged_and_names_the_punctures_after_it(
    ready_sim, tmp_path
):
    sim = ready_sim
    core = sim.core
    d = Driven(sim, DirFS(str(tmp_path)))
    d.rec.start_session(lot="SWAP")
    sim.configure(dose_nl=10_000)
    assert sim.shot()
    sim.configure(syringe_model=3)  # the size changed after loading and priming
    assert sim.shot() is None and core.notice == C.N_SYRINGE_UNCONFIRMED
    sim.load(3)  # loaded again and confirmed: a SYRINGE record
    sim.prime(800)
    assert sim.shot() and sim.shot()
    sim.run_ms(10)
    d.rec.end_session()
    dec = logs.read_dir(tmp_path)
    assert not dec.problems
    kinds = [tlog.KIND_NAMES[r["kind"]] for r in dec.records]
    assert kinds == [
        "session_start",
        "device",
        "calibration",
        "puncture",
        "calibration",  # the line's time constant follows the barrel
        "syringe",
        "puncture",
        "puncture",
        "session_end",
    ]
    s = dec.sessions[1]
    assert s.start["syringe_model"] == 1 and s.start["lot"] == "SWAP"
    (swap,) = s.syringes
    assert swap["syringe_model"] == 3 and swap["session"] == 1 and swap["punctures"] == 1
    assert swap["time_s"] == 1_700_000_000
    assert [s.syringe_of(p)["syringe_model"] for p in s.punctures] == [1, 3, 3]
    # Each dose counted with the bore of its own syringe (a 3 mL step is 18 nL).
    assert [p["dose_set_nl"] for p in s.punctures] == [10_000] * 3
    assert all(abs(p["dose_nl"] - 10_000) <= 10 for p in s.punctures)
    assert s.end["delivered_nl"] == core.delivered_nl() and s.end["punctures"] == 3
    assert "  syringe 3 mL confirmed after puncture 1" in logs.summary_lines(dec)
    out_csv = tmp_path / "out" / "log.csv"
    out_csv.parent.mkdir()  # export makes no folders
    logs.export_csv(dec, out_csv)
    rows = list(csv.DictReader(open(out_csv)))
    syringe_row = kinds.index("syringe")
    assert [r["kind"] for r in rows] == kinds and rows[syringe_row]["syringe_model"] == "3"
    # A session opened after a confirmation names that syringe in its start alone.
    d.rec.start_session(lot="NEXT")
    sim.run_ms(10)
    d.rec.end_session()
    s2 = logs.read_dir(tmp_path).sessions[2]
    assert s2.start["syringe_model"] == 3 and not s2.syringes


def test_the_calibration_in_use_opens_each_session_and_a_change_is_logged(ready_sim, tmp_path):
    sim = ready_sim
    core = sim.core
    d = Driven(sim, DirFS(str(tmp_path)))
    d.rec.start_session(lot="TAU")
    assert sim.shot()
    core.set_line_tau(42_300)  # what the backlash screen's OK applies, with the backlash
    core.set_backlash(70)
    assert sim.shot()
    sim.run_ms(10)
    d.rec.end_session()
    dec = logs.read_dir(tmp_path)
    assert not dec.problems
    kinds = [tlog.KIND_NAMES[r["kind"]] for r in dec.records]
    assert kinds == [
        "session_start",
        "device",
        "calibration",
        "puncture",
        "calibration",
        "puncture",
        "session_end",
    ]
    s = dec.sessions[1]
    first, changed = s.calibrations
    estimate = M.line_tau_us(M.SYRINGES[1][M.SYR_COMPLIANCE_NL_KPA])  # the tau in use
    assert first["line_tau_us"] == estimate and first["punctures"] == 0
    assert first["backlash_steps"] == M.um_to_plunger_steps(M.PLUNGER_BACKLASH_UM)
    assert first["dose_factor_ppm"] == M.DOSE_FACTOR_ONE_PPM
    assert (changed["line_tau_us"], changed["backlash_steps"], changed["punctures"]) == (
        42_300,
        70,
        1,
    )
    assert [s.calibration_of(p)["line_tau_us"] for p in s.punctures] == [estimate, 42_300]
    text = "\n".join(logs.summary_lines(dec))
    tau_ms = estimate / 1000
    assert "calibration at the start: line tau %.1f ms, backlash 20.0 um, " % tau_ms in text
    assert "calibration after puncture 1: line tau 42.3 ms, backlash 21.9 um, " in text
    out = tmp_path / "report"
    assert cli("report", "1", "--log", str(tmp_path), "--out", str(out)).returncode == 0
    assert "after puncture 1: line tau 42.3 ms" in (out / "summary.md").read_text()


@pytest.mark.hazard("H9")
def test_power_cut_in_a_burst_is_told_at_the_next_boot(ready_sim):
    sim = ready_sim
    fs = SimFS()
    d = Driven(sim, fs)
    d.rec.start_session(lot="N1")
    assert sim.shot()
    sim.run_ms(10)
    assert d.log.pending() == 0
    sim.configure(mode=C.MODE_CONTINUOUS, shot_rate_mhz=1500)
    sim.machine.trigger = True
    sim.run_until(lambda s: s.core.punctures >= 6, 10_000)
    sim.run_ms(5)  # the main loop's next pass
    survivor = (d.rec.session, sim.core.punctures)
    assert d.log.pending() == 5  # the burst is in RAM: FLUSH_AT not reached
    # the power fails mid-burst: what is in RAM is gone
    fs2 = fs.after_cut()
    log = tlog.Log(fs2)
    info = tlog.Recorder(sim.core, log).boot()
    assert info["session"] == 1 and info["punctures"] == 1 and info["lost_max"] == 1
    # (the last *logged* puncture was a single shot: the bound says 1)
    assert "interrupted after puncture 1" in info["text"]
    assert tlog.Recorder(sim.core, log).boot() is None  # closed once, not again
    # with the count that survived (watchdog scratch), the figure is exact
    log3 = tlog.Log(fs.after_cut())
    info = tlog.Recorder(sim.core, log3).boot(survivor=survivor)
    assert info["lost"] == 5 and info["lost_max"] == 0
    end = [r for r in log3.records() if r["kind"] == tlog.K_SESSION_END][-1]
    assert end["interrupted"] and end["lost"] == 5


@pytest.mark.hazard("H9")
def test_long_burst_flushes_between_punctures_once_flush_at_wait(ready_sim):
    sim = ready_sim
    sim.configure(mode=C.MODE_CONTINUOUS, shot_rate_mhz=4000, dose_nl=2000)
    fs = SimFS()
    d = Driven(sim, fs)
    d.rec.start_session()
    sim.machine.trigger = True
    sim.run_until(lambda s: s.core.punctures >= tlog.FLUSH_AT + 3, 60_000)
    assert sim.core.state in C.PUNCTURE
    assert d.log.pending() < tlog.FLUSH_AT  # flushed in a wait, mid-burst
    info = tlog.Recorder(sim.core, tlog.Log(fs.after_cut())).boot()
    assert info["mode"] == C.MODE_CONTINUOUS and info["lost_max"] == tlog.FLUSH_AT
    assert info["punctures"] >= tlog.FLUSH_AT - 3  # (start, device and calibration: 3 of 32)
    assert sim.core.punctures - info["punctures"] <= info["lost_max"]  # the bound holds


# ---- the CLI ----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("logs", "show", "{tmp}/missing"),
        ("logs", "export", "{tmp}/missing", "--csv", "{tmp}/x.csv"),
        ("logs", "export", "{tmp}/garbage.bin", "--csv", "{tmp}/x.csv"),
        ("logs", "show", "{tmp}/garbagedir"),
        ("report", "1", "--log", "{tmp}/missing"),
        ("report", "1", "--log", "{tmp}/garbagedir"),
        ("report", "9", "--log", "{tmp}/gooddir", "--out", "{tmp}/r"),
        ("logs",),
    ],
)
def test_cli_bad_input_says_why_without_a_traceback(tmp_path, args):
    (tmp_path / "garbage.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "garbagedir").mkdir()
    (tmp_path / "garbagedir" / "00000001.tlg").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "gooddir").mkdir()
    (tmp_path / "gooddir" / "00000001.tlg").write_bytes(puncture(1, 1))
    r = cli(*[a.format(tmp=tmp_path) for a in args])
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert r.stderr.strip()
    if "missing" in " ".join(args):
        assert "no such folder" in r.stderr
    if "garbage.bin" in " ".join(args):
        assert "is a file, not a log folder" in r.stderr
    if "garbagedir" in " ".join(args):
        assert "no valid records" in r.stderr and "bad CRC" in r.stderr
    if "9" in args:
        assert "session 9 is not in the log (sessions: 1)" in r.stderr


def test_pull_command_line():
    from datetime import datetime, timezone

    from host_tools import settings_tool as ST

    assert logs.pull_command(Path("out")) == ["fs", "cp", "-r", ":log", "out/"]
    args = ST.connect_args("/dev/ttyACM0", *logs.pull_command(Path("out")))
    assert args[:3] == ["connect", "/dev/ttyACM0", "exec"] and args[4:] == [
        "+",
        "fs",
        "cp",
        "-r",
        ":log",
        "out/",
    ]
    # Every connection sets the device's clock first, in UTC (weekday 0 is Monday).
    when = datetime(2025, 3, 14, 15, 9, 26, tzinfo=timezone.utc)
    assert ST.clock_snippet(when) == (
        "import machine\nmachine.RTC().datetime((2025, 3, 14, 4, 15, 9, 26, 0))"
    )


def session_recs(session, n, device_id=None, time_s=0):
    """A whole session's records: start (with its device, if given), n punctures, end."""
    recs = [tlog.encode(tlog.K_SESSION_START, {"session": session, "time_s": time_s})]
    if device_id is not None:
        recs.append(
            tlog.encode(
                tlog.K_DEVICE, {"session": session, "device_id": device_id, "firmware": "0.4.0"}
            )
        )
    recs += [puncture(session, k) for k in range(1, n + 1)]
    end = {"session": session, "time_s": time_s, "punctures": n, "delivered_nl": n * 20000}
    return [bytes(r) for r in recs] + [bytes(tlog.encode(tlog.K_SESSION_END, end))]


def test_a_session_without_a_clock_or_device_record_says_so(tmp_path):
    # An older firmware's log: no DEVICE record, time_s 0. Still read whole.
    write(tlog.Log(DirFS(str(tmp_path)), ""), session_recs(1, 3) + session_recs(2, 2, DEV_A, T0))
    dec = logs.read_dir(tmp_path)
    assert not dec.problems and [len(s.complete) for s in dec.sessions.values()] == [3, 2]
    text = logs.summary_lines(dec)
    assert "  started time unknown; device unknown (no device record: an older log)" in text
    assert "  started 2025-03-14 15:09:26 UTC; device %s, firmware 0.4.0" % DEV_A in text
    logs.export_csv(dec, tmp_path / "x.csv")
    rows = list(csv.DictReader(open(tmp_path / "x.csv")))
    assert {r["time_utc"] for r in rows if r["session"] == "1"} == {"unknown"}
    assert [r["time_utc"] for r in rows if r["session"] == "2"][:3] == [
        "2025-03-14T15:09:26Z",
        "",  # the device record carries no time
        "2025-03-14T15:09:26Z",  # the first puncture, 500 ms in
    ]
    assert [r["device_id"] for r in rows if r["kind"] == "device"] == [DEV_A]
    out = tmp_path / "r"
    assert cli("report", "1", "--log", str(tmp_path), "--out", str(out)).returncode == 0
    md = (out / "summary.md").read_text()
    assert "time unknown" in md and "unknown (no device record: an older log)" in md
    assert cli("report", "2", "--log", str(tmp_path), "--out", str(out)).returncode == 0
    md = (out / "summary.md").read_text()
    assert "2025-03-14 15:09:26 UTC" in md and DEV_A in md


DEV_A = "e6614104032a5c2b"
DEV_B = "e6614104032a5c2c"
T0 = 1741964966  # 2025-03-14 15:09:26 UTC


class FakeDevice:
    """A device's flash for `logs pull`: mpremote's `fs cp -r :log DEST/` copies its ring;
    restart() is recorded (the CLI's in-process run, no board)."""

    def __init__(self, tmp_path, monkeypatch, nfiles=tlog.NFILES, file_recs=tlog.FILE_RECS):
        from host_tools import settings_tool as ST

        self.flash = tmp_path / "device"
        self.flash.mkdir()
        self.log = tlog.Log(DirFS(str(self.flash)), "log", nfiles=nfiles, file_recs=file_recs)
        self.calls = []
        monkeypatch.setattr(ST, "mpremote", self.mpremote)
        monkeypatch.setattr(ST, "restart", lambda port: self.calls.append("restart"))

    def mpremote(self, port, *args, **kw):
        import shutil
        import subprocess

        self.calls.append(args[:4])
        assert args[:4] == ("fs", "cp", "-r", ":log")
        shutil.copytree(self.flash / "log", Path(args[4]) / "log")
        return subprocess.CompletedProcess(args, 0, "", "")

    def add(self, recs):
        write(self.log, recs)


def pull(capsys, out):
    from host_cli import run

    return run(capsys, "logs", "pull", "--port", "PORT", "--out", out)


def ring(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


@pytest.mark.hazard("H9")
def test_pull_again_changes_nothing_and_says_what_is_new(tmp_path, capsys, monkeypatch):
    dev = FakeDevice(tmp_path, monkeypatch)
    dev.add(session_recs(1, 9, DEV_A) + session_recs(2, 10, DEV_A))  # 25 records
    out = tmp_path / "pulled"
    code, o, e = pull(capsys, out)
    assert code == 0, e
    assert (
        "pulled 25 records from PORT into %s: 25 new (19 punctures, sessions 1, 2)" % (out / "log")
        in o
    )
    assert dev.calls == [("fs", "cp", "-r", ":log"), "restart"]  # the app runs again
    first = ring(out / "log")
    shown = cli("logs", "show", out).stdout
    code, o, e = pull(capsys, out)  # the same records again: the same folder
    assert code == 0 and "pulled 25 records from PORT into %s: nothing new" % (out / "log") in o
    assert ring(out / "log") == first and cli("logs", "show", out).stdout == shown
    dec = logs.read_dir(out)
    assert len(dec.records) == 25 and len(dec.sessions[2].complete) == 10  # not doubled
    dev.add(session_recs(3, 4, DEV_A))
    code, o, e = pull(capsys, out)
    assert code == 0 and "pulled 32 records" in o
    assert ": 7 new (4 punctures, session 3), the rest already there" in o
    assert len(logs.read_dir(out).records) == 32
    code, o, e = pull(capsys, out / "log")  # the ring folder itself: the same
    assert code == 0 and "nothing new" in o and len(logs.read_dir(out).records) == 32


@pytest.mark.hazard("H9")
def test_pull_keeps_what_the_device_has_dropped_from_its_ring(tmp_path, capsys, monkeypatch):
    dev = FakeDevice(tmp_path, monkeypatch, nfiles=3, file_recs=4)
    dev.add(session_recs(1, 6, DEV_A))  # 9 records: files 1-3
    out = tmp_path / "pulled"
    assert pull(capsys, out)[0] == 0
    dev.add(session_recs(2, 5, DEV_A))  # 8 more: the device drops files 1-2
    assert sorted(dev.log.seqs) == [3, 4, 5]
    code, o, e = pull(capsys, out)
    assert code == 0 and "pulled 9 records" in o and ": 8 new (5 punctures, session 2)" in o
    assert "; 8 older records the device has since dropped stay" in o
    dec = logs.read_dir(out)
    assert len(dec.records) == 17 and [len(s.complete) for s in dec.sessions.values()] == [6, 5]


@pytest.mark.hazard("H9")
@pytest.mark.parametrize("other", ["device", "restarted"])
def test_pull_refuses_a_folder_holding_another_log(tmp_path, capsys, monkeypatch, other):
    out = tmp_path / "pulled"
    out.mkdir()
    folder_log = tlog.Log(DirFS(str(out)), "log")
    if other == "device":  # another device's log
        write(folder_log, session_recs(1, 3, DEV_B))
    else:  # this device's, from before its log was cleared (no ids: an older firmware)
        write(folder_log, session_recs(1, 3))
    before = ring(out / "log")
    dev = FakeDevice(tmp_path, monkeypatch)
    dev.add(session_recs(1, 5, DEV_A if other == "device" else None))
    code, o, e = pull(capsys, out)
    assert code == 2 and ring(out / "log") == before  # nothing written
    if other == "device":
        assert "holds the log of device %s, not of this one (%s)" % (DEV_B, DEV_A) in e
    else:
        assert "is not the start of the device's 00000001.tlg" in e
    assert "pull into another folder (--out)" in e and "Traceback" not in e
    assert dev.calls[-1] == "restart"  # the app runs again all the same


# main.py on the virtual board: notes the year its RTC says at each boot, then ends.
RTC_MAIN = """\
import machine
with open("boots.txt", "a") as f:
    f.write("%d\\n" % machine.RTC().datetime()[0])
"""


@pytest.mark.micropython
@pytest.mark.hazard("H9")
def test_pull_from_the_virtual_board(tmp_path):
    from datetime import datetime, timezone

    from host_tools import vboard

    if not vboard.available():
        pytest.fail("node or the MicroPython npm package is missing: run `make test`")
    flash = tmp_path / "flash"
    (flash / "log").mkdir(parents=True)
    (flash / "main.py").write_text(RTC_MAIN)
    fs = DirFS(str(flash))
    write(tlog.Log(fs, nfiles=3, file_recs=4), [puncture(1, n) for n in range(1, 8)])
    out = tmp_path / "pulled"
    board = vboard.VirtualBoard(flash)

    def boots(n):
        while True:
            start = len(board.messages)
            f = flash / "boots.txt"
            lines = f.read_text().split() if f.exists() else []
            if len(lines) >= n or board.wait_for_message("boots.txt", 30, start) is None:
                return lines

    with board as port:
        assert boots(1) == ["2021"]  # power-on: the RTC's reset value, no time
        r = cli("logs", "pull", "--port", port, "--out", str(out))
        assert r.returncode == 0, r.stderr
        assert "pulled 7 records" in r.stdout and ": 7 new (7 punctures, session 1)" in r.stdout
        # The app was restarted (a soft reset), and the clock the pull set survived it.
        assert boots(2) == ["2021", str(datetime.now(timezone.utc).year)]
        r = cli("logs", "pull", "--port", port, "--out", str(out))
        assert r.returncode == 0 and ": nothing new" in r.stdout, r.stderr
        assert len(boots(3)) == 3
    for f in (flash / "log").iterdir():
        assert (out / "log" / f.name).read_bytes() == f.read_bytes()


# ---- MicroPython ----------------------------------------------------------------

MPY_SCRIPT = """
from injcore import tlog
import binascii
for kind, v in %r:
    r = tlog.encode(kind, v)
    print(binascii.hexlify(r).decode(), sorted(tlog.decode(r).items()))
print(tlog.crc32(b"123456789"))
"""


@pytest.mark.micropython
def test_encode_decode_on_micropython_match_cpython():
    if not mpy.available():
        pytest.fail("MicroPython (npm) is not installed: run `make test`, which installs it")
    cases = [
        (tlog.K_PUNCTURE, PUNCTURE),
        (tlog.K_SESSION_START, START),
        (tlog.K_SESSION_END, END),
        (tlog.K_CALIBRATION, CALIBRATION),
        (tlog.K_DEVICE, DEVICE),
        (tlog.K_PROTOCOL_NAME, PROTOCOL_NAME),
        (tlog.K_PUNCTURE, {"session": 3, "number": 2, "dose_nl": -5, "depth_um": 2500}),
    ]
    out = mpy.run_with_core(MPY_SCRIPT % (cases,)).splitlines()
    import binascii

    want = [
        "%s %s"
        % (
            binascii.hexlify(tlog.encode(k, v)).decode(),
            sorted(tlog.decode(tlog.encode(k, v)).items()),
        )
        for k, v in cases
    ]
    assert out[:-1] == want
    assert out[-1] == "%d" % tlog.crc32(b"123456789")


MPY_LOG = """
from injcore import tlog
from injcore.fsio import DirFS
import gc, os
os.mkdir("/tl")
log = tlog.Log(DirFS("/tl"), nfiles=3, file_recs=4)
for n in range(1, 15):
    log.add(tlog.encode(tlog.K_PUNCTURE, {"session": 1, "number": n, "dose_nl": n * 100}))
    if n % 3 == 0:
        log.flush()
log.flush()
print(sorted(os.listdir("/tl/log")))
print([r["number"] for r in tlog.Log(DirFS("/tl"), nfiles=3, file_recs=4).records()])
r = tlog.encode(tlog.K_PUNCTURE, {"session": 1, "number": 99})
def measure(k):
    gc.collect()
    a = gc.mem_alloc()
    while k:
        log.add(r)
        k -= 1
    return gc.mem_alloc() - a
print(measure(0), measure(50))
"""


@pytest.mark.micropython
@pytest.mark.hazard("H9")
def test_ring_on_micropython_files_and_add_allocates_nothing():
    if not mpy.available():
        pytest.fail("MicroPython (npm) is not installed: run `make test`, which installs it")
    out = mpy.run_with_core(MPY_LOG).splitlines()
    assert out[0] == "['00000002.tlg', '00000003.tlg', '00000004.tlg']"
    assert out[1] == str(list(range(5, 15)))
    assert out[2] == "0 0"


@pytest.mark.hazard("H9")
def test_make_sim_writes_the_firmwares_log_and_a_report(tmp_path, capsys):
    from host_tools import cli, logs

    cli.main(["sim", "--out", str(tmp_path), "--shots", "3", "--burst-ms", "1000", "--no-plot"])
    decoded = logs.read_dir(tmp_path / "log")
    session = decoded.sessions[1]
    assert len(session.punctures) >= 3 + 2  # the single shots and a nappage burst
    assert (
        session.start["lot"] == "DEMO-LOT"
        and session.end is not None
        and not session.end["interrupted"]
    )
    logged_nl = sum(p["dose_nl"] for p in session.punctures)
    assert abs(logged_nl - session.end["delivered_nl"]) <= len(
        session.punctures
    )  # per-record rounding
    for name in ("dose.png", "depth.png", "force.png", "summary.md"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    assert not (tmp_path / "report" / "zones.png").exists()  # no protocol ran
    assert "treatment log:" in capsys.readouterr().out
