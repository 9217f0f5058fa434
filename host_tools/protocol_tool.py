"""`injector protocol validate|push|pull|list|remove`: treatment protocols (injcore/protocol.py)
on the host.

    injector protocol validate FILE [--limits-from DIR | --port PORT]
                                    [--needle-length-um N] [--session-cap-nl N]
                                    [--syringe MODEL [--syringe-id-um N]]...
    injector protocol push FILE --port PORT [--syringe MODEL [--syringe-id-um N]]...
    injector protocol pull --port PORT [--out DIR]
    injector protocol list --port PORT
    injector protocol remove NAME --port PORT

validate checks a protocol file three times: against the published format,
docs/protocol.schema.json (JSON Schema 2020-12, with integers that must be
written as integers), with the device's own rules, injcore.protocol.check,
under the engineer's limits: the firmware's defaults (injcore.settings.Limits()),
those stored on a device (--port) or in a folder holding settings.a / settings.b
(--limits-from), then --needle-length-um / --session-cap-nl if given; and with
the machine (injcore.feasible, the control core's own planning, as the device
judges a protocol before it starts): every zone with every syringe model of
injcore.machine.SYRINGES, or those named with --syringe, under those limits and
the record's backlash and dose calibration (the core's defaults without one).
Every problem is printed with its field path, one a line.

push checks FILE with the schema, reads the device's stored record and checks
every zone with the machine as validate does, under that record; then it copies
FILE to the device and has the device's own ProtocolStore save it (under the
limits the device has stored), so the device validates it again, writes it
atomically and refuses a 17th protocol, and a changed protocol under the
version stored (or a lower one): a change needs a new version, so a version
names one content in the treatment log. The same protocol pushed again
changes nothing. pull copies the device's protocols/ folder and decodes its
records into plain JSON files; list names what is stored; remove deletes one
(its name, case aside), as the device's Service > Protocols does.

Exit codes: 0 valid / done; 2 invalid, refused, unreadable or an error.
"""

import json
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import sim  # noqa: F401  (puts firmware/ on sys.path)
from host_tools import settings_tool as ST  # noqa: E402
from host_tools.cliutil import (  # noqa: E402
    Refusal,
    TooLarge,
    int_range,
    loads_json,
    no_action,
    out_dir_problem,
    read_capped,
)
from injcore import machine as M  # noqa: E402
from injcore import protocol as P  # noqa: E402
from injcore.feasible import planning_core, zone_refusals  # noqa: E402
from injcore.fsio import DirFS  # noqa: E402
from injcore.settings import RANGES, Limits, SettingsError, refusal_text  # noqa: E402

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "docs" / "protocol.schema.json"
PROTOCOL_DIR = P.DIR  # the device's folder
PUSH_NAME = "_protocol_push.json"  # the temporary file on the device during a push
# The widest limits an engineer can set: every record a device may hold loads under them.
WIDEST = Limits(
    needle_length_um=Limits.RANGES["needle_length_um"][1],
    session_cap_nl=Limits.RANGES["session_cap_nl"][1],
)

ToolError = ST.ToolError


# ---- the schema ------------------------------------------------------------------


@lru_cache(maxsize=1)
def validator():
    """A Draft 2020-12 validator of docs/protocol.schema.json whose "integer" is the device's:
    a JSON number written without a fraction (1000.0 is refused, as injcore refuses a float)."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _, v: isinstance(v, int) and not isinstance(v, bool)
    )
    cls = jsonschema.validators.extend(base, type_checker=checker)
    schema = json.loads(SCHEMA_PATH.read_text())
    base.check_schema(schema)
    return cls(schema)


def field_path(parts):
    """deque(["zones", 2, "depth_um"]) -> "zones[2].depth_um"; the whole document: "protocol"."""
    out = ""
    for p in parts:
        out += "[%d]" % p if isinstance(p, int) else ("." if out else "") + str(p)
    return out or "protocol"


def _join(path, key):
    return key if path == "protocol" else "%s.%s" % (path, key)


def schema_problems(obj):
    """Every problem the schema finds, "path: message", sorted by path."""
    out = []
    for e in validator().iter_errors(obj):
        path = field_path(e.absolute_path)
        if e.validator == "required":
            missing = [
                k for k in e.validator_value if isinstance(e.instance, dict) and k not in e.instance
            ]
            for k in missing or [str(e.message)]:
                out.append("%s: missing" % _join(path, k))
        elif e.validator == "additionalProperties" and isinstance(e.instance, dict):
            known = set(e.schema.get("properties", {}))
            for k in sorted((k for k in e.instance if k not in known), key=repr):
                out.append("%s: unknown key" % _join(path, k))
        elif e.validator == "pattern":
            out.append(
                "%s: %r is not printable ASCII (space to ~) or is blank" % (path, e.instance)
            )
        elif e.validator == "oneOf":
            out.append(
                "%s: %r is not allowed; %s"
                % (path, e.instance, e.schema.get("description", e.message))
            )
        else:
            out.append("%s: %s" % (path, e.message))
    return sorted(set(out), key=lambda s: (s.split(":")[0], s))


# ---- reading and checking a file ----------------------------------------------------


def read_document(path):
    """(obj, problems): the file's JSON value, or None and why it cannot be read. A file
    larger than the device stores (P.MAX_FILE_BYTES) is refused by its size alone: it is
    not read, so a huge one neither fills memory nor has its text echoed in problems."""
    path = Path(path)
    try:
        data = read_capped(path, P.MAX_FILE_BYTES)
    except TooLarge as e:
        return None, [
            "size: %d bytes is too large; allowed at most %d, the largest protocol file the "
            "device stores" % (e.size_bytes, e.max_bytes)
        ]
    except Refusal as e:
        return None, ["file: cannot read (%s)" % e]
    try:
        return loads_json(data), []
    except Refusal as e:
        return None, ["json: %s" % e]


def file_refusal(path, problems):
    """A file that could not be read as JSON: its one problem on one line (stderr)."""
    print("injector protocol: %s: %s" % (path, "; ".join(problems)), file=sys.stderr)
    return 2


def problems_of(obj, limits):
    """[(source, "path: message")]: the schema's and the device's (injcore.protocol.check)."""
    return [("schema", p) for p in schema_problems(obj)] + [
        ("device", p) for p in P.check(obj, limits)
    ]


# ---- the machine: can it run every zone? -------------------------------------------------


def syringe_name(model, id_um=None):
    """'1 mL', or 'custom 4.70 mm' for model 0 (machine.CUSTOM_SYRINGE)."""
    if model == M.CUSTOM_SYRINGE:
        return "custom %d.%02d mm" % (id_um // 1000, id_um % 1000 // 10)
    return M.SYRINGES[model][M.SYR_NAME]


def syringes_of(args=None):
    """[(model, id_um or None)] to judge the zones with: --syringe, else (or without args)
    every model of machine.SYRINGES (a protocol does not name its syringe); ToolError if
    one is unknown."""
    models = getattr(args, "syringe", None)
    id_um = getattr(args, "syringe_id_um", None)
    if not models:
        if id_um is not None:
            raise ToolError("--syringe-id-um goes with --syringe %d" % M.CUSTOM_SYRINGE, False)
        return [(m, None) for m in sorted(M.SYRINGES)]
    out = []
    for m in models:
        if m == M.CUSTOM_SYRINGE:
            if id_um is None:
                raise ToolError(
                    "--syringe %d (custom) needs --syringe-id-um" % M.CUSTOM_SYRINGE, False
                )
            out.append((m, id_um))
        elif m in M.SYRINGES:
            out.append((m, None))
        else:
            raise ToolError(
                "--syringe %d: no such model; known: %s, or %d (custom) with --syringe-id-um"
                % (m, ", ".join(str(k) for k in sorted(M.SYRINGES)), M.CUSTOM_SYRINGE),
                False,
            )
    return out


def machine_of(lim, calibration):
    """The control core that judges the zones: the engineer's limits, backlash, dose
    calibration and line time constant (a record's "calibration"; {}: the core's defaults).
    ToolError if refused."""
    try:
        return planning_core(
            lim,
            calibration.get("backlash_steps"),
            calibration.get("dose_factor_ppm"),
            calibration.get("line_tau_us"),
        )
    except SettingsError as e:
        raise ToolError("invalid calibration: " + "; ".join(e.problems)) from None


def machine_problems(proto, core, syringes):
    """Every refusal of a zone by the control core, "zones[i].field: ..." one each, per
    syringe (injcore.feasible.zone_refusals: the device's own judgement)."""
    zones = [z.settings for z in proto.zones]
    out = []
    for model, id_um in syringes:
        for i, refusals in enumerate(zone_refusals(core, zones, model, id_um)):
            for r in refusals:
                field = "settings" if isinstance(r, str) else r[0]
                out.append(
                    "zones[%d].%s: zone %r cannot run with the %s syringe: %s"
                    % (
                        i,
                        field,
                        proto.zones[i].name,
                        syringe_name(model, id_um),
                        refusal_text(r, False),
                    )
                )
    return out


def machine_from(args):
    """(Limits, calibration, where they came from) for validate: the record's calibration
    ({} without a record: the core's defaults); ToolError if they are not valid limits."""
    where = "the firmware's defaults"
    values = {name: getattr(Limits(), name) for name in Limits.RANGES}
    calibration = {}
    if args.port or args.limits_from:
        src = ST.Source(args.port, args.limits_from, not args.no_reset)
        try:
            payload, info, _ = src.load()
        finally:
            src.finish()
        values.update(payload["limits"])
        calibration = payload.get("calibration", {})
        where = (
            "the defaults (no valid record on %s)"
            if info["defaults"]
            else "the record stored on %s"
        ) % src.where
    overrides = []
    for name in ("needle_length_um", "session_cap_nl"):
        v = getattr(args, name)
        if v is not None:
            values[name] = v
            overrides.append("--%s" % name.replace("_", "-"))
    if overrides:
        where += " with " + ", ".join(overrides)
    lim = Limits(**values)
    try:
        lim.check()
    except SettingsError as e:
        raise ToolError("invalid limits: " + "; ".join(e.problems)) from None
    return lim, calibration, where


def run_validate(args, out=None):
    out = sys.stdout if out is None else out
    syringes = syringes_of(args)
    lim, calibration, where = machine_from(args)
    core = machine_of(lim, calibration)
    obj, problems = read_document(args.file)
    if obj is None:
        return file_refusal(args.file, problems)
    found = problems_of(obj, lim)
    if not found:  # a zone is planned only once the protocol is whole
        proto = P.build(obj, lim)
        found += [("machine", p) for p in machine_problems(proto, core, syringes)]
    if found:
        print(
            "injector protocol: %s is invalid (%d problem%s; limits: needle %d um, session cap "
            "%d nL, %s):"
            % (
                args.file,
                len(found),
                "" if len(found) == 1 else "s",
                lim.needle_length_um,
                lim.session_cap_nl,
                where,
            ),
            file=sys.stderr,
        )
        for source, p in found:
            print("  %s  (%s)" % (p, source), file=sys.stderr)
        return 2
    print(
        "%s: valid: %r version %d%s, %d zone%s, session cap %d nL (effective %d nL)"
        % (
            args.file,
            proto.name,
            proto.version,
            " (an example)" if proto.example else "",
            len(proto.zones),
            "" if len(proto.zones) == 1 else "s",
            proto.own_cap_nl,
            proto.session_cap_nl,
        ),
        file=out,
    )
    print(
        "  limits: needle %d um, session cap %d nL (%s)"
        % (lim.needle_length_um, lim.session_cap_nl, where),
        file=out,
    )
    print(
        "  machine: every zone runs with the %s syringe (backlash %d steps, dose factor %d ppm,"
        " line tau %d us)"
        % (
            ", ".join(syringe_name(m, i) for m, i in syringes),
            core.backlash_steps,
            core.dose_factor_ppm,
            core.line_tau_us,
        ),
        file=out,
    )
    for z in proto.zones:
        print(
            "  %-12s %-7s depth %4d um  dose %6d nL  %s punctures  cap %d nL"
            % (
                z.name,
                z.technique,
                z.settings["depth_um"],
                z.settings["dose_nl"],
                z.planned or "free",
                z.cap_nl,
            ),
            file=out,
        )
    return 0


# ---- push and pull -------------------------------------------------------------------

DEVICE_SAVE = """
import json, os
from injcore.fsio import DirFS
from injcore.store import Store
from injcore.settings import Limits
from injcore.protocol import ProtocolStore, ProtocolError
try:
    rec, info = Store(DirFS("/"), "%(settings)s").load()
    lim = Limits(**rec["limits"])
    with open("/%(tmp)s") as f:
        text = f.read()
    try:
        ps = ProtocolStore(DirFS("/"), lim, "%(dir)s")
        pr = ps.save(text)
        print("SAVED", json.dumps([pr.name, ProtocolStore.key(pr.name), ps.unchanged, pr.version]))
    except ProtocolError as e:
        print("REFUSED", json.dumps(e.problems))
finally:
    try:
        os.remove("/%(tmp)s")
    except OSError:
        pass
"""


def push_command(local, snippet):
    """The mpremote arguments of a push: copy the file, run the device's save, in one session."""
    return ["fs", "cp", str(local), ":" + PUSH_NAME, "+", "exec", snippet]


def device_machine_problems(src, obj, syringes):
    """The zones the control core would refuse under the device's stored record (limits,
    backlash, calibration), per syringe; [] when the device's own rules refuse the protocol
    (it says why when it tries to save it)."""
    payload, _, _ = src.load()
    lim = Limits(**payload["limits"])
    if P.check(obj, lim):
        return []
    return machine_problems(
        P.build(obj, lim), machine_of(lim, payload.get("calibration", {})), syringes
    )


def push(src, path, out=None, syringes=None):
    out = sys.stdout if out is None else out
    port = src.port
    obj, problems = read_document(path)
    if obj is None:
        return file_refusal(path, problems)
    problems += schema_problems(obj)  # the device's own rules run on the device, its limits
    if not problems:
        problems += device_machine_problems(src, obj, syringes or syringes_of())
    if problems:
        print(
            "injector protocol: %s refused, nothing sent (%d problem%s):"
            % (path, len(problems), "" if len(problems) == 1 else "s"),
            file=sys.stderr,
        )
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 2
    snippet = DEVICE_SAVE % {"settings": ST.STORE_NAME, "tmp": PUSH_NAME, "dir": PROTOCOL_DIR}
    src.touched = True  # from here on main.py was interrupted: reset the board afterwards
    proc = ST.mpremote(port, *push_command(Path(path), snippet))
    for line in (proc.stdout or "").splitlines():
        if line.startswith("SAVED "):
            said = json.loads(line[len("SAVED ") :])  # an older firmware says name, key
            name, key = said[:2]
            if len(said) > 3 and said[2]:
                version = said[3]
                print(
                    "already on %s, unchanged: %r version %d (nothing written)"
                    % (port, name, version),
                    file=out,
                )
            else:
                print("saved to %s: %r as :%s/%s.a/.b" % (port, name, PROTOCOL_DIR, key), file=out)
            return 0
        if line.startswith("REFUSED "):
            problems = json.loads(line[len("REFUSED ") :])
            print(
                "injector protocol: the device refused %s (%d problem%s):"
                % (path, len(problems), "" if len(problems) == 1 else "s"),
                file=sys.stderr,
            )
            for p in problems:
                print("  " + p, file=sys.stderr)
            for hint in refusal_hints(problems, obj, port):
                print(hint, file=sys.stderr)
            return 2
    if proc.returncode != 0:
        raise ST._failed(proc, "mpremote could not save the protocol on %s" % port)
    raise ToolError(
        "the device did not confirm the save (is the firmware's injcore on it?): %s"
        % ST._last_line(proc)
    )


def refusal_hints(problems, obj, port):
    """What to do about the device's refusals that are not the file's faults."""
    out = []
    fields = {p.split(":")[0] for p in problems}
    if "version" in fields and isinstance(obj, dict):
        out.append(
            'injector protocol: a changed protocol needs a new version: raise "version" in '
            "the file (or remove the stored one first: injector protocol remove %r --port %s)"
            % (obj.get("name"), port)
        )
    if "protocols" in fields:
        out.append(
            "injector protocol: `injector protocol list --port %s` names them; `injector "
            "protocol remove NAME --port %s` (or Service > Protocols on the device) removes one"
            % (port, port)
        )
    return out


def pull_command(dest):
    """The mpremote arguments that copy the device's protocols/ folder into dest/."""
    return ["fs", "cp", "-r", ":" + PROTOCOL_DIR, str(dest) + "/"]


def decode_dir(folder):
    """(protocols, problems) of a copied protocols folder: [(file stem, dict)], [str].

    Read with the firmware's ProtocolStore under the widest limits an engineer can
    set, so every record a device may hold decodes; a damaged one is reported."""
    fs = DirFS(str(folder))
    store = P.ProtocolStore(fs, WIDEST, dir="")
    found, problems, keys = [], [], set()
    for name in store.names():
        key = store.key(name)
        keys.add(key)
        try:
            found.append((key, store.load(name).as_dict()))
        except P.ProtocolError as e:
            problems.append("%s: %s" % (key, "; ".join(e.problems)))
    stems = sorted(
        {f.rsplit(".", 1)[0] for f in fs.listdir("") if f.rsplit(".", 1)[-1] in P.S.SLOTS}
    )
    for stem in stems:
        if stem not in keys:
            problems.append("%s: no intact protocol record, skipped" % stem)
    return found, problems


def pull(src, out_dir, out=None):
    out = sys.stdout if out is None else out
    port = src.port
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="injector-protocols-") as tmp:
        src.touched = True
        proc = ST.mpremote(port, *pull_command(tmp))
        folder = Path(tmp) / PROTOCOL_DIR
        if proc.returncode != 0 and not folder.is_dir():
            if "No such file" in (proc.stderr or "") + (proc.stdout or ""):
                print("no protocols on %s (no :%s folder)" % (port, PROTOCOL_DIR), file=out)
                return 0
            raise ST._failed(proc, "mpremote could not copy :%s from %s" % (PROTOCOL_DIR, port))
        found, problems = decode_dir(folder) if folder.is_dir() else ([], [])
    out_dir.mkdir(parents=True, exist_ok=True)
    for key, obj in found:
        target = out_dir / (key + ".json")
        target.write_text(json.dumps(obj, indent=2) + "\n")
        print(
            "%s  %r version %d, %d zones"
            % (target, obj["name"], obj["version"], len(obj["zones"])),
            file=out,
        )
    print(
        "pulled %d protocol%s from %s to %s"
        % (len(found), "" if len(found) == 1 else "s", port, out_dir),
        file=out,
    )
    for p in problems:
        print("injector protocol: " + p, file=sys.stderr)
    return 2 if problems else 0


def fetch_protocols(src):
    """(protocols, problems) stored on the device: decode_dir of its copied folder."""
    port = src.port
    with tempfile.TemporaryDirectory(prefix="injector-protocols-") as tmp:
        src.touched = True
        proc = ST.mpremote(port, *pull_command(tmp))
        folder = Path(tmp) / PROTOCOL_DIR
        if proc.returncode != 0 and not folder.is_dir():
            if "No such file" in (proc.stderr or "") + (proc.stdout or ""):
                return [], []
            raise ST._failed(proc, "mpremote could not copy :%s from %s" % (PROTOCOL_DIR, port))
        return decode_dir(folder) if folder.is_dir() else ([], [])


def list_stored(src, out=None):
    out = sys.stdout if out is None else out
    found, problems = fetch_protocols(src)
    found.sort(key=lambda f: f[1]["name"].lower())
    for _key, obj in found:
        print(
            "%-24s  version %-5d %2d zone%s%s"
            % (
                obj["name"],
                obj["version"],
                len(obj["zones"]),
                " " if len(obj["zones"]) == 1 else "s",
                "  (an example)" if obj.get("example") else "",
            ),
            file=out,
        )
    print(
        "%d of %d protocols stored on %s" % (len(found), P.MAX_PROTOCOLS, src.port),
        file=out,
    )
    for p in problems:
        print("injector protocol: " + p, file=sys.stderr)
    return 2 if problems else 0


DEVICE_REMOVE = """
import json
from injcore.fsio import DirFS
from injcore.protocol import ProtocolStore
ps = ProtocolStore(DirFS("/"), None, "%(dir)s")
want = %(name)r
names = ps.names()
hit = [n for n in names if n.lower() == want.lower()]
if hit:
    ps.remove(hit[0])
    print("REMOVED", json.dumps(hit[0]))
else:
    print("MISSING", json.dumps(names))
"""


def remove(src, name, out=None):
    """Have the device's ProtocolStore delete the protocol `name` (case aside)."""
    out = sys.stdout if out is None else out
    port = src.port
    src.touched = True
    proc = ST.mpremote(port, "exec", DEVICE_REMOVE % {"dir": PROTOCOL_DIR, "name": name})
    for line in (proc.stdout or "").splitlines():
        if line.startswith("REMOVED "):
            print("removed from %s: %r" % (port, json.loads(line[len("REMOVED ") :])), file=out)
            return 0
        if line.startswith("MISSING "):
            names = json.loads(line[len("MISSING ") :])
            print(
                "injector protocol: no protocol %r on %s; stored: %s"
                % (name, port, ", ".join(repr(n) for n in names) or "none"),
                file=sys.stderr,
            )
            return 2
    if proc.returncode != 0:
        raise ST._failed(proc, "mpremote could not remove the protocol on %s" % port)
    raise ToolError(
        "the device did not confirm the removal (is the firmware's injcore on it?): %s"
        % ST._last_line(proc)
    )


# ---- the CLI ----------------------------------------------------------------------


def add_parser(sub):
    p = sub.add_parser(
        "protocol",
        help="validate a treatment protocol file; push it to, pull it from, list or remove it "
        "on a device",
        description="Treatment protocols (docs/protocols.md): JSON files checked against "
        "docs/protocol.schema.json and by the firmware's own injcore.protocol. " + ST.PORT_NOTE,
    )
    psub = p.add_subparsers(dest="protocol_command", title="actions", metavar="ACTION")
    pv = psub.add_parser(
        "validate",
        help="check a protocol file with the schema and the device's rules",
        description="Check FILE against docs/protocol.schema.json and with injcore.protocol.check "
        "under the engineer's limits (the firmware's defaults, or those stored on a "
        "device or in a folder; the two options below override them). Prints every "
        "problem with its field path. Exit 0 valid, 2 invalid or unreadable. " + ST.PORT_NOTE,
    )
    pv.add_argument("file", type=Path, metavar="FILE")
    g = pv.add_mutually_exclusive_group()
    g.add_argument(
        "--limits-from",
        type=Path,
        metavar="DIR",
        help="the limits of the record in DIR (settings.a / settings.b)",
    )
    g.add_argument("--port", metavar="PORT", help="the limits stored on this device (mpremote)")
    pv.add_argument(
        "--needle-length-um",
        type=int,
        metavar="N",
        help="the usable needle length, um (default %d)" % M.NEEDLE_LENGTH_UM,
    )
    pv.add_argument(
        "--session-cap-nl",
        type=int,
        metavar="N",
        help="the engineer's session cap, nL (default %d)" % M.SESSION_CAP_NL,
    )
    pv.add_argument(
        "--no-reset",
        action="store_true",
        help="with --port: leave the board at the REPL instead of resetting it",
    )
    add_syringe_options(pv)
    pp = psub.add_parser(
        "push",
        help="store a protocol on the device (the device validates it too)",
        description="Check FILE with the schema, copy it to the device and have the device's "
        "ProtocolStore save it under the limits the device has stored: the device "
        "checks it again, writes it atomically into :%s/ and refuses a %dth protocol. "
        "Exit 0 saved, 2 refused or an error. %s"
        % (PROTOCOL_DIR, P.MAX_PROTOCOLS + 1, ST.PORT_NOTE),
    )
    pp.add_argument("file", type=Path, metavar="FILE")
    pp.add_argument(
        "--port",
        required=True,
        metavar="PORT",
        help="the device's serial port (mpremote connect PORT)",
    )
    pp.add_argument(
        "--no-reset",
        action="store_true",
        help="leave the board at the REPL instead of resetting it",
    )
    add_syringe_options(pp)
    pl = psub.add_parser(
        "pull",
        help="copy the device's protocols into plain JSON files",
        description="Copy the device's :%s/ folder and decode its records into DIR/<key>.json "
        "(files validate and push take). Exit 0, 2 if a record was damaged or an "
        "error. %s" % (PROTOCOL_DIR, ST.PORT_NOTE),
    )
    pl.add_argument(
        "--port",
        required=True,
        metavar="PORT",
        help="the device's serial port (mpremote connect PORT)",
    )
    pl.add_argument(
        "--out",
        type=Path,
        default=Path("build/protocols"),
        metavar="DIR",
        help="where to write the JSON files (default build/protocols)",
    )
    pl.add_argument(
        "--no-reset",
        action="store_true",
        help="leave the board at the REPL instead of resetting it",
    )
    pls = psub.add_parser(
        "list",
        help="the protocols stored on the device",
        description="Name the protocols stored in the device's :%s/ (version, zones); at most "
        "%d. Exit 0, 2 if a record was damaged or an error. %s"
        % (PROTOCOL_DIR, P.MAX_PROTOCOLS, ST.PORT_NOTE),
    )
    prm = psub.add_parser(
        "remove",
        help="delete a protocol stored on the device",
        description="Have the device's ProtocolStore delete the protocol NAME (case aside): "
        "room for another, or a changed protocol under its old version. Exit 0 removed, 2 "
        "no such protocol or an error. %s" % ST.PORT_NOTE,
    )
    prm.add_argument("name", metavar="NAME")
    for q in (pls, prm):
        q.add_argument(
            "--port",
            required=True,
            metavar="PORT",
            help="the device's serial port (mpremote connect PORT)",
        )
        q.add_argument(
            "--no-reset",
            action="store_true",
            help="leave the board at the REPL instead of resetting it",
        )
    p.set_defaults(run=run, parser=p)


def add_syringe_options(p):
    p.add_argument(
        "--syringe",
        type=int,
        action="append",
        metavar="MODEL",
        help="judge the zones with this syringe model only (repeatable): %s, or %d (custom, "
        "with --syringe-id-um); default every model"
        % (
            ", ".join("%d (%s)" % (m, M.SYRINGES[m][M.SYR_NAME]) for m in sorted(M.SYRINGES)),
            M.CUSTOM_SYRINGE,
        ),
    )
    lo, hi = RANGES["syringe_id_um"][:2]
    p.add_argument(
        "--syringe-id-um",
        type=int_range(lo, hi, "um"),
        metavar="N",
        help="the inner diameter of the custom syringe (--syringe %d), um" % M.CUSTOM_SYRINGE,
    )


def run(args):
    cmd = args.protocol_command
    if cmd is None:
        return no_action(args.parser)
    src = None
    try:
        if cmd == "validate":
            return run_validate(args)
        if cmd == "push":
            syringes = syringes_of(args)  # before connecting: a typo costs no reset
            src = ST.Source(args.port, None, not args.no_reset)
            code = push(src, args.file, syringes=syringes)
        else:
            if cmd == "pull":
                why = out_dir_problem(args.out)  # before connecting: nothing to undo
                if why:
                    raise ToolError(why, False)
            src = ST.Source(args.port, None, not args.no_reset)
            if cmd == "list":
                code = list_stored(src)
            elif cmd == "remove":
                code = remove(src, args.name)
            else:
                code = pull(src, args.out)
    except BrokenPipeError:  # the reader of stdout went away: cli.main ends quietly
        if src is not None:
            src.finish()
        raise
    except (ToolError, OSError) as e:
        print("injector protocol: %s" % e, file=sys.stderr)
        code = 2
        if src is not None and isinstance(e, ToolError):
            src.touched = e.connected
    if src is not None and not src.finish():
        code = 2
    return code
