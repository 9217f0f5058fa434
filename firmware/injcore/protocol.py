"""Treatment protocols: a session planned zone by zone.

docs/protocols.md describes the format for people and docs/protocol.schema.json
for the host's validator; this is the device's own check, its storage and
the walk through a protocol during a session.

Pure Python, integer units, runs unchanged on CPython and MicroPython (the device validates
protocols with it). Imports only injcore modules (settings, machine, store, core constants),
json, no machine.

Constants: FORMAT = 1; MAX_PROTOCOLS = 16; MAX_ZONES = 12; NAME_MAX = 24 (protocol name chars);
ZONE_NAME_MAX = 12 (zone name chars, printable ASCII: shown on a 16-char display line and stored
in the log); MAX_FILE_BYTES = 4096;
TECHNIQUES = {"nappage": MODE_CONTINUOUS, "point": MODE_SINGLE, "papule": MODE_SINGLE}
(injcore.settings modes).

Protocol JSON (one file per protocol):
{
  "format": 1,
  "name": "Facial skin booster",          # 1..24 printable ASCII chars
  "version": 3,                           # integer 1..65535
  "example": true,                        # optional bool: an example a clinician must review
  "session_cap_nl": 2200000,              # integer nL, > 0; the effective cap is
                                          #   min(this, the engineer's session cap)
  "notes": "...",                         # optional string <= 200 chars, ignored by the device
  "zones": [                              # 1..12 zones, names unique (case-insensitive)
    {"name": "Malar L",                   # 1..12 printable ASCII
     "technique": "point",                # nappage | point | papule
     "depth_um": 1000, "dose_nl": 20000, "speed_um_s": 20000, "rate_nl_s": 20000,
     "shot_rate_mhz": 2000,               # required for nappage, optional (ignored) otherwise
     "suckback_nl": 0,                    # optional, default 0
     "punctures": 25,                     # integer 1..9999, or the string "free"
     "cap_nl": 550000}                    # integer nL > 0, <= the protocol's effective session cap
  ]
}
Every zone's settings pass injcore.settings validation (settings.problems_in with the engineer's
Limits: depth within the usable needle length, dose/speed/rate ranges and steps) — the same
rules as hand-set values. Unknown keys are refused. Wrong types refused (bool is not an int).

Functions:
- check(obj, limits) -> list of problem strings, each "path: message", path like
  "zones[2].depth_um" or "session_cap_nl" or "zones" or "name"; [] if valid. Never raises on any
  JSON value.
- parse(text, limits) -> Protocol; raises ProtocolError (a ValueError with .problems, the list)
  on malformed JSON ("json: ...") or any problem. text may be str or bytes; longer than
  MAX_FILE_BYTES is refused.
- class Protocol: .name, .version, .example, .session_cap_nl (the effective cap: min with
  limits.session_cap_nl), .own_cap_nl, .zones (list of Zone), .as_dict() (the JSON object back).
- class Zone: .name, .technique, .mode, .settings (dict of injcore.settings fields for
  Core.configure: mode, depth_um, dose_nl, speed_um_s, rate_nl_s, shot_rate_mhz, suckback_nl),
  .planned (int; 0 = "free"), .cap_nl.
- class ProtocolStore(fs, limits, dir=DIR): on injcore.fsio.DirFS / host_tools.simfs.SimFS.
  names() -> sorted protocol names; load(name) -> Protocol (validated against the limits given
  at construction: ProtocolStore(fs, limits, dir=...)); save(text_or_dict) -> Protocol
  (validates whole first; atomic: writes via injcore.store.Store so every protocol file has the
  store's header/CRC/two generations; refuses a 17th protocol with a message; replacing the same
  name is allowed with a higher version only: a changed protocol under a stored version, or a
  lower one, is refused ("version: ..."), the same protocol again writes nothing and sets
  .unchanged); remove(name).
- class Run(core, protocol, recorder=None): the operator's walk through a protocol on the device
  (main loop only, never the tick).
  .index (current zone), .zone (Zone), .done[i] (complete punctures in zone i), .used_nl[i]
    (volume delivered in zone i, from core.delivered_steps deltas via core.steps_to_nl),
    .skipped[i] (bool), .finished (bool)
  start(): applies zone 0; enter(i): core.configure(**zone.settings) and
    core.set_protocol_caps(protocol.session_cap_nl, zone.cap_nl - used_nl[i]); sets
    recorder.zone = i if a recorder is given; returns False with .message if the core refuses
    (busy: the zone stays as it was; the zone's settings: the run stops, see .refused).
  .refused: None, or (zone index, refusal) of a zone the core refused to enter: the run is
    stopped with a zone cap of 0, so the trigger fires nothing until end(); stop(i, refusal)
    stops it so (also a Run never started: a protocol refused before its session).
  poll(): call every main-loop pass: attributes new punctures / volume to the current zone.
  next() / back(): move zone (counts kept; going back resumes that zone with the cap left).
    skip(): marks the current zone skipped then next(). end(): core.set_protocol_caps() (no
    caps), .finished = True.
  status() -> dict: name, index, count, zone name, done, planned (0 free), used_nl, cap_nl,
    next_name (or ""), capped (bool: zone cap reached), session_used_nl, session_cap_nl.
"""

# Details the summary above leaves open:
#  - A problem's path for a top-level value that is not an object is "protocol";
#    a file over MAX_FILE_BYTES is "size", a JSON syntax error "json".
#  - Unknown keys are reported in sorted order (MicroPython's dicts do not keep
#    insertion order), so CPython and the device give the same list.
#  - shot_rate_mhz and suckback_nl, when present, are checked like the rest even
#    where they are ignored; a name must not be blank (all spaces).
#  - check() looks at the first MAX_ZONES zones only when there are more (the
#    count itself is the problem then).
#  - Whether a nappage shot rate fits the puncture cycle is the core's call
#    (Core.configure): injcore.feasible asks it for every zone before a session
#    starts (ui/protocols.py, the host tools); a zone it refuses later (another
#    syringe, backlash or calibration since) stops the Run (Run.refused).
#  - Protocols are identified case-insensitively ("Facial" replaces "facial");
#    the file of a protocol is DIR/<slug>-<crc32 of the lower-case name>.a/.b.
#  - Added: build(obj, limits) -> Protocol (check + construct); ProtocolStore.exists;
#    Run.message; Run.next() on the last zone ends the run; skipped[i] is
#    cleared when a puncture lands in zone i again.

import json

from . import store as S
from .compat import const
from .settings import (
    MODE_CONTINUOUS,
    MODE_SINGLE,
    Limits,
    Settings,
    SettingsError,
    is_int,
    problems_in,
    refusal_text,
)

FORMAT = const(1)
MAX_PROTOCOLS = const(16)
DIR = "protocols"  # where the device keeps them (ProtocolStore)
MAX_ZONES = const(12)
NAME_MAX = const(24)
ZONE_NAME_MAX = const(12)
MAX_FILE_BYTES = const(4096)
NOTES_MAX = const(200)
VERSION_MAX = const(65535)
PUNCTURES_MAX = const(9999)
FREE = "free"
TECHNIQUES = {"nappage": MODE_CONTINUOUS, "point": MODE_SINGLE, "papule": MODE_SINGLE}
TECHNIQUE_NAMES = ("nappage", "point", "papule")
ZONE_NONE = const(0xFF)  # injcore.tlog.ZONE_NONE (not imported: tlog is big)
STOPPED = "stopped at a zone the core refused: end the protocol"  # Run.message then

TOP_KEYS = ("format", "name", "version", "example", "session_cap_nl", "notes", "zones")
ZONE_KEYS = (
    "name",
    "technique",
    "depth_um",
    "dose_nl",
    "speed_um_s",
    "rate_nl_s",
    "shot_rate_mhz",
    "suckback_nl",
    "punctures",
    "cap_nl",
)
# zone fields that are injcore.settings fields
_SETTING_KEYS = ("depth_um", "dose_nl", "speed_um_s", "rate_nl_s", "shot_rate_mhz", "suckback_nl")
_REQUIRED_SETTINGS = ("depth_um", "dose_nl", "speed_um_s", "rate_nl_s")


class ProtocolError(ValueError):
    """A refused protocol; `problems` lists one "path: message" per problem."""

    def __init__(self, problems):
        super().__init__("; ".join(problems))
        self.problems = problems


def _text_problem(v, lo, hi):
    """Why v is not 1..hi printable ASCII characters, or None."""
    if not isinstance(v, str):
        return "%r is not a string" % (v,)
    if not lo <= len(v) <= hi:
        return "%d characters; allowed %d..%d" % (len(v), lo, hi)
    for c in v:
        if not " " <= c <= "~":
            return "%r has a character that is not printable ASCII" % (v,)
    if lo and not v.strip():
        return "is blank"
    return None


def _unknown(obj, known, prefix):
    extra = [k for k in obj if k not in known]
    extra.sort(key=lambda k: repr(k))
    return ["%s%s: unknown key; known: %s" % (prefix, k, ", ".join(known)) for k in extra]


def _effective_cap(obj, limits):
    own = obj.get("session_cap_nl")
    if is_int(own) and own > 0:
        return min(own, limits.session_cap_nl)
    return limits.session_cap_nl


def _zone_problems(z, i, limits, cap, seen, problems):  # noqa: C901  (one check per zone key, each with its own message)
    p = "zones[%d]" % i
    if not isinstance(z, dict):
        problems.append("%s: %r is not an object" % (p, z))
        return
    p += "."
    name = z.get("name")
    if "name" not in z:
        problems.append(p + "name: missing")
    else:
        why = _text_problem(name, 1, ZONE_NAME_MAX)
        if why:
            problems.append(p + "name: " + why)
        elif isinstance(name, str):
            low = name.lower()
            if low in seen:
                problems.append(
                    "%sname: %r is the name of zones[%d] too (zone names are "
                    "unique, case-insensitive)" % (p, name, seen[low])
                )
            else:
                seen[low] = i
    tech = z.get("technique")
    mode = None
    if "technique" not in z:
        problems.append(p + "technique: missing")
    elif not isinstance(tech, str) or tech not in TECHNIQUES:
        problems.append(
            "%stechnique: %r is not a technique; allowed %s" % (p, tech, ", ".join(TECHNIQUE_NAMES))
        )
    else:
        mode = TECHNIQUES[tech]
    present = []
    for k in _REQUIRED_SETTINGS:
        if k in z:
            present.append(k)
        else:
            problems.append(p + k + ": missing")
    if "shot_rate_mhz" in z:
        present.append("shot_rate_mhz")
    elif tech == "nappage":
        problems.append(p + "shot_rate_mhz: missing (required for nappage)")
    if "suckback_nl" in z:
        present.append("suckback_nl")
    values = Settings().as_dict()
    for k in present:
        values[k] = z[k]
    if mode is not None:
        values["mode"] = mode
    for r in problems_in(values, limits):
        if r[0] in present:  # the refusal's field: the defaults filled in are not the file's
            problems.append(p + refusal_text(r))
    n = z.get("punctures")
    if "punctures" not in z:
        problems.append(p + "punctures: missing")
    elif not (n == FREE and isinstance(n, str)) and not (
        isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= PUNCTURES_MAX
    ):
        problems.append(
            '%spunctures: %r is not allowed; allowed 1..%d or "free"' % (p, n, PUNCTURES_MAX)
        )
    c = z.get("cap_nl")
    if "cap_nl" not in z:
        problems.append(p + "cap_nl: missing")
    elif not isinstance(c, int) or isinstance(c, bool) or c <= 0:
        problems.append("%scap_nl: %r is not allowed; an integer nL above 0" % (p, c))
    elif c > cap:
        problems.append("%scap_nl: %d nL is above the session cap of %d nL" % (p, c, cap))
    problems.extend(_unknown(z, ZONE_KEYS, p))


def check(obj, limits=None):
    """Every problem of a protocol object, one "path: message" each; [] if valid."""
    try:
        return _check(obj, limits or Limits())
    except Exception as e:  # never raises: a bug here must refuse, not crash the caller
        return ["protocol: cannot be checked (%r)" % (e,)]


def _check(obj, limits):  # noqa: C901  (one check per top-level key, each with its own message)
    if not isinstance(obj, dict):
        return ["protocol: %r is not an object" % (obj,)]
    problems = []
    if "format" not in obj:
        problems.append("format: missing")
    elif not is_int(obj["format"]) or obj["format"] != FORMAT:
        problems.append(
            "format: %r is not a format this firmware reads (%d)" % (obj["format"], FORMAT)
        )
    if "name" not in obj:
        problems.append("name: missing")
    else:
        why = _text_problem(obj["name"], 1, NAME_MAX)
        if why:
            problems.append("name: " + why)
    if "version" not in obj:
        problems.append("version: missing")
    else:
        v = obj["version"]
        if not is_int(v) or not 1 <= v <= VERSION_MAX:
            problems.append("version: %r is not allowed; an integer 1..%d" % (v, VERSION_MAX))
    if "example" in obj and not isinstance(obj["example"], bool):
        problems.append("example: %r is not true or false" % (obj["example"],))
    if "notes" in obj:
        why = _text_problem_any(obj["notes"], NOTES_MAX)
        if why:
            problems.append("notes: " + why)
    if "session_cap_nl" not in obj:
        problems.append("session_cap_nl: missing")
    else:
        c = obj["session_cap_nl"]
        if not is_int(c) or c <= 0:
            problems.append("session_cap_nl: %r is not allowed; an integer nL above 0" % (c,))
    cap = _effective_cap(obj, limits)
    if "zones" not in obj:
        problems.append("zones: missing")
    else:
        zones = obj["zones"]
        if not isinstance(zones, list):
            problems.append("zones: %r is not a list" % (zones,))
        else:
            if not 1 <= len(zones) <= MAX_ZONES:
                problems.append("zones: %d zones; allowed 1..%d" % (len(zones), MAX_ZONES))
            seen = {}
            for i in range(min(len(zones), MAX_ZONES)):
                _zone_problems(zones[i], i, limits, cap, seen, problems)
    problems.extend(_unknown(obj, TOP_KEYS, ""))
    return problems


def _text_problem_any(v, hi):
    if not isinstance(v, str):
        return "%r is not a string" % (v,)
    if len(v) > hi:
        return "%d characters; allowed at most %d" % (len(v), hi)
    return None


class Zone:
    def __init__(self, z):
        self.name = z["name"]
        self.technique = z["technique"]
        self.mode = TECHNIQUES[self.technique]
        d = Settings()
        self.settings = {
            "mode": self.mode,
            "depth_um": z["depth_um"],
            "dose_nl": z["dose_nl"],
            "speed_um_s": z["speed_um_s"],
            "rate_nl_s": z["rate_nl_s"],
            "shot_rate_mhz": z.get("shot_rate_mhz", d.shot_rate_mhz),
            "suckback_nl": z.get("suckback_nl", 0),
        }
        n = z["punctures"]
        self.planned = 0 if n == FREE else n
        self.cap_nl = z["cap_nl"]


class Protocol:
    def __init__(self, obj, limits):
        self._obj = _copy(obj)
        self.name = obj["name"]
        self.version = obj["version"]
        self.example = obj.get("example", False)
        self.own_cap_nl = obj["session_cap_nl"]
        self.session_cap_nl = min(self.own_cap_nl, limits.session_cap_nl)
        self.notes = obj.get("notes", "")
        self.zones = [Zone(z) for z in obj["zones"]]

    def as_dict(self):
        return _copy(self._obj)


def _copy(v):
    if isinstance(v, dict):
        return {k: _copy(v[k]) for k in v}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def build(obj, limits=None):
    """Protocol of a JSON object, or ProtocolError naming every problem."""
    limits = limits or Limits()
    problems = check(obj, limits)
    if problems:
        raise ProtocolError(problems)
    return Protocol(obj, limits)


def parse(text, limits=None):
    """Protocol of a protocol file's text (str or bytes); ProtocolError if refused."""
    if isinstance(text, str):
        data = text.encode()
    elif isinstance(text, (bytes, bytearray)):
        data = bytes(text)
    else:
        raise ProtocolError(["json: %r is not text" % (type(text).__name__,)])
    if len(data) > MAX_FILE_BYTES:
        raise ProtocolError(
            ["size: %d bytes is too large; allowed at most %d" % (len(data), MAX_FILE_BYTES)]
        )
    try:
        obj = json.loads(data.decode())
    except Exception as e:  # ValueError, UnicodeError, ...
        raise ProtocolError(["json: not valid JSON (%s)" % (e,)])
    return build(obj, limits)


# --- the store ------------------------------------------------------------------
def _structure(payload):
    """The store's own check: an intact record of a protocol object (limits come later)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
        return ["protocol: not a protocol object"]
    return []


def _none():
    return None


def _name_of(payload):
    """The name in a stored record's payload, or None."""
    if isinstance(payload, dict):
        name = payload.get("name")
        if isinstance(name, str):
            return name
    return None


class ProtocolStore:
    """Protocols as files DIR/KEY.a / DIR/KEY.b written by injcore.store.Store (H9, H10)."""

    def __init__(self, fs, limits=None, dir=DIR):
        self.fs = fs
        self.limits = limits or Limits()
        self.unchanged = False  # the last save() found the same protocol stored: none written
        while dir.endswith("/"):
            dir = dir[:-1]
        self.dir = dir

    @staticmethod
    def key(name):
        low = name.lower()
        slug = ""
        for c in low[:NAME_MAX]:
            slug += c if ("a" <= c <= "z" or "0" <= c <= "9") else "_"
        return "%s-%08x" % (slug, S.crc32(low.encode()))

    def _store(self, key):
        path = self.dir + "/" + key if self.dir else key
        return S.Store(
            self.fs, path, schema=FORMAT, migrations={}, check=_structure, make_defaults=_none
        )

    def _keys(self):
        try:
            files = self.fs.listdir(self.dir)
        except OSError:
            return []
        keys = []
        for f in files:
            for slot in S.SLOTS:
                if f.endswith("." + slot):
                    k = f[: -len(slot) - 1]
                    if k not in keys:
                        keys.append(k)
        return keys

    def _record(self, key):
        """(payload, info) of the newest intact record under key; payload None if none."""
        return self._store(key).load()

    def names(self):
        out = []
        for k in self._keys():
            name = _name_of(self._record(k)[0])
            if name is not None:
                out.append(name)
        out.sort()
        return out

    def exists(self, name):
        got = _name_of(self._record(self.key(name))[0])
        return got is not None and got.lower() == name.lower()

    def load(self, name):
        """The protocol, checked against this store's limits; ProtocolError if unusable."""
        payload, info = self._record(self.key(name))
        got = _name_of(payload)
        if got is None or got.lower() != name.lower():
            why = ["name: no protocol %r" % (name,)]
            for slot in sorted(info["problems"]):
                if info["problems"][slot] != "missing":
                    why.append("file %s: %s" % (slot, info["problems"][slot]))
            raise ProtocolError(why)
        return build(payload, self.limits)

    def save(self, text_or_dict):
        """Check the whole protocol, then store it atomically; returns the Protocol."""
        if isinstance(text_or_dict, dict):
            proto = build(text_or_dict, self.limits)
            try:
                size = len(S.encode(text_or_dict).encode())
            except ValueError as e:
                raise ProtocolError(["protocol: %s" % (e,)])
            if size > MAX_FILE_BYTES:
                raise ProtocolError(
                    ["size: %d bytes is too large; allowed at most %d" % (size, MAX_FILE_BYTES)]
                )
        else:
            proto = parse(text_or_dict, self.limits)
        key = self.key(proto.name)
        keys = self._keys()
        self.unchanged = False
        if key not in keys:
            if len(keys) >= MAX_PROTOCOLS:
                raise ProtocolError(
                    ["protocols: %d protocols are stored already; remove one first" % MAX_PROTOCOLS]
                )
        else:
            stored = self._record(key)[0]
            got = _name_of(stored)
            if got is not None and got.lower() != proto.name.lower():
                raise ProtocolError(
                    ["name: %r clashes with the stored %r; rename it" % (proto.name, got)]
                )
            if got is not None and isinstance(stored, dict):
                if stored == proto.as_dict():
                    self.unchanged = True  # the same protocol again: nothing to write
                    return proto
                old = stored.get("version")
                if is_int(old) and proto.version <= old:
                    raise ProtocolError(
                        [
                            "version: %r version %d is stored with other contents; a changed "
                            "protocol needs a version above %d" % (got, old, old)
                        ]
                    )
        mkdir = getattr(self.fs, "mkdir", None)
        if mkdir and self.dir:
            mkdir(self.dir)
        try:
            self._store(key).save(proto.as_dict())
        except SettingsError as e:  # pragma: no cover - build() checked it already
            raise ProtocolError(e.problems)
        return proto

    def remove(self, name):
        """Delete a protocol: the older slot first, the newest last (a cut keeps it whole)."""
        key = self.key(name)
        st = self._store(key)
        payload, info = st.load()
        got = _name_of(payload)
        if got is None or got.lower() != name.lower():
            raise ProtocolError(["name: no protocol %r" % (name,)])
        newest = info["slot"]
        order = [st.name + ".tmp"]
        for slot in S.SLOTS:
            if slot != newest:
                order.append(st.slot_path(slot))
        order.append(st.slot_path(newest))
        for path in order:
            if self.fs.exists(path):
                self.fs.remove(path)


# --- the walk through a protocol ----------------------------------------------------
class Run:
    """The operator's walk through a protocol, zone by zone (main loop only)."""

    def __init__(self, core, protocol, recorder=None):
        self.core = core
        self.protocol = protocol
        self.recorder = recorder
        n = len(protocol.zones)
        self.index = 0
        self.zone = protocol.zones[0]
        self.done = [0] * n
        self.used_nl = [0] * n
        self.skipped = [False] * n
        self.finished = False
        self.message = ""
        self.refused = None  # (zone index, refusal): stopped; the trigger fires nothing
        self._entered = False  # a zone's settings and caps are applied
        # The barrel area the zone cap was set with: a syringe change restates the
        # session in its steps, so the cap is set again (poll); None: still to set.
        self._caps_area = None
        self._seen_p = core.punctures
        self._seen_nl = core.steps_to_nl(core.delivered_steps)

    def _left(self, i):
        return max(0, self.protocol.zones[i].cap_nl - self.used_nl[i])

    def start(self):
        self.finished = False
        return self.enter(0)

    def enter(self, i):
        """Apply zone i's settings and caps; False with .message if the core refuses.

        Busy, the zone stays as it was. A zone whose settings the core refuses
        stops the run (.refused): its zone cap 0 stays, so the trigger fires
        nothing, not even the settings in use, until end().
        """
        if self.refused is not None:
            self.message = STOPPED
            return False
        if not 0 <= i < len(self.protocol.zones):
            self.message = "no zone %d" % i
            return False
        self.poll()
        core = self.core
        cap = self.protocol.session_cap_nl
        z = self.protocol.zones[i]
        try:
            core.set_protocol_caps(cap, 0)  # no shot while the zone changes
        except SettingsError as e:
            if not self._entered:  # the settings in use are no zone's
                self.stop(i, e.refusals[0])
            self.message = "; ".join(e.problems)
            return False
        self._caps_area = core.area_cmm2
        try:
            core.configure(**z.settings)
        except SettingsError as e:
            if self._entered and e.refusals[0][1] == SettingsError.NOT_IDLE:
                try:  # busy after all: the old zone again
                    core.set_protocol_caps(cap, self._left(self.index))
                except SettingsError:
                    pass  # the zone stays shut (cap 0)
            else:
                self.stop(i, e.refusals[0])
            self.message = "; ".join(e.problems)
            return False
        self.index = i
        self.zone = z
        self.finished = False
        self._entered = True
        if self.recorder is not None:
            self.recorder.zone = i
        try:
            core.set_protocol_caps(cap, self._left(i))
        except SettingsError as e:  # a fault in between: the zone stays shut (cap 0)
            self.message = "; ".join(e.problems)
            return False
        self.message = ""
        return True

    def stop(self, i, refusal):
        """Stop at zone i, which the core refuses (`refusal`, SettingsError's): a zone cap
        of 0, so the trigger fires nothing until end(); busy, poll() sets it once idle."""
        self.refused = (i, refusal)
        self.message = STOPPED
        self._caps_area = None
        self._set_caps()

    def _set_caps(self):
        """The caps again (stopped: a zone cap of 0); False while the core is busy."""
        try:
            left = 0 if self.refused is not None else self._left(self.index)
            self.core.set_protocol_caps(self.protocol.session_cap_nl, left)
        except SettingsError:
            return False
        self._caps_area = self.core.area_cmm2
        return True

    def poll(self):
        """Attribute new punctures and their volume to the current zone; keep the caps."""
        core = self.core
        p = core.punctures
        nl = core.steps_to_nl(core.delivered_steps)
        if p > self._seen_p and not self.finished:
            i = self.index
            self.done[i] += p - self._seen_p
            self.used_nl[i] += nl - self._seen_nl
            self.skipped[i] = False
        self._seen_p = p
        self._seen_nl = nl  # also after a syringe change (restated steps) or a new session
        live = self.refused is not None or (self._entered and not self.finished)
        if live and self._caps_area != core.area_cmm2:
            self._set_caps()  # busy: the next pass

    def next(self):
        if self.index + 1 < len(self.protocol.zones):
            return self.enter(self.index + 1)
        return self.end()

    def back(self):
        if self.index == 0:
            self.message = "first zone"
            return False
        return self.enter(self.index - 1)

    def skip(self):
        i = self.index
        was = self.skipped[i]
        self.skipped[i] = True
        if not self.next():
            self.skipped[i] = was
            return False
        return True

    def end(self):
        self.poll()
        try:
            self.core.set_protocol_caps()
        except SettingsError as e:
            self.message = "; ".join(e.problems)
            return False
        self.finished = True
        self._entered = False
        self.refused = None
        if self.recorder is not None:
            self.recorder.zone = ZONE_NONE
        self.message = ""
        return True

    def status(self):
        i = self.index
        zones = self.protocol.zones
        z = zones[i]
        s = z.settings
        used = self.used_nl[i]
        return {
            "name": self.protocol.name,
            "index": i,
            "count": len(zones),
            "zone": z.name,
            "technique": z.technique,
            "done": self.done[i],
            "planned": z.planned,
            "used_nl": used,
            "cap_nl": z.cap_nl,
            "next_name": zones[i + 1].name if i + 1 < len(zones) else "",
            "capped": used + s["dose_nl"] + s["suckback_nl"] > z.cap_nl,
            "session_used_nl": self.core.delivered_nl(),
            "session_cap_nl": min(self.protocol.session_cap_nl, self.core.limits.session_cap_nl),
            "skipped": self.skipped[i],
            "finished": self.finished,
            "refused": self.refused[0] if self.refused is not None else -1,
        }
