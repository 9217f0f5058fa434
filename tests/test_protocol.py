"""Treatment protocols (injcore.protocol): checking, storing and running them (H1, H9, H10)."""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host_tools.simfs import PowerCut, SimFS
from injcore import codes as C
from injcore import protocol as P
from injcore.settings import MODE_CONTINUOUS, MODE_SINGLE, Limits, SettingsError

ROOT = Path(__file__).resolve().parents[1]

LIMITS = Limits()  # needle 4000 um, session cap 5 mL


def good(**top):
    """A valid three-zone protocol (one of each technique)."""
    obj = {
        "format": 1,
        "name": "Facial skin booster",
        "version": 3,
        "example": True,
        "session_cap_nl": 300_000,
        "notes": "review before use",
        "zones": [
            {
                "name": "Forehead",
                "technique": "point",
                "depth_um": 1000,
                "dose_nl": 10_000,
                "speed_um_s": 20_000,
                "rate_nl_s": 20_000,
                "punctures": 3,
                "cap_nl": 100_000,
            },
            {
                "name": "Malar L",
                "technique": "papule",
                "depth_um": 1500,
                "dose_nl": 20_000,
                "speed_um_s": 20_000,
                "rate_nl_s": 20_000,
                "suckback_nl": 500,
                "punctures": 2,
                "cap_nl": 100_000,
            },
            {
                "name": "Neck",
                "technique": "nappage",
                "depth_um": 800,
                "dose_nl": 5000,
                "speed_um_s": 30_000,
                "rate_nl_s": 50_000,
                "shot_rate_mhz": 3000,
                "punctures": 4,
                "cap_nl": 100_000,
            },
        ],
    }
    obj.update(top)
    return obj


def with_zone(i, **changes):
    obj = good()
    obj["zones"][i].update(changes)
    return obj


def without(obj, *keys, zone=None):
    d = obj if zone is None else obj["zones"][zone]
    for k in keys:
        del d[k]
    return obj


# --- check / parse ------------------------------------------------------------------------


def test_a_good_protocol_parses_into_zones_with_core_settings():
    p = P.parse(json.dumps(good()), LIMITS)
    assert (p.name, p.version, p.example) == ("Facial skin booster", 3, True)
    assert p.own_cap_nl == p.session_cap_nl == 300_000
    assert [z.name for z in p.zones] == ["Forehead", "Malar L", "Neck"]
    assert [z.mode for z in p.zones] == [MODE_SINGLE, MODE_SINGLE, MODE_CONTINUOUS]
    assert p.zones[0].settings == {
        "mode": MODE_SINGLE,
        "depth_um": 1000,
        "dose_nl": 10_000,
        "speed_um_s": 20_000,
        "rate_nl_s": 20_000,
        "shot_rate_mhz": 2000,
        "suckback_nl": 0,
    }
    assert p.zones[1].settings["suckback_nl"] == 500
    assert p.zones[2].settings["shot_rate_mhz"] == 3000
    assert [z.planned for z in p.zones] == [3, 2, 4]
    assert p.as_dict() == good()
    # bytes too, "free" punctures, no optional keys
    obj = without(good(), "example", "notes")
    obj["zones"][0]["punctures"] = "free"
    p = P.parse(json.dumps(obj).encode(), LIMITS)
    assert p.example is False and p.zones[0].planned == 0


def test_the_effective_session_cap_is_the_smaller_one():
    p = P.build(good(session_cap_nl=10_000_000, zones=good()["zones"]), LIMITS)
    assert p.own_cap_nl == 10_000_000 and p.session_cap_nl == LIMITS.session_cap_nl


@pytest.mark.hazard("H10")
@pytest.mark.parametrize("text", ["", "{", '{"format": 1,}', "[1, 2", "nope", b"\xff\xfe{}"])
def test_malformed_json_is_refused(text):
    with pytest.raises(P.ProtocolError) as e:
        P.parse(text, LIMITS)
    assert len(e.value.problems) == 1 and e.value.problems[0].startswith("json: ")
    assert isinstance(e.value, ValueError)


@pytest.mark.hazard("H10")
def test_out_of_range_values_give_one_message_per_field_with_its_path():
    obj = good(version=0, session_cap_nl=0)
    obj["zones"][1].update(dose_nl=10_500, speed_um_s=100, rate_nl_s=999_000, punctures=0)
    obj["zones"][2].update(shot_rate_mhz=100, suckback_nl=50)
    probs = P.check(obj, LIMITS)
    paths = [m.split(":")[0] for m in probs]
    assert sorted(paths) == sorted(
        [
            "version",
            "session_cap_nl",
            "zones[1].dose_nl",
            "zones[1].speed_um_s",
            "zones[1].rate_nl_s",
            "zones[1].punctures",
            "zones[2].shot_rate_mhz",
            "zones[2].suckback_nl",
        ]
    ), probs
    assert len(probs) == len(set(paths))
    assert any("steps of 1000" in m for m in probs if m.startswith("zones[1].dose_nl"))
    with pytest.raises(P.ProtocolError) as e:
        P.parse(json.dumps(obj), LIMITS)
    assert e.value.problems == probs


@pytest.mark.hazard("H10")
def test_missing_keys_are_named():
    obj = without(good(), "version", "zones")
    assert sorted(P.check(obj, LIMITS)) == ["version: missing", "zones: missing"]
    obj = without(good(), "depth_um", "cap_nl", zone=0)
    without(obj, "shot_rate_mhz", zone=2)
    assert sorted(P.check(obj, LIMITS)) == [
        "zones[0].cap_nl: missing",
        "zones[0].depth_um: missing",
        "zones[2].shot_rate_mhz: missing (required for nappage)",
    ]
    assert P.check(good(zones=[]), LIMITS) == ["zones: 0 zones; allowed 1..12"]


@pytest.mark.hazard("H10")
def test_too_large_files_and_too_many_zones_are_refused():
    big = good(notes="x" * 200)
    text = json.dumps(big, indent=1) + " " * (P.MAX_FILE_BYTES + 1)
    with pytest.raises(P.ProtocolError) as e:
        P.parse(text, LIMITS)
    assert e.value.problems == ["size: %d bytes is too large; allowed at most 4096" % len(text)]
    with pytest.raises(P.ProtocolError):
        P.parse(text.encode(), LIMITS)
    zones = [dict(good()["zones"][0], name="Z%d" % i, cap_nl=10_000) for i in range(13)]
    assert P.check(good(zones=zones), LIMITS) == ["zones: 13 zones; allowed 1..12"]
    assert P.check(good(zones=zones[:12]), LIMITS) == []
    assert P.check(good(notes="n" * 201), LIMITS) == ["notes: 201 characters; allowed at most 200"]


@pytest.mark.hazard("H10")
def test_names_are_short_printable_and_zone_names_unique():
    obj = good(name="x" * 25)
    obj["zones"][1]["name"] = "forehead"  # the same as zones[0] but for case
    obj["zones"][2]["name"] = "Neck\u00e9"
    probs = P.check(obj, LIMITS)
    assert probs[0] == "name: 25 characters; allowed 1..24"
    assert probs[1].startswith("zones[1].name: 'forehead' is the name of zones[0] too")
    assert probs[2].startswith("zones[2].name: ") and "printable ASCII" in probs[2]
    assert len(probs) == 3
    assert P.check(with_zone(0, name="A very long zone"), LIMITS) == [
        "zones[0].name: 16 characters; allowed 1..12"
    ]
    assert P.check(good(name="   "), LIMITS) == ["name: is blank"]


@pytest.mark.hazard("H1")
def test_a_zone_cap_above_the_session_cap_is_refused():
    obj = with_zone(2, cap_nl=300_001)
    assert P.check(obj, LIMITS) == [
        "zones[2].cap_nl: 300001 nL is above the session cap of 300000 nL"
    ]
    assert P.check(with_zone(2, cap_nl=300_000), LIMITS) == []
    # the engineer's cap is the effective one when it is smaller
    low = Limits(session_cap_nl=200_000)
    assert P.check(with_zone(2, cap_nl=250_000), low) == [
        "zones[2].cap_nl: 250000 nL is above the session cap of 200000 nL"
    ]
    assert P.check(with_zone(2, cap_nl=0), LIMITS)[0].startswith(
        "zones[2].cap_nl: 0 is not allowed"
    )


@pytest.mark.hazard("H10")
def test_wrong_types_are_refused():
    obj = good(version=True, example="yes", format="1", name=7, session_cap_nl=[1])
    obj["zones"][0].update(
        depth_um="1000", dose_nl=True, cap_nl=1.5e4, punctures=False, technique="POINT"
    )
    obj["zones"][1].update(speed_um_s=None, rate_nl_s=20000.0, punctures="many")
    obj["zones"][2] = ["Neck", "nappage"]
    probs = P.check(obj, LIMITS)
    paths = [m.split(":")[0] for m in probs]
    assert set(paths) == {
        "format",
        "name",
        "version",
        "example",
        "session_cap_nl",
        "zones[0].technique",
        "zones[0].dose_nl",
        "zones[0].depth_um",
        "zones[0].punctures",
        "zones[0].cap_nl",
        "zones[1].speed_um_s",
        "zones[1].rate_nl_s",
        "zones[1].punctures",
        "zones[2]",
    }, probs
    assert len(paths) == len(set(paths))
    assert "zones[0].dose_nl: True is not an integer" in " | ".join(probs)
    assert "zones[0].depth_um: '1000' is not an integer" in " | ".join(probs)
    assert "zones[2]: ['Neck', 'nappage'] is not an object" in probs
    assert P.check(good(zones={"a": 1}), LIMITS) == ["zones: {'a': 1} is not a list"]
    for top in ([], [good()], "x", 3, None, True):
        assert P.check(top, LIMITS) == ["protocol: %r is not an object" % (top,)]
    with pytest.raises(P.ProtocolError):
        P.parse("[%s]" % json.dumps(good()), LIMITS)


@pytest.mark.hazard("H10")
def test_unknown_keys_are_refused():
    obj = good(colour="blue", Zones=[])
    obj["zones"][1]["depth_mm"] = 1
    probs = P.check(obj, LIMITS)
    assert [m.split(";")[0] for m in probs] == [
        "zones[1].depth_mm: unknown key",
        "Zones: unknown key",
        "colour: unknown key",
    ]


@pytest.mark.hazard("H10")
def test_depth_beyond_the_engineers_needle_length_is_refused():
    obj = with_zone(1, depth_um=3500)
    assert P.check(obj, LIMITS) == []
    short = Limits(needle_length_um=3000)
    probs = P.check(obj, short)
    assert probs == [
        "zones[1].depth_um: 3500 is out of range; allowed 300..3000 um in steps of "
        "100 (usable needle length 3000 um)"
    ]
    with pytest.raises(P.ProtocolError) as e:
        P.parse(json.dumps(obj), short)
    assert e.value.problems == probs


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=30),
    lambda kids: (
        st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=15), kids, max_size=6)
    ),
    max_leaves=30,
)


@pytest.mark.hazard("H10")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, key=st.sampled_from(P.TOP_KEYS + P.ZONE_KEYS), where=st.integers(-1, 2))
def test_check_never_raises_and_a_refusal_always_says_where(value, key, where):
    assert isinstance(P.check(value, LIMITS), list)
    obj = good()
    (obj if where < 0 else obj["zones"][where])[key] = value
    probs = P.check(obj, LIMITS)
    assert all(isinstance(m, str) and ": " in m for m in probs)
    if probs:
        with pytest.raises(P.ProtocolError):
            P.build(obj, LIMITS)
    else:
        P.build(obj, LIMITS)


# --- ProtocolStore ------------------------------------------------------------------------


def named(name, **top):
    return good(name=name, **top)


def test_the_store_saves_loads_lists_replaces_and_removes():
    fs = SimFS()
    ps = P.ProtocolStore(fs, LIMITS)
    assert ps.names() == []
    p = ps.save(json.dumps(good()))
    assert p.name == "Facial skin booster"
    ps.save(named("Neck only", zones=good()["zones"][2:]))
    assert ps.names() == ["Facial skin booster", "Neck only"]
    assert ps.load("facial skin booster").as_dict() == good()
    files = fs.files()
    assert all(f.startswith("protocols/") for f in files)
    assert all(data[:4] == b"INJS" for data in files.values())  # Store's header and CRC
    ps.save(good(version=4))  # the same name replaces it (a second generation)
    assert ps.load("Facial skin booster").version == 4
    assert len(fs.files()) == 3
    ps.remove("Neck only")
    assert ps.names() == ["Facial skin booster"]
    with pytest.raises(P.ProtocolError) as e:
        ps.load("Neck only")
    assert e.value.problems == ["name: no protocol 'Neck only'"]
    # a stored protocol the engineer's new limits no longer allow is named, not loaded
    short = P.ProtocolStore(fs, Limits(needle_length_um=900))
    assert short.names() == ["Facial skin booster"]
    with pytest.raises(P.ProtocolError) as e:
        short.load("Facial skin booster")
    assert [m.split(":")[0] for m in e.value.problems] == ["zones[0].depth_um", "zones[1].depth_um"]


BAD = [
    "{not json",
    json.dumps(good(version=0)),
    json.dumps(with_zone(0, depth_um=4100)),
    json.dumps(with_zone(0, cap_nl=400_000)),
    json.dumps(with_zone(1, name="NECK")),
    json.dumps(good(extra=1)),
    json.dumps(good(notes="x" * 200)) + " " * 4000,
    good(version=True),
    good(zones=[dict(good()["zones"][0], name="Z%d" % i, cap_nl=10_000) for i in range(13)]),
]


@pytest.mark.hazard("H10")
@pytest.mark.parametrize("bad", BAD, ids=range(len(BAD)))
def test_a_refused_save_leaves_the_store_byte_identical(bad):
    fs = SimFS()
    ps = P.ProtocolStore(fs, LIMITS)
    ps.save(good())
    ps.save(good(version=4))
    ps.save(named("Other"))
    before = fs.files()
    with pytest.raises(P.ProtocolError) as e:
        ps.save(bad)
    assert e.value.problems
    assert fs.files() == before
    assert ps.load("Facial skin booster").version == 4


@pytest.mark.hazard("H10")
def test_a_17th_protocol_is_refused_but_replacing_one_is_not():
    fs = SimFS()
    ps = P.ProtocolStore(fs, LIMITS)
    for i in range(P.MAX_PROTOCOLS):
        ps.save(named("Protocol %d" % i))
    before = fs.files()
    with pytest.raises(P.ProtocolError) as e:
        ps.save(named("One too many"))
    assert e.value.problems == ["protocols: 16 protocols are stored already; remove one first"]
    assert fs.files() == before
    ps.save(named("PROTOCOL 3", version=9))  # the same name (case aside): replaced
    assert len(ps.names()) == 16 and ps.load("protocol 3").version == 9
    assert "PROTOCOL 3" in ps.names()
    ps.remove("Protocol 0")
    ps.save(named("One too many"))
    assert len(ps.names()) == 16


@pytest.mark.hazard("H10")
def test_a_changed_protocol_needs_a_new_version_and_the_same_one_writes_nothing():
    fs = SimFS()
    ps = P.ProtocolStore(fs, LIMITS)
    ps.save(good())  # version 3
    assert not ps.unchanged
    before = fs.files()
    fs.reset_counters()
    assert ps.save(json.dumps(good())).version == 3 and ps.unchanged  # the same again
    assert fs.files() == before and fs.counters()["bytes"] == 0  # nothing written
    changed = with_zone(0, dose_nl=20_000)  # another dose under the same name and version
    for version in (3, 2):  # ... or under a lower one
        with pytest.raises(P.ProtocolError) as e:
            ps.save(dict(changed, version=version))
        assert e.value.problems == [
            "version: 'Facial skin booster' version 3 is stored with other contents; a changed "
            "protocol needs a version above 3"
        ]
        assert fs.files() == before
    with pytest.raises(P.ProtocolError):  # the name's case is the same protocol too
        ps.save(dict(changed, name="FACIAL SKIN BOOSTER"))
    ps.save(dict(changed, version=4))
    assert (
        not ps.unchanged and ps.load("Facial skin booster").zones[0].settings["dose_nl"] == 20_000
    )
    ps.remove("Facial skin booster")  # removed first, any version goes in again
    ps.save(good(version=1))
    assert ps.load("Facial skin booster").version == 1


@pytest.mark.hazard("H9")
def test_a_power_cut_while_saving_or_removing_leaves_a_whole_protocol():
    base = SimFS()
    P.ProtocolStore(base, LIMITS).save(good(version=1))
    probe = base.clone()
    probe.reset_counters()
    P.ProtocolStore(probe, LIMITS).save(good(version=2))
    n = probe.counters()["bytes"]
    outcomes = set()
    for cut in (1, 5, 18, 19, n // 2, n - 1, n):
        fs = base.clone()
        fs.cut_after(n_bytes=cut)
        with pytest.raises(PowerCut):
            P.ProtocolStore(fs, LIMITS).save(good(version=2))
        outcomes.add(P.ProtocolStore(fs.after_cut(), LIMITS).load("Facial skin booster").version)
    for happens in (False, True):
        fs = base.clone()
        fs.cut_after(n_renames=1, rename_happens=happens)
        with pytest.raises(PowerCut):
            P.ProtocolStore(fs, LIMITS).save(good(version=2))
        after = P.ProtocolStore(fs.after_cut(), LIMITS)
        assert after.load("Facial skin booster").version == (2 if happens else 1)
        outcomes.add(after.load("Facial skin booster").version)
    assert outcomes == {1, 2}
    # a cut between the two removes never brings the older generation back
    two = base.clone()
    P.ProtocolStore(two, LIMITS).save(good(version=2))
    fs = two.clone()
    fs.cut_after(n_removes=2)
    with pytest.raises(PowerCut):
        P.ProtocolStore(fs, LIMITS).remove("Facial skin booster")
    assert P.ProtocolStore(fs.after_cut(), LIMITS).load("Facial skin booster").version == 2


# --- Run on the simulator -------------------------------------------------------------------


def start_run(sim, obj, recorder=None):
    proto = P.build(obj, sim.core.limits)
    run = P.Run(sim.core, proto, recorder)
    sim.main_loop.append(run.poll)
    assert run.start(), run.message
    return run


def nappage(sim, run, n):
    """Hold the trigger for n shots of the current (nappage) zone."""
    period_ms = 1_000_000 // run.zone.settings["shot_rate_mhz"]
    sim.burst((n - 1) * period_ms + period_ms // 2)
    sim.run_ms(2)  # burst() may return before the core has seen the release (capped while held)


class FakeRecorder:
    zone = 0xFF


@pytest.mark.hazard("H1")
def test_a_three_zone_protocol_delivers_what_was_planned_zone_by_zone(ready_sim):
    sim = ready_sim
    rec = FakeRecorder()
    run = start_run(sim, good(), rec)
    assert rec.zone == 0 and sim.core.settings.dose_nl == 10_000
    planned = [z.planned for z in run.protocol.zones]
    for i, zone in enumerate(run.protocol.zones):
        assert run.index == i and rec.zone == i
        assert sim.core.settings.mode == zone.mode
        assert sim.core.settings.depth_um == zone.settings["depth_um"]
        if zone.technique == "nappage":
            nappage(sim, run, zone.planned)
        else:
            for _ in range(zone.planned):
                sim.shot()
        s = run.status()
        assert s["done"] == s["planned"] == planned[i]
        assert s["zone"] == zone.name and s["index"] == i and s["count"] == 3
        assert s["next_name"] == (run.protocol.zones[i + 1].name if i < 2 else "")
        assert run.next()
    assert run.finished and rec.zone == 0xFF
    assert run.done == planned
    for i, zone in enumerate(run.protocol.zones):
        want = zone.planned * zone.settings["dose_nl"]
        assert abs(run.used_nl[i] - want) <= want // 100, (i, run.used_nl[i], want)
    assert sum(run.used_nl) == sim.core.delivered_nl()
    assert sum(run.done) == sim.core.punctures
    assert not any(run.skipped)


@pytest.mark.hazard("H1")
def test_the_zone_cap_stops_that_zone_and_next_resumes(ready_sim):
    sim = ready_sim
    obj = good()
    obj["zones"][0].update(dose_nl=20_000, cap_nl=50_000, punctures="free")
    obj["zones"][2].update(cap_nl=12_000)
    run = start_run(sim, obj)
    for _ in range(4):
        sim.shot()
    assert run.done[0] == 2 and sim.core.notice == C.N_ZONE_CAP  # 2 x 20 uL fit in 50, a third not
    assert run.status()["capped"] and run.status()["planned"] == 0
    assert run.next()
    sim.shot()
    assert run.done[1] == 1 and sim.core.notice == C.N_NONE
    assert run.back()  # zone 0 again: its cap is still spent
    sim.shot()
    assert run.done[0] == 2 and sim.core.notice == C.N_ZONE_CAP
    assert run.next() and run.next()  # the nappage zone: 12 uL is two 5 uL shots
    nappage(sim, run, 5)
    assert run.done[2] == 2 and sim.core.notice == C.N_ZONE_CAP and run.status()["capped"]
    assert run.used_nl[2] <= 12_000
    assert run.end() and run.finished
    sim.configure(mode=MODE_SINGLE)
    sim.shot()  # no protocol caps any more
    assert sim.core.notice == C.N_NONE and sim.core.punctures == 6


def test_skip_then_back_keeps_the_counts(ready_sim):
    sim = ready_sim
    run = start_run(sim, good())
    sim.shot()
    sim.shot()
    assert run.skip() and run.index == 1 and run.skipped == [True, False, False]
    sim.shot()
    assert run.back() and run.index == 0
    assert run.done == [2, 1, 0]
    sim.shot()
    assert run.done == [3, 1, 0] and run.skipped == [False, False, False]
    assert abs(run.used_nl[0] - 30_000) <= 300 and abs(run.used_nl[1] - 20_000) <= 200
    s = run.status()
    assert s["used_nl"] == run.used_nl[0] and s["session_used_nl"] == sim.core.delivered_nl()
    assert run.skip() and run.skip() and run.index == 2 and run.skipped == [True, True, False]
    assert run.skip() and run.finished and run.skipped == [True, True, True]
    assert run.done == [3, 1, 0] and sum(run.used_nl) == sim.core.delivered_nl()
    assert run.back() and not run.finished and run.index == 1  # reopened: zone 1 again


@pytest.mark.hazard("H1")
def test_the_effective_session_cap_is_the_smaller_of_protocol_and_engineer(ready_sim):
    sim = ready_sim
    obj = good(session_cap_nl=50_000)
    for z in obj["zones"]:
        z["cap_nl"] = 50_000
    obj["zones"][0]["dose_nl"] = 20_000
    run = start_run(sim, obj)
    assert run.status()["session_cap_nl"] == 50_000
    sim.shot()
    assert run.next()  # each zone's own cap would allow more
    for _ in range(3):
        sim.shot()
    assert run.done[:2] == [1, 1] and sim.core.notice == C.N_SESSION_CAP  # the protocol's 50 uL
    assert run.end()

    sim.core.new_session()
    sim.core.set_limits(session_cap_nl=30_000)  # the engineer's is smaller now
    obj = good(session_cap_nl=200_000)
    for z in obj["zones"]:
        z["cap_nl"] = 30_000
    obj["zones"][0]["dose_nl"] = 20_000
    with pytest.raises(P.ProtocolError):
        P.build(with_zone(0, cap_nl=50_000), sim.core.limits)  # a zone above the engineer's cap
    run = start_run(sim, obj)
    assert run.protocol.session_cap_nl == 30_000 and run.status()["session_cap_nl"] == 30_000
    sim.shot()
    assert run.next()
    sim.shot()
    assert run.done[:2] == [1, 0] and sim.core.notice == C.N_SESSION_CAP
    assert sim.core.delivered_nl() <= 30_000


def test_a_zone_cannot_be_entered_while_the_injector_is_busy(ready_sim):
    sim = ready_sim
    run = start_run(sim, good())
    assert run.next() and run.next()  # nappage
    sim.machine.trigger = True
    sim.run_ms(50)
    assert not run.back() and run.message and run.index == 2
    sim.machine.trigger = False
    sim.run_until(lambda s: s.core.state == C.ST_READY, 5000)
    sim.settle()
    assert run.back() and run.index == 1


# --- the same check on MicroPython --------------------------------------------------------------

MP_CASES = [
    good(),
    with_zone(0, depth_um=4100),
    good(version=True, example="yes", colour=1),
    with_zone(1, name="forehead", dose_nl=1.5, speed_um_s="fast", cap_nl=400_000),
    good(zones=[dict(good()["zones"][0], name="Z%d" % i, cap_nl=10_000) for i in range(13)]),
    with_zone(2, shot_rate_mhz=None, punctures="free", extra=[1, {"a": None}]),
    without(good(), "zones", "name"),
    [1, 2],
    "text",
]

MP_SOURCE = """
import json
from injcore import protocol as P
from injcore.settings import Limits
out = []
for lim in (Limits(), Limits(needle_length_um=900, session_cap_nl=150000)):
    for text in json.loads(CASES):
        out.append(P.check(json.loads(text), lim))
for text in PARSE:
    try:
        P.parse(text, Limits())
        out.append([])
    except P.ProtocolError as e:
        out.append([m.split(':')[0] for m in e.problems])
print(json.dumps(out))
"""


@pytest.mark.micropython
@pytest.mark.hazard("H10")
def test_check_gives_the_same_problems_on_micropython():
    from host_tools import mpy

    if not mpy.available():
        pytest.fail("MicroPython (npm) is not installed: run `make test`, which installs it")
    texts = [json.dumps(c) for c in MP_CASES]
    parse = ["{oops", json.dumps(good()) + " " * 5000, json.dumps(good())]
    src = "CASES = %r\nPARSE = %r\n" % (json.dumps(texts), parse) + MP_SOURCE
    out = mpy.run(src, {ROOT / "firmware" / "injcore": "/lib/injcore"}, timeout=120)
    got = json.loads(out.strip().splitlines()[-1])
    want = []
    for lim in (Limits(), Limits(needle_length_um=900, session_cap_nl=150_000)):
        for text in texts:
            want.append(P.check(json.loads(text), lim))
    for text in parse:
        try:
            P.parse(text, Limits())
            want.append([])
        except P.ProtocolError as e:
            want.append([m.split(":")[0] for m in e.problems])
    assert want[0] == [] and all(want[1 : len(texts)])
    assert got == want


@pytest.mark.hazard("H10")
def test_a_zone_the_core_refuses_stops_the_run_and_no_shot_fires(ready_sim):
    sim = ready_sim
    obj = good()
    obj["zones"][2].update(dose_nl=20_000, rate_nl_s=20_000)  # 1 s a shot, 3 shots a second
    run = start_run(sim, obj)
    sim.shot()
    assert run.next() and not run.next()  # the nappage zone: refused by the core
    assert run.refused[0] == 2 and run.refused[1][1] == SettingsError.CYCLE
    assert run.index == 1 and run.status()["refused"] == 2
    assert run.message.startswith("shot_rate_mhz: 3000 is faster than one puncture")
    assert sim.core.settings.depth_um == 1500  # zone 1's settings stay, but shut:
    p = sim.core.punctures
    sim.shot()
    assert sim.core.punctures == p and sim.core.notice == C.N_ZONE_CAP
    assert not run.back() and not run.skip() and run.index == 1 and run.message == P.STOPPED
    assert run.end() and run.refused is None and sim.core.protocol_cap_nl == 0
    sim.shot()
    assert sim.core.punctures == p + 1


@pytest.mark.hazard("H10")
def test_a_run_started_while_firing_stops_and_shuts_once_idle(ready_sim):
    sim = ready_sim
    sim.configure(mode=MODE_CONTINUOUS, dose_nl=2000, shot_rate_mhz=1000)
    run = P.Run(sim.core, P.build(good(), sim.core.limits))
    sim.main_loop.append(run.poll)
    sim.machine.trigger = True
    sim.run_ms(50)  # a manual nappage burst under way
    assert not run.start() and run.refused == (
        0,
        ("settings", SettingsError.NOT_IDLE, None, 0, 0, None),
    )
    sim.machine.trigger = False
    sim.run_until(lambda s: s.core.state == C.ST_READY, 5000)
    sim.settle()
    sim.run_ms(5)  # a main-loop pass: poll() shuts the trigger
    p = sim.core.punctures
    sim.burst(1500)
    assert sim.core.punctures == p and sim.core.notice == C.N_ZONE_CAP
    assert run.end() and sim.core.protocol_cap_nl == 0


@pytest.mark.hazard("H1")
def test_a_zone_cap_holds_across_a_syringe_change(ready_sim):
    sim = ready_sim
    obj = good()
    obj["zones"][0].update(dose_nl=20_000, cap_nl=50_000, punctures="free")
    run = start_run(sim, obj)
    sim.shot()
    sim.load(3)  # the session is restated in the 3 mL syringe's steps (confirmed, H13)
    sim.prime(300)
    for _ in range(4):
        sim.shot()
    assert run.done[0] == 2 and sim.core.notice == C.N_ZONE_CAP  # 2 x 20 uL fit in 50, no more
