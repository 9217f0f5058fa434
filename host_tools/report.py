"""`injector report SESSION`: charts and a one-page summary of one session of the treatment log.

Writes to --out (default build/report/session-N):
    dose.png      dose per puncture, set vs delivered (cut punctures marked)
    depth.png     depth per puncture, set vs reached
    force.png     peak force per puncture (sampled at main-loop rate)
    zones.png     volume per zone / protocol step
    summary.png   the summary as an image
    summary.md    the summary as text
"""

import sys
from pathlib import Path

from host_tools import logs
from injcore import tlog  # noqa: E402  (logs put firmware/ on sys.path)
from injcore.core import FAULT_NAMES  # noqa: E402


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def summary(session):
    """The summary of a logs.Session as (title, [(label, value)])."""
    s = session
    start, end = s.start or {}, s.end or {}
    complete = s.complete
    cut = [p for p in s.punctures if p["alarm"]]
    delivered = end.get("delivered_nl") if end else None
    logged = sum(p["dose_nl"] for p in s.punctures)
    syringe = "?"
    if start:
        syringe = ("custom, inner diameter %.2f mm" % (start["syringe_id_um"] / 1000)
                   if start["syringe_ml"] == 0 else "%d mL" % start["syringe_ml"])
    faults = sorted({FAULT_NAMES[p["fault"]] if p["fault"] < len(FAULT_NAMES) else str(p["fault"])
                     for p in cut})
    if not end:
        state = "no end record (still open when the log was pulled, or its end was lost)"
    elif end["interrupted"]:
        state = "interrupted (power cut or reset), closed at the next start"
    else:
        state = "ended normally"
    lost = "%d" % s.lost_known
    if end and end.get("lost_max"):
        lost += " known, up to %d more (not saved before the interruption)" % end["lost_max"]
    rows = [
        ("Session", "%d" % s.number),
        ("State", state),
        ("Syringe", syringe),
        ("Product lot", (start.get("lot") or "(none)") if start else "? (start record not in the log)"),
        ("Punctures", "%d complete, %d cut by a fault" % (len(complete), len(cut))),
        ("Volume delivered", "%.3f uL%s" % ((delivered if delivered is not None else logged) / 1000,
                                            "" if delivered is not None else " (sum of the records)")),
        ("Volume in the records", "%.3f uL" % (logged / 1000)),
        ("Primed", "%.3f uL" % (end["primed_nl"] / 1000) if end else "?"),
        ("Alarms", "%d%s" % (len(cut), (": " + ", ".join(faults)) if faults else "")),
        ("Partial punctures", "%d" % sum(1 for p in s.punctures if p["partial"])),
        ("Warnings during punctures", "%d" % sum(1 for p in s.punctures if p["warning"])),
        ("Lost punctures", lost),
    ]
    return "Treatment session %d" % s.number, rows


def write_report(decoded, number, out):
    if number not in decoded.sessions:
        have = ", ".join(str(n) for n in decoded.sessions) or "none"
        raise logs.LogError("session %d is not in the log (sessions: %s)" % (number, have))
    s = decoded.sessions[number]
    plt = _plt()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ps = s.punctures
    x = list(range(1, len(ps) + 1))
    cut_x = [i for i, p in zip(x, ps) if p["alarm"]]
    written = []

    def save(fig, name):
        path = out / name
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    def chart(name, title, ylabel, series, marks=None):
        fig, ax = plt.subplots(figsize=(8, 4))
        for label, ys, style in series:
            ax.plot(x, ys, style, label=label)
        if marks:
            ax.plot(cut_x, marks, "rx", markersize=10, label="cut by a fault")
        ax.set_title(title)
        ax.set_xlabel("puncture (log order)")
        ax.set_ylabel(ylabel)
        if ps:
            ax.legend()
        else:
            ax.text(0.5, 0.5, "no punctures", ha="center", transform=ax.transAxes)
        save(fig, name)

    chart("dose.png", "Session %d: dose per puncture" % number, "uL",
          [("set", [p["dose_set_nl"] / 1000 for p in ps], "k--"),
           ("delivered", [p["dose_nl"] / 1000 for p in ps], "bo-")],
          [p["dose_nl"] / 1000 for p in ps if p["alarm"]])
    chart("depth.png", "Session %d: depth per puncture" % number, "mm",
          [("set", [p["depth_set_um"] / 1000 for p in ps], "k--"),
           ("reached", [p["depth_um"] / 1000 for p in ps], "go-")],
          [p["depth_um"] / 1000 for p in ps if p["alarm"]])
    forces = [None if p["force_mn"] == tlog.FORCE_BAD else p["force_mn"] / 1000 for p in ps]
    chart("force.png", "Session %d: peak force per puncture (main-loop samples)" % number, "N",
          [("peak", [f if f is not None else float("nan") for f in forces], "m^-")])

    zones = {}
    for p in ps:
        z = "none" if p["zone"] == tlog.ZONE_NONE else str(p["zone"])
        zones[z] = zones.get(z, 0) + p["dose_nl"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(list(zones) or ["none"], [v / 1000 for v in zones.values()] or [0])
    ax.set_title("Session %d: volume per zone" % number)
    ax.set_xlabel("zone / protocol step")
    ax.set_ylabel("uL")
    save(fig, "zones.png")

    title, rows = summary(s)
    fig = plt.figure(figsize=(8.27, 5))
    fig.text(0.05, 0.93, title, fontsize=16, weight="bold")
    for i, (k, v) in enumerate(rows):
        y = 0.84 - i * 0.065
        fig.text(0.05, y, k, fontsize=10, weight="bold")
        fig.text(0.36, y, v, fontsize=10, wrap=True)
    fig.savefig(out / "summary.png", dpi=100)
    plt.close(fig)
    written.append(out / "summary.png")

    md = ["# " + title, ""] + ["- **%s**: %s" % (k, v) for k, v in rows]
    if s.gaps:
        md += ["", "Gaps in the puncture numbers: " + ", ".join("%d..%d" % g for g in s.gaps)]
    (out / "summary.md").write_text("\n".join(md) + "\n")
    written.append(out / "summary.md")
    return written


def add_parser(sub):
    p = sub.add_parser("report", help="charts and a one-page summary of one logged session",
                       description="Charts (dose, depth, force, volume per zone) and a summary "
                                   "of SESSION from a pulled treatment log.")
    p.add_argument("session", type=int, metavar="SESSION")
    p.add_argument("--log", type=Path, default=Path("build/logs"), metavar="DIR",
                   help="the log folder (default build/logs, where `injector logs pull` puts it)")
    p.add_argument("--out", type=Path, metavar="DIR", help="default build/report/session-N")
    p.set_defaults(run=run)


def run(args):
    try:
        decoded = logs.read_dir(args.log)
        if not decoded.records:
            print("injector report: no valid records in %s" % args.log, file=sys.stderr)
            logs.print_problems(decoded)
            return 1
        out = args.out or Path("build/report/session-%d" % args.session)
        written = write_report(decoded, args.session, out)
    except (logs.LogError, OSError) as e:
        print("injector report: %s" % e, file=sys.stderr)
        return 2
    if decoded.problems:
        print("injector report: %d problem(s) in the log, skipped:" % len(decoded.problems),
              file=sys.stderr)
        logs.print_problems(decoded)
    print("wrote %s" % ", ".join(str(p) for p in written))
    return 0
