"""`injector sim`: a session on the simulator, then the engineer's tools on the log it wrote.

    injector sim [--out DIR] [--shots N] [--burst-ms MS] [--no-plot] [--seed N]
        the demo session (sim/demo.py), what `make sim` runs: its punctures as a
        table, the treatment log in DIR/log, the report in DIR/report and the
        plot of the motors and the load cell in DIR/session.png
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
        "depth reached mm",
        "dose set uL",
        "dose delivered uL",
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
            "%.3f" % (p.dose_nl / 1000),
            "%.3f" % (p.outflow_nl / 1000),
            str(p.duration_ms),
        )
    console = Console(width=120)
    console.print(table)
    core, m = session_sim.core, session_sim.machine
    console.print(
        "punctures: %d   delivered (counted steps): %.3f uL   primed: %.3f uL   "
        "left in syringe: %.1f uL   out of the needle (model): %.3f uL   "
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


def plot_trace(session_sim, path):
    """Needle tip, plunger face and load cell over the simulated time, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = session_sim.trace
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(11, 7))
    secs = [x / 1000 for x in t.t_ms]
    axes[0].plot(secs, [u / 1000 for u in t.needle_tip_um], lw=0.8)
    axes[0].axhline(0, color="grey", lw=0.5)
    axes[0].set_ylabel("needle tip\nbelow nozzle (mm)")
    axes[1].plot(secs, [u / 1000 for u in t.plunger_um], lw=0.8, color="tab:green")
    axes[1].set_ylabel("plunger face (mm)")
    axes[2].plot(secs, t.force_n, lw=0.8, color="tab:red")
    axes[2].set_ylabel("load cell (N)")
    axes[2].set_xlabel("simulated time (s)")
    fig.suptitle("Simulated session: homing, prime, single shots, nappage")
    fig.tight_layout()
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
    report.write_report(decoded, DEMO_SESSION, out / "report")
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
    files = report.write_report(decoded, res.session, report_dir)
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
            "  %2d %-12s %-8s %4d / %-10s %9.3f uL  %s"
            % (z.index + 1, z.name, z.technique, z.done, planned, z.used_nl / 1000, z.stop),
            file=file,
        )
    core = res.sim.core
    print(
        "delivered %.3f uL in %d punctures; primed %.3f uL; simulated %.1f s"
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


def protocol_main(path, out=PROTOCOL_OUT, seed=1):
    """`injector sim --protocol`: exit code 0 / 1 / 2 (messages on stderr, no traceback)."""
    try:
        protocol = protocol_run.load_protocol(path)
    except P.ProtocolError as e:
        print("injector sim: %s is not a valid protocol:" % path, file=sys.stderr)
        for line in e.problems:
            print("  " + line, file=sys.stderr)
        return 2
    except OSError as e:
        print("injector sim: cannot read %s: %s" % (path, e.strerror or e), file=sys.stderr)
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
    if args.protocol is None:
        return run_demo(
            args.out or DEMO_OUT, args.shots, args.burst_ms, args.seed, plot=not args.no_plot
        )
    return protocol_main(args.protocol, args.out or PROTOCOL_OUT, args.seed)
