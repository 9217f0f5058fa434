"""`injector`: the host tools behind one command (pyproject's [project.scripts]).

    injector panel                       the front panel, live in this terminal
    injector panel --script FILE [--out DIR]   a scripted session, headless

    injector --version [--port PORT]     the host tools' version (and the board's)

Each subcommand is a function `add_<name>(subparsers)` that declares its
arguments and sets `run` to a function args -> exit code; SUBCOMMANDS lists
them, so a new one (logs, report, settings, protocol, sim) is one function
and one entry. Heavy imports (the simulator, Pillow) happen inside `run`, so
`injector --help` stays quick.

No input makes a command print a traceback: argument errors are one line
(cliutil.Parser), refusals are one line (with the problems listed under it
where there are several), a closed pipe ends it quietly, Ctrl-C says so, and
anything else is reported as a bug on one line (INJECTOR_TRACEBACK=1 shows it).
"""

import argparse
import os
import sys
from pathlib import Path

from host_tools.cliutil import Parser, clip, int_range

SEED_RANGE = (0, 2**32 - 1)  # the machine model's noise seed
SHOTS_MAX = 100  # the demo's single shots: a 1 mL syringe runs dry after about 50
BURST_MS_MAX = 120_000  # the demo's nappage burst: 2 min empties the syringe too


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
    p.add_argument(
        "--seed", type=int_range(*SEED_RANGE), default=1, help="the machine model's noise seed"
    )
    p.add_argument("--help-script", action="store_true", help="describe the script language")
    p.set_defaults(run=run_panel)


def run_panel(args):
    if (
        args.script is None
        and not args.help_script
        and not (sys.stdin.isatty() and sys.stdout.isatty())
    ):
        print(
            "injector panel: the live panel needs a terminal (stdin and stdout a TTY)\n"
            "  headless, run a script instead:  injector panel --script FILE [--out DIR]\n"
            "  (examples in tests/panel_scripts/; the language: injector panel --help-script)",
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
    p.add_argument(
        "--seed", type=int_range(*SEED_RANGE), default=1, help="the machine model's noise seed"
    )
    p.add_argument(
        "--shots",
        type=int_range(0, SHOTS_MAX),
        default=8,
        help="the demo's single-mode punctures (at most %d)" % SHOTS_MAX,
    )
    p.add_argument(
        "--burst-ms",
        type=int_range(0, BURST_MS_MAX, "ms"),
        default=3000,
        help="how long the demo holds the trigger in continuous mode (at most %d)" % BURST_MS_MAX,
    )
    p.add_argument("--no-plot", action="store_true", help="the demo without its session.png")
    p.set_defaults(run=run_sim)


def run_sim(args):
    from host_tools import sim_tool  # the simulator and the firmware: only now

    return sim_tool.run(args)


SUBCOMMANDS = (add_panel, add_logs, add_report, add_settings, add_calibrate, add_protocol, add_sim)


def build_parser():
    ap = Parser(prog="injector", description="Host tools for the open injector firmware.")
    ap.add_argument(
        "--version",
        action="store_true",
        help="print the host tools' version (the firmware's of this checkout); with --port, "
        "the version of the firmware on that board too",
    )
    ap.add_argument(
        "--port",
        dest="version_port",
        metavar="PORT",
        help="with --version: ask the board on PORT (mpremote connect PORT); the board is "
        "reset afterwards, as after every --port action",
    )
    ap.add_argument(
        "--no-reset",
        dest="version_no_reset",
        action="store_true",
        help="with --version --port: leave the board at the REPL instead of resetting it",
    )
    sub = ap.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return ap


def host_version():
    """This checkout's version: the firmware's (firmware/board/version.py), which
    pyproject.toml reads as the package's. Read from the source, not the installed
    metadata, which an editable install leaves stale until it is reinstalled."""
    import sim  # noqa: F401  (puts firmware/ on sys.path)
    from board.version import FIRMWARE_VERSION

    return FIRMWARE_VERSION


def run_version(args):
    host = host_version()
    print("injector %s (host tools)" % host)
    if args.version_port is None:
        return 0
    from host_tools import settings_tool as ST  # mpremote: only now

    src = ST.Source(args.version_port, None, not args.version_no_reset)
    code = 0
    try:
        board = src.firmware_version()
        print("firmware %s on %s" % (board, args.version_port))
        if board != host:
            print(
                "  the board runs another version than these host tools "
                "(make deploy PORT=%s puts this checkout's firmware on it)" % args.version_port
            )
    except ST.ToolError as e:
        print("injector: %s" % e, file=sys.stderr)
        code = 2
    if not src.finish():
        code = 2
    return code


def _leaf(parser, argv):
    """The parser of the (sub)command `argv` names: `injector protocol validate ...` ->
    the validate parser; it says what is wrong with its own arguments."""
    for word in argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs and word in subs[0].choices:
            parser = subs[0].choices[word]
    return parser


def _run(argv):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse would blame the top command for any subcommand's stray word
        _leaf(parser, argv).error("unrecognized arguments: %s" % " ".join(extra))
    if args.version:
        return run_version(args)
    if args.version_port is not None or args.version_no_reset:
        parser.error(
            "--port and --no-reset before a command go with --version; a command takes its "
            "own after its name (injector settings show --port PORT)"
        )
    if args.command is None:  # a bare `injector`: say what there is
        parser.print_help(sys.stderr)
        return 2
    return args.run(args)


def _stdout_gone():
    """The reader of stdout went away (`injector sim | head -1`). As Python's documentation
    advises (signal module, "Note on SIGPIPE"): stdout pointed at devnull, so the flush at
    exit cannot fail again, and exit code 1."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (a test's capture)
        pass
    return 1


def main(argv=None):
    """The `injector` command: its exit code (0 done, 1 what the command calls a soft
    failure, 2 an error or a refusal, 130 interrupted)."""
    try:
        code = _run(argv)
        sys.stdout.flush()  # a closed pipe shows here for what is still buffered
        return code
    except SystemExit as e:  # argparse after --help (0) or a usage error (2)
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print("injector: %s" % clip(e.code, 300), file=sys.stderr)
        return 1
    except BrokenPipeError:
        return _stdout_gone()
    except KeyboardInterrupt:
        print("injector: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: one line for the user, the traceback on request
        if os.environ.get("INJECTOR_TRACEBACK"):
            raise
        print(
            "injector: internal error (a bug; please report it): %s: %s "
            "(INJECTOR_TRACEBACK=1 shows where)" % (type(e).__name__, clip(e, 200)),
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
