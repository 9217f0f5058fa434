"""The `injector` command as the CLI tests run it: in this process or as a user would."""

import subprocess
import sys
from pathlib import Path

from host_tools.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *args):
    """The CLI in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def cli(*args, timeout=120):
    """The CLI as the user runs it (a separate process): CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "host_tools.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )
