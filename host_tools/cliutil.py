"""What every `injector` command shares so that no input makes it crash.

Parser: argparse with its errors on one line. int_range: a whole-number option
with its range, said when a value is outside it. read_capped: an input file's
bytes, refused by its size before it is read when it is too large (a 50 MB
file never fills memory). loads_json: JSON text, refused when it is nested
deeper than any file the tools take (the decoder recurses per level).
out_dir_problem / out_file_problem: where an output cannot go, found before
anything is written. missing_port: a serial port that names no device,
refused before mpremote is started (mpremote only says it "may be in use").
Refusal is the one line a command prints for all of these.

Light on purpose: the tools import it, and `injector --help` must stay quick.
"""

import argparse
import json
import os
import sys
from pathlib import Path

# A protocol file is 4 levels deep (document, zones, zone, settings), a settings record
# 2; well above both, and well below the JSON decoder's recursion limit.
MAX_JSON_DEPTH = 16
CLIP_CHARS = 40  # what is echoed of a user's value in a message


class Refusal(Exception):
    """An input a command refuses: str() is the one line that says why (without the
    file's name where it is about a file: the command names it its own way)."""


class TooLarge(Refusal):
    """A file over its size cap; size_bytes is its size (or the cap + 1 where the size
    is unknown, as with a device file whose stat says 0)."""

    def __init__(self, size_bytes, max_bytes):
        super().__init__("%d bytes is too large; allowed at most %d" % (size_bytes, max_bytes))
        self.size_bytes = size_bytes
        self.max_bytes = max_bytes


def clip(text, limit=CLIP_CHARS):
    """`text` for a message: control characters escaped (no line breaks, no terminal
    escapes), at most `limit` characters of it."""
    text = str(text)
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: limit + 1])
    return out[:limit] + "..." if len(text) > limit or len(out) > limit else out


# ---- arguments -----------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line: the command, what is wrong, where its help is.

    argparse's own error is the usage (wrapped over several lines for most commands)
    and then the message; the usage is one --help away. Subcommand parsers are made
    with the class of their parent, so every `injector` command gets this one."""

    def error(self, message):
        self.exit(2, "%s: %s (%s --help)\n" % (self.prog, clip(message, 300), self.prog))

    def _get_values(self, action, arg_strings):
        # Python 3.11's argparse drops the value of `--opt=--` as if it were the "--"
        # separator and hands the option an empty list, past its type
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            raise argparse.ArgumentError(action, "'--' is not a value")
        return super()._get_values(action, arg_strings)


def no_action(parser):
    """A command group run without its action (`injector protocol`): one line naming the
    actions, exit code 2."""
    names = []
    for action in parser._actions:  # argparse keeps the subcommands there, nowhere public
        if isinstance(action, argparse._SubParsersAction):
            names = list(action.choices)
    print(
        "usage: %s ACTION ...: the action is one of %s (%s --help)"
        % (parser.prog, ", ".join(names), parser.prog),
        file=sys.stderr,
    )
    return 2


def int_range(lo, hi, unit=""):
    """argparse type: a whole number lo..hi; outside it, the range is the message."""
    allowed = "allowed %d..%d%s" % (lo, hi, " " + unit if unit else "")

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            # int() refuses more than 4300 digits; such a number is out of range, not garbage
            if text.strip().lstrip("+-").isdigit():
                raise argparse.ArgumentTypeError(
                    "%s is out of range; %s" % (clip(text, 12), allowed)
                ) from None
            raise argparse.ArgumentTypeError("%r is not a whole number" % clip(text)) from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError("%s is out of range; %s" % (clip(text, 12), allowed))
        return value

    parse.__name__ = "int"  # argparse names the type in some of its messages
    return parse


# ---- input files -------------------------------------------------------------------


def read_capped(path, max_bytes):
    """The bytes of the file at `path`. Refusal if it is a folder or cannot be read
    (missing, no permission); TooLarge, without reading it, if it holds more than
    max_bytes."""
    path = Path(path)
    if path.is_dir():
        raise Refusal("a folder, not a file")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise TooLarge(size, max_bytes)
            data = f.read(max_bytes + 1)  # the size may lie (a device, a file still growing)
    except OSError as e:
        raise Refusal(e.strerror or str(e)) from None
    if len(data) > max_bytes:
        raise TooLarge(len(data), max_bytes)
    return data


def json_depth(obj, stop=MAX_JSON_DEPTH):
    """How deeply arrays and objects nest in `obj` (a scalar: 0), counted without
    recursion; stops counting past `stop`."""
    deepest = 0
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, depth)
            if deepest > stop:
                break
            stack.extend((v, depth + 1) for v in value)
    return deepest


def loads_json(data):
    """The JSON value of `data` (bytes). Refusal, one line: not UTF-8, not JSON, or
    nested deeper than MAX_JSON_DEPTH."""
    too_deep = "nested deeper than %d levels of arrays and objects" % MAX_JSON_DEPTH
    try:
        text = data.decode("utf-8")
    except UnicodeError:
        raise Refusal("not UTF-8 text") from None
    try:
        obj = json.loads(text)
    except RecursionError:  # the decoder recurses per level: thousands of [ end it
        raise Refusal(too_deep) from None
    except ValueError as e:
        raise Refusal("not valid JSON (%s)" % clip(e, 120)) from None
    if json_depth(obj) > MAX_JSON_DEPTH:
        raise Refusal(too_deep)
    return obj


# ---- outputs -------------------------------------------------------------------------


def out_dir_problem(path):
    """Why `path` cannot be made an output folder (it, or a folder above it, is a file),
    or None. Nothing is created."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.is_dir():
            return None
        if p.exists() or p.is_symlink():
            if p == path:
                return "%s is a file, not a folder" % path
            return "%s: %s is a file, not a folder" % (path, p)
    return None


def out_file_problem(path):
    """Why a file cannot be written at `path` without making folders, or None."""
    path = Path(path)
    if path.is_dir():
        return "%s is a folder; give a file name in it" % path
    folder = path.parent
    if not folder.exists():
        return "no such folder: %s (make it first; nothing is created for you)" % folder
    if not folder.is_dir():
        return "%s is a file, not a folder" % folder
    return None


# ---- the board ---------------------------------------------------------------------

# Ports mpremote resolves itself: its own prefixes and `auto` (the first board found).
_MPREMOTE_FORMS = ("id:", "rfc2217:", "socket:")


def missing_port(port):
    """One line if `port` names no serial device, else None. mpremote, given a port
    that does not exist, says it failed to access it "(it may be in use by another
    program)", which sends people looking for the wrong thing."""
    if port == "auto" or port.startswith(_MPREMOTE_FORMS):
        return None
    path = port[len("port:") :] if port.startswith("port:") else port
    if os.path.exists(path):
        return None
    if "/" not in path and os.sep not in path:  # a bare name (COM3): the ports there are
        try:
            from serial.tools import list_ports  # pyserial, mpremote's own dependency

            if any(p.device == path for p in list_ports.comports()):
                return None
        except Exception:  # no list of ports here: the verdict is mpremote's
            return None
    return (
        "%s: no such device (is the board plugged in? `mpremote connect list` lists the ports)"
        % clip(port, 200)
    )
