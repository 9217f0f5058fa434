"""A protocol session end to end: Run, the log's PROTOCOL / ZONE records (tlog.ProtocolLog),
the decoder, the zone-by-zone report, and `injector sim --protocol` (sim/protocol_run.py,
host_tools/sim_tool.py)."""

import json
import re
from pathlib import Path

import pytest

import host_cli
from host_tools import logs, mpy, report, sim_tool
from injcore import codes as C
from injcore import machine as M
from injcore import protocol as P
from injcore import tlog
from injcore.fsio import DirFS
from injcore.settings import Limits
from sim import protocol_run
from sim.session import Simulator

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "protocols").glob("*.json"))


def zone(name, technique="point", punctures=5, dose_nl=20_000, cap_nl=None, **kw):
    z = {
        "name": name,
        "technique": technique,
        "depth_um": 1000,
        "dose_nl": dose_nl,
        "speed_um_s": 20_000,
        "rate_nl_s": 20_000,
        "suckback_nl": 0,
        "punctures": punctures,
        "cap_nl": cap_nl
        if cap_nl is not None
        else (punctures if punctures != "free" else protocol_run.FREE_PUNCTURES) * dose_nl
        + dose_nl,
    }
    if technique == "nappage":
        z["shot_rate_mhz"] = 3000
    z.update(kw)
    return z


# A small mixed protocol of the tests' own: every technique, a "free" zone, two zones
# whose caps stop firing before their planned count (one single, one nappage).
MIXED = {
    "format": 1,
    "name": "Test mixed protocol long",
    "version": 7,
    "session_cap_nl": 900_000,
    "zones": [
        zone("Point A", punctures=4),
        zone("Nappage B", "nappage", punctures=30, dose_nl=2000),
        zone("Papule C", "papule", punctures=3, dose_nl=10_000),
        zone("Free D", punctures="free", dose_nl=5000, cap_nl=200_000),
        zone("Capped E", punctures=10, cap_nl=110_000),  # 5 of 10 fit
        zone("Capped nap F", "nappage", punctures=50, dose_nl=2000, cap_nl=41_000),  # 20 of 50
    ],
}
CAPPED = {4: 5, 5: 20}  # zone index -> punctures the cap lets through


def mixed_file(tmp_path):
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(MIXED))
    return path


def cli(*args):
    return host_cli.cli(*args, timeout=300)  # a whole protocol session in the simulator


def table_rows(md):
    """The zone table of summary.md.

    {index: (done, planned, delivered_uL, planned_uL, cap_uL, status)}."""
    rows = {}
    for line in md.splitlines():
        m = re.match(
            r"\| (\d+) \| (.*?) \| \w+ \| (\d+) / (\w+) \| "
            r"([\d.]+) / ([\w.]+) \| ([\d.]+) \| (.*) \|$",
            line,
        )
        if m:
            rows[int(m.group(1)) - 1] = (
                int(m.group(3)),
                m.group(4),
                float(m.group(5)),
                m.group(6),
                float(m.group(7)),
                m.group(8),
            )
    return rows


# ---- records ------------------------------------------------------------------


def test_protocol_and_zone_records_fit_24_bytes_and_round_trip():
    for kind in (tlog.K_PROTOCOL, tlog.K_PROTOCOL_NAME, tlog.K_ZONE):
        assert 3 + sum(b for _, b, _ in tlog._FIELDS[kind]) <= tlog.PAYLOAD_BYTES * 8
    assert tlog.PROTOCOL_NAME_CHARS + tlog.PROTOCOL_TAIL_CHARS == P.NAME_MAX  # logged whole
    tail = tlog.decode(tlog.encode(tlog.K_PROTOCOL_NAME, {"session": 7, "name": "ter v3 X"}))
    assert tail == {"kind": tlog.K_PROTOCOL_NAME, "session": 7, "name": "ter v3 "}
    r = tlog.decode(
        tlog.encode(
            tlog.K_PROTOCOL,
            {
                "session": 65535,
                "version": 65535,
                "zones": 12,
                "example": True,
                "name": "Facial skin booster v3 X",
            },
        )
    )
    assert r["name"] == "Facial skin boost" and len(r["name"]) == tlog.PROTOCOL_NAME_CHARS
    assert (r["session"], r["version"], r["zones"], r["example"]) == (65535, 65535, 12, 1)
    z = {
        "event": tlog.Z_DONE,
        "skipped": 1,
        "mode": 1,
        "session": 9,
        "index": 11,
        "planned": 9999,
        "cap_nl": 20_000_000,
        "dose_set_nl": 200_000,
        "name": "Periorbital L+",
    }
    r = tlog.decode(tlog.encode(tlog.K_ZONE, z))
    assert r.pop("kind") == tlog.K_ZONE and r.pop("name") == "Periorbital "
    assert r == {k: v for k, v in z.items() if k != "name"}
    assert tlog.decode(tlog.encode(tlog.K_ZONE, {"dose_set_nl": 1500}))["dose_set_nl"] == 1500
    assert (
        tlog.decode(tlog.encode(tlog.K_ZONE, {"planned": 10**6, "cap_nl": 10**9}))["planned"]
        == 16383
    )


MPY_SCRIPT = """
from injcore import tlog
import binascii
for kind, v in %r:
    r = tlog.encode(kind, v)
    print(binascii.hexlify(r).decode(), sorted(tlog.decode(r).items()))
"""


@pytest.mark.micropython
def test_new_records_on_micropython_match_cpython():
    if not mpy.available():
        pytest.fail("MicroPython (npm) is not installed: run `make test`, which installs it")
    cases = [
        (tlog.K_PROTOCOL, {"session": 3, "version": 2, "zones": 4, "name": "Nappage face"}),
        (
            tlog.K_ZONE,
            {
                "event": 1,
                "skipped": 1,
                "mode": 1,
                "session": 3,
                "index": 2,
                "planned": 250,
                "cap_nl": 550_000,
                "dose_set_nl": 2000,
                "name": "Cheek L",
            },
        ),
    ]
    out = mpy.run_with_core(MPY_SCRIPT % (cases,)).splitlines()
    assert out == [
        "%s %s" % (tlog.encode(k, v).hex(), sorted(tlog.decode(tlog.encode(k, v)).items()))
        for k, v in cases
    ]


# ---- whole sessions in the simulator ---------------------------------------------


def check_session(res):
    """Zone by zone: the Run's counts, the log's records and the report's table agree."""
    run, p = res.run, res.protocol
    s = res.decoded.sessions[res.session]
    assert not res.decoded.problems
    assert s.protocol.name == p.name and s.protocol.whole and s.protocol.version == p.version
    assert s.protocol.zone_count == len(p.zones) and s.run_ended
    assert s.end and s.end["delivered_nl"] == res.sim.core.delivered_nl()
    totals = logs.zone_totals(s)
    rows = table_rows((res.report_dir / "summary.md").read_text())
    assert sorted(rows) == list(range(len(p.zones)))
    for i, z in enumerate(p.zones):
        lz = s.zones[i]
        assert (lz.name, lz.planned, lz.cap_nl, lz.mode) == (
            z.name[:12],
            z.planned,
            z.cap_nl,
            z.mode,
        )
        assert lz.dose_set_nl == z.settings["dose_nl"] and lz.entered == 1 and not lz.skipped
        t = totals.get(i, {"complete": 0, "cut": 0, "delivered_nl": 0})
        assert t["complete"] == run.done[i] and t["cut"] == 0
        assert abs(t["delivered_nl"] - run.used_nl[i]) <= run.done[i] + 1  # per-record rounding
        done, planned, delivered, planned_ul, cap, status = rows[i]
        assert done == run.done[i] and planned == (str(z.planned) if z.planned else "free")
        assert delivered == round(t["delivered_nl"] / 1000, 1)  # volumes to 0.1 uL
        assert cap == round(z.cap_nl / 1000, 1)
        if z.planned:
            assert float(planned_ul) == z.planned * z.settings["dose_nl"] / 1000
    assert tlog.ZONE_NONE not in totals  # every puncture in a zone
    for name in ("plan.png", "zones.png", "dose.png", "depth.png", "force.png", "summary.png"):
        assert (res.report_dir / name).stat().st_size > 5000, name
    return s, rows


def delivered_as_planned(res, i, count):
    """Zone i: `count` punctures and count x dose within 1 % (or the dose's step rounding)."""
    z = res.protocol.zones[i]
    run = res.run
    dose = z.settings["dose_nl"]
    assert run.done[i] == count, (z.name, run.done[i], count)
    want = count * dose
    step_nl = res.sim.core.steps_to_nl(1) + 1
    assert abs(run.used_nl[i] - want) <= max(want // 100, count * step_nl), (
        z.name,
        run.used_nl[i],
        want,
    )


@pytest.mark.parametrize("path", EXAMPLES + ["mixed"], ids=[p.stem for p in EXAMPLES] + ["mixed"])
def test_simulated_protocol_session_delivers_the_plan_zone_by_zone(tmp_path, path):
    if path == "mixed":
        path = mixed_file(tmp_path)
    protocol = protocol_run.load_protocol(path)
    res = sim_tool.run_protocol(protocol, tmp_path / "out")
    s, rows = check_session(res)
    usable = {m: e[M.SYR_CAPACITY_NL] - e[M.SYR_DEAD_NL] for m, e in M.SYRINGES.items()}
    assert usable[res.syringe_model] >= protocol.session_cap_nl + protocol_run.prime_nl()
    assert all(
        usable[m] < protocol.session_cap_nl + protocol_run.prime_nl()  # the smallest
        for m in M.SYRINGES
        if usable[m] < usable[res.syringe_model]
    )  # that holds it
    for i, z in enumerate(protocol.zones):
        r = res.zones[i]
        if i in CAPPED and path.name == "mixed.json":
            continue  # test_zone_cap_that_stops_firing_is_reported
        delivered_as_planned(res, i, z.planned or protocol_run.FREE_PUNCTURES)
        assert r.stop == "planned count reached" and not r.capped
        status = rows[i][5]
        assert status == ("complete" if z.planned else "free"), status


def test_zone_cap_that_stops_firing_is_reported(tmp_path):
    res = sim_tool.run_protocol(protocol_run.load_protocol(mixed_file(tmp_path)), tmp_path / "out")
    s, rows = check_session(res)
    md = (res.report_dir / "summary.md").read_text()
    assert "%d stopped by their cap" % len(CAPPED) in md
    for i, n in CAPPED.items():
        z = res.protocol.zones[i]
        r = res.zones[i]
        assert r.capped and r.stop == C.NOTICE_NAMES[C.N_ZONE_CAP], (r.stop, z.name)
        delivered_as_planned(res, i, n)  # what the cap let through, to the dose
        assert res.run.used_nl[i] <= z.cap_nl
        assert rows[i][5] == "zone cap reached" and rows[i][0] == n < z.planned
        assert report.zone_rows(s)[i]["capped"]
    assert "Test mixed protocol long v7" in md  # the log keeps the whole name


def test_skip_and_back_keep_the_counts_and_the_log_right(tmp_path):
    sim = Simulator(trace=False)
    assert sim.home()
    sim.load(1)
    rec = tlog.Recorder(sim.core, tlog.Log(DirFS(str(tmp_path)), ""))
    session = rec.start_session("SKIP")
    sim.main_loop.append(lambda: (rec.poll(), rec.service()))
    sim.prime(800)
    proto = P.build(
        {
            "format": 1,
            "name": "Skip test",
            "version": 2,
            "session_cap_nl": 800_000,
            "zones": [
                zone("Z0", punctures=3),
                zone("Z1", punctures=3, dose_nl=10_000),
                zone("Z2", punctures=2),
                zone("Z3", punctures=2),
            ],
        },
        Limits(),
    )
    run = P.Run(sim.core, proto, rec)
    assert run.start()
    plog = tlog.ProtocolLog(rec, run)
    sim.main_loop.insert(0, lambda: (run.poll(), plog.poll()))

    def shots(n):
        for _ in range(n):
            assert sim.shot()
            sim.run_ms(50)

    def act(fn):
        assert fn(), run.message
        sim.run_ms(5)  # the main loop's next pass

    shots(2)  # Z0: 2
    act(run.next)
    act(run.skip)  # Z1 skipped untouched
    assert run.index == 2 and run.skipped == [False, True, False, False]
    shots(1)  # Z2: 1
    act(run.back)  # back to Z1: it is still marked skipped until a puncture lands there
    assert run.index == 1 and run.skipped[1]
    shots(3)  # Z1: 3 -> no longer skipped
    assert not run.skipped[1]
    act(run.back)
    shots(1)  # Z0: 3
    act(run.next)
    act(run.next)
    shots(1)  # Z2: 2
    act(run.next)
    act(run.skip)  # Z3 skipped: the last zone, so the run ends
    assert run.finished and run.done == [3, 3, 2, 0] and run.skipped == [False, False, False, True]
    rec.end_session()

    s = logs.read_dir(tmp_path).sessions[session]
    ev = [(r["event"], r["index"], r["skipped"]) for r in s.zone_events]
    E, S, D = tlog.Z_ENTER, tlog.Z_SKIP, tlog.Z_DONE  # noqa: N806  (the constants, one letter each)
    assert ev == [
        (E, 0, 0),
        (E, 1, 0),
        (S, 1, 1),
        (E, 2, 0),
        (E, 1, 1),
        (E, 0, 0),
        (E, 1, 0),
        (E, 2, 0),
        (E, 3, 0),
        (S, 3, 1),
        (D, 0, 0),
        (D, 1, 0),
        (D, 2, 0),
        (D, 3, 1),
    ]
    totals = logs.zone_totals(s)
    for i in range(3):
        assert totals[i]["complete"] == run.done[i]
        assert abs(totals[i]["delivered_nl"] - run.used_nl[i]) <= run.done[i] + 1
    assert 3 not in totals and tlog.ZONE_NONE not in totals
    assert [s.zones[i].skipped for i in range(4)] == [False, False, False, True]
    assert [s.zones[i].entered for i in range(4)] == [2, 3, 2, 1]
    # the punctures carry their zone in the order they were fired
    assert [p["zone"] for p in s.complete] == [0, 0, 2, 1, 1, 1, 0, 2]
    rows = report.zone_rows(s)
    assert [r["status"] for r in rows] == ["complete", "complete", "complete", "skipped"]
    assert [r["done"] for r in rows] == run.done
    report.write_report(logs.read_dir(tmp_path), session, tmp_path / "report")
    md_rows = table_rows((tmp_path / "report" / "summary.md").read_text())
    assert [md_rows[i][0] for i in range(4)] == run.done and md_rows[3][5] == "skipped"
    assert "1 skipped" in "\n".join(logs.summary_lines(logs.read_dir(tmp_path)))


def test_protocol_log_writes_protocol_again_in_a_new_session(tmp_path):
    sim = Simulator(trace=False)
    assert sim.home()
    sim.load(1)
    rec = tlog.Recorder(sim.core, tlog.Log(DirFS(str(tmp_path)), ""))
    proto = P.build(
        {
            "format": 1,
            "name": "Two",
            "version": 1,
            "session_cap_nl": 500_000,
            "zones": [zone("A"), zone("B")],
        },
        Limits(),
    )
    run = P.Run(sim.core, proto, rec)
    assert run.start()
    plog = tlog.ProtocolLog(rec, run)
    plog.poll()  # no session open: the PROTOCOL record opens one (lot "")
    assert rec.session == 1
    rec.start_session("NEXT")
    plog.poll()
    rec.end_session()
    dec = logs.read_dir(tmp_path)
    for n in (1, 2):
        s = dec.sessions[n]
        assert s.protocol.name == "Two" and [(r["event"], r["index"]) for r in s.zone_events] == [
            (0, 0)
        ]


# ---- syringe choice and the CLI ------------------------------------------------------


def test_syringe_is_the_smallest_that_holds_the_cap_plus_priming():
    assert protocol_run.choose_syringe(900_000) == 1
    assert protocol_run.choose_syringe(930_000 - protocol_run.prime_nl()) == 1
    assert protocol_run.choose_syringe(930_000) == 3
    assert protocol_run.choose_syringe(5_000_000) == 10
    with pytest.raises(
        protocol_run.SimError, match="no syringe holds the session cap of 20000.0 uL"
    ):
        protocol_run.choose_syringe(20_000_000)


def test_cli_runs_a_protocol_and_writes_log_and_report(tmp_path):
    r = cli(
        "sim",
        "--protocol",
        str(EXAMPLES[0] if EXAMPLES else mixed_file(tmp_path)),
        "--out",
        str(tmp_path / "o"),
        "--seed",
        "3",
    )
    assert r.returncode == 0, r.stderr
    assert "report:" in r.stdout
    assert list((tmp_path / "o" / "log").glob("*.tlg"))
    assert (
        "## Zones: planned vs delivered" in (tmp_path / "o" / "report" / "summary.md").read_text()
    )


@pytest.mark.parametrize(
    "content,expect",
    [
        ("{not json", ["json: not valid JSON"]),
        (
            json.dumps(dict(MIXED, version=0, zones=[zone("A", depth_um=99_000), zone("a")])),
            ["version", "zones[0].depth_um", "zones[1].name"],
        ),
        (json.dumps(dict(MIXED, zones=[])), ["zones"]),
        (None, ["cannot read"]),
    ],
)
def test_cli_bad_protocol_file_exits_2_with_its_problems(tmp_path, content, expect):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    r = cli("sim", "--protocol", str(path), "--out", str(tmp_path / "o"))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    for e in expect:
        assert e in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()
