"""`injector report SESSION`: charts and a one-page summary of one session of the treatment log.

Writes to --out (default build/report/session-N):
    dose.png      dose per puncture: the dose set, and delivered as counted from the
                  plunger's steps (cut punctures marked)
    depth.png     depth per puncture: the depth set, "reached" as the core counted it in
                  needle steps (not a measurement), and the usable needle length (limit)
    force.png     peak load-cell force per puncture (main-loop samples) and the occlusion
                  limit (the force that trips the occlusion alarm, H4)
    summary.png   the summary as an image
    summary.md    the summary as text
and, for a session run by a protocol (its PROTOCOL and ZONE records):
    zones.png     volume per zone
    plan.png      planned vs delivered per zone: punctures done / planned, volume
                  delivered / planned (planned x the zone's dose) with the zone's cap;
                  skipped zones marked
  and summary.md gets the zone-by-zone table (zone_rows).

Every chart of a physical quantity starts at its zero. Up to DENSE_PUNCTURES
punctures each one is a point; above, the punctures are taken in bins of
consecutive ones (at most BINS bins) and each bin drawn as its median, its 5-95 %
band and its min-max envelope, so 1000 punctures stay readable. Volumes are
given to 0.1 uL.

The limits. The log does not record the engineer's limits, so the report takes
them as given (`limits`: the simulator passes its core's; `injector report
--occlusion-kpa --needle-length-um`), else the firmware's defaults, and says
which. The occlusion force and the depth limit are the core's own figures: a
planning core (injcore.feasible.planning_core) with those limits, configured
with the syringe of each puncture (limit_lines), never a second formula.

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
from host_tools.cliutil import int_range, out_dir_problem
from injcore import feasible, tlog  # noqa: E402  (logs put firmware/ on sys.path)
from injcore.codes import FAULT_NAMES  # noqa: E402
from injcore.settings import MODE_NAMES, Limits, SettingsError  # noqa: E402

DENSE_PUNCTURES = 100  # above this many punctures, a series is drawn by bins
BINS = 50  # at most this many bins of consecutive punctures
BAND = (5, 95)  # the percentiles of a bin's band

# The summary's two volumes, in one line (summary.md and summary.png).
DELIVERED_NOTE = (
    "Volume delivered: the core's session total of counted plunger steps (net of suck-back, "
    "cut punctures included), from the end record. Volume in the records: the puncture "
    "records added up (each rounded to 1 nL; punctures lost from the log are missing)."
)
# Under the summary when the limits drawn are not known.
LIMITS_NOTE = (
    "Limits drawn: the firmware's defaults, as the log does not record the engineer's limits "
    "(injector report --occlusion-kpa, --needle-length-um give them)."
)
# Under the charts: what their series are.
DOSE_NOTE = (
    "delivered: counted from the plunger's steps (net of suck-back), not measured; "
    "a cut puncture holds what was pushed before the fault"
)
DEPTH_NOTE = (
    "reached: the deepest needle position the core counted in steps, not a measurement of the tip"
)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def volume_text(nl):
    """A volume for a person: microlitres to 0.1 uL (what a dose is set and judged to)."""
    return "%.1f uL" % (nl / 1000)


def limits_text(limits):
    """The limits the charts draw, and where they come from (None: the firmware's defaults)."""
    lim = limits or Limits()
    text = "occlusion %d kPa, usable needle length %.1f mm" % (
        lim.occlusion_kpa,
        lim.needle_length_um / 1000,
    )
    return text + (" (defaults)" if limits is None else "")


def summary(session, limits=None):
    """The summary of a logs.Session as (title, [(label, value)]); `limits` as the charts'
    (None: the firmware's defaults)."""
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
        ("Started", s.started_text),  # "time unknown": the device's clock was not set
        ("Device", s.device_text),
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
            volume_text(delivered if delivered is not None else logged)
            + ("" if delivered is not None else " (sum of the records: no end record)"),
        ),
        ("Volume in the records", volume_text(logged)),
        ("Primed", volume_text(end["primed_nl"]) if end else "?"),
        ("Alarms", "%d%s" % (len(cut), (": " + ", ".join(faults)) if faults else "")),
        ("Partial punctures", "%d" % sum(1 for p in s.punctures if p["partial"])),
        ("Warnings during punctures", "%d" % sum(1 for p in s.punctures if p["warning"])),
        ("Lost punctures", lost),
        ("Limits drawn", limits_text(limits)),
    ]
    if s.protocol:
        p = s.protocol
        zs = zone_rows(s)
        name = p.display_name  # whole; an older log's may be cut ("...")
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
            "| %d | %s | %s | %d / %s | %.1f / %s | %.1f | %s |"
            % (
                r["index"] + 1,
                r["name"],
                mode,
                r["done"],
                r["planned"] or "free",
                r["delivered_nl"] / 1000,
                "%.1f" % (r["planned_nl"] / 1000) if r["planned"] else "free",
                r["cap_nl"] / 1000,
                r["status"],
            )
        )
    lines.append(
        "| | **Total** | | %d / %d | %.1f / %.1f | | |"
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


# ---- the charts -------------------------------------------------------------------


def limit_lines(session, limits=None):
    """Per puncture of `session`, (occlusion_mn, depth_limit_um) as the core computes them:
    a planning core with `limits` (None: the firmware's defaults) configured with that
    puncture's syringe (Session.syringe_of). None where the syringe is not known (its
    record is gone from the ring) or the core refuses it (a log of another firmware)."""
    core = feasible.planning_core(limits or Limits())
    depth_limit_um = tlog.needle_steps_to_depth_um(core.needle_limit_steps)
    cache = {}
    out = []
    for p in session.punctures:
        rec = session.syringe_of(p)
        key = None if rec is None else (rec["syringe_model"], rec["syringe_id_um"])
        if key not in cache:
            cache[key] = None
            if key is not None:
                try:
                    core.configure(syringe_model=key[0], syringe_id_um=key[1])
                    cache[key] = core.occlusion_mn
                except (SettingsError, KeyError):
                    pass
        out.append((cache[key], depth_limit_um))
    return out


def _bins(x, ys):
    """Consecutive punctures in at most BINS bins: (size, centres, lo, p_lo, median, p_hi,
    hi), NaN for a bin with no finite value."""
    import numpy as np

    n = len(ys)
    k = -(-n // BINS)
    rows = []
    for i in range(0, n, k):
        v = np.asarray(ys[i : i + k], dtype=float)
        v = v[np.isfinite(v)]
        centre = (x[i] + x[min(i + k, n) - 1]) / 2
        if v.size:
            rows.append([centre, *np.percentile(v, [0, BAND[0], 50, BAND[1], 100])])
        else:
            rows.append([centre] + [float("nan")] * 5)
    cols = np.asarray(rows).T
    return (k, *cols)


def _series(ax, x, ys, label, color, marker):
    """A per-puncture series: each puncture a point (up to DENSE_PUNCTURES), else bins of
    consecutive punctures as a median line, a 5-95 % band and a min-max envelope."""
    if len(ys) <= DENSE_PUNCTURES:
        ax.plot(x, ys, marker + "-", color=color, ms=4, lw=1, label=label)
        return
    k, cx, lo, plo, med, phi, hi = _bins(x, ys)
    ax.fill_between(
        cx, lo, hi, step="mid", color=color, alpha=0.12, lw=0, label="min-max of each bin"
    )
    ax.fill_between(
        cx, plo, phi, step="mid", color=color, alpha=0.35, lw=0, label="%d-%d %% of each bin" % BAND
    )
    ax.plot(cx, med, drawstyle="steps-mid", color=color, lw=1.5, label="%s, median" % label)
    ax.set_title(ax.get_title() + "\n(bins of %d punctures)" % k, fontsize=10)


def _setting(ax, x, ys, label):
    """A setting per puncture as one step line: a point where it changes, not per puncture."""
    xs, vs = [], []
    for xi, v in zip(x, ys):
        if not vs or v != vs[-1]:
            xs.append(xi - 0.5)
            vs.append(v)
    xs.append(x[-1] + 0.5)
    vs.append(ys[-1])
    ax.plot(xs, vs, "k--", drawstyle="steps-post", lw=1.2, label=label)


def _limit(ax, x, ys, label, color):
    """A limit per puncture: one horizontal line while it is one value, else a step line;
    nothing where it is not known (None)."""
    known = {v for v in ys if v is not None}
    if not known:
        return
    if len(known) == 1 and None not in ys:
        ax.axhline(known.pop(), color=color, lw=1.5, label=label)
    else:
        ax.plot(
            x,
            [float("nan") if v is None else v for v in ys],
            color=color,
            lw=1.5,
            drawstyle="steps-mid",
            label=label,
        )


def _from_zero(ax, values):
    """The value axis from its natural zero (lower only if a value is below it)."""
    low = min((v for v in values if v == v), default=0)
    if low >= 0:
        ax.set_ylim(bottom=0)


def _punctures_chart(plt, session, title, ylabel, note=None):
    fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
    ax.set_title(title)
    ax.set_xlabel("puncture (log order)")
    ax.set_ylabel(ylabel)
    if note:
        fig.supxlabel(note, fontsize=8, ha="left", x=0.01, color="dimgrey")
    if not session.punctures:
        ax.text(0.5, 0.5, "no punctures", ha="center", transform=ax.transAxes)
        ax.set_ylim(bottom=0)
    return fig, ax


def _finish(ax, session, values):
    if session.punctures:
        _from_zero(ax, values)
        ax.legend(fontsize=8, loc="best")


def dose_figure(plt, session):
    s, ps = session, session.punctures
    fig, ax = _punctures_chart(plt, s, "Session %d: dose per puncture" % s.number, "uL", DOSE_NOTE)
    if ps:
        x = list(range(1, len(ps) + 1))
        done = [p["dose_nl"] / 1000 for p in ps]
        _setting(ax, x, [p["dose_set_nl"] / 1000 for p in ps], "dose set")
        _series(ax, x, done, "delivered (counted plunger steps)", "tab:blue", "o")
        _cut_marks(ax, x, ps, done)
        _finish(ax, s, done)
    return fig


def depth_figure(plt, session, lines):
    s, ps = session, session.punctures
    fig, ax = _punctures_chart(
        plt, s, "Session %d: depth per puncture" % s.number, "mm below the skin", DEPTH_NOTE
    )
    if ps:
        x = list(range(1, len(ps) + 1))
        reached = [p["depth_um"] / 1000 for p in ps]
        _setting(ax, x, [p["depth_set_um"] / 1000 for p in ps], "depth set")
        _series(ax, x, reached, "reached (counted needle steps)", "tab:green", "o")
        _cut_marks(ax, x, ps, reached)
        limit = [d / 1000 for _, d in lines]
        _limit(ax, x, limit, "usable needle length %.1f mm (limit)" % max(limit), "tab:red")
        _finish(ax, s, reached)
    return fig


def force_figure(plt, session, lines, limits=None):
    s, ps = session, session.punctures
    bad = sum(1 for p in ps if p["force_mn"] == tlog.FORCE_BAD)
    fig, ax = _punctures_chart(
        plt,
        s,
        "Session %d: peak force per puncture (main-loop samples)" % s.number,
        "N",
        "%d puncture(s) with the load cell invalid, not drawn" % bad if bad else None,
    )
    if ps:
        x = list(range(1, len(ps) + 1))
        forces = [
            float("nan") if p["force_mn"] == tlog.FORCE_BAD else p["force_mn"] / 1000 for p in ps
        ]
        _series(ax, x, forces, "peak", "tab:purple", "^")
        _cut_marks(ax, x, ps, forces)
        occ = [None if o is None else o / 1000 for o, _ in lines]
        known = sorted({v for v in occ if v is not None})
        kpa = (limits or Limits()).occlusion_kpa
        if len(known) == 1:
            what = "%.1f N (%d kPa" % (known[0], kpa)
            rec = s.syringe_of(next(p for p, o in zip(ps, occ) if o is not None))
            what += ", %s)" % logs.syringe_text(rec) if rec else ")"
        else:
            what = "(%d kPa on each syringe's barrel)" % kpa
        _limit(ax, x, occ, "occlusion limit " + what, "tab:red")
        _finish(ax, s, forces)
    return fig


def _cut_marks(ax, x, ps, ys):
    cut = [(xi, y) for xi, p, y in zip(x, ps, ys) if p["alarm"] and y == y]  # not NaN
    if cut:
        ax.plot(*zip(*cut), "rx", markersize=9, mew=1.5, label="cut by a fault")


def zones_figure(plt, session):
    """Volume per zone, for a session a protocol ran in (its PROTOCOL or ZONE records);
    None without one: the punctures' zone means nothing then."""
    s = session
    if not (s.protocol or s.zones):
        return None
    zones = {}
    for p in s.punctures:
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
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ax.bar(list(zones) or ["none"], [v / 1000 for v in zones.values()] or [0])
    ax.set_title("Session %d: volume per zone" % s.number)
    ax.set_xlabel("zone / protocol step")
    ax.set_ylabel("uL")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    _from_zero(ax, [v / 1000 for v in zones.values()])
    return fig


def notes(limits):
    """The lines under the summary."""
    return [DELIVERED_NOTE] + ([LIMITS_NOTE] if limits is None else [])


def summary_figure(plt, title, rows, limits=None):
    fig = plt.figure(figsize=(8.27, 5.6))
    fig.text(0.05, 0.94, title, fontsize=16, weight="bold")
    dy = min(0.058, 0.76 / max(1, len(rows)))
    for i, (k, v) in enumerate(rows):
        y = 0.86 - i * dy
        fig.text(0.05, y, k, fontsize=10, weight="bold")
        fig.text(0.36, y, v, fontsize=10, wrap=True)
    fig.text(0.05, 0.02, "\n".join(notes(limits)), fontsize=8, color="dimgrey", wrap=True)
    return fig


def figures(session, limits=None):
    """The report's charts of a logs.Session as {file name: matplotlib Figure}; the
    caller saves or closes them. `limits`: the engineer's limits to draw (None: the
    firmware's defaults)."""
    plt = _plt()
    s = session
    lines = limit_lines(s, limits)
    out = {
        "dose.png": dose_figure(plt, s),
        "depth.png": depth_figure(plt, s, lines),
        "force.png": force_figure(plt, s, lines, limits),
    }
    zones = zones_figure(plt, s)
    if zones is not None:
        out["zones.png"] = zones
    zrows = zone_rows(s) if s.protocol or s.zones else []
    if zrows:
        name = s.protocol.display_name if s.protocol else "?"
        out["plan.png"] = plan_chart(
            plt, s, zrows, "Session %d, protocol %s: planned vs delivered" % (s.number, name)
        )
    title, rows = summary(s, limits)
    out["summary.png"] = summary_figure(plt, title, rows, limits)
    return out


def write_report(decoded, number, out, limits=None):
    """The report of session `number` of a logs.Decoded into folder `out`; the paths
    written. `limits`: the engineer's limits in force (None: the firmware's defaults)."""
    if number not in decoded.sessions:
        have = ", ".join(str(n) for n in decoded.sessions) or "none"
        raise logs.LogError("session %d is not in the log (sessions: %s)" % (number, have))
    s = decoded.sessions[number]
    plt = _plt()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures(s, limits).items():
        if fig.get_layout_engine() is None and name != "summary.png":
            fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written.append(out / name)

    title, rows = summary(s, limits)
    md = ["# " + title, ""] + ["- **%s**: %s" % (k, v) for k, v in rows]
    for line in notes(limits):
        md += ["", line]
    if s.gaps:
        md += ["", "Gaps in the puncture numbers: " + ", ".join("%d..%d" % g for g in s.gaps)]
    zrows = zone_rows(s) if s.protocol or s.zones else []
    if zrows:
        md += ["", "## Zones: planned vs delivered", ""] + zone_table(zrows)
        md += [
            "",
            "Planned volume = planned punctures x the zone's dose; delivered = the sum of its "
            "puncture records (cut ones too). Zone cap reached: less than one dose of its "
            "cap left. Charts: plan.png, zones.png",
        ]
    (out / "summary.md").write_text("\n".join(md) + "\n")
    written.append(out / "summary.md")
    return written


def add_parser(sub):
    p = sub.add_parser(
        "report",
        help="charts and a one-page summary of one logged session",
        description="Charts (dose, depth, force; per zone for a protocol) and a summary "
        "of SESSION from a pulled treatment log. The log does not record the engineer's "
        "limits: the charts draw the firmware's defaults unless given here.",
    )
    p.add_argument(
        "session",
        type=int_range(0, 0xFFFF),  # the log stores a session's number in 16 bits
        metavar="SESSION",
        help="the session's number (logs show lists them)",
    )
    p.add_argument(
        "--log",
        type=Path,
        default=Path("build/logs"),
        metavar="DIR",
        help="the log folder (default build/logs, where `injector logs pull` puts it)",
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="default build/report/session-N")
    p.add_argument(
        "--occlusion-kpa",
        type=int,
        metavar="KPA",
        help="the engineer's occlusion limit in force (default the firmware's, %d)"
        % Limits().occlusion_kpa,
    )
    p.add_argument(
        "--needle-length-um",
        type=int,
        metavar="UM",
        help="the engineer's usable needle length (default the firmware's, %d)"
        % Limits().needle_length_um,
    )
    p.set_defaults(run=run)


def cli_limits(args):
    """The Limits the options give (None: none given, the defaults); SettingsError if bad."""
    given = {
        k: v
        for k, v in (
            ("occlusion_kpa", args.occlusion_kpa),
            ("needle_length_um", args.needle_length_um),
        )
        if v is not None
    }
    if not given:
        return None
    limits = Limits(**given)
    limits.check()
    return limits


def run(args):
    try:
        limits = cli_limits(args)
        decoded = logs.read_dir(args.log)
        if not decoded.records:
            print("injector report: no valid records in %s" % args.log, file=sys.stderr)
            logs.print_problems(decoded)
            return 1
        out = args.out or Path("build/report/session-%d" % args.session)
        why = out_dir_problem(out)
        if why:
            raise logs.LogError(why)
        written = write_report(decoded, args.session, out, limits)
    except BrokenPipeError:  # the reader of stdout went away: cli.main ends quietly
        raise
    except (logs.LogError, OSError, SettingsError) as e:
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
