"""`injector sim`: a session on the simulator, then the engineer's tools on the log it wrote.

    injector sim [--out DIR] [--shots N] [--burst-ms MS] [--no-plot] [--seed N]
        the demo session (sim/demo.py), what `make sim` runs: its punctures as a
        table, the treatment log in DIR/log, the report in DIR/report and the
        plot of the motors and the load cell in DIR/session.png (its phases shaded)
    injector sim --protocol FILE [--out DIR] [--seed N]
        a protocol zone by zone (sim/protocol_run.py): its log in DIR/log, the
        zone-by-zone report in DIR/report

The simulator only simulates and writes the firmware's treatment log; reading
the log back (host_tools.logs), the report (host_tools.report), the table and
the plot are the host's part, here, so sim/ never imports host_tools.

Exit codes with --protocol: 0 done, 1 the session cannot be simulated (no
syringe large enough, homing failed), 2 a bad protocol file.
"""

import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import sim  # noqa: F401  (puts firmware/ on sys.path)
from host_tools import logs, report  # noqa: E402
from host_tools.cliutil import (  # noqa: E402
    Refusal,
    TooLarge,
    loads_json,
    out_dir_problem,
    read_capped,
)
from injcore import codes as C  # noqa: E402
from injcore import machine as M  # noqa: E402
from injcore import protocol as P  # noqa: E402
from sim import demo, protocol_run  # noqa: E402

DEMO_OUT = Path("build/sim")
PROTOCOL_OUT = Path("build/sim/protocol")
DEMO_SESSION = 1  # the demo writes a fresh log: its one session


# ---- the demo ---------------------------------------------------------------------


def print_punctures(session_sim):
    """The demo's punctures as a table, then the session's totals."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Punctures")
    for col in (
        "#",
        "mode",
        "depth set mm",
        "tip depth mm (model)",
        "dose set uL",
        "delivered uL (counted steps)",
        "outflow uL (model)",
        "duration ms",
    ):
        table.add_column(col, justify="right")
    for p in session_sim.punctures:
        table.add_row(
            str(p.number),
            p.mode,
            "%.2f" % (p.depth_set_um / 1000),
            "%.3f" % (p.depth_reached_um / 1000),
            "%.1f" % (p.dose_set_nl / 1000),
            "%.1f" % (p.dose_nl / 1000),
            "%.1f" % (p.outflow_nl / 1000),
            str(p.duration_ms),
        )
    console = Console(width=120)
    console.print(table)
    core, m = session_sim.core, session_sim.machine
    console.print(
        "punctures: %d   delivered (counted steps): %.1f uL   primed: %.1f uL   "
        "left in syringe: %.1f uL   out of the needle (model): %.1f uL   "
        "peak force: %.2f N"
        % (
            core.punctures,
            core.delivered_nl() / 1000,
            core.primed_nl() / 1000,
            core.volume_left_nl() / 1000,
            m.fluid.delivered_ul,
            max(session_sim.trace.force_n),
        )
    )


# The colours of the phases (states) in session.png; idle states (unhomed, ready) are
# left unshaded. Names are codes.STATE_NAMES.
PHASE_COLORS = {
    C.ST_HOMING: "tab:gray",
    C.ST_LOAD: "tab:brown",
    C.ST_PRIME: "tab:cyan",
    C.ST_ADVANCE: "gold",
    C.ST_INJECT: "tab:green",
    C.ST_SUCKBACK: "tab:purple",
    C.ST_RETRACT: "tab:orange",
    C.ST_WAIT: "tab:blue",
    C.ST_FAULT: "tab:red",
    C.ST_RELIEF: "tab:pink",
    C.ST_MEASURE: "tab:olive",
}


def phase_spans(trace):
    """The trace's states as runs: [(state, start s, end s)], in time order."""
    spans = []
    t, states = trace.t_ms, trace.state
    for i, st in enumerate(states):
        if spans and spans[-1][0] == st:
            continue
        if spans:
            spans[-1][2] = t[i] / 1000
        spans.append([st, t[i] / 1000, t[i] / 1000])
    if spans:
        spans[-1][2] = t[-1] / 1000
    return [tuple(s) for s in spans]


NAME_GAP = 0.03  # a phase's name at least this far (axes fraction) right of the last one


def _shade(ax, spans, lo=None, hi=None, names=False):
    """Shade each phase of `spans` across `ax` (one artist per state, labelled with its
    name); only those within [lo, hi], each named at its top when `names`."""
    by_state = {}
    last = -1.0
    for st, a, b in spans:
        if st in PHASE_COLORS and (lo is None or (b > lo and a < hi)):
            by_state.setdefault(st, []).append((a, b - a))
            if names:
                at = max(((max(a, lo) + min(b, hi)) / 2 - lo) / (hi - lo), last + NAME_GAP)
                last = at
                ax.text(
                    at,
                    0.98,
                    C.STATE_NAMES[st],
                    transform=ax.transAxes,
                    rotation=90,
                    ha="center",
                    va="top",
                    fontsize=7,
                )
    for st in sorted(by_state):
        ax.broken_barh(
            by_state[st],
            (0, 1),
            transform=ax.get_xaxis_transform(),
            color=PHASE_COLORS[st],
            alpha=0.25,
            lw=0,
            label=C.STATE_NAMES[st],
        )


def _zoom_punctures(session_sim):
    """A puncture of each mode the session fired (the middle one): [(Puncture, end ms)],
    the end taking in what follows it up to the next start (a nappage shot's wait)."""
    ps = session_sim.punctures
    out = []
    for mode in (C.MODE_NAMES[C.MODE_SINGLE], C.MODE_NAMES[C.MODE_CONTINUOUS]):
        idx = [i for i, p in enumerate(ps) if p.mode == mode]
        if not idx:
            continue
        i = idx[len(idx) // 2]
        p = ps[i]
        end = p.start_ms + 1.3 * p.duration_ms
        if i + 1 < len(ps):
            end = min(end, ps[i + 1].start_ms)
        out.append((p, max(end, p.start_ms + p.duration_ms)))
    return out


def trace_figure(session_sim):
    """Needle tip, plunger face and load cell over the simulated time, each phase shaded
    (codes.STATE_NAMES), and a puncture of each mode close up with its phases named:
    a matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = session_sim.trace
    secs = [x / 1000 for x in t.t_ms]
    spans = phase_spans(t)
    zooms = _zoom_punctures(session_sim)
    fig = plt.figure(figsize=(11, 9.5 if zooms else 7), layout="constrained")
    gs = fig.add_gridspec(4 if zooms else 3, max(1, len(zooms)))
    top = fig.add_subplot(gs[0, :])
    axes = [top, fig.add_subplot(gs[1, :], sharex=top), fig.add_subplot(gs[2, :], sharex=top)]
    tip = [u / 1000 for u in t.needle_tip_um]
    plunger = [u / 1000 for u in t.plunger_um]
    axes[0].plot(secs, tip, "k", lw=0.8)
    axes[0].axhline(0, color="grey", lw=0.5)
    axes[0].set_ylabel("needle tip\nbelow nozzle (mm)")
    axes[1].plot(secs, plunger, "k", lw=0.8)
    axes[1].set_ylabel("plunger face (mm)")
    if min(plunger, default=0) >= 0:
        axes[1].set_ylim(bottom=0)
    axes[2].plot(secs, t.force_n, "k", lw=0.8)
    axes[2].axhline(0, color="grey", lw=0.5)
    axes[2].set_ylabel("load cell (N)")
    axes[2].set_xlabel("simulated time (s)")
    for ax in axes:
        _shade(ax, spans)
    for col, (p, end_ms) in enumerate(zooms):
        ax = fig.add_subplot(gs[3, col])
        lo = (p.start_ms - 0.08 * (end_ms - p.start_ms)) / 1000
        hi = end_ms / 1000
        i0 = next(i for i, s in enumerate(secs) if s >= lo)
        i1 = next((i for i, s in enumerate(secs) if s > hi), len(secs))
        ms = [(s - p.start_ms / 1000) * 1000 for s in secs[i0:i1]]
        ax.plot(ms, tip[i0:i1], "k", lw=1, label="needle tip (mm)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_ylabel("needle tip (mm)")
        ax.set_xlabel("ms from the puncture's start")
        force = ax.twinx()
        force.plot(ms, t.force_n[i0:i1], color="tab:red", lw=1)
        force.set_ylabel("load cell (N)", color="tab:red")
        rel = [
            (st, (a - p.start_ms / 1000) * 1000, (b - p.start_ms / 1000) * 1000)
            for st, a, b in spans
        ]
        _shade(ax, rel, ms[0], ms[-1], names=True)
        for a in (ax, force):  # room above the traces for the phases' names
            y0, y1 = a.get_ylim()
            a.set_ylim(y0, y1 + 0.6 * (y1 - y0))
        ax.set_xlim(ms[0], ms[-1])
        ax.set_title(
            "puncture %d (%s) at %.2f s, close up" % (p.number, p.mode, p.start_ms / 1000),
            fontsize=10,
        )
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncol=len(labels) or 1,
        fontsize=8,
        title="phase (core state; unshaded: ready, unhomed)",
        title_fontsize=8,
    )
    fig.suptitle("Simulated session: homing, load, prime, single shots, nappage")
    return fig


def plot_trace(session_sim, path):
    """trace_figure as a PNG at `path`."""
    import matplotlib.pyplot as plt

    fig = trace_figure(session_sim)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(out=DEMO_OUT, shots=8, burst_ms=3000, seed=1, plot=True):
    """The demo session, its table, its log read back, its report and plot; exit code 0."""
    out = Path(out)
    log_dir = out / "log"
    wall = time.perf_counter()
    done = demo.run_demo(shots, burst_ms, seed=seed, log_dir=log_dir)
    wall = time.perf_counter() - wall
    print_punctures(done)
    print("simulated %.1f s in %.2f s of wall time" % (done.now_us / 1e6, wall))
    decoded = logs.read_dir(log_dir)
    report.write_report(decoded, DEMO_SESSION, out / "report", done.core.limits)
    print(
        "treatment log: %s (%d records); report: %s"
        % (log_dir, len(decoded.records), out / "report")
    )
    if plot:
        path = out / "session.png"
        plot_trace(done, path)
        print("plot: %s" % path)
    return 0


# ---- a protocol -------------------------------------------------------------------


@dataclass
class ProtocolSession(protocol_run.Result):
    """A simulated protocol session with its treatment log read back and its report written."""

    decoded: object = None  # logs.read_dir of the session's log
    report_dir: Path = None
    report_files: list = field(default_factory=list)


def run_protocol(protocol, out=PROTOCOL_OUT, seed=1):
    """Simulate `protocol` (log in OUT/log), read the log, write the report to OUT/report."""
    out = Path(out)
    res = protocol_run.run_protocol(protocol, out / "log", seed)
    decoded = logs.read_dir(res.log_dir)
    report_dir = out / "report"
    files = report.write_report(decoded, res.session, report_dir, res.sim.core.limits)
    return ProtocolSession(
        **{f.name: getattr(res, f.name) for f in fields(res)},
        decoded=decoded,
        report_dir=report_dir,
        report_files=files,
    )


def print_summary(res, file=None):
    file = file or sys.stdout
    p = res.protocol
    print(
        "protocol %r v%d: %d zones, %s syringe, session cap %.1f uL"
        % (
            p.name,
            p.version,
            len(p.zones),
            M.SYRINGES[res.syringe_model][M.SYR_NAME],
            p.session_cap_nl / 1000,
        ),
        file=file,
    )
    for z in res.zones:
        planned = z.planned or "free (%d)" % protocol_run.FREE_PUNCTURES
        print(
            "  %2d %-12s %-8s %4d / %-10s %7.1f uL  %s"
            % (z.index + 1, z.name, z.technique, z.done, planned, z.used_nl / 1000, z.stop),
            file=file,
        )
    core = res.sim.core
    print(
        "delivered %.1f uL in %d punctures; primed %.1f uL; simulated %.1f s"
        % (
            core.delivered_nl() / 1000,
            core.punctures,
            core.primed_nl() / 1000,
            res.sim.now_us / 1e6,
        ),
        file=file,
    )
    print(
        "treatment log: %s (%d records); report: %s"
        % (res.log_dir, len(res.decoded.records), res.report_dir),
        file=file,
    )


def read_protocol(path):
    """The Protocol of the file at `path`, under the firmware's default limits; Refusal
    (one line: unreadable, not JSON, too deep) or P.ProtocolError (its problems). A file
    larger than the device stores is refused unread."""
    try:
        data = read_capped(path, P.MAX_FILE_BYTES)
    except TooLarge as e:
        raise Refusal("%s: %s, the largest protocol file the device stores" % (path, e)) from None
    except Refusal as e:
        raise Refusal("cannot read %s: %s" % (path, e)) from None
    try:
        obj = loads_json(data)
    except Refusal as e:
        raise Refusal("%s: %s" % (path, e)) from None
    return P.build(obj)  # the device's own check, under the firmware's default limits


def protocol_main(path, out=PROTOCOL_OUT, seed=1):
    """`injector sim --protocol`: exit code 0 / 1 / 2 (messages on stderr, no traceback)."""
    try:
        protocol = read_protocol(path)
    except P.ProtocolError as e:
        print("injector sim: %s is not a valid protocol:" % path, file=sys.stderr)
        for line in e.problems:
            print("  " + line, file=sys.stderr)
        return 2
    except Refusal as e:
        print("injector sim: %s" % e, file=sys.stderr)
        return 2
    why = out_dir_problem(out)
    if why:
        print("injector sim: --out %s" % why, file=sys.stderr)
        return 2
    try:
        res = run_protocol(protocol, out, seed)
    except protocol_run.SimError as e:
        print("injector sim: %s" % e, file=sys.stderr)
        return 1
    print_summary(res)
    return 0


def run(args):
    """The `injector sim` subcommand (host_tools/cli.py declares its arguments)."""
    try:
        if args.protocol is None:
            out = args.out or DEMO_OUT
            why = out_dir_problem(out)  # before a minute of simulation, not after it
            if why:
                print("injector sim: --out %s" % why, file=sys.stderr)
                return 2
            return run_demo(out, args.shots, args.burst_ms, args.seed, plot=not args.no_plot)
        return protocol_main(args.protocol, args.out or PROTOCOL_OUT, args.seed)
    except BrokenPipeError:  # the reader of stdout went away: cli.main ends quietly
        raise
    except OSError as e:  # a folder that cannot be written (permissions, a full disk)
        print("injector sim: %s" % e, file=sys.stderr)
        return 2
