"""Treatment protocols on the host: docs/protocol.schema.json, the shipped examples in
protocols/, `injector protocol validate|push|pull` (host_tools/protocol_tool.py), and the
agreement of the schema with the device's own rules (injcore.protocol.check)."""

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host_cli import cli, run
from host_tools import protocol_tool as T
from injcore import protocol as P
from injcore import store as S
from injcore.fsio import DirFS
from injcore.settings import COARSE_DOSE_STEP_NL, FINE_DOSE_BELOW_NL, RANGES, Limits

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "docs" / "protocol.schema.json").read_text())
ZONE = SCHEMA["$defs"]["zone"]
EXAMPLES = sorted((ROOT / "protocols").glob("*.json"))


def schema_ok(doc):
    return not T.schema_problems(doc)


# ---- the schema: one place for each fact --------------------------------------------


def test_the_schema_is_a_valid_2020_12_schema():
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize(
    "field", ["depth_um", "dose_nl", "speed_um_s", "rate_nl_s", "shot_rate_mhz", "suckback_nl"]
)
def test_schema_bounds_equal_settings_ranges(field):
    lo, hi, step, unit = RANGES[field]
    s = ZONE["properties"][field]
    assert (s["type"], s["minimum"], s["maximum"], s["multipleOf"]) == ("integer", lo, hi, step)
    # the firmware counts steps from the minimum: multipleOf says the same only if lo is on the grid
    assert lo % step == 0
    assert "%d..%d" % (lo, hi) in s["description"]


def test_the_dose_step_rule_is_the_firmwares():
    s = ZONE["properties"]["dose_nl"]
    assert s["if"] == {"minimum": FINE_DOSE_BELOW_NL}
    assert s["then"] == {"multipleOf": COARSE_DOSE_STEP_NL}
    assert (
        FINE_DOSE_BELOW_NL % COARSE_DOSE_STEP_NL == 0
        and RANGES["dose_nl"][0] % COARSE_DOSE_STEP_NL == 0
    )


def test_schema_sizes_and_keys_equal_the_firmwares():
    top = SCHEMA["properties"]
    assert tuple(top) == P.TOP_KEYS and tuple(ZONE["properties"]) == P.ZONE_KEYS
    assert SCHEMA["additionalProperties"] is False and ZONE["additionalProperties"] is False
    assert top["format"]["const"] == P.FORMAT
    assert top["name"]["maxLength"] == P.NAME_MAX and top["name"]["minLength"] == 1
    assert ZONE["properties"]["name"]["maxLength"] == P.ZONE_NAME_MAX
    assert top["version"]["maximum"] == P.VERSION_MAX
    assert top["notes"]["maxLength"] == P.NOTES_MAX
    assert (top["zones"]["minItems"], top["zones"]["maxItems"]) == (1, P.MAX_ZONES)
    assert tuple(ZONE["properties"]["technique"]["enum"]) == P.TECHNIQUE_NAMES
    assert set(P.TECHNIQUES) == set(P.TECHNIQUE_NAMES)
    ints, free = ZONE["properties"]["punctures"]["oneOf"]
    assert ints["maximum"] == P.PUNCTURES_MAX and free == {"const": P.FREE}
    # what only code checks is said in the description, with the firmware's numbers
    d = SCHEMA["description"]
    for fact in (
        "%d bytes" % P.MAX_FILE_BYTES,
        "%d protocols" % P.MAX_PROTOCOLS,
        "needle length",
        "case-insensitive",
        "session cap",
    ):
        assert fact in d, fact


def test_the_strict_integer_is_the_only_difference_from_a_plain_validator():
    doc = json.loads(EXAMPLES[0].read_text())
    doc["zones"][0]["depth_um"] = 1000.0
    assert jsonschema.Draft202012Validator(SCHEMA).is_valid(
        doc
    )  # the JSON data model: 1000.0 == 1000
    assert T.schema_problems(doc) == ["zones[0].depth_um: 1000.0 is not of type 'integer'"]
    assert P.check(doc, Limits())  # the device refuses a float


# ---- the shipped examples ------------------------------------------------------------


def test_there_are_examples():
    names = {p.stem for p in EXAMPLES}
    assert {"facial-skin-booster", "nappage-face-neck", "pain-low-back"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_is_valid_by_schema_and_device(path, sim):
    assert len(path.read_bytes()) <= P.MAX_FILE_BYTES
    doc = json.loads(path.read_text())
    assert T.schema_problems(doc) == []
    assert P.check(doc, Limits()) == []
    proto = P.parse(path.read_text(), Limits())
    assert doc["example"] is True
    assert "clinician" in doc["notes"] and "not a recommendation" in doc["notes"]
    assert sum(z["cap_nl"] for z in doc["zones"]) <= doc["session_cap_nl"]
    for z in proto.zones:  # the control core takes every zone's settings (nappage: the cycle fits)
        sim.core.configure(**z.settings)
        assert sim.core.settings.depth_um == z.settings["depth_um"]
        planned = z.planned * z.settings["dose_nl"]
        assert planned <= z.cap_nl, z.name


def _zones(stem):
    return {
        z["name"]: z
        for z in json.loads((ROOT / "protocols" / (stem + ".json")).read_text())["zones"]
    }


def test_the_examples_carry_the_published_figures():
    face = _zones("facial-skin-booster")
    assert sum(z["punctures"] for z in face.values()) == 100  # ~100 points (Seok)
    assert face["Malar L"]["dose_nl"] == 20_000 and face["Malar L"]["depth_um"] == 1000
    eye = [z for n, z in face.items() if n.startswith("Periorb")]
    assert len(eye) == 2 and all(z["depth_um"] <= 1000 for z in eye)  # eye area: at most 1 mm
    nap = _zones("nappage-face-neck")
    assert all(
        z["technique"] == "nappage" and z["dose_nl"] <= 5000 and z["shot_rate_mhz"] >= 2000
        for z in nap.values()
    )
    pain = _zones("pain-low-back")
    assert all(
        100_000 <= z["dose_nl"] <= 200_000 and 2000 <= z["depth_um"] <= 4000 and z["punctures"] <= 6
        for z in pain.values()
    )


def test_the_docs_list_every_example_and_cite_no_private_notes():
    md = (ROOT / "docs" / "protocols.md").read_text()
    assert "protocol.schema.json" in md and "not recommendations" in md
    for path in EXAMPLES:
        assert json.loads(path.read_text())["name"] in md, path
    for text in [
        md,
        *(p.read_text() for p in EXAMPLES),
        (ROOT / "docs" / "protocol.schema.json").read_text(),
    ]:
        assert "shared/" not in text and "treatment-figures" not in text


# ---- injector protocol validate ---------------------------------------------------------


def test_validate_a_good_file(capsys):
    code, out, err = run(capsys, "protocol", "validate", EXAMPLES[0])
    assert code == 0, err
    assert "valid:" in out and "the firmware's defaults" in out


def _doc():
    return json.loads((ROOT / "protocols" / "facial-skin-booster.json").read_text())


def _set(path, value):
    def f(root):
        *parents, last = path
        d = root
        for k in parents:
            d = d[k]
        d[last] = value
        return root

    return f


def _del(path):
    def f(root):
        *parents, last = path
        d = root
        for k in parents:
            d = d[k]
        del d[last]
        return root

    return f


BAD = [  # (name, change to the good document, fields every message must name)
    ("depth_out_of_range", _set(("zones", 0, "depth_um"), 7000), ["zones[0].depth_um:"]),
    ("depth_past_needle", _set(("zones", 1, "depth_um"), 4500), ["zones[1].depth_um:"]),
    ("dose_step", _set(("zones", 2, "dose_nl"), 20500), ["zones[2].dose_nl:"]),
    (
        "too_many_zones",
        lambda d: dict(d, zones=[dict(d["zones"][0], name="Z%d" % i) for i in range(13)]),
        ["zones:"],
    ),
    ("no_zones", _set(("zones",), []), ["zones:"]),
    ("duplicate_zone_names", _set(("zones", 2, "name"), "malar l"), ["zones[2].name:"]),
    ("zone_cap_over_session_cap", _set(("zones", 0, "cap_nl"), 2_000_001), ["zones[0].cap_nl:"]),
    (
        "wrong_types",
        lambda d: _set(("zones", 0, "punctures"), "20")(
            _set(("version",), "1")(_set(("example",), 1)(d))
        ),
        ["zones[0].punctures:", "version:", "example:"],
    ),
    ("float", _set(("session_cap_nl",), 2e6), ["session_cap_nl:"]),
    ("bool_is_not_int", _set(("zones", 0, "speed_um_s"), True), ["zones[0].speed_um_s:"]),
    (
        "unknown_keys",
        lambda d: _set(("zones", 3, "dose_ul"), 20)(_set(("author",), "x")(d)),
        ["zones[3].dose_ul:", "author:"],
    ),
    (
        "missing_keys",
        lambda d: _del(("zones", 0, "cap_nl"))(_del(("name",))(d)),
        ["zones[0].cap_nl:", "name:"],
    ),
    (
        "nappage_without_rate",
        _set(("zones", 0, "technique"), "nappage"),
        ["zones[0].shot_rate_mhz:"],
    ),
    (
        "long_names",
        lambda d: _set(("zones", 0, "name"), "Forehead cent")(
            _set(("name",), "Facial skin booster, v2 ok")(d)
        ),
        ["zones[0].name:", "name:"],
    ),
    ("non_ascii_name", _set(("zones", 0, "name"), "Stirn \u00fc"), ["zones[0].name:"]),
    ("not_an_object", lambda d: [d], ["protocol:"]),
]


@pytest.mark.parametrize("change,fields", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_validate_names_every_bad_field(capsys, tmp_path, change, fields):
    f = tmp_path / "p.json"
    f.write_text(json.dumps(change(_doc())))
    code, out, err = run(capsys, "protocol", "validate", f)
    assert code == 2 and out == ""
    assert "is invalid" in err
    for field in fields:
        assert re.search(r"^  %s" % re.escape(field), err, re.M), (field, err)


@pytest.mark.parametrize(
    "content,message",
    [
        ('{"format": 1, "name": "x",}', "json: not valid JSON"),
        (b"\xff\xfe{}", "json: not UTF-8 text"),
        (
            "[" + " " * P.MAX_FILE_BYTES + "]",
            "size: %d bytes is too large" % (P.MAX_FILE_BYTES + 2),
        ),
        (None, "file: cannot read"),
    ],
)
def test_validate_unreadable_files_exit_2_without_a_traceback(tmp_path, content, message):
    f = tmp_path / "p.json"
    if isinstance(content, bytes):
        f.write_bytes(content)
    elif content is not None:
        f.write_text(content)
    r = cli("protocol", "validate", f)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr + r.stdout


def test_validate_a_non_object_in_a_process_has_no_traceback(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps(BAD[-1][1](_doc())))
    r = cli("protocol", "validate", f)
    assert r.returncode == 2 and "protocol: " in r.stderr and "Traceback" not in r.stderr


def test_validate_uses_the_engineers_limits(capsys, tmp_path):
    pain = ROOT / "protocols" / "pain-low-back.json"
    code, out, err = run(capsys, "protocol", "validate", pain, "--needle-length-um", "2500")
    assert code == 2 and "zones[0].depth_um: 3000 is out of range" in err
    assert "needle 2500 um" in err and "--needle-length-um" in err
    code, out, err = run(capsys, "protocol", "validate", pain, "--session-cap-nl", "800000")
    assert code == 2 and "zones[0].cap_nl: 900000 nL is above the session cap of 800000 nL" in err
    code, out, err = run(capsys, "protocol", "validate", pain, "--needle-length-um", "50")
    assert code == 2 and "invalid limits: needle_length_um: 50 is out of range" in err
    # a device's stored record (here a folder holding settings.a)
    dev = tmp_path / "dev"
    dev.mkdir()
    rec = S.defaults()
    rec["limits"]["needle_length_um"] = 2000
    rec["settings"]["depth_um"] = 1000
    S.Store(DirFS(str(dev)), "settings").save(rec)
    code, out, err = run(capsys, "protocol", "validate", pain, "--limits-from", dev)
    assert code == 2 and "the record stored on %s" % dev in err
    code, out, err = run(
        capsys, "protocol", "validate", pain, "--limits-from", dev, "--needle-length-um", "4000"
    )
    assert code == 0, err
    code, out, err = run(capsys, "protocol", "validate", pain, "--limits-from", tmp_path / "nope")
    assert code == 2 and "no such folder" in err


def test_help_and_bare_command():
    r = cli("protocol")
    assert r.returncode == 2 and "usage: injector protocol" in r.stderr
    r = cli("protocol", "push", "--help")
    assert r.returncode == 0 and "interrupts the running main.py" in " ".join(r.stdout.split())


# ---- THE AGREEMENT TEST: the schema's verdict is the device's -------------------------------
# With a usable needle of 6000 um (the machine's maximum) the engineer limits add nothing
# to the schema's ranges; the generator keeps zone names unique and every zone cap within
# the effective session cap, the two rules the schema cannot state. Every other mutation
# (types, ranges, steps, missing and unknown keys, counts, lengths, characters) is fair game.

LIM = Limits(needle_length_um=6000, session_cap_nl=20_000_000)
PRINTABLE = "".join(chr(c) for c in range(32, 127))


def _grid(field):
    lo, hi, step, _ = RANGES[field]
    return st.integers(0, (hi - lo) // step).map(lambda k: lo + k * step)


dose_values = st.one_of(
    st.integers(0, 17).map(lambda k: 1000 + 500 * k), st.integers(10, 200).map(lambda k: 1000 * k)
)
names = st.text(PRINTABLE, min_size=1, max_size=P.ZONE_NAME_MAX).filter(lambda s: s.strip())


@st.composite
def zone(draw, name, cap_max):
    tech = draw(st.sampled_from(P.TECHNIQUE_NAMES))
    z = {
        "name": name,
        "technique": tech,
        "depth_um": draw(_grid("depth_um")),
        "dose_nl": draw(dose_values),
        "speed_um_s": draw(_grid("speed_um_s")),
        "rate_nl_s": draw(_grid("rate_nl_s")),
        "punctures": draw(st.one_of(st.just("free"), st.integers(1, P.PUNCTURES_MAX))),
        "cap_nl": draw(st.integers(1, cap_max)),
    }
    if tech == "nappage" or draw(st.booleans()):
        z["shot_rate_mhz"] = draw(_grid("shot_rate_mhz"))
    if draw(st.booleans()):
        z["suckback_nl"] = draw(_grid("suckback_nl"))
    return z


@st.composite
def valid_doc(draw):
    cap = draw(st.integers(1, 30_000_000))
    eff = min(cap, LIM.session_cap_nl)
    zone_names = draw(st.lists(names, min_size=1, max_size=P.MAX_ZONES, unique_by=str.lower))
    doc = {
        "format": 1,
        "name": draw(
            st.text(PRINTABLE, min_size=1, max_size=P.NAME_MAX).filter(lambda s: s.strip())
        ),
        "version": draw(st.integers(1, P.VERSION_MAX)),
        "session_cap_nl": cap,
        "zones": [draw(zone(n, eff)) for n in zone_names],
    }
    if draw(st.booleans()):
        doc["example"] = draw(st.booleans())
    if draw(st.booleans()):
        doc["notes"] = draw(st.text(max_size=P.NOTES_MAX))
    return doc


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**7), 10**7),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1000.0, 0.0, 1.0]),
    st.text(max_size=30),
    st.sampled_from(["free", "nappage", "point", ""]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
bad_text = st.one_of(
    st.text(min_size=0, max_size=40),  # any characters, any length, blank
    st.text(PRINTABLE, min_size=25, max_size=40),
    st.just(""),
    st.just("   "),
    st.just("tab\there"),
    st.just("caf\u00e9"),
    st.just("ok\n"),
)


def _no_cap_or_name_rule(key):
    """junk for a field whose value the cap relation or name uniqueness could bring into play."""
    if key in ("cap_nl", "session_cap_nl"):
        return junk.filter(lambda v: not (isinstance(v, int) and not isinstance(v, bool) and v > 0))
    if key == "name":
        return st.one_of(
            bad_text.filter(lambda s: P._text_problem(s, 1, P.ZONE_NAME_MAX)),
            junk.filter(lambda v: not isinstance(v, str)),
        )
    return st.one_of(junk, st.integers(-(10**6), 10**6))


@st.composite
def mutated_doc(draw):
    doc = draw(valid_doc())
    for _ in range(draw(st.integers(1, 3))):
        zones = doc.get("zones") if isinstance(doc, dict) else None
        target = doc
        if isinstance(zones, list) and zones and isinstance(zones[0], dict) and draw(st.booleans()):
            target = zones[draw(st.integers(0, len(zones) - 1))]
        if not isinstance(target, dict):
            break
        keys = P.ZONE_KEYS if target is not doc else P.TOP_KEYS
        kind = draw(st.sampled_from(["set", "delete", "extra", "zones", "text", "whole"]))
        if kind == "set":
            k = draw(st.sampled_from(keys))
            target[k] = draw(_no_cap_or_name_rule(k))
        elif kind == "delete" and target:
            del target[draw(st.sampled_from(sorted(target)))]
        elif kind == "extra":
            k = draw(st.text(max_size=12).filter(lambda s: s not in keys))  # noqa: B023  (drawn here)
            target[k] = draw(junk)
        elif kind == "text":
            k = "name" if target is not doc else draw(st.sampled_from(["name", "notes"]))
            if k == "notes":
                target[k] = draw(
                    st.one_of(
                        st.text(min_size=P.NOTES_MAX + 1, max_size=P.NOTES_MAX + 20),
                        junk.filter(lambda v: not isinstance(v, str)),
                    )
                )
            else:
                target[k] = draw(_no_cap_or_name_rule("name"))
        elif kind == "zones" and isinstance(zones, list):
            how = draw(st.sampled_from(["many", "none", "junk_zone", "not_a_list"]))
            if how == "many":
                eff = (
                    min(doc["session_cap_nl"], LIM.session_cap_nl)
                    if isinstance(doc.get("session_cap_nl"), int) and doc["session_cap_nl"] > 0
                    else 1
                )
                while len(zones) <= P.MAX_ZONES + draw(st.integers(0, 3)):
                    zones.append(draw(zone("Extra %d" % len(zones), max(1, eff))))
            elif how == "none":
                doc["zones"] = []
            elif how == "junk_zone" and zones:
                zones[draw(st.integers(0, len(zones) - 1))] = draw(junk)
            else:
                doc["zones"] = draw(junk.filter(lambda v: not isinstance(v, list)))
        elif kind == "whole":
            doc = draw(junk.filter(lambda v: not isinstance(v, dict)))
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_doc())
def test_generated_valid_protocols_pass_both(doc):
    assert json.loads(json.dumps(doc)) == doc
    assert T.schema_problems(doc) == []
    assert P.check(doc, LIM) == []


@settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(mutated_doc())
def test_the_schema_and_the_device_agree(doc):
    doc = json.loads(json.dumps(doc))  # a JSON document: what a file holds
    schema, device = T.schema_problems(doc), P.check(doc, LIM)
    assert (schema == []) == (device == []), (schema, device)


def test_the_agreement_generator_is_not_vacuous():
    """Both kinds of verdict occur, and every excluded rule is what the schema says it cannot do."""
    doc = _doc()
    doc["zones"][2]["name"] = "MALAR L"
    assert schema_ok(doc) and P.check(doc, LIM)  # uniqueness: code only
    doc = _doc()
    doc["zones"][0]["cap_nl"] = 2_000_001
    assert schema_ok(doc) and P.check(doc, LIM)  # cap relation: code only
    doc = _doc()
    doc["zones"][0]["depth_um"] = 5000
    assert schema_ok(doc) and not P.check(doc, LIM) and P.check(doc, Limits())  # needle: code only


# ---- push and pull --------------------------------------------------------------------------


def test_push_and_pull_commands():
    assert T.push_command(Path("/x/p.json"), "SNIPPET") == [
        "fs",
        "cp",
        "/x/p.json",
        ":" + T.PUSH_NAME,
        "+",
        "exec",
        "SNIPPET",
    ]
    assert T.pull_command("/tmp/d") == ["fs", "cp", "-r", ":protocols", "/tmp/d/"]
    snippet = T.DEVICE_SAVE % {"settings": "settings", "tmp": T.PUSH_NAME, "dir": "protocols"}
    compile(snippet, "snippet", "exec")
    assert 'Store(DirFS("/"), "settings").load()' in snippet
    assert (
        'ps = ProtocolStore(DirFS("/"), lim, "protocols")' in snippet and "ps.save(text)" in snippet
    )


def test_push_refuses_a_schema_error_before_connecting(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps(_set(("zones", 0, "depth_um"), 7000)(_doc())))
    r = cli("protocol", "push", f, "--port", str(tmp_path / "no-such-tty"))
    assert r.returncode == 2 and "nothing sent" in r.stderr and "zones[0].depth_um" in r.stderr
    assert "mpremote" not in r.stderr and "Traceback" not in r.stderr


def test_pull_from_a_missing_port_is_one_line(tmp_path):
    r = cli("protocol", "pull", "--port", str(tmp_path / "no-such-tty"), "--out", tmp_path / "o")
    assert r.returncode == 2 and "no-such-tty: no such device" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


PROTOCOL_CORE = ("__init__", "compat", "machine", "settings", "store", "fsio", "protocol", "codes")


@pytest.mark.micropython
def test_push_and_pull_over_the_virtual_board(tmp_path):
    from host_tools import mpy, vboard

    if not vboard.available():
        pytest.fail("node or the MicroPython npm package is missing: run `make test`")
    flash = tmp_path / "flash"
    lib = flash / "lib" / "injcore"
    lib.mkdir(parents=True)
    for name in PROTOCOL_CORE:
        mpy.portable_copy(ROOT / "firmware" / "injcore" / (name + ".py"), lib / (name + ".py"))
    rec = S.defaults()  # the device's engineer: a 2.5 mm usable needle
    rec["limits"]["needle_length_um"] = 2500
    S.Store(DirFS(str(flash)), "settings").save(rec)
    fs = DirFS(str(flash))
    ps = P.ProtocolStore(fs, Limits(needle_length_um=2500))
    base = _doc()
    for i in range(
        P.MAX_PROTOCOLS - 1
    ):  # 15 stored already (CPython's Store writes the same bytes)
        ps.save(dict(base, name="Stored %02d" % i))
    face = ROOT / "protocols" / "facial-skin-booster.json"
    pain = ROOT / "protocols" / "pain-low-back.json"
    with vboard.VirtualBoard(flash) as port:
        r = cli("protocol", "push", pain, "--port", port)  # 3 mm: past this device's needle
        assert r.returncode == 2, r.stdout + r.stderr
        assert (
            "the device refused" in r.stderr
            and "zones[0].depth_um: 3000 is out of range" in r.stderr
        )
        r = cli("protocol", "push", face, "--port", port)  # the 16th
        assert r.returncode == 0, r.stdout + r.stderr
        assert "saved to %s: 'Facial skin booster'" % port in r.stdout
        nappage = ROOT / "protocols" / "nappage-face-neck.json"
        fast = json.loads(nappage.read_text())
        fast["name"] = "Nappage at 10 a second"
        for z in fast["zones"]:  # 1 mm / 2 uL at 10/s: the 1 mL syringe's line only
            z.update(speed_um_s=50_000, rate_nl_s=100_000, shot_rate_mhz=10_000, suckback_nl=0)
        fast_file = tmp_path / "fast.json"
        fast_file.write_text(json.dumps(fast))
        r = cli("protocol", "push", fast_file, "--port", port)
        assert r.returncode == 2 and "nothing sent" in r.stderr, r.stderr
        assert "cannot run with the 10 mL syringe" in r.stderr
        r = cli("protocol", "push", nappage, "--port", port, "--syringe", "1")
        assert r.returncode == 2 and "16 protocols are stored already" in r.stderr, r.stderr
        out = tmp_path / "pulled"
        r = cli("protocol", "pull", "--port", port, "--out", out)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "pulled 16 protocols" in r.stdout
    files = sorted(out.glob("*.json"))
    assert len(files) == P.MAX_PROTOCOLS
    key = P.ProtocolStore.key("Facial skin booster")
    assert json.loads((out / (key + ".json")).read_text()) == json.loads(face.read_text())
    # written by MicroPython's ProtocolStore: readable by CPython's; no temp file left
    assert P.ProtocolStore(DirFS(str(flash)), Limits()).load(
        "Facial skin booster"
    ).as_dict() == json.loads(face.read_text())
    assert not (flash / T.PUSH_NAME).exists()
    assert sorted(P.ProtocolStore(fs, Limits()).names()) == sorted(
        ["Facial skin booster"] + ["Stored %02d" % i for i in range(15)]
    )
    r = cli("protocol", "validate", out / (key + ".json"))
    assert r.returncode == 0, r.stderr


@pytest.mark.micropython
@pytest.mark.hazard("H10")
def test_list_remove_and_versions_over_the_virtual_board(tmp_path):
    from host_tools import mpy, vboard

    if not vboard.available():
        pytest.fail("node or the MicroPython npm package is missing: run `make test`")
    flash = tmp_path / "flash"
    lib = flash / "lib" / "injcore"
    lib.mkdir(parents=True)
    for name in PROTOCOL_CORE:
        mpy.portable_copy(ROOT / "firmware" / "injcore" / (name + ".py"), lib / (name + ".py"))
    S.Store(DirFS(str(flash)), "settings").save(S.defaults())
    fs = DirFS(str(flash))
    ps = P.ProtocolStore(fs, Limits())
    for i in range(P.MAX_PROTOCOLS - 1):
        ps.save(dict(_doc(), name="Stored %02d" % i))
    face = ROOT / "protocols" / "facial-skin-booster.json"
    ps.save(face.read_text())  # 16: full
    nappage = ROOT / "protocols" / "nappage-face-neck.json"
    changed = json.loads(face.read_text())
    changed["zones"][0]["punctures"] = 7  # the same name and version, other contents
    changed_file = tmp_path / "changed.json"
    changed_file.write_text(json.dumps(changed))
    with vboard.VirtualBoard(flash) as port:
        r = cli("protocol", "push", nappage, "--port", port, "--syringe", "1")
        assert r.returncode == 2 and "16 protocols are stored already" in r.stderr, r.stderr
        assert "`injector protocol list --port %s` names them" % port in r.stderr
        r = cli("protocol", "list", "--port", port)
        assert r.returncode == 0, r.stderr
        assert "16 of 16 protocols stored on %s" % port in r.stdout
        assert re.search(r"Facial skin booster\s+version 1\s+6 zones", r.stdout), r.stdout
        r = cli("protocol", "remove", "nope", "--port", port)
        assert r.returncode == 2 and "no protocol 'nope' on %s; stored: " % port in r.stderr
        r = cli("protocol", "remove", "STORED 03", "--port", port)  # case aside
        assert r.returncode == 0 and "removed from %s: 'Stored 03'" % port in r.stdout, r.stderr
        r = cli("protocol", "push", nappage, "--port", port, "--syringe", "1")
        assert r.returncode == 0, r.stderr  # room again
        r = cli("protocol", "push", face, "--port", port)
        assert r.returncode == 0 and "unchanged: 'Facial skin booster' version 1" in r.stdout
        r = cli("protocol", "push", changed_file, "--port", port)
        assert r.returncode == 2, r.stdout
        assert "version: 'Facial skin booster' version 1 is stored with other contents" in r.stderr
        assert 'a changed protocol needs a new version: raise "version"' in r.stderr
    stored = P.ProtocolStore(fs, Limits())
    assert len(stored.names()) == 16 and "Stored 03" not in stored.names()
    assert stored.load("Facial skin booster").as_dict() == json.loads(face.read_text())


def test_decode_dir_reports_a_damaged_record(tmp_path):
    ps = P.ProtocolStore(DirFS(str(tmp_path)), Limits(), dir="")
    ps.save(_doc())
    (tmp_path / "junk-00000000.a").write_bytes(b"INJS garbage")
    found, problems = T.decode_dir(tmp_path)
    assert [obj["name"] for _, obj in found] == ["Facial skin booster"]
    assert problems == ["junk-00000000: no intact protocol record, skipped"]
    assert copy.deepcopy(found[0][1]) == _doc()
