"""The treatment log on the host: decode a pulled log folder, export CSV, pull with mpremote.

    injector logs pull --port PORT [--out DIR]   copy the device's :log folder to DIR/log,
                                                 merging with the log there (same device)
    injector logs show DIR                       sessions, totals and problems
    injector logs export DIR --csv FILE          one row per record (puncture, session start/end,
                                                 protocol, zone, syringe, calibration)

The records and their layout are firmware/injcore/tlog.py's (one decoder for
both). A damaged file never stops the decoding: bad CRCs and torn records
are reported with their file and offset and skipped, the good records around
them kept.

A session run by a protocol (injcore.protocol.Run, logged through
tlog.ProtocolLog) has .protocol (name, version, zone count) and .zones:
zone index -> ZoneInfo (name, planned punctures, cap, skipped, ...) from its
ZONE records; its punctures carry the zone index. zone_totals() sums the
punctures per zone. A session's .calibrations are its CALIBRATION records (the
line time constant, backlash and dose factor in use: one when it opened, one
per change); calibration_of(rec) names the one a puncture was made with.
Its .device (the DEVICE record: device id, firmware) and .time_s (the device's
clock at its start, 0 unknown) say who wrote it and when; show, the CSV and
the report say "time unknown" where the device's clock was not set.

pull merges: the device only appends to its newest ring file and drops its
oldest, so each file kept in the folder must be the start of the device's
file of that name. The files that grew or are new are written, the records are
told apart by file and offset (pulling again adds nothing), the files the
device dropped stay, and a folder whose log the device's does not continue
(another device's id, or a log that began again) is refused before anything is
written. Like every --port command it sets the device's clock and restarts
the application afterwards (host_tools/settings_tool.py).
"""

import csv
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import sim  # noqa: F401  (puts firmware/ on sys.path)
from host_tools import settings_tool as ST  # noqa: E402
from host_tools.cliutil import no_action, out_dir_problem, out_file_problem
from injcore import machine as M  # noqa: E402
from injcore import tlog  # noqa: E402
from injcore.codes import FAULT_NAMES  # noqa: E402
from injcore.settings import MODE_NAMES  # noqa: E402


def calibration_text(rec):
    """The figures of a CALIBRATION record, for a person: tau, backlash, dose factor."""
    return "line tau %.1f ms, backlash %.1f um, dose factor x%.4f" % (
        rec["line_tau_us"] / 1000,
        rec["backlash_steps"] * 1000 / M.PLUNGER_STEPS_PER_MM,
        rec["dose_factor_ppm"] / M.DOSE_FACTOR_ONE_PPM,
    )


def syringe_text(rec):
    """The syringe of a SESSION_START or SYRINGE record: its model's name from the table,
    or the bore."""
    model = rec["syringe_model"]
    if model == M.CUSTOM_SYRINGE:
        return "custom, inner diameter %.2f mm" % (rec["syringe_id_um"] / 1000)
    if model in M.SYRINGES:
        return M.SYRINGES[model][M.SYR_NAME]
    return "model %d (not in this syringe table)" % model  # a log of another firmware


class LogError(Exception):
    """A log folder that cannot be read at all (the message says why)."""


@dataclass
class ProtocolInfo:
    name: str  # whole, or its first tlog.PROTOCOL_NAME_CHARS (an older log: not `whole`)
    version: int
    zone_count: int
    example: bool = False
    whole: bool = False  # a PROTOCOL_NAME record followed: the name is the protocol's own

    @property
    def display_name(self):
        """The name, with "..." where an older log may have cut it."""
        cut = not self.whole and len(self.name) >= tlog.PROTOCOL_NAME_CHARS
        return self.name + ("..." if cut else "")


def time_text(time_s):
    """A device time (seconds since 1970 UTC) for a person; 0: "time unknown"."""
    if not time_s:
        return "time unknown"
    return datetime.fromtimestamp(time_s, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class ZoneInfo:
    """One protocol zone as the session's ZONE records tell it (the last record wins)."""

    index: int
    name: str
    planned: int  # punctures; 0 = "free"
    cap_nl: int
    dose_set_nl: int
    mode: int
    skipped: bool = False
    entered: int = 0  # Z_ENTER records (a zone gone back to is entered again)
    done: bool = False  # a Z_DONE record: the run ended with this zone in its plan

    @property
    def planned_nl(self):
        """Planned volume: planned punctures x the zone's dose (0 for a "free" zone)."""
        return self.planned * self.dose_set_nl


@dataclass
class Session:
    number: int
    start: dict | None = None
    end: dict | None = None
    punctures: list = field(default_factory=list)  # PUNCTURE records, complete and cut
    gaps: list = field(default_factory=list)  # (after, before) numbers with none between
    protocol: ProtocolInfo | None = None  # from its PROTOCOL record
    zones: dict = field(default_factory=dict)  # zone index -> ZoneInfo
    zone_events: list = field(default_factory=list)  # its ZONE records in log order
    syringes: list = field(default_factory=list)  # SYRINGE records: syringes confirmed in it
    calibrations: list = field(default_factory=list)  # CALIBRATION records: at its start, changes
    device: dict | None = None  # its DEVICE record (None: an older log, or gone)

    @property
    def time_s(self):
        """When it started (seconds since 1970 UTC), 0 unknown: no clock, or no start."""
        return self.start["time_s"] if self.start else 0

    @property
    def started_text(self):
        if not self.start:
            return "time unknown (start record not in the log)"
        return time_text(self.time_s)

    @property
    def device_text(self):
        """The device and firmware that wrote it, or why unknown."""
        d = self.device
        if d is None:
            return "unknown (no device record: an older log)"
        return "%s, firmware %s" % (d["device_id"] or "?", d["firmware"] or "?")

    def syringe_of(self, rec):
        """The record naming the syringe a record of this session came from (a puncture
        of it): the last SYRINGE record before it, else the SESSION_START (None if gone)."""
        return _last_before(self.syringes, rec, self.start)

    def calibration_of(self, rec):
        """The CALIBRATION record in force for a record of this session (a puncture): the
        last one before it (None: gone from the ring, or a log older than the records)."""
        return _last_before(self.calibrations, rec, None)

    @property
    def run_ended(self):
        """The protocol run wrote its end (Z_DONE records)."""
        return any(z.done for z in self.zones.values())

    @property
    def complete(self):
        return [p for p in self.punctures if not p["alarm"]]

    @property
    def lost_known(self):
        """Punctures known lost: gaps in the numbering plus what the SESSION_END counts."""
        gap = sum(b - a - 1 for a, b in self.gaps)
        return gap + (self.end["lost"] if self.end else 0)


def _last_before(recs, rec, found):
    """The last of `recs` (in log order) before `rec`, else `found`."""
    for r in recs:
        if (r["file"], r["offset"]) < (rec["file"], rec["offset"]):
            found = r
    return found


@dataclass
class Decoded:
    records: list  # dicts in log order, each with "file" and "offset"; t_ms unwrapped
    problems: list  # strings: bad CRC / truncated / odd file names
    sessions: dict  # number -> Session, in log order


def find_ring(folder):
    """The folder that holds the ring files: `folder` itself or its `log` subfolder."""
    folder = Path(folder)
    if not folder.exists():
        raise LogError("no such folder: %s" % folder)
    if not folder.is_dir():
        raise LogError("%s is a file, not a log folder (give the folder `logs pull` made)" % folder)
    if not any(tlog.file_seq(p.name) >= 0 for p in folder.iterdir()) and (folder / "log").is_dir():
        folder = folder / "log"
    return folder


def read_dir(folder):
    """Decode every ring file of a log folder. Raises LogError only if there is no folder."""
    folder = find_ring(folder)
    files = []
    problems = []
    for p in sorted(folder.iterdir()):
        seq = tlog.file_seq(p.name)
        if seq < 0:
            problems.append(
                "%s: not a log file name (NNNNNNNN%s), ignored" % (p.name, tlog.NAME_SUFFIX)
            )
        elif p.is_file():
            files.append((seq, p))
    files.sort()
    records = []
    for _seq, p in files:
        data = p.read_bytes()
        for item in tlog.scan(data):
            if item[0] == "rec":
                rec = dict(item[2], file=p.name, offset=item[1])
                records.append(rec)
            else:
                _, off, length, reason = item
                what = "truncated record (torn write)" if reason == "truncated" else "bad CRC"
                problems.append("%s @%d: %s, %d bytes skipped" % (p.name, off, what, length))
    unwrap_times(records)
    return Decoded(records, problems, sessions_of(records))


def join_protocol_names(records):
    """A PROTOCOL record gets its whole name from the PROTOCOL_NAME record after it
    (marked "whole": a name without one may be cut, an older log's)."""
    last = {}
    for r in records:
        if r["kind"] == tlog.K_PROTOCOL:
            last[r["session"]] = r
        elif r["kind"] == tlog.K_PROTOCOL_NAME:
            p = last.pop(r["session"], None)
            if p is not None and not p.get("whole"):
                p["name"] += r["name"]
                p["whole"] = True


def unwrap_times(records):
    """t_ms is stored modulo 2**24: make it grow within each session."""
    last = {}
    span = 1 << tlog.T_BITS
    for r in records:
        if r["kind"] != tlog.K_PUNCTURE:
            continue
        s = r["session"]
        base, prev = last.get(s, (0, -1))
        t = r["t_ms"] + base
        while prev >= 0 and t + span // 2 < prev:
            base += span
            t += span
        r["t_ms"] = t
        last[s] = (base, t)


def sessions_of(records):
    join_protocol_names(records)
    sessions = {}
    for r in records:
        s = sessions.setdefault(r["session"], Session(r["session"]))
        k = r["kind"]
        if k == tlog.K_SESSION_START:
            s.start = r
        elif k == tlog.K_SESSION_END:
            s.end = r
        elif k == tlog.K_PROTOCOL:
            s.protocol = ProtocolInfo(
                r["name"], r["version"], r["zones"], bool(r["example"]), bool(r.get("whole"))
            )
        elif k == tlog.K_DEVICE:
            s.device = r
        elif k == tlog.K_SYRINGE:
            s.syringes.append(r)
        elif k == tlog.K_CALIBRATION:
            s.calibrations.append(r)
        elif k == tlog.K_ZONE:
            _zone_record(s, r)
        elif k == tlog.K_PUNCTURE:
            s.punctures.append(r)
    for s in sessions.values():
        prev = 0 if s.start else None  # without its start the first number may be anything
        for p in s.complete:
            if prev is not None and p["number"] > prev + 1:
                s.gaps.append((prev, p["number"]))
            prev = p["number"]
    return sessions


def _zone_record(s, r):
    s.zone_events.append(r)
    i = r["index"]
    z = s.zones.get(i)
    if z is None:
        z = s.zones[i] = ZoneInfo(
            i, r["name"], r["planned"], r["cap_nl"], r["dose_set_nl"], r["mode"]
        )
    z.name, z.planned, z.cap_nl = r["name"], r["planned"], r["cap_nl"]
    z.dose_set_nl, z.mode, z.skipped = r["dose_set_nl"], r["mode"], bool(r["skipped"])
    if r["event"] == tlog.Z_ENTER:
        z.entered += 1
    elif r["event"] == tlog.Z_DONE:
        z.done = True


def zone_totals(session):
    """Per zone index (tlog.ZONE_NONE for punctures outside any zone): a dict with
    complete (punctures), cut (cut by a fault) and delivered_nl (all its records)."""
    out = {}
    for p in session.punctures:
        t = out.setdefault(p["zone"], {"complete": 0, "cut": 0, "delivered_nl": 0})
        t["cut" if p["alarm"] else "complete"] += 1
        t["delivered_nl"] += p["dose_nl"]
    return out


CSV_COLUMNS = (
    "kind",
    "session",
    "number",
    "zone",
    "t_ms",
    "mode",
    "depth_set_um",
    "depth_um",
    "dose_set_nl",
    "dose_nl",
    "force_mn",
    "alarm",
    "warning",
    "partial",
    "fault",
    "fault_name",
    "time_s",
    "time_utc",
    "syringe_model",
    "syringe_id_um",
    "lot",
    "punctures",
    "delivered_nl",
    "primed_nl",
    "alarms",
    "partials",
    "lost",
    "lost_max",
    "interrupted",
    "name",
    "version",
    "zones",
    "example",
    "index",
    "event",
    "skipped",
    "planned",
    "cap_nl",
    "line_tau_us",
    "backlash_steps",
    "dose_factor_ppm",
    "device_id",
    "firmware",
    "file",
    "offset",
)


def _iso(time_s):
    return datetime.fromtimestamp(time_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def csv_row(r, session=None):
    """One CSV row of a record. time_utc: the record's time_s, or for a puncture its
    session's start plus t_ms; "unknown" where the device had no clock (time_s 0)."""
    row = dict(r)
    row["kind"] = tlog.KIND_NAMES[r["kind"]]
    if "time_s" in r:
        row["time_utc"] = _iso(r["time_s"]) if r["time_s"] else "unknown"
    elif r["kind"] == tlog.K_PUNCTURE and session is not None and session.start is not None:
        t0 = session.time_s
        row["time_utc"] = _iso(t0 + r["t_ms"] // 1000) if t0 else "unknown"
    if r["kind"] == tlog.K_PUNCTURE:
        row["mode"] = MODE_NAMES[r["mode"]] if r["mode"] < len(MODE_NAMES) else r["mode"]
        row["zone"] = "" if r["zone"] == tlog.ZONE_NONE else r["zone"]
        row["force_mn"] = "invalid" if r["force_mn"] == tlog.FORCE_BAD else r["force_mn"]
        f = r["fault"]
        row["fault_name"] = FAULT_NAMES[f] if f and f < len(FAULT_NAMES) else ("" if not f else f)
    elif r["kind"] == tlog.K_ZONE:
        row["mode"] = MODE_NAMES[r["mode"]] if r["mode"] < len(MODE_NAMES) else r["mode"]
        row["event"] = tlog.ZONE_EVENT_NAMES[r["event"]] or r["event"]
    return {c: row.get(c, "") for c in CSV_COLUMNS}


def export_csv(decoded, path):
    """Write the records as CSV to `path`; LogError if its folder does not exist (a typo
    in a path must not quietly make folders) or it is a folder."""
    path = Path(path)
    why = out_file_problem(path)
    if why:
        raise LogError(why)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, CSV_COLUMNS)
        w.writeheader()
        for r in decoded.records:
            w.writerow(csv_row(r, decoded.sessions.get(r["session"])))
    return path


def summary_lines(decoded):
    lines = []
    for s in decoded.sessions.values():
        delivered = s.end["delivered_nl"] if s.end else sum(p["dose_nl"] for p in s.punctures)
        state = (
            "ended"
            if s.end and not s.end["interrupted"]
            else ("interrupted" if s.end else "open (no end record)")
        )
        lot = s.start["lot"] if s.start else "?"
        lines.append(
            "session %d: %d punctures (%d cut by a fault), %.1f uL, lot %r, %s, lost %d%s"
            % (
                s.number,
                len(s.complete),
                len(s.punctures) - len(s.complete),
                delivered / 1000,
                lot,
                state,
                s.lost_known,
                " (+ up to %d)" % s.end["lost_max"] if s.end and s.end["lost_max"] else "",
            )
        )
        lines.append("  started %s; device %s" % (s.started_text, s.device_text))
        for r in s.syringes:
            lines.append(
                "  syringe %s confirmed after puncture %d" % (syringe_text(r), r["punctures"])
            )
        for i, r in enumerate(s.calibrations):  # the first one is the session's start
            when = "at the start" if i == 0 else "after puncture %d" % r["punctures"]
            lines.append("  calibration %s: %s" % (when, calibration_text(r)))
        if s.protocol:
            lines.append(
                "  protocol %r v%d: %d zones, %d skipped%s"
                % (
                    s.protocol.display_name,
                    s.protocol.version,
                    s.protocol.zone_count,
                    sum(1 for z in s.zones.values() if z.skipped),
                    "" if s.run_ended else ", run not ended",
                )
            )
    return lines


# ---- pull ------------------------------------------------------------------


def pull_command(dest):
    """The mpremote arguments that copy the device's :log folder into `dest` (as dest/log)."""
    return ["fs", "cp", "-r", ":log", str(dest) + "/"]


def ring_folder(out):
    """Where a pull keeps the ring files: `out` itself if it holds some, else out/log."""
    out = Path(out)
    if out.is_dir() and any(tlog.file_seq(p.name) >= 0 for p in out.iterdir()):
        return out
    return out / "log"


def device_ids(decoded):
    """The device ids its DEVICE records name (older logs have none)."""
    return {r["device_id"] for r in decoded.records if r["kind"] == tlog.K_DEVICE} - {""}


def _ring_files(folder):
    if not folder.is_dir():
        return {}
    return {p.name: p for p in folder.iterdir() if tlog.file_seq(p.name) >= 0 and p.is_file()}


def merge_plan(here, there):
    """Which of the device's ring files to write into the folder: {name: bytes}; LogError
    if the device's log does not continue the folder's.

    here, there: {name: bytes} of the folder's and the device's ring files. The device
    only appends to its newest file and drops its oldest, so each file the folder has
    must be the start of the device's one of that name, and none may come after the
    device's newest (else the device's log was cleared and began again, or it is
    another device's). The folder's files the device has dropped stay.
    """
    plan = {}
    last = max((tlog.file_seq(n) for n in there), default=-1)
    for name in sorted(here):
        if name not in there and tlog.file_seq(name) > last:
            raise LogError(
                "the folder's %s comes after the device's newest log file: the device's log "
                "began again (or is another device's); pull into another folder (--out)" % name
            )
    for name, data in sorted(there.items()):
        old = here.get(name)
        if old is not None and not data.startswith(old):
            raise LogError(
                "the folder's %s is not the start of the device's %s: another device's log, "
                "or the device's log began again; pull into another folder (--out)" % (name, name)
            )
        if old != data:
            plan[name] = data
    return plan


def _what_is_new(before, after):
    """A phrase naming the records in `after` that `before` lacks (by file and offset)."""
    seen = {(r["file"], r["offset"]) for r in before.records} if before else set()
    new = [r for r in after.records if (r["file"], r["offset"]) not in seen]
    if not new:
        return 0, "nothing new"
    sessions = sorted({r["session"] for r in new})
    punctures = sum(1 for r in new if r["kind"] == tlog.K_PUNCTURE)
    return len(new), "%d new (%d puncture%s, session%s %s)" % (
        len(new),
        punctures,
        "" if punctures == 1 else "s",
        "" if len(sessions) == 1 else "s",
        ", ".join(str(n) for n in sessions),
    )


def pull(src, out, stdout=None):
    """Copy the device's log into `out` (ring_folder), merging with what is there.

    The same records pulled again change nothing; only what the device added since is
    written. A folder holding another device's log is refused before anything is
    written (LogError). Returns the Decoded folder after the pull.
    """
    stdout = sys.stdout if stdout is None else stdout
    why = out_dir_problem(Path(out))
    if why:
        raise LogError(why)
    folder = ring_folder(out)
    here = {n: p.read_bytes() for n, p in _ring_files(folder).items()}
    before = read_dir(folder) if here else None
    with tempfile.TemporaryDirectory(prefix="injector-log-") as tmp:
        src.touched = True  # from here on main.py was interrupted: restart it afterwards
        proc = ST.mpremote(src.port, *pull_command(tmp))
        got = Path(tmp) / "log"
        if proc.returncode != 0 and not got.is_dir():
            if "No such file" in (proc.stderr or "") + (proc.stdout or ""):
                raise LogError("the device has no log folder (:log)")
            raise ST._failed(proc, "mpremote could not copy :log from %s" % src.port)
        there = {n: p.read_bytes() for n, p in _ring_files(got).items()}
        pulled = read_dir(got)
    ids_here, ids_there = device_ids(before) if before else set(), device_ids(pulled)
    if ids_here and ids_there and not ids_here & ids_there:
        raise LogError(
            "%s holds the log of device %s, not of this one (%s): pull into another folder "
            "(--out)" % (folder, ", ".join(sorted(ids_here)), ", ".join(sorted(ids_there)))
        )
    plan = merge_plan(here, there)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in plan.items():
        part = folder / (name + ".part")
        part.write_bytes(data)
        part.replace(folder / name)
    after = read_dir(folder)
    _, new = _what_is_new(before, after)
    kept = len(after.records) - len(pulled.records)
    print(
        "pulled %d records from %s into %s: %s%s%s"
        % (
            len(pulled.records),
            src.port,
            folder,
            new,
            ", the rest already there" if before and new != "nothing new" else "",
            "; %d older records the device has since dropped stay" % kept if kept > 0 else "",
        ),
        file=stdout,
    )
    if ids_there:
        print("device %s" % ", ".join(sorted(ids_there)), file=stdout)
    return after


# ---- the CLI ----------------------------------------------------------------


def add_parser(sub):
    p = sub.add_parser(
        "logs",
        help="the treatment log: pull it from the device, show it, export it to CSV",
        description="The treatment log (firmware/injcore/tlog.py): a ring of files in the "
        "device's :log folder. Damaged records are reported and skipped.",
    )
    lsub = p.add_subparsers(dest="logs_command", title="actions", metavar="ACTION")
    pp = lsub.add_parser(
        "pull",
        help="copy the device's :log folder with mpremote",
        description="Copy the device's treatment log into DIR, merging with the log already "
        "there. " + ST.PORT_NOTE,
    )
    pp.add_argument(
        "--port", required=True, help="the device's serial port (mpremote connect PORT)"
    )
    pp.add_argument(
        "--out",
        type=Path,
        default=Path("build/logs"),
        metavar="DIR",
        help="where to keep it (DIR/log, or DIR if it holds the ring files; default "
        "build/logs). A pull into a folder with a log merges: only what the device added "
        "since is written, and another device's folder is refused",
    )
    pp.add_argument(
        "--no-reset",
        action="store_true",
        help="leave the board at the REPL instead of restarting the application",
    )
    ps = lsub.add_parser("show", help="sessions, totals and problems of a log folder")
    ps.add_argument("dir", type=Path, metavar="DIR")
    pe = lsub.add_parser("export", help="one CSV row per record")
    pe.add_argument("dir", type=Path, metavar="DIR")
    pe.add_argument("--csv", type=Path, required=True, metavar="FILE")
    p.set_defaults(run=run, parser=p)


def print_problems(decoded, limit=20):
    for line in decoded.problems[:limit]:
        print("  " + line, file=sys.stderr)
    if len(decoded.problems) > limit:
        print("  ... and %d more" % (len(decoded.problems) - limit), file=sys.stderr)


def run(args):
    cmd = args.logs_command
    if cmd is None:
        return no_action(args.parser)
    src = None
    try:
        if cmd == "pull":
            src = ST.Source(args.port, None, not args.no_reset)
            decoded = pull(src, args.out)
        else:
            why = out_file_problem(args.csv) if cmd == "export" else None
            if why:  # before reading the log: the mistake is in the command line
                raise LogError(why)
            decoded = read_dir(args.dir)
            if not decoded.records:
                print("injector logs: no valid records in %s" % args.dir, file=sys.stderr)
                print_problems(decoded)
                return 1
            if cmd == "show":
                print("\n".join(summary_lines(decoded)))
            else:
                export_csv(decoded, args.csv)
                print("%d records to %s" % (len(decoded.records), args.csv))
        if decoded.problems:
            print("injector logs: %d problem(s), skipped:" % len(decoded.problems), file=sys.stderr)
            print_problems(decoded)
        code = 0
    except BrokenPipeError:  # the reader of stdout went away: cli.main ends quietly
        if src is not None:
            src.finish()
        raise
    except (LogError, ST.ToolError, OSError) as e:
        print("injector logs: %s" % e, file=sys.stderr)
        code = 2
        if src is not None and isinstance(e, ST.ToolError):
            src.touched = e.connected
    if src is not None and not src.finish():
        code = 2
    return code
