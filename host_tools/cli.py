"""`injector`: the host tools behind one command (pyproject's [project.scripts]).

    injector panel                       the front panel, live in this terminal
    injector panel --script FILE [--out DIR]   a scripted session, headless

Each subcommand is a function `add_<name>(subparsers)` that declares its
arguments and sets `run` to a function args -> exit code; SUBCOMMANDS lists
them, so a new one (logs, report, settings, protocol, sim) is one function
and one entry. Heavy imports (the simulator, Pillow) happen inside `run`, so
`injector --help` stays quick.
"""

import argparse
import sys
from pathlib import Path


def add_panel(sub):
    p = sub.add_parser(
        "panel",
        help="the device's display and buttons on the simulator",
        description="The operator interface of the firmware (ui.screens) on the simulated "
        "injector. Without --script: live in this terminal (needs a TTY). With "
        "--script FILE: run the commands of FILE headless, write its screenshots "
        "to --out and exit 0 (all fine), 1 (an expect failed) or 2 (a bad script).",
    )
    p.add_argument("--script", type=Path, metavar="FILE", help="run this script headless")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("build/panel"),
        metavar="DIR",
        help="folder for the script's screenshots (default build/panel)",
    )
    p.add_argument(
        "--ready", action="store_true", help="start homed, with a 1 mL syringe loaded and primed"
    )
    p.add_argument("--seed", type=int, default=1, help="the machine model's noise seed")
    p.add_argument("--help-script", action="store_true", help="describe the script language")
    p.set_defaults(run=run_panel)


def run_panel(args):
    if (
        args.script is None
        and not args.help_script
        and not (sys.stdin.isatty() and sys.stdout.isatty())
    ):
        print(
            "injector panel: the live panel needs a terminal (stdin and stdout a TTY).\n"
            "Headless, run a script instead:  injector panel --script FILE [--out DIR]\n"
            "(examples in tests/panel_scripts/; the language: injector panel --help-script)",
            file=sys.stderr,
        )
        return 2
    from host_tools import panel  # the simulator and the firmware: only now

    if args.help_script:
        print(panel.HELP_SCRIPT, end="")
        return 0
    if args.script is not None:
        return panel.run_script(args.script, args.out, ready=args.ready, seed=args.seed)
    return panel.run_terminal(panel.Panel(seed=args.seed, ready=args.ready))


def add_logs(sub):
    """injector logs pull|show|export: the treatment log (host_tools/logs.py)."""
    from host_tools import logs

    logs.add_parser(sub)


def add_report(sub):
    """injector report SESSION: charts and a summary of one session (host_tools/report.py)."""
    from host_tools import report

    report.add_parser(sub)


def add_settings(sub):
    """injector settings show|push: the stored record (host_tools/settings_tool.py)."""
    from host_tools import settings_tool

    settings_tool.add_parser(sub)


def add_calibrate(sub):
    """injector calibrate: gravimetric dose calibration (host_tools/calibrate_tool.py)."""
    from host_tools import calibrate_tool

    calibrate_tool.add_parser(sub)


def add_protocol(sub):
    """injector protocol validate|push|pull: treatment protocols (host_tools/protocol_tool.py)."""
    from host_tools import protocol_tool

    protocol_tool.add_parser(sub)


def add_sim(sub):
    """injector sim [--protocol FILE]: a whole simulated session (host_tools/sim_tool.py)."""
    p = sub.add_parser(
        "sim",
        help="a simulated session (the demo, or a protocol by zones), its log and report",
        description="Runs a session on the simulator with the firmware's core, then reads the "
        "treatment log it wrote and writes the report. Without --protocol: the demo "
        "session (what `make sim` runs): its punctures as a table, the log in DIR/log, "
        "the report in DIR/report and the plot DIR/session.png. With --protocol "
        "FILE: the protocol zone by zone (the planned punctures; nappage zones held "
        "for their count; 'free' zones 10 punctures), the treatment log in DIR/log "
        "and the zone-by-zone report in DIR/report. Exit 0, 1 (cannot be simulated, "
        "e.g. no syringe holds the session cap) or 2 (a bad protocol file).",
    )
    p.add_argument(
        "--protocol", type=Path, metavar="FILE", help="a protocol JSON file (protocols/)"
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="output folder (default build/sim/protocol, or build/sim for the demo)",
    )
    p.add_argument("--seed", type=int, default=1, help="the machine model's noise seed")
    p.add_argument("--shots", type=int, default=8, help="the demo's single-mode punctures")
    p.add_argument(
        "--burst-ms",
        type=int,
        default=3000,
        help="how long the demo holds the trigger in continuous mode",
    )
    p.add_argument("--no-plot", action="store_true", help="the demo without its session.png")
    p.set_defaults(run=run_sim)


def run_sim(args):
    from host_tools import sim_tool  # the simulator and the firmware: only now

    return sim_tool.run(args)


SUBCOMMANDS = (add_panel, add_logs, add_report, add_settings, add_calibrate, add_protocol, add_sim)


def build_parser():
    ap = argparse.ArgumentParser(
        prog="injector", description="Host tools for the open injector firmware."
    )
    sub = ap.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return ap


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `injector`: say what there is
        parser.print_help(sys.stderr)
        return 2
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
