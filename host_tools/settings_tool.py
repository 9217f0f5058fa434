"""`injector settings show|push`: the device's stored record (injcore.store) on the host.

    injector settings show (--port PORT | --dir DIR) [--json]
    injector settings push FILE (--port PORT | --dir DIR) [--onto-defaults]

The record is read and written with the firmware's own code: Store(DirFS(dir),
"settings").load() / .save() and store.validate, so the host accepts exactly
what the device accepts. --dir is a folder holding settings.a / settings.b
(the simulator, tests, a copy). --port fetches them with mpremote
(`fs cp :settings.a :settings.b`) into a temporary folder; a push copies the
merged payload to the device and has the device's own Store save it (the
device validates again and the write is atomic), then restarts the board.

Connecting with mpremote interrupts the running main.py: its Ctrl-C handler
stops the 1 kHz timer and disables the stepper drivers. Every --port action
therefore ends with a restart (unless --no-reset) so the app boots again -
unhomed, as after any power-up.

Every connection also sets the device's clock (machine.RTC, in UTC) from the
host's: the treatment log dates its sessions with it (board/clock.py). The
RP2040's RTC survives a soft reset but not a hard one (machine.reset, power),
so the restart is a soft reset from the friendly REPL (Ctrl-B, Ctrl-D: it runs
main.py), not `mpremote reset`; only if the board does not answer it is it
reset the hard way, and then its sessions are "time unknown" until the next
connection. (mpremote sets no clock by itself: `mpremote rtc --set` would, in
local time.)

Exit codes: 0 done; 1 (show) no valid record, the defaults are shown;
2 an error or a refused push (nothing written).
"""

import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import sim  # noqa: F401  (puts firmware/ on sys.path)
from host_tools.cliutil import Refusal, TooLarge, loads_json, missing_port, no_action, read_capped
from injcore import machine as M  # noqa: E402
from injcore import store as S  # noqa: E402
from injcore.fsio import DirFS  # noqa: E402
from injcore.settings import FIELDS, MODE_NAMES, RANGES, Limits, is_int  # noqa: E402

STORE_NAME = "settings"  # firmware/board/app.py STORE_NAME: /settings.a, /settings.b on the flash
SLOT_FILES = tuple("%s.%s" % (STORE_NAME, s) for s in S.SLOTS)
PUSH_NAME = "_settings_push.json"  # the temporary file on the device during a push
MPREMOTE_TIMEOUT = 60  # s per mpremote call

PORT_NOTE = (
    "Connecting with mpremote interrupts the running main.py (its Ctrl-C handler stops "
    "the 1 kHz timer and disables the stepper drivers) and sets the device's clock; with "
    "--port the board is restarted afterwards (a soft reset, which keeps the clock) so the "
    "app boots again, unhomed. --no-reset leaves it at the REPL."
)
# Ctrl-C twice (stop whatever runs), Ctrl-B (the friendly REPL), Ctrl-D: a soft reset
# that runs main.py (from the raw REPL it would not).
RESTART_BYTES = b"\r\x03\x03\x02\x04"
RESTART_TIMEOUT = 10  # s for the board to say "soft reboot"


class ToolError(Exception):
    """Anything that stops the tool: one line, exit code 2.

    `connected`: mpremote reached the board (so main.py was interrupted and the
    board wants a reset); False when it never got that far.
    """

    def __init__(self, message, connected=True):
        super().__init__(message)
        self.connected = connected


# mpremote's words when it never reached a board
_NOT_CONNECTED = (
    "failed to access",
    "no device found",
    "could not open port",
    "could not enter raw repl",
)


# ---- reading and writing a record ----------------------------------------------


def store_at(folder):
    return S.Store(DirFS(str(folder)), STORE_NAME)


def load_dir(folder):
    """(payload, info) of the record in `folder` (the firmware's Store.load: never raises)."""
    folder = Path(folder)
    if not folder.exists():
        raise ToolError("no such folder: %s" % folder)
    if not folder.is_dir():
        raise ToolError(
            "%s is not a folder (give the folder holding %s)" % (folder, " / ".join(SLOT_FILES))
        )
    try:
        next(folder.iterdir(), None)
    except OSError as e:
        raise ToolError("cannot read %s: %s" % (folder, e.strerror or e)) from None
    return store_at(folder).load()


def clock_snippet(now=None):
    """The code that sets the device's RTC to `now` (default: the host's clock), in UTC."""
    t = now or datetime.now(timezone.utc)
    return "import machine\nmachine.RTC().datetime((%d, %d, %d, %d, %d, %d, %d, 0))" % (
        t.year,
        t.month,
        t.day,
        t.weekday(),
        t.hour,
        t.minute,
        t.second,
    )


def connect_args(port, *args):
    """The mpremote arguments of one connection: the clock set first, then ARGS."""
    return ["connect", port, "exec", clock_snippet(), "+", *args]


def mpremote(port, *args, timeout=MPREMOTE_TIMEOUT):
    """Run `python -m mpremote connect PORT exec SET-CLOCK + ARGS...` (connect_args); the
    CompletedProcess, or ToolError (a port that names no device is refused before mpremote
    starts)."""
    why = missing_port(port)
    if why:
        raise ToolError(why, connected=False)
    cmd = [sys.executable, "-m", "mpremote", *connect_args(port, *args)]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError(
            "mpremote did not finish within %d s (is %s the injector?)" % (timeout, port)
        ) from None
    except OSError as e:
        raise ToolError("cannot run mpremote: %s" % e, connected=False) from None


def _failed(proc, what):
    text = (proc.stderr or "") + (proc.stdout or "")
    connected = not any(s in text.lower() for s in _NOT_CONNECTED) and "No module named" not in text
    return ToolError("%s: %s" % (what, _last_line(proc)), connected)


def _last_line(proc):
    lines = [ln for ln in (proc.stderr or proc.stdout or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "failed with exit code %d" % proc.returncode


def fetch(port, dest):
    """Copy the device's slot files into `dest`; the names copied (a missing one is fine)."""
    wanted = list(SLOT_FILES)
    copied = []
    while wanted:
        proc = mpremote(port, "fs", "cp", *(":" + n for n in wanted), str(dest) + "/")
        if proc.returncode == 0:
            copied.extend(wanted)
            break
        # mpremote stops at the first missing file ("cp: settings.b: No such file or directory")
        missing = [n for n in wanted if "%s: No such file" % n in proc.stderr]
        if not missing:
            raise _failed(proc, "mpremote could not read the settings from %s" % port)
        copied.extend(n for n in wanted[: wanted.index(missing[0])] if (Path(dest) / n).exists())
        wanted = wanted[wanted.index(missing[0]) + 1 :]
    return copied


def reset(port):
    proc = mpremote(port, "reset")
    if proc.returncode != 0:
        raise _failed(proc, "mpremote could not reset %s" % port)


# The board's own word for its version: board/version.py, or board/app.py on a
# firmware older than that module (which imports the whole application).
VERSION_SNIPPET = """
try:
    from board.version import FIRMWARE_VERSION as v
except ImportError:
    from board.app import FIRMWARE_VERSION as v
print("FIRMWARE_VERSION", v)
"""


def firmware_version(port, _unused=None):
    """The firmware version the board on `port` reports; ToolError if it cannot say."""
    proc = mpremote(port, "exec", VERSION_SNIPPET)
    for line in (proc.stdout or "").splitlines():
        if line.startswith("FIRMWARE_VERSION "):
            return line.split(None, 1)[1].strip()
    if proc.returncode != 0:
        raise _failed(proc, "mpremote could not ask %s for its firmware version" % port)
    raise ToolError(
        "%s did not say its firmware version (is the injector firmware on it?): %s"
        % (port, _last_line(proc))
    )


def soft_restart(port, timeout=RESTART_TIMEOUT):
    """Restart main.py with a soft reset from the friendly REPL; True once the board said
    "soft reboot" (the RTC set on connecting survives it), False if it did not."""
    import serial  # pyserial: mpremote's own

    try:
        with serial.Serial(port, 115200, timeout=0.1) as link:
            link.write(RESTART_BYTES)
            link.flush()
            seen = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                seen += link.read(256)
                if b"soft reboot" in seen:
                    return True
                seen = seen[-16:]  # the words may come in two reads
    except (OSError, serial.SerialException):
        pass
    return False


def restart(port):
    """Boot the app again after a connection: a soft reset (the clock kept), else a hard
    reset with a warning (its clock starts again at 2021: "time unknown")."""
    if soft_restart(port):
        return
    reset(port)
    print(
        "injector: %s did not take a soft reset; it was reset instead, which stops its clock:"
        " sessions until the next connection have no time" % port,
        file=sys.stderr,
    )


DEVICE_SAVE = """
import json, os
from injcore.fsio import DirFS
from injcore.store import Store, encode
from injcore.settings import SettingsError
try:
    with open("/%(tmp)s") as f:
        p = json.load(f)
    st = Store(DirFS("/"), "%(name)s")
    try:
        slot, gen = st.save(p)
        back, info = st.load()
        same = info["slot"] == slot and info["generation"] == gen and encode(back) == encode(p)
        print("SAVED", slot, gen, "OK" if same else "MISMATCH")
    except SettingsError as e:
        print("REFUSED", json.dumps(e.problems))
finally:
    try:
        os.remove("/%(tmp)s")
    except OSError:
        pass
"""


def save_on_device(port, payload):
    """Have the device's own Store save `payload`; returns (slot, generation)."""
    with tempfile.TemporaryDirectory(prefix="injector-push-") as tmp:
        local = Path(tmp) / PUSH_NAME
        local.write_text(json.dumps(payload))
        snippet = DEVICE_SAVE % {"tmp": PUSH_NAME, "name": STORE_NAME}
        proc = mpremote(port, "fs", "cp", str(local), ":" + PUSH_NAME, "+", "exec", snippet)
    out = proc.stdout or ""
    for line in out.splitlines():
        if line.startswith("SAVED "):
            _, slot, gen, check = line.split()
            if check != "OK":
                raise ToolError(
                    "the device saved generation %s to slot %s but reads back something "
                    "else: check the flash" % (gen, slot)
                )
            return slot, int(gen)
        if line.startswith("REFUSED "):
            problems = json.loads(line[len("REFUSED ") :])
            raise ToolError("the device refused the record: " + "; ".join(problems))
    if proc.returncode != 0:
        raise _failed(proc, "mpremote could not save the settings on %s" % port)
    raise ToolError(
        "the device did not confirm the save (is the firmware's injcore on it?): %s"
        % (out.strip().splitlines() or ["no output"])[-1]
    )


class Source:
    """Where the record lives: a local folder (--dir) or a device (--port)."""

    def __init__(self, port=None, folder=None, do_reset=True):
        self.port = port
        self.folder = Path(folder) if folder is not None else None
        self.do_reset = do_reset
        self.touched = False  # a device was connected to (and so interrupted)

    @classmethod
    def of(cls, args):
        return cls(
            getattr(args, "port", None),
            getattr(args, "dir", None),
            not getattr(args, "no_reset", False),
        )

    @property
    def where(self):
        return self.port if self.port else str(self.folder)

    def load(self):
        """(payload, info, copied): info as Store.load's, copied the slot files off a device."""
        if self.port is None:
            payload, info = load_dir(self.folder)
            return payload, info, None
        with tempfile.TemporaryDirectory(prefix="injector-settings-") as tmp:
            copied = self._on_device(fetch, tmp)
            payload, info = load_dir(tmp)
        return payload, info, copied

    def firmware_version(self):
        """What the board says its firmware version is (a device only)."""
        return self._on_device(firmware_version, None)

    def save(self, payload):
        if self.port is None:
            return store_at(self.folder).save(payload)
        return self._on_device(save_on_device, payload)

    def _on_device(self, action, arg):
        try:
            result = action(self.port, arg)
        except ToolError as e:
            self.touched = self.touched or e.connected
            raise
        self.touched = True
        return result

    def finish(self):
        """Restart the app on a device we interrupted (errors here are reported, not raised)."""
        if self.port is not None and self.touched and self.do_reset:
            self.touched = False
            try:
                restart(self.port)
            except ToolError as e:
                print("injector: %s" % e, file=sys.stderr)
                return False
        return True


# ---- merging and checking ---------------------------------------------------------

SECTIONS = {
    "settings": FIELDS,
    "limits": S.LIMIT_FIELDS,
    "calibration": tuple(S.CALIBRATION_DEFAULTS),
}


def merge(current, change):
    """`change` (a full or partial payload) over `current`: sections are merged field by field."""
    merged = json.loads(json.dumps(current))  # a deep copy
    for key, value in change.items():
        if key in SECTIONS and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return merged


def is_full(change):
    """True if `change` gives every field of the record (it needs nothing from the device)."""
    if not all(k in change for k in ("settings", "limits", "calibration", "service_pin")):
        return False
    return all(
        isinstance(change[k], dict) and all(f in change[k] for f in fields)
        for k, fields in SECTIONS.items()
    )


def core_problems(payload):
    """What the core refuses at boot although the store accepts it (persist.restore applies the
    calibration through Core.set_calibration / set_backlash / set_line_tau, which check these
    ranges)."""
    cal = payload.get("calibration") if isinstance(payload, dict) else None
    if not isinstance(cal, dict):
        return []
    problems = []
    f = cal.get("dose_factor_ppm")
    lo, hi = M.DOSE_FACTOR_MIN_PPM, M.DOSE_FACTOR_MAX_PPM
    if is_int(f) and not lo <= f <= hi:
        problems.append(
            "calibration.dose_factor_ppm: %d is out of range; allowed %d..%d ppm "
            "(the core refuses it at boot)" % (f, lo, hi)
        )
    b = cal.get("backlash_steps")
    hi = M.um_to_plunger_steps(M.BACKLASH_MAX_UM)
    if is_int(b) and not 0 <= b <= hi:
        problems.append(
            "calibration.backlash_steps: %d is out of range; allowed 0..%d steps "
            "(the core refuses it at boot)" % (b, hi)
        )
    t = cal.get("line_tau_us")
    if is_int(t) and t != M.LINE_TAU_ESTIMATE and not 0 <= t <= M.LINE_TAU_MAX_US:
        problems.append(
            "calibration.line_tau_us: %d is out of range; allowed 0..%d us, or %d for the "
            "reference line's estimate (the core refuses it at boot)"
            % (t, M.LINE_TAU_MAX_US, M.LINE_TAU_ESTIMATE)
        )
    return problems


def problems_of(payload):
    """The device's validation (store.validate) plus the core's calibration ranges."""
    return S.validate(payload) + core_problems(payload)


def changes(old, new):
    """['section.field: old -> new', ...] for every value that differs."""
    out = []
    for key in ("settings", "limits", "calibration"):
        a, b = old.get(key, {}), new.get(key, {})
        if not isinstance(b, dict):
            continue
        for f in b:
            if a.get(f) != b.get(f):
                out.append("%s.%s: %r -> %r" % (key, f, a.get(f), b.get(f)))
    if old.get("service_pin") != new.get("service_pin"):
        out.append("service_pin: changed")
    return out


def write_record(src, current, info, merged, full, onto_defaults=False, out=None):
    """Validate `merged` and save it at `src`. Returns an exit code; prints why on refusal."""
    out = sys.stdout if out is None else out
    problems = problems_of(merged)
    if problems:
        print(
            "injector settings: refused, nothing written (%d problem%s):"
            % (len(problems), "" if len(problems) == 1 else "s"),
            file=sys.stderr,
        )
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 2
    if info["defaults"] and not full and not onto_defaults:
        print(
            "injector settings: refused, nothing written: %s holds no valid record, so a partial "
            "change would be merged onto the firmware's defaults and the device would no longer "
            "ask an engineer to confirm them. Push a full record, confirm the settings on the "
            "device first, or pass --onto-defaults." % src.where,
            file=sys.stderr,
        )
        return 2
    diff = changes(current, merged)
    if not diff and not info["defaults"] and not info["migrated_from"]:
        print(
            "no change: %s already holds this record (slot %s, generation %d); nothing written"
            % (src.where, info["slot"], info["generation"]),
            file=out,
        )
        return 0
    slot, generation = src.save(merged)
    for line in diff:
        print("  " + line, file=out)
    print("saved to %s: %s.%s, generation %d" % (src.where, STORE_NAME, slot, generation), file=out)
    return 0


# ---- showing ----------------------------------------------------------------------


def _unit_note(name, v):
    if name == "mode":
        return "%s (%d)" % (MODE_NAMES[v], v)
    if name == "syringe_model":
        if v == M.CUSTOM_SYRINGE:
            return "custom (0): inner diameter syringe_id_um"
        return "%s (%d)" % (M.SYRINGES[v][M.SYR_NAME], v)
    if name == "needle_count":
        return "%d needle%s" % (v, "" if v == 1 else "s")
    unit = RANGES[name][3]
    text = "%d %s" % (v, unit)
    if unit == "nL":
        text += "  (%s uL)" % ("%.3f" % (v / 1000)).rstrip("0").rstrip(".")
    elif name == "shot_rate_mhz":
        text += "  (%.2f shots/s)" % (v / 1000)
    elif name == "depth_um":
        text += "  (%.1f mm)" % (v / 1000)
    return text


def describe(payload, info, where, copied=None):
    """The readable lines of `settings show`."""
    lines = ["source: %s" % where]
    if copied is not None:
        lines.append("  files on the device: %s" % (", ".join(copied) if copied else "none"))
    if info["defaults"]:
        lines.append(
            "DEFAULTS: no valid record; the device would boot with the firmware's defaults "
            "below and inject nothing until an engineer confirms them"
        )
    else:
        lines.append(
            "record: %s.%s, generation %d" % (STORE_NAME, info["slot"], info["generation"])
        )
    if info["migrated_from"]:
        lines.append(
            "  stored as schema %d: migrated to %d here; the device stores it again at boot"
            % (info["migrated_from"], S.SCHEMA_VERSION)
        )
    for slot in S.SLOTS:
        if slot in info["problems"]:
            lines.append("  skipped %s.%s: %s" % (STORE_NAME, slot, info["problems"][slot]))
    s = payload["settings"]
    lines.append("settings:")
    for name in FIELDS:
        v = s[name]
        note = _unit_note(name, v)
        if name == "syringe_id_um" and s["syringe_model"] != M.CUSTOM_SYRINGE:
            note += "  (unused: not a custom syringe)"
        lines.append("  %-17s %s" % (name, note))
    lines.append("limits:")
    for name in S.LIMIT_FIELDS:
        v = payload["limits"][name]
        unit = Limits.RANGES[name][2]
        extra = "  (%s uL)" % ("%.3f" % (v / 1000)).rstrip("0").rstrip(".") if unit == "nL" else ""
        lines.append("  %-17s %d %s%s" % (name, v, unit, extra))
    lines.append("calibration:")
    cal = payload["calibration"]
    f = cal["dose_factor_ppm"]
    lines.append(
        "  %-17s %d ppm  (x%.6f, %+.2f %%)"
        % ("dose_factor_ppm", f, f / 1e6, (f - M.DOSE_FACTOR_ONE_PPM) / 1e4)
    )
    b = cal["backlash_steps"]
    lines.append(
        "  %-17s %d steps  (%.1f um)" % ("backlash_steps", b, b * 1000 / M.PLUNGER_STEPS_PER_MM)
    )
    t = cal["line_tau_us"]
    if t == M.LINE_TAU_ESTIMATE:
        lines.append(
            "  %-17s %d  (not measured: the reference line's estimate)" % ("line_tau_us", t)
        )
    else:
        lines.append("  %-17s %d us  (%.1f ms)" % ("line_tau_us", t, t / 1000))
    for name in sorted(set(cal) - set(S.CALIBRATION_DEFAULTS)):
        lines.append("  %-17s %r" % (name, cal[name]))
    lines.append("service_pin: %s" % payload["service_pin"])
    return lines


# ---- the CLI ----------------------------------------------------------------------


def add_source_args(p, required=True):
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument(
        "--port", metavar="PORT", help="the device's serial port (mpremote connect PORT)"
    )
    g.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="a folder holding %s (the simulator, a copy)" % " / ".join(SLOT_FILES),
    )
    p.add_argument(
        "--no-reset",
        action="store_true",
        help="with --port: leave the board at the REPL instead of resetting it",
    )


def add_parser(sub):
    p = sub.add_parser(
        "settings",
        help="show or change the device's stored settings, limits and calibration",
        description="The record the device keeps (%s, injcore.store schema %d), read and written "
        "with the firmware's own Store and validation. %s"
        % (" / ".join(SLOT_FILES), S.SCHEMA_VERSION, PORT_NOTE),
    )
    ssub = p.add_subparsers(dest="settings_command", title="actions", metavar="ACTION")
    ps = ssub.add_parser(
        "show",
        help="print the stored record",
        description="Print the newest valid record (or say the defaults would be used), with "
        "units, its slot and generation and why any slot was skipped. Exit 0, 1 if "
        "there is no valid record (the defaults are shown), 2 on an error. " + PORT_NOTE,
    )
    add_source_args(ps)
    ps.add_argument(
        "--json",
        action="store_true",
        help="print the payload as JSON (a file `settings push` takes)",
    )
    pp = ssub.add_parser(
        "push",
        help="validate a JSON record (full or partial) and store it",
        description="FILE is JSON: a full payload {settings, limits, calibration, service_pin} or "
        'a part of one ({"settings": {"dose_nl": 25000}}) that is merged onto the '
        "record stored now. The result is checked with the firmware's store.validate "
        "(and the core's calibration ranges); any problem refuses the push and nothing "
        "is written. With --port the device's own Store saves it (atomically, "
        "validating again) and the board is restarted so the app boots with it. Exit 0, "
        "2 refused or an error. " + PORT_NOTE,
    )
    pp.add_argument("file", type=Path, metavar="FILE")
    add_source_args(pp)
    pp.add_argument(
        "--onto-defaults",
        action="store_true",
        help="allow a partial push when there is no valid record (merges onto the "
        "defaults, which the device then no longer asks to confirm)",
    )
    p.set_defaults(run=run, parser=p)


def read_change(path):
    """The JSON object of a `settings push` file; ToolError, one line, if it is not one.
    A file larger than the store's largest record is refused unread."""
    path = Path(path)
    try:
        data = read_capped(path, S.MAX_PAYLOAD)
    except TooLarge as e:
        raise ToolError(
            "%s: %d bytes is too large; a settings record is at most %d bytes "
            "(injcore.store.MAX_PAYLOAD)" % (path, e.size_bytes, e.max_bytes)
        ) from None
    except Refusal as e:
        raise ToolError("cannot read %s: %s" % (path, e)) from None
    try:
        change = loads_json(data)
    except Refusal as e:
        raise ToolError("%s is %s" % (path, e)) from None
    if not isinstance(change, dict):
        raise ToolError('%s must hold a JSON object ({"settings": {...}, ...})' % path)
    return change


def run_show(args, src):
    payload, info, copied = src.load()
    if args.json:
        print(json.dumps(payload, indent=2, sort_keys=True))
        what = (
            "no valid record: the defaults"
            if info["defaults"]
            else "%s.%s, generation %d" % (STORE_NAME, info["slot"], info["generation"])
        )
        print("injector settings: %s from %s" % (what, src.where), file=sys.stderr)
        for slot, why in sorted(info["problems"].items()):
            print("  skipped %s.%s: %s" % (STORE_NAME, slot, why), file=sys.stderr)
    else:
        print("\n".join(describe(payload, info, src.where, copied)))
    return 1 if info["defaults"] else 0


def run_push(args, src):
    change = read_change(args.file)
    current, info, _ = src.load()
    merged = merge(current, change)
    return write_record(src, current, info, merged, is_full(change), args.onto_defaults)


def run(args):
    cmd = args.settings_command
    if cmd is None:
        return no_action(args.parser)
    src = Source.of(args)
    try:
        code = run_show(args, src) if cmd == "show" else run_push(args, src)
    except BrokenPipeError:  # the reader of stdout went away: cli.main ends quietly
        src.finish()
        raise
    except (ToolError, OSError) as e:
        print("injector settings: %s" % e, file=sys.stderr)
        code = 2
    if not src.finish():
        code = 2
    return code
