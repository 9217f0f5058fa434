"""Atomic, versioned, two-generation record store for what the device keeps (H9).

A record is one file:

    offset size  field
    0      4     magic b"INJS"
    4      2     schema version (u16, little-endian): SCHEMA_VERSION of the payload
    6      4     generation (u32): 1 for the first save, +1 per save
    10     4     payload length in bytes (u32)
    14     4     CRC-32 (IEEE, as zlib.crc32) over bytes 0..13 and the payload
    18     n     payload: canonical JSON (sorted keys, no spaces, integers only)

`Store.save` writes NAME.tmp, closes it, then renames it over the slot that
does not hold the newest valid record (NAME.a / NAME.b), so the newest record
is never touched and, after the second save, two generations exist. A power cut
at any point leaves either the old or the new record readable (the rename is
atomic on littlefs and POSIX). `Store.load` never raises: it returns the
newest valid record, migrated up to SCHEMA_VERSION, or the defaults, with an
info dict saying which.

The device stores (schema 4):

    {"settings":    Settings.as_dict(),
     "limits":      {"needle_length_um", "session_cap_nl", "occlusion_kpa"},
     "calibration": {"dose_factor_ppm", "backlash_steps", "line_tau_us"},
     "service_pin": "NNNN"}  (4 digits, a string so "0123" keeps its zero)

Schema 1 kept settings, limits and the PIN in one flat dict (no calibration);
MIGRATIONS[1] lifts it to 2. Schema 2 named the syringe setting syringe_ml; the
model ids kept its values (sizes in mL then), so MIGRATIONS[2] only renames it
syringe_model. Schema 3 had no line_tau_us (the line's time constant pressure
advance plans with, Core.set_line_tau): MIGRATIONS[3] adds the default. Runs
in the main loop while idle: it may allocate, but it must not import machine.
"""

import json
import struct

from . import machine as M
from .settings import FIELDS, Limits, Settings, SettingsError, is_int, problems_in, refusal_text

try:
    from binascii import crc32 as _native_crc32  # CPython; the rp2 port usually lacks it
except ImportError:  # pragma: no cover - device builds without binascii.crc32
    _native_crc32 = None

MAGIC = b"INJS"
SCHEMA_VERSION = 4
HEADER = "<4sHIII"  # magic, schema, generation, length, crc
HEADER_SIZE = 18
MAX_PAYLOAD = 8192  # a record is well under 1 KiB; bigger files are not read
SLOTS = ("a", "b")

LIMIT_FIELDS = ("needle_length_um", "session_cap_nl", "occlusion_kpa")
CALIBRATION_DEFAULTS = {
    "dose_factor_ppm": M.DOSE_FACTOR_ONE_PPM,  # delivered / counted volume (Core.set_calibration)
    "backlash_steps": M.um_to_plunger_steps(M.PLUNGER_BACKLASH_UM),  # Core.set_backlash
    # Pressure advance's time constant (Core.set_line_tau): measured, or the estimate
    "line_tau_us": M.LINE_TAU_ESTIMATE,
}
DEFAULT_SERVICE_PIN = "2580"  # the engineer changes it (ui.screens); kept with the settings


# --- CRC-32 ------------------------------------------------------------------
def crc32_soft(data, crc=0):
    """CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320), bit by bit: no table."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0xEDB88320
            else:
                crc >>= 1
    return crc ^ 0xFFFFFFFF


def crc32(data, crc=0):
    if _native_crc32 is not None:
        return _native_crc32(data, crc) & 0xFFFFFFFF
    return crc32_soft(data, crc)


# --- canonical JSON ------------------------------------------------------------
def encode(value):
    """Canonical JSON text of ints, strs, bools, None, lists and dicts (sorted keys).

    The same bytes on CPython and MicroPython (whose json has no sort_keys);
    floats are refused: everything is an integer in its unit.
    """
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(encode(v) for v in value) + "]"
    if isinstance(value, dict):
        parts = []
        for k in sorted(value):
            if not isinstance(k, str):
                raise ValueError("store: key %r is not a string" % (k,))
            parts.append(json.dumps(k) + ":" + encode(value[k]))
        return "{" + ",".join(parts) + "}"
    raise ValueError(
        "store: %r cannot be stored (integers, strings, lists and dicts only)" % (value,)
    )


def pack(payload, generation, schema=SCHEMA_VERSION):
    """The record file's bytes."""
    body = encode(payload).encode()
    head = struct.pack("<4sHII", MAGIC, schema, generation, len(body))
    return head + struct.pack("<I", crc32(body, crc32(head))) + body


def unpack(data):
    """(schema, generation, payload) of record bytes, or a str saying why not."""
    if len(data) < HEADER_SIZE:
        return "short file (%d bytes)" % len(data)
    magic, schema, generation, length, crc = struct.unpack(HEADER, data[:HEADER_SIZE])
    if magic != MAGIC:
        return "not a record (bad magic)"
    if length != len(data) - HEADER_SIZE:
        return "length %d does not match the file (%d bytes of payload)" % (
            length,
            len(data) - HEADER_SIZE,
        )
    body = data[HEADER_SIZE:]
    if crc32(body, crc32(data[:14])) != crc:
        return "CRC mismatch"
    try:
        payload = json.loads(body.decode())
    except Exception:  # ValueError, UnicodeError, ...: the CRC was right but the text is not JSON
        return "payload is not JSON"
    return schema, generation, payload


# --- the device's schema ---------------------------------------------------------
def defaults():
    lim = Limits()
    return {
        "settings": Settings().as_dict(),
        "limits": {name: getattr(lim, name) for name in LIMIT_FIELDS},
        "calibration": dict(CALIBRATION_DEFAULTS),
        "service_pin": DEFAULT_SERVICE_PIN,
    }


# Settings renamed by schema 3: their name now -> their name in schemas 1 and 2.
_NAMES_BEFORE_3 = {"syringe_model": "syringe_ml"}


def _v1_to_v2(old):
    """Schema 1: one flat dict of settings, limits and service_pin -> nested schema 2."""
    d = defaults()
    new = {
        "settings": {},
        "limits": {},
        "calibration": d["calibration"],
        "service_pin": old.get("service_pin", DEFAULT_SERVICE_PIN),
    }
    for name in FIELDS:
        was = _NAMES_BEFORE_3.get(name, name)  # schema 2 keeps the old name; _v2_to_v3 renames
        new["settings"][was] = old.get(was, d["settings"][name])
    for name in LIMIT_FIELDS:
        new["limits"][name] = old.get(name, d["limits"][name])
    return new


def _v2_to_v3(old):
    """Schema 2 -> 3: the renamed settings under their new names, values unchanged."""
    s = old.get("settings") if isinstance(old, dict) else None
    if isinstance(s, dict):
        for now, was in _NAMES_BEFORE_3.items():
            if was in s:
                s[now] = s.pop(was)
    return old


def _v3_to_v4(old):
    """Schema 3 -> 4: the calibration gains line_tau_us, at its default (no measurement)."""
    cal = old.get("calibration") if isinstance(old, dict) else None
    if isinstance(cal, dict) and "line_tau_us" not in cal:
        cal["line_tau_us"] = CALIBRATION_DEFAULTS["line_tau_us"]
    return old


# old schema version -> function giving the payload of the next version
MIGRATIONS = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}


def normalize(payload):
    """Fill calibration keys a record predates with their defaults (in place)."""
    if isinstance(payload, dict) and isinstance(payload.get("calibration"), dict):
        cal = payload["calibration"]
        for k in CALIBRATION_DEFAULTS:
            if k not in cal:
                cal[k] = CALIBRATION_DEFAULTS[k]
    return payload


def validate(payload):  # noqa: C901  (one check per payload field, each with its own message)
    """Every problem of a payload of SCHEMA_VERSION, one message each; [] if it may be applied."""
    if not isinstance(payload, dict):
        return ["payload: not a dict"]
    problems = []
    for key in ("settings", "limits", "calibration", "service_pin"):
        if key not in payload:
            problems.append("%s: missing" % key)
    for key in payload:
        if key not in ("settings", "limits", "calibration", "service_pin"):
            problems.append("%s: unknown entry" % (key,))

    limits = Limits()
    lim = payload.get("limits")
    if "limits" in payload:
        if not isinstance(lim, dict):
            problems.append("limits: not a dict")
        else:
            missing = [n for n in LIMIT_FIELDS if n not in lim]
            extra = [n for n in lim if n not in LIMIT_FIELDS]
            for n in missing:
                problems.append("limits.%s: missing" % n)
            for n in extra:
                problems.append("limits.%s: unknown limit" % (n,))
            if not missing:
                cand = Limits(**{n: lim[n] for n in LIMIT_FIELDS})
                try:
                    cand.check()
                    limits = cand
                except SettingsError as e:
                    problems.extend("limits." + p for p in e.problems)

    s = payload.get("settings")
    if "settings" in payload:
        if not isinstance(s, dict):
            problems.append("settings: not a dict")
        else:
            missing = [n for n in FIELDS if n not in s]
            for n in missing:
                problems.append("settings.%s: missing" % n)
            for n in s:
                if n not in FIELDS:
                    problems.append("settings.%s: unknown setting" % (n,))
            if not missing:
                problems.extend("settings." + refusal_text(r) for r in problems_in(s, limits))

    cal = payload.get("calibration")
    if "calibration" in payload:
        if not isinstance(cal, dict):
            problems.append("calibration: not a dict")
        else:
            for n in sorted(cal):
                if not is_int(cal[n]):
                    problems.append("calibration.%s: %r is not an integer" % (n, cal[n]))

    pin = payload.get("service_pin")
    if "service_pin" in payload:
        if not (isinstance(pin, str) and len(pin) == 4 and all(c in "0123456789" for c in pin)):
            problems.append("service_pin: not 4 digits")
    return problems


# --- the store -----------------------------------------------------------------------
class Store:
    """Two slot files NAME.a / NAME.b and a scratch NAME.tmp on `fs` (fsio.DirFS or a SimFS)."""

    def __init__(
        self, fs, name, schema=SCHEMA_VERSION, migrations=None, check=None, make_defaults=None
    ):
        self.fs = fs
        self.name = name
        self.schema = schema
        self.migrations = MIGRATIONS if migrations is None else migrations
        self.check = validate if check is None else check
        self.make_defaults = defaults if make_defaults is None else make_defaults

    def slot_path(self, slot):
        return "%s.%s" % (self.name, slot)

    def _read(self, path):
        """The file's bytes, or a str saying why not (never raises for a missing/odd file)."""
        try:
            if not self.fs.exists(path):
                return "missing"
            size = self.fs.size(path)
            if size > HEADER_SIZE + MAX_PAYLOAD:
                return "too large (%d bytes)" % size
            with self.fs.open(path, "rb") as f:
                return f.read()
        except OSError as e:
            return "unreadable (%r)" % (e,)

    def read_slot(self, slot):
        """(generation, payload, migrated_from) of a valid slot, or a str saying why not."""
        data = self._read(self.slot_path(slot))
        if isinstance(data, str):
            return data
        try:
            got = unpack(data)
            if isinstance(got, str):
                return got
            schema, generation, payload = got
            if schema > self.schema:
                return "schema %d is newer than this firmware's %d" % (schema, self.schema)
            migrated = None
            while schema < self.schema:
                step = self.migrations.get(schema)
                if step is None:
                    return "no migration from schema %d" % schema
                if migrated is None:
                    migrated = schema
                payload = step(payload)
                schema += 1
            if self.check is validate:
                normalize(payload)
            problems = self.check(payload)
            if problems:
                return "invalid: " + "; ".join(problems)
            return generation, payload, migrated
        except Exception as e:  # a record that passed its CRC yet breaks a migration or check
            return "unusable payload (%r)" % (e,)

    def scan(self):
        """{slot: (generation, payload, migrated_from) or reason} for both slots."""
        return {slot: self.read_slot(slot) for slot in SLOTS}

    @staticmethod
    def _newest(found):
        best = None
        for slot in SLOTS:
            r = found[slot]
            if not isinstance(r, str) and (best is None or r[0] > found[best][0]):
                best = slot
        return best

    def load(self):
        """(payload, info); never raises.

        info: slot ("a"/"b", None for defaults), generation (0 for defaults),
        defaults (True when no slot was valid), migrated_from (the record's
        schema when a migration ran, else None; save to keep the migration),
        problems ({slot: reason} for each slot that was skipped).
        """
        try:
            found = self.scan()
        except Exception as e:  # pragma: no cover - read_slot already catches
            found = {slot: "unreadable (%r)" % (e,) for slot in SLOTS}
        problems = {}
        for slot in SLOTS:
            if isinstance(found[slot], str):
                problems[slot] = found[slot]
        best = self._newest(found)
        if best is None:
            return self.make_defaults(), {
                "slot": None,
                "generation": 0,
                "defaults": True,
                "migrated_from": None,
                "problems": problems,
            }
        generation, payload, migrated = found[best]
        return payload, {
            "slot": best,
            "generation": generation,
            "defaults": False,
            "migrated_from": migrated,
            "problems": problems,
        }

    def save(self, payload):
        """Write payload as the next generation; returns (slot, generation).

        SettingsError (with one message per problem) if the payload is invalid:
        nothing is written then. OSError from the filesystem passes through; the
        newest record is untouched whatever happens.
        """
        problems = self.check(payload)
        if problems:
            raise SettingsError(problems)
        found = self.scan()
        best = self._newest(found)
        newest = found[best] if best is not None else None
        generation = (
            1 if isinstance(newest, str) or newest is None else (newest[0] + 1) & 0xFFFFFFFF
        )
        target = "b" if best == "a" else "a"
        data = pack(payload, generation, self.schema)
        tmp = self.name + ".tmp"
        f = self.fs.open(tmp, "wb")
        try:
            n = f.write(data)
            if n is not None and n != len(data):
                raise OSError(28, "short write (%d of %d bytes)" % (n, len(data)))
            f.flush()
        finally:
            f.close()
        self.fs.rename(tmp, self.slot_path(target))
        return target, generation
