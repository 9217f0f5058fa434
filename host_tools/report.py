"""`injector report SESSION`: charts and a one-page summary of one session of the treatment log.

Writes to --out (default build/report/session-N):
    dose.png      dose per puncture, set vs delivered (cut punctures marked)
    depth.png     depth per puncture, set vs reached
    force.png     peak force per puncture (sampled at main-loop rate)
    zones.png     volume per zone / protocol step
    summary.png   the summary as an image
    summary.md    the summary as text
and, for a session run by a protocol (its PROTOCOL and ZONE records):
    plan.png      planned vs delivered per zone: punctures done / planned, volume
                  delivered / planned (planned x the zone's dose) with the zone's cap;
                  skipped zones marked
  and summary.md gets the zone-by-zone table (zone_rows).

A zone's status: "skipped" (the run's flag at its end), "not reached" (never
entered), "complete" (planned punctures done), "zone cap reached" (what is left
of its cap is less than one dose: no further puncture could start; a zone with
suck-back can stop up to one suck-back earlier, which shows as "short"),
"short" (fewer than planned, cap not reached: the operator moved on, or
the session cap / the syringe stopped it), "free" (no planned count).
"""

import sys
from pathlib import Path

from host_tools import logs
from injcore import tlog  # noqa: E402  (logs put firmware/ on sys.path)
from injcore.codes import FAULT_NAMES  # noqa: E402
from injcore.settings import MODE_NAMES  # noqa: E402


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
    syringe = logs.syringe_text(start) if start else "?"
    for r in s.syringes:  # changed during the session
        syringe += "; %s after puncture %d" % (logs.syringe_text(r), r["punctures"])
    calibration = "; ".join(
        ("" if i == 0 else "after puncture %d: " % r["punctures"]) + logs.calibration_text(r)
        for i, r in enumerate(s.calibrations)
    )
    faults = sorted(
        {FAULT_NAMES[p["fault"]] if p["fault"] < len(FAULT_NAMES) else str(p["fault"]) for p in cut}
    )
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
        ("Calibration", calibration or "? (no calibration record: an older log)"),
        (
            "Product lot",
            (start.get("lot") or "(none)") if start else "? (start record not in the log)",
        ),
        ("Punctures", "%d complete, %d cut by a fault" % (len(complete), len(cut))),
        (
            "Volume delivered",
            "%.3f uL%s"
            % (
                (delivered if delivered is not None else logged) / 1000,
                "" if delivered is not None else " (sum of the records)",
            ),
        ),
        ("Volume in the records", "%.3f uL" % (logged / 1000)),
        ("Primed", "%.3f uL" % (end["primed_nl"] / 1000) if end else "?"),
        ("Alarms", "%d%s" % (len(cut), (": " + ", ".join(faults)) if faults else "")),
        ("Partial punctures", "%d" % sum(1 for p in s.punctures if p["partial"])),
        ("Warnings during punctures", "%d" % sum(1 for p in s.punctures if p["warning"])),
        ("Lost punctures", lost),
    ]
    if s.protocol:
        p = s.protocol
        zs = zone_rows(s)
        name = p.name + (
            "..." if len(p.name) >= tlog.PROTOCOL_NAME_CHARS else ""
        )  # the log keeps 17
        rows.insert(
            1,
            (
                "Protocol",
                "%s v%d%s%s"
                % (
                    name,
                    p.version,
                    " (example)" if p.example else "",
                    "" if s.run_ended else ", run not ended",
                ),
            ),
        )
        rows.insert(
            2,
            (
                "Zones",
                "%d of %d entered, %d skipped, %d stopped by their cap"
                % (
                    sum(1 for z in zs if z["entered"]),
                    p.zone_count,
                    sum(1 for z in zs if z["skipped"]),
                    sum(1 for z in zs if z["capped"]),
                ),
            ),
        )
    return "Treatment session %d" % s.number, rows


def zone_rows(session):
    """The protocol zones of a session, planned vs delivered: a list of dicts (by zone index).

    index, name, mode, planned (0 free), done (complete punctures), cut,
    dose_set_nl, planned_nl (0 free), delivered_nl (its records, cut ones too),
    cap_nl, entered, skipped, capped, status (see the module docstring).
    """
    totals = logs.zone_totals(session)
    rows = []
    for i in sorted(session.zones):
        z = session.zones[i]
        t = totals.get(i, {"complete": 0, "cut": 0, "delivered_nl": 0})
        # stopped by its cap: short of its plan (or "free") with less than a dose of the cap left
        capped = (
            bool(z.dose_set_nl)
            and z.cap_nl - t["delivered_nl"] < z.dose_set_nl
            and (not z.planned or t["complete"] < z.planned)
        )
        if z.skipped:
            status = "skipped" + (" (%d done)" % t["complete"] if t["complete"] else "")
        elif not z.entered:
            status = "not reached"
        elif z.planned and t["complete"] >= z.planned:
            status = "complete" + (
                " (%d over plan)" % (t["complete"] - z.planned) if t["complete"] > z.planned else ""
            )
        elif not z.planned:
            status = "free"
        elif capped:
            status = "zone cap reached"
        else:
            status = "short: %d of %d" % (t["complete"], z.planned)
        if capped and not status.startswith("zone cap"):
            status += "; zone cap reached"  # free, or skipped / not reached after punctures
        rows.append(
            {
                "index": i,
                "name": z.name,
                "mode": z.mode,
                "planned": z.planned,
                "done": t["complete"],
                "cut": t["cut"],
                "dose_set_nl": z.dose_set_nl,
                "planned_nl": z.planned_nl,
                "delivered_nl": t["delivered_nl"],
                "cap_nl": z.cap_nl,
                "entered": z.entered,
                "skipped": z.skipped,
                "capped": capped,
                "status": status,
            }
        )
    return rows


ZONE_TABLE_HEADER = (
    "| # | Zone | Mode | Punctures done / planned | Volume delivered / planned (uL) "
    "| Cap (uL) | Status |"
)


def zone_table(rows):
    """The markdown table of zone_rows (one line per zone, then the totals)."""
    lines = [ZONE_TABLE_HEADER, "|---:|---|---|---:|---:|---:|---|"]
    for r in rows:
        mode = MODE_NAMES[r["mode"]] if r["mode"] < len(MODE_NAMES) else str(r["mode"])
        lines.append(
            "| %d | %s | %s | %d / %s | %.3f / %s | %.3f | %s |"
            % (
                r["index"] + 1,
                r["name"],
                mode,
                r["done"],
                r["planned"] or "free",
                r["delivered_nl"] / 1000,
                "%.3f" % (r["planned_nl"] / 1000) if r["planned"] else "free",
                r["cap_nl"] / 1000,
                r["status"],
            )
        )
    lines.append(
        "| | **Total** | | %d / %d | %.3f / %.3f | | |"
        % (
            sum(r["done"] for r in rows),
            sum(r["planned"] for r in rows),
            sum(r["delivered_nl"] for r in rows) / 1000,
            sum(r["planned_nl"] for r in rows) / 1000,
        )
    )
    return lines


def plan_chart(plt, session, rows, title):
    """Planned vs delivered per zone: punctures (left) and volume with the cap (right)."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    names = ["%d %s" % (r["index"] + 1, r["name"]) for r in rows] or ["none"]
    x = list(range(len(names)))
    w = 0.38
    if rows:
        a1.bar(
            [i - w / 2 for i in x],
            [r["planned"] for r in rows],
            w,
            color="lightgrey",
            edgecolor="k",
            label="planned",
        )
        a1.bar([i + w / 2 for i in x], [r["done"] for r in rows], w, color="tab:blue", label="done")
        a2.bar(
            [i - w / 2 for i in x],
            [r["planned_nl"] / 1000 for r in rows],
            w,
            color="lightgrey",
            edgecolor="k",
            label="planned",
        )
        a2.bar(
            [i + w / 2 for i in x],
            [r["delivered_nl"] / 1000 for r in rows],
            w,
            color="tab:green",
            label="delivered",
        )
        a2.plot(x, [r["cap_nl"] / 1000 for r in rows], "r_", markersize=28, mew=2, label="zone cap")
        for i, r in zip(x, rows):
            mark = (
                "skipped"
                if r["skipped"]
                else ("cap reached" if r["capped"] else ("free" if not r["planned"] else ""))
            )
            if mark:
                for ax in (a1, a2):
                    ax.annotate(
                        mark,
                        (i, 0),
                        xytext=(0, 4),
                        textcoords="offset points",
                        ha="center",
                        rotation=90,
                        fontsize=8,
                        color="darkred",
                    )
    for ax, label in ((a1, "punctures"), (a2, "uL")):
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    a1.set_title("punctures: done vs planned")
    a2.set_title("volume: delivered vs planned (planned x dose)")
    fig.suptitle(title)
    return fig


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

    chart(
        "dose.png",
        "Session %d: dose per puncture" % number,
        "uL",
        [
            ("set", [p["dose_set_nl"] / 1000 for p in ps], "k--"),
            ("delivered", [p["dose_nl"] / 1000 for p in ps], "bo-"),
        ],
        [p["dose_nl"] / 1000 for p in ps if p["alarm"]],
    )
    chart(
        "depth.png",
        "Session %d: depth per puncture" % number,
        "mm",
        [
            ("set", [p["depth_set_um"] / 1000 for p in ps], "k--"),
            ("reached", [p["depth_um"] / 1000 for p in ps], "go-"),
        ],
        [p["depth_um"] / 1000 for p in ps if p["alarm"]],
    )
    forces = [None if p["force_mn"] == tlog.FORCE_BAD else p["force_mn"] / 1000 for p in ps]
    chart(
        "force.png",
        "Session %d: peak force per puncture (main-loop samples)" % number,
        "N",
        [("peak", [f if f is not None else float("nan") for f in forces], "m^-")],
    )

    zones = {}
    for p in ps:
        z = (
            "none"
            if p["zone"] == tlog.ZONE_NONE
            else (
                "%d %s" % (p["zone"] + 1, s.zones[p["zone"]].name)
                if p["zone"] in s.zones
                else str(p["zone"])
            )
        )
        zones[z] = zones.get(z, 0) + p["dose_nl"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(list(zones) or ["none"], [v / 1000 for v in zones.values()] or [0])
    ax.set_title("Session %d: volume per zone" % number)
    ax.set_xlabel("zone / protocol step")
    ax.set_ylabel("uL")
    if s.zones:
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    save(fig, "zones.png")

    zrows = zone_rows(s) if s.protocol or s.zones else []
    if zrows:
        name = (
            s.protocol.name + ("..." if len(s.protocol.name) >= tlog.PROTOCOL_NAME_CHARS else "")
            if s.protocol
            else "?"
        )
        save(
            plan_chart(
                plt, s, zrows, "Session %d, protocol %s: planned vs delivered" % (number, name)
            ),
            "plan.png",
        )

    title, rows = summary(s)
    fig = plt.figure(figsize=(8.27, 5))
    fig.text(0.05, 0.93, title, fontsize=16, weight="bold")
    dy = min(0.065, 0.82 / max(1, len(rows)))
    for i, (k, v) in enumerate(rows):
        y = 0.84 - i * dy
        fig.text(0.05, y, k, fontsize=10, weight="bold")
        fig.text(0.36, y, v, fontsize=10, wrap=True)
    fig.savefig(out / "summary.png", dpi=100)
    plt.close(fig)
    written.append(out / "summary.png")

    md = ["# " + title, ""] + ["- **%s**: %s" % (k, v) for k, v in rows]
    if s.gaps:
        md += ["", "Gaps in the puncture numbers: " + ", ".join("%d..%d" % g for g in s.gaps)]
    if zrows:
        md += ["", "## Zones: planned vs delivered", ""] + zone_table(zrows)
        md += [
            "",
            "Planned volume = planned punctures x the zone's dose; delivered = the sum of its "
            "puncture records (cut ones too). Zone cap reached: less than one dose of its "
            "cap left. Chart: plan.png",
        ]
    (out / "summary.md").write_text("\n".join(md) + "\n")
    written.append(out / "summary.md")
    return written


def add_parser(sub):
    p = sub.add_parser(
        "report",
        help="charts and a one-page summary of one logged session",
        description="Charts (dose, depth, force, volume per zone) and a summary "
        "of SESSION from a pulled treatment log.",
    )
    p.add_argument("session", type=int, metavar="SESSION")
    p.add_argument(
        "--log",
        type=Path,
        default=Path("build/logs"),
        metavar="DIR",
        help="the log folder (default build/logs, where `injector logs pull` puts it)",
    )
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
        print(
            "injector report: %d problem(s) in the log, skipped:" % len(decoded.problems),
            file=sys.stderr,
        )
        logs.print_problems(decoded)
    print("wrote %s" % ", ".join(str(p) for p in written))
    return 0
