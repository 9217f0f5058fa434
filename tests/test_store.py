"""The settings store (hazard H9 "settings or log lost or corrupted").

The key test is the power-cut sweep: from a store holding generation N, the
next save is cut at every byte it writes and before and after its rename;
after each cut the store must load exactly the old or the new record.
"""

import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host_tools import mpy
from host_tools.simfs import PowerCut, SimFS
from injcore import machine as M
from injcore import persist
from injcore import store as S
from injcore.fsio import DirFS
from injcore.settings import SettingsError
from sim.session import Simulator

NAME = "cfg/settings"


def payload(i=0):
    """A valid payload that differs per i (depth, dose, PIN, calibration)."""
    p = S.defaults()
    p["settings"]["depth_um"] = 500 + 100 * (i % 30)
    p["settings"]["dose_nl"] = 10_000 + 1000 * (i % 50)
    p["limits"]["session_cap_nl"] = 1_000_000 + 1000 * i
    p["calibration"]["backlash_steps"] = 10 + i
    p["service_pin"] = "%04d" % (1000 + i)
    return p


def store_with(n_saves):
    fs = SimFS()
    st_ = S.Store(fs, NAME)
    for i in range(1, n_saves + 1):
        st_.save(payload(i))
    return fs


# --- CRC ---------------------------------------------------------------------------


@given(st.binary(max_size=300), st.integers(0, 0xFFFFFFFF))
def test_soft_crc32_matches_zlib(data, start):
    assert S.crc32_soft(data, start) == zlib.crc32(data, start)
    assert S.crc32(data, start) == zlib.crc32(data, start)


def test_crc32_check_value():
    assert S.crc32_soft(b"123456789") == 0xCBF43926


# --- SimFS itself ------------------------------------------------------------------


def test_simfs_cut_keeps_the_prefix_and_renames_are_all_or_nothing():
    fs = SimFS()
    with fs.open("x", "wb") as f:
        f.write(b"old")
    fs.reset_counters()
    fs.cut_after(n_bytes=3)
    with pytest.raises(PowerCut):
        with fs.open("y", "wb") as f:
            f.write(b"new!")
    with pytest.raises(PowerCut):
        fs.listdir()  # the device is off
    fs = fs.after_cut()
    assert fs.files() == {"x": b"old", "y": b"ne"}
    fs.cut_after(n_renames=1)
    with pytest.raises(PowerCut):
        fs.rename("y", "x")
    fs = fs.after_cut()
    assert fs.files() == {"x": b"old", "y": b"ne"}
    fs.cut_after(n_renames=1, rename_happens=True)
    with pytest.raises(PowerCut):
        fs.rename("y", "x")
    fs = fs.after_cut()
    assert fs.files() == {"x": b"ne"} and fs.stat("x")[6] == 2 == fs.size("x")
    with fs.open("x", "ab") as f:
        f.write(b"w")
    assert fs.read_bytes("x") == b"new" and fs.counters()["bytes"] == 1
    assert fs.listdir() == ["x"] and not fs.exists("y")


# --- round trip and generations ------------------------------------------------------


@pytest.mark.hazard("H9")
def test_round_trip():
    fs = SimFS()
    s = S.Store(fs, NAME)
    assert s.save(payload(1)) == ("a", 1)
    got, info = S.Store(fs, NAME).load()
    assert got == payload(1)
    assert info == {
        "slot": "a",
        "generation": 1,
        "defaults": False,
        "migrated_from": None,
        "problems": {"b": "missing"},
    }


@pytest.mark.hazard("H9")
def test_two_generations_kept_and_newest_wins():
    fs = SimFS()
    s = S.Store(fs, NAME)
    assert [s.save(payload(i)) for i in (1, 2, 3, 4)] == [("a", 1), ("b", 2), ("a", 3), ("b", 4)]
    assert sorted(fs.listdir("cfg")) == ["settings.a", "settings.b"]
    found = s.scan()
    assert found["a"][:2] == (3, payload(3)) and found["b"][:2] == (4, payload(4))
    got, info = s.load()
    assert got == payload(4) and info["slot"] == "b" and info["generation"] == 4


@pytest.mark.hazard("H9")
def test_corrupt_newest_loads_the_older():
    fs = store_with(4)
    data = bytearray(fs.read_bytes(NAME + ".b"))
    data[40] ^= 0x01
    fs.write_bytes(NAME + ".b", data)
    got, info = S.Store(fs, NAME).load()
    assert got == payload(3) and info["slot"] == "a" and info["generation"] == 3
    assert info["problems"] == {"b": "CRC mismatch"}
    # the next save replaces the corrupt slot and keeps the good one
    assert S.Store(fs, NAME).save(payload(5)) == ("b", 4)
    assert S.Store(fs, NAME).load()[0] == payload(5)
    assert S.Store(fs, NAME).read_slot("a")[:2] == (3, payload(3))


@pytest.mark.hazard("H9")
def test_every_single_bit_flip_of_the_newest_is_caught():
    fs = store_with(2)
    good = fs.read_bytes(NAME + ".b")
    for i in range(len(good) * 8):
        data = bytearray(good)
        data[i // 8] ^= 1 << (i % 8)
        fs.write_bytes(NAME + ".b", data)
        got, info = S.Store(fs, NAME).load()
        assert (got, info["generation"]) == (payload(1), 1), "bit %d" % i


@pytest.mark.hazard("H9")
def test_both_corrupt_gives_defaults_flagged():
    fs = store_with(2)
    fs.write_bytes(NAME + ".a", b"\x00" * 50)
    fs.write_bytes(NAME + ".b", fs.read_bytes(NAME + ".b")[:-1])
    got, info = S.Store(fs, NAME).load()
    assert got == S.defaults()
    assert info["defaults"] is True and info["slot"] is None and info["generation"] == 0
    assert set(info["problems"]) == {"a", "b"}
    assert S.Store(SimFS(), NAME).load() == (
        S.defaults(),
        {
            "slot": None,
            "generation": 0,
            "defaults": True,
            "migrated_from": None,
            "problems": {"a": "missing", "b": "missing"},
        },
    )


def _header(body, schema=S.SCHEMA_VERSION, generation=1, length=None):
    head = struct.pack(
        "<4sHII", S.MAGIC, schema, generation, len(body) if length is None else length
    )
    return head + struct.pack("<I", zlib.crc32(body, zlib.crc32(head))) + body


@pytest.mark.hazard("H9")
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    a=st.binary(max_size=400),
    b=st.binary(max_size=400),
    tmp=st.binary(max_size=50),
    magic_b=st.booleans(),
)
def test_garbage_files_never_raise(a, b, tmp, magic_b):
    fs = SimFS()
    fs.write_bytes(NAME + ".a", a)
    fs.write_bytes(NAME + ".b", (S.MAGIC + b) if magic_b else b)
    fs.write_bytes(NAME + ".tmp", tmp)
    got, info = S.Store(fs, NAME).load()
    assert got == S.defaults() and info["defaults"]
    S.Store(fs, NAME).save(payload(1))  # and a save over garbage works
    assert S.Store(fs, NAME).load()[0] == payload(1)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)


def _near_payload():
    """Payloads close to valid: one entry replaced by arbitrary JSON."""
    return st.tuples(
        st.sampled_from(["settings", "limits", "calibration", "service_pin", "x"]),
        st.one_of(
            st.sampled_from(["depth_um", "needle_length_um", "backlash_steps", None]),
            st.text(max_size=5),
        ),
        JSON,
    )


@pytest.mark.hazard("H9")
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(value=JSON, near=_near_payload(), schema=st.integers(0, 4))
def test_records_with_good_crc_but_bad_content_never_raise(value, near, schema):
    fs = SimFS()
    fs.write_bytes(NAME + ".a", _header(S.encode(value).encode(), schema=schema))
    p = payload(1)
    top, key, v = near
    if key is not None and isinstance(p.get(top), dict):
        p[top][key] = v
    else:
        p[top] = v
    fs.write_bytes(NAME + ".b", _header(S.encode(p).encode(), generation=2))
    got, info = S.Store(fs, NAME).load()
    for slot in ("a", "b"):
        r = S.Store(fs, NAME).read_slot(slot)
        assert isinstance(r, str) or S.validate(r[1]) == []
    assert info["defaults"] or S.validate(got) == []
    # raw bytes that are not even UTF-8 / JSON behind a good CRC
    fs.write_bytes(NAME + ".a", _header(b'\xff{"a":'))
    assert S.Store(fs, NAME).read_slot("a") == "payload is not JSON"


# --- migration, newer schema, out-of-range values ----------------------------------


def v1_payload():
    flat = dict(payload(7)["settings"])
    flat.update(payload(7)["limits"])
    flat["service_pin"] = "0420"
    return flat


@pytest.mark.hazard("H9")
def test_migration_v1_to_v2():
    fs = SimFS()
    fs.write_bytes(NAME + ".a", S.pack(v1_payload(), 9, schema=1))
    got, info = S.Store(fs, NAME).load()
    want = payload(7)
    want["service_pin"] = "0420"
    want["calibration"] = dict(S.CALIBRATION_DEFAULTS)
    assert got == want
    assert info["migrated_from"] == 1 and info["generation"] == 9 and info["slot"] == "a"
    # saving keeps the migration: generation 10, the current schema, the v1 file kept as the
    # older one
    assert S.Store(fs, NAME).save(got) == ("b", 10)
    got2, info2 = S.Store(fs, NAME).load()
    assert got2 == want and info2["migrated_from"] is None
    assert struct.unpack("<H", fs.read_bytes(NAME + ".b")[4:6]) == (S.SCHEMA_VERSION,)


@pytest.mark.hazard("H9")
@pytest.mark.parametrize("model", [3, 0])
def test_schema_2_syringe_ml_is_read_as_the_syringe_model(model):
    """Schema 2 named the syringe setting syringe_ml; its value is the model id, unchanged."""
    old = payload(4)
    del old["settings"]["syringe_model"]
    old["settings"]["syringe_ml"] = model
    fs = SimFS()
    fs.write_bytes(NAME + ".a", S.pack(old, 5, schema=2))
    got, info = S.Store(fs, NAME).load()
    want = payload(4)
    want["settings"]["syringe_model"] = model
    assert got == want and info["migrated_from"] == 2


@pytest.mark.hazard("H9")
def test_schema_1_syringe_ml_survives_both_migrations():
    flat = v1_payload()
    del flat["syringe_model"]
    flat["syringe_ml"] = 10
    fs = SimFS()
    fs.write_bytes(NAME + ".a", S.pack(flat, 2, schema=1))
    got, info = S.Store(fs, NAME).load()
    assert got["settings"]["syringe_model"] == 10 and "syringe_ml" not in got["settings"]
    assert info["migrated_from"] == 1 and S.validate(got) == []


@pytest.mark.hazard("H9")
def test_schema_3_gains_the_line_time_constant_at_its_default():
    """Schema 3 had no line_tau_us: the migration adds the default, nothing else changes."""
    old = payload(6)
    del old["calibration"]["line_tau_us"]
    fs = SimFS()
    fs.write_bytes(NAME + ".a", S.pack(old, 8, schema=3))
    got, info = S.Store(fs, NAME).load()
    assert got == payload(6) and got["calibration"]["line_tau_us"] == M.LINE_TAU_ESTIMATE
    assert info["migrated_from"] == 3 and S.validate(got) == []
    assert S.Store(fs, NAME).save(got) == ("b", 9)  # the device stores it again, as schema 4
    got2, info2 = S.Store(fs, NAME).load()
    assert got2 == got and info2["migrated_from"] is None
    assert struct.unpack("<H", fs.read_bytes(NAME + ".b")[4:6]) == (4,)


@pytest.mark.hazard("H9")
def test_a_measured_line_time_constant_survives_the_store(sim):
    core = sim.core
    core.set_line_tau(42_300)
    fs = SimFS()
    S.Store(fs, NAME).save(persist.snapshot(core, (2, 5, 8, 0)))
    got, info = S.Store(fs, NAME).load()
    assert got["calibration"]["line_tau_us"] == 42_300 and not info["migrated_from"]
    fresh = Simulator(trace=False).core
    assert fresh.line_tau_stored == M.LINE_TAU_ESTIMATE
    assert persist.restore(fresh, got) == ((2, 5, 8, 0), [])
    assert fresh.line_tau_us == 42_300
    bad = dict(got, calibration=dict(got["calibration"], line_tau_us=M.LINE_TAU_MAX_US + 1))
    pin, problems = persist.restore(fresh, bad)
    assert fresh.line_tau_us == 42_300 and problems[0].startswith("calibration: ")


def test_missing_calibration_keys_get_defaults():
    p = payload(1)
    del p["calibration"]["backlash_steps"]
    fs = SimFS()
    fs.write_bytes(NAME + ".a", S.pack(p, 1))
    assert S.Store(fs, NAME).load()[0]["calibration"]["backlash_steps"] == 64


@pytest.mark.hazard("H9")
def test_newer_schema_is_refused_and_reported():
    fs = store_with(1)  # gen 1 in a
    fs.write_bytes(NAME + ".b", S.pack(payload(2), 2, schema=S.SCHEMA_VERSION + 1))
    got, info = S.Store(fs, NAME).load()
    assert got == payload(1) and info["slot"] == "a"
    assert info["problems"]["b"] == "schema %d is newer than this firmware's %d" % (
        S.SCHEMA_VERSION + 1,
        S.SCHEMA_VERSION,
    )
    fs.remove(NAME + ".a")
    got, info = S.Store(fs, NAME).load()
    assert info["defaults"] and "newer" in info["problems"]["b"]
    fs.write_bytes(NAME + ".a", S.pack(payload(1), 1, schema=0))
    assert S.Store(fs, NAME).load()[1]["problems"]["a"] == "no migration from schema 0"


@pytest.mark.hazard("H9")
def test_out_of_range_values_refused_with_messages():
    bad = payload(1)
    bad["settings"]["depth_um"] = 99_000
    bad["limits"]["occlusion_kpa"] = 5
    bad["service_pin"] = "12a4"
    problems = S.validate(bad)
    assert any(p.startswith("settings.depth_um: 99000 is out of range") for p in problems)
    assert any(p.startswith("limits.occlusion_kpa: 5 is out of range") for p in problems)
    assert "service_pin: not 4 digits" in problems
    # a depth within the machine but beyond the stored needle limit (H11 via the limits)
    deep = payload(1)
    deep["limits"]["needle_length_um"] = 1000
    deep["settings"]["depth_um"] = 2000
    assert any("depth_um: 2000" in p for p in S.validate(deep))
    # refused on save: nothing written
    fs = store_with(1)
    before = fs.files()
    with pytest.raises(SettingsError) as e:
        S.Store(fs, NAME).save(bad)
    assert e.value.problems == problems and fs.files() == before
    # a file holding them (good CRC) is skipped with the messages, not applied
    fs.write_bytes(NAME + ".b", S.pack(bad, 2))
    got, info = S.Store(fs, NAME).load()
    assert got == payload(1) and info["generation"] == 1
    assert info["problems"]["b"].startswith("invalid: limits.occlusion_kpa: 5 is out of range")
    assert "settings.depth_um: 99000 is out of range" in info["problems"]["b"]
    assert S.validate(S.defaults()) == [] and S.validate([]) == ["payload: not a dict"]
    assert "settings.bogus: unknown setting" in S.validate(
        dict(payload(1), settings=dict(payload(1)["settings"], bogus=1))
    )


def test_floats_are_not_stored():
    p = payload(1)
    p["calibration"]["dose_factor_ppm"] = 1.5
    with pytest.raises(SettingsError):
        S.Store(SimFS(), NAME).save(p)
    with pytest.raises(ValueError):
        S.encode({"x": 1.5})


# --- THE KEY TEST: power cut at every byte and at the rename -----------------------


def sweep(fs0, new):
    """Cut the save of `new` on a copy of fs0 at every byte and around every rename.

    Returns the number of cut points tested. After each cut the store loads
    exactly the old record (what fs0 loads) or, once the rename happened, the
    new one; and a save after the reboot works.
    """
    old, old_info = S.Store(fs0.clone(), NAME).load()
    probe = fs0.clone()
    slot, gen = S.Store(probe, NAME).save(new)
    n = probe.counters()
    assert n["renames"] == 1 and n["removes"] == 0 and n["bytes"] > S.HEADER_SIZE
    assert gen == old_info["generation"] + 1
    cuts = [dict(n_bytes=i) for i in range(1, n["bytes"] + 1)]
    for k in range(1, n["renames"] + 1):
        cuts += [dict(n_renames=k), dict(n_renames=k, rename_happens=True)]
    for cut in cuts:
        fs = fs0.clone()
        fs.cut_after(**cut)
        with pytest.raises(PowerCut):
            S.Store(fs, NAME).save(new)
        fs = fs.after_cut()
        got, info = S.Store(fs, NAME).load()
        if cut.get("rename_happens"):
            assert (got, info["generation"], info["slot"]) == (new, gen, slot), cut
        else:
            assert (got, info) == (old, old_info), cut
        # the device comes back and saves again: the next generation lands
        s2, g2 = S.Store(fs, NAME).save(payload(99))
        got, info = S.Store(fs, NAME).load()
        assert got == payload(99) and info["generation"] == g2 and not info["problems"].get(s2)
    return len(cuts)


@pytest.mark.hazard("H9")
@pytest.mark.parametrize("saved", [0, 1, 2, 5])
def test_power_cut_at_every_byte_and_rename_keeps_old_or_new(saved):
    fs0 = store_with(saved)
    cuts = sweep(fs0, payload(50))
    assert cuts > 200  # every byte of a ~300-byte record plus the rename before/after


@pytest.mark.hazard("H9")
def test_power_cut_sweep_with_the_older_slot_corrupt_and_a_stale_tmp():
    fs0 = store_with(3)  # a=3, b=2
    fs0.write_bytes(NAME + ".b", b"INJS garbage")
    fs0.write_bytes(NAME + ".tmp", S.pack(payload(40), 77)[:30])  # left by an earlier cut
    assert S.Store(fs0, NAME).load()[0] == payload(3)
    assert sweep(fs0, payload(51)) > 200


# --- the device adaptor on CPython and on the real MicroPython ----------------------


@pytest.mark.hazard("H9")
def test_dirfs_round_trip_on_cpython(tmp_path):
    fs = DirFS(str(tmp_path))
    fs.mkdir("cfg")
    s = S.Store(fs, NAME)
    for i in (1, 2, 3):
        s.save(payload(i))
    assert sorted(fs.listdir("cfg")) == ["settings.a", "settings.b"]
    got, info = S.Store(DirFS(str(tmp_path) + "/"), NAME).load()
    assert got == payload(3) and info["generation"] == 3
    assert (tmp_path / "cfg" / "settings.a").read_bytes() == S.pack(payload(3), 3)


MP_SCRIPT = """
import os, binascii
from injcore import store as S
from injcore.fsio import DirFS
print('native', S._native_crc32 is not None, getattr(binascii, '__file__', 'builtin'))
print('check', S.crc32(b'123456789'), S.crc32_soft(b'123456789'),
      S.crc32_soft(b'6789', S.crc32_soft(b'12345')))
os.mkdir('/data')
fs = DirFS('/data')
fs.mkdir('cfg')
s = S.Store(fs, 'cfg/settings')
p = S.defaults()
p['settings']['depth_um'] = 1500
p['service_pin'] = '0420'
print('save', s.save(S.defaults()), s.save(p))
got, info = S.Store(DirFS('/data'), 'cfg/settings').load()
print('same', got == p, info['slot'], info['generation'], info['defaults'])
print('files', sorted(fs.listdir('cfg')))
with fs.open('cfg/settings.b', 'rb') as f:
    data = f.read()
print('hex', binascii.hexlify(data).decode())
print('soft', S.crc32_soft(data[18:], S.crc32_soft(data[:14])),
      S.crc32(data[18:], S.crc32(data[:14])))
with fs.open('cfg/settings.b', 'wb') as f:
    f.write(data[:-3])
got, info = S.Store(fs, 'cfg/settings').load()
print('fallback', got == S.defaults(), info['slot'], info['generation'], info['problems']['b'])
"""


@pytest.mark.micropython
@pytest.mark.hazard("H9")
def test_store_on_micropython_matches_cpython():
    if not mpy.available():
        pytest.fail("MicroPython (npm) is not installed: run `make test`, which installs it")
    out = dict(line.split(" ", 1) for line in mpy.run_with_core(MP_SCRIPT).splitlines())
    check = zlib.crc32(b"123456789")
    assert out["check"].split() == [str(check)] * 2 + [str(check)]
    p = S.defaults()
    p["settings"]["depth_um"] = 1500
    p["service_pin"] = "0420"
    assert out["save"] == "('a', 1) ('b', 2)"
    assert out["same"] == "True b 2 False"
    assert out["files"] == "['settings.a', 'settings.b']"
    want = S.pack(p, 2)
    assert bytes.fromhex(out["hex"]) == want  # byte-identical record, CRC included
    crc = struct.unpack("<I", want[14:18])[0]
    assert out["soft"].split() == [str(crc), str(crc)]
    assert out[
        "fallback"
    ] == "True a 1 length 484 does not match the file (481 bytes of payload)".replace(
        "484", str(len(want) - 18)
    ).replace("481", str(len(want) - 21))
