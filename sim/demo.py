"""The demo session `make sim` runs: home, load, prime, then punctures in two modes."""

import argparse
import time
from pathlib import Path

from injcore import codes as C
from injcore.settings import MODE_CONTINUOUS, MODE_SINGLE

from .session import Simulator

OUT = Path("build/sim")


def run_demo(single_shots=8, burst_ms=3000, seed=1, log_dir=None):
    """The demo session; with `log_dir`, the firmware's treatment log is written there."""
    sim = Simulator(seed=seed)
    recorder = sim.attach_log(log_dir) if log_dir is not None else None
    if not sim.home():
        raise SystemExit("homing failed: %s" % C.FAULT_NAMES[sim.core.fault])
    sim.load(size_ml=1)
    if recorder is not None:
        recorder.start_session("DEMO-LOT")  # the syringe is in: the session (and its log) begins
    sim.prime(1500)
    # Point by point: skin-booster-like papules.
    sim.configure(mode=MODE_SINGLE, depth_um=1000, dose_nl=20_000, speed_um_s=20_000,
                  rate_nl_s=50_000, suckback_nl=500)
    for _ in range(single_shots):
        sim.shot()
        sim.run_ms(200)  # the operator moves the handpiece
    # Nappage: shallow, small and fast while the trigger is held.
    sim.configure(mode=MODE_CONTINUOUS, depth_um=600, dose_nl=2000, speed_um_s=40_000,
                  rate_nl_s=100_000, shot_rate_mhz=5000, suckback_nl=200)
    sim.burst(burst_ms)
    sim.settle()
    if recorder is not None:
        recorder.end_session()
    return sim


def print_report(sim):
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Punctures")
    for col in ("#", "mode", "depth set mm", "depth reached mm", "dose set uL",
                "dose delivered uL", "outflow uL (model)", "duration ms"):
        table.add_column(col, justify="right")
    for p in sim.punctures:
        table.add_row(str(p.number), p.mode, "%.2f" % (p.depth_set_um / 1000),
                      "%.3f" % (p.depth_reached_um / 1000), "%.1f" % (p.dose_set_nl / 1000),
                      "%.3f" % (p.dose_nl / 1000), "%.3f" % (p.outflow_nl / 1000), str(p.duration_ms))
    console = Console(width=120)
    console.print(table)
    core, m = sim.core, sim.machine
    console.print("punctures: %d   delivered (counted steps): %.3f uL   primed: %.3f uL   "
                  "left in syringe: %.1f uL   out of the needle (model): %.3f uL   peak force: %.2f N"
                  % (core.punctures, core.delivered_nl() / 1000, core.primed_nl() / 1000,
                     core.volume_left_nl() / 1000, m.fluid.delivered_ul, max(sim.trace.force_n)))


def plot(sim, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = sim.trace
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


def main(argv=None):
    ap = argparse.ArgumentParser(description="Run the demo session in the simulator.")
    ap.add_argument("--out", type=Path, default=OUT, help="folder for the plot (default build/sim)")
    ap.add_argument("--shots", type=int, default=8, help="single-mode punctures")
    ap.add_argument("--burst-ms", type=int, default=3000, help="how long the trigger is held in continuous mode")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)
    wall = time.perf_counter()
    log_dir = args.out / "log"
    sim = run_demo(args.shots, args.burst_ms, log_dir=log_dir)
    wall = time.perf_counter() - wall
    print_report(sim)
    print("simulated %.1f s in %.2f s of wall time" % (sim.now_us / 1e6, wall))
    from host_tools import logs, report  # the engineer's tools, on the log the firmware wrote

    decoded = logs.read_dir(log_dir)
    report.write_report(decoded, 1, args.out / "report")
    print("treatment log: %s (%d records); report: %s" % (
        log_dir, len(decoded.records), args.out / "report"))
    if not args.no_plot:
        path = args.out / "session.png"
        plot(sim, path)
        print("plot: %s" % path)


if __name__ == "__main__":
    main()
