"""The treatment log on the host: decode a pulled log folder, export CSV, pull with mpremote.

    injector logs pull --port PORT [--out DIR]   copy the device's :log folder to DIR/log
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
"""

import csv
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import sim  # noqa: F401  (puts firmware/ on sys.path)
from host_tools.cliutil import missing_port, no_action, out_dir_problem, out_file_problem
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
    name: str  # the first tlog.PROTOCOL_NAME_CHARS characters
    version: int
    zone_count: int
    example: bool = False


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
    sessions = {}
    for r in records:
        s = sessions.setdefault(r["session"], Session(r["session"]))
        k = r["kind"]
        if k == tlog.K_SESSION_START:
            s.start = r
        elif k == tlog.K_SESSION_END:
            s.end = r
        elif k == tlog.K_PROTOCOL:
            s.protocol = ProtocolInfo(r["name"], r["version"], r["zones"], bool(r["example"]))
        elif k == tlog.K_SYRINGE:
            s.syringes.append(r)
        elif k == tlog.K_CALIBRATION:
            s.calibrations.append(r)
        elif k == tlog.K_ZONE:
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
        else:
            s.punctures.append(r)
    for s in sessions.values():
        prev = 0 if s.start else None  # without its start the first number may be anything
        for p in s.complete:
            if prev is not None and p["number"] > prev + 1:
                s.gaps.append((prev, p["number"]))
            prev = p["number"]
    return sessions


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
    "file",
    "offset",
)


def csv_row(r):
    row = dict(r)
    row["kind"] = tlog.KIND_NAMES[r["kind"]]
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
            w.writerow(csv_row(r))
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
                    s.protocol.name,
                    s.protocol.version,
                    s.protocol.zone_count,
                    sum(1 for z in s.zones.values() if z.skipped),
                    "" if s.run_ended else ", run not ended",
                )
            )
    return lines


# ---- pull ------------------------------------------------------------------


def pull_command(port, out):
    """The mpremote command that copies the device's :log folder into `out` (as out/log)."""
    return [
        sys.executable,
        "-m",
        "mpremote",
        "connect",
        port,
        "fs",
        "cp",
        "-r",
        ":log",
        str(out) + "/",
    ]


def pull(port, out, timeout=300):
    """Copy the device's :log folder to OUT/log (files already there are overwritten, others
    kept); the path of OUT/log. The copy goes to a temporary folder first, so a failure
    leaves nothing behind: no half-copied ring, no empty folder."""
    out = Path(out)
    why = out_dir_problem(out) or missing_port(port)
    if why:
        raise LogError(why)
    with tempfile.TemporaryDirectory(prefix="injector-logs-") as tmp:
        try:
            proc = subprocess.run(
                pull_command(port, tmp), capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise LogError(
                "mpremote did not finish within %d s (is %s the injector?)" % (timeout, port)
            ) from None
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            raise LogError(
                "mpremote could not copy :log from %s: %s" % (port, msg[-1] if msg else "failed")
            )
        pulled = Path(tmp) / "log"
        if not pulled.is_dir():
            raise LogError("the device has no log folder (:log)")
        shutil.copytree(pulled, out / "log", dirs_exist_ok=True)
    return out / "log"


# ---- the CLI ----------------------------------------------------------------


def add_parser(sub):
    p = sub.add_parser(
        "logs",
        help="the treatment log: pull it from the device, show it, export it to CSV",
        description="The treatment log (firmware/injcore/tlog.py): a ring of files in the "
        "device's :log folder. Damaged records are reported and skipped.",
    )
    lsub = p.add_subparsers(dest="logs_command", title="actions", metavar="ACTION")
    pp = lsub.add_parser("pull", help="copy the device's :log folder with mpremote")
    pp.add_argument(
        "--port", required=True, help="the device's serial port (mpremote connect PORT)"
    )
    pp.add_argument(
        "--out",
        type=Path,
        default=Path("build/logs"),
        metavar="DIR",
        help="where to put it (DIR/log; default build/logs)",
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
    try:
        if cmd == "pull":
            where = pull(args.port, args.out)
            decoded = read_dir(where)
            print("pulled %d records to %s" % (len(decoded.records), where))
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
        return 0
    except BrokenPipeError:  # the reader of stdout went away: cli.main ends quietly
        raise
    except (LogError, OSError) as e:
        print("injector logs: %s" % e, file=sys.stderr)
        return 2
