"""Every `injector` command fed broken input: exit code 2, one line on stderr, never a
traceback, nothing written.

The commands are read off the CLI's own parser (cli.build_parser), so a subcommand added
tomorrow is fuzzed without a change here. Each of its arguments is put in a class by what
argparse knows of it: a flag, a serial port (dest "port"), a number (an int or checked type),
a path (type Path: metavar DIR or FILE; dest "out" or "csv" for an output, else an input).
An example then builds one command line from those classes:

- input files are always broken: random bytes, truncated JSON, deep nesting, huge numbers,
  wrong types, an empty file, a folder, a missing file, a 50 MB file; input folders are
  missing, a file, or a path under a file;
- a port never exists (and when nothing else is wrong the one line says "no such device");
- outputs are a fresh path (fine) or one that cannot be (a file for a folder, a folder
  for a file, a path in a missing folder or under a file);
- numbers are fine (the first of a few candidates the type takes) or garbage, huge, -1;
- a required argument may be left out, a stray option or word added; when nothing else
  is wrong a stray one is, so every example has something to refuse.

The command runs in this process (cli.main, stdout and stderr captured) in a fresh
temporary folder that is its working directory; afterwards the folder must hold exactly
what the example put there, unchanged. Several problems may be listed under the first
line (a protocol's invalid fields, a script's line); each such line is indented.

`make test` runs a few dozen examples per command; `make soak` many more (tests/soak.py).
"""

import argparse
import contextlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from host_cli import ROOT
from host_tools import cli
from injcore import store as S
from soak import examples

OUTPUT_DESTS = ("out", "csv")  # paths a command writes; any other path it reads
NUMBER_CANDIDATES = ("1", "8", "200", "998", "3000", "4700")  # a fine value: the first taken
HUGE_FILE_BYTES = 50 * 1024 * 1024
# A JSON document of each kind the tools read: every shipped protocol, a settings record.
# Stripped: cut anywhere, an object is no longer JSON (cut off only a trailing newline,
# it would still be a valid protocol).
SEEDS = [p.read_text().strip() for p in sorted((ROOT / "protocols").glob("*.json"))] + [
    json.dumps(S.defaults(), indent=2)
]


# ---- the commands and their arguments, from the parser ----------------------------------


@dataclass
class Arg:
    action: argparse.Action
    kind: str  # flag, port, number, text, in-file, in-dir, out-file, out-dir
    group: int | None  # index of its mutually exclusive group

    @property
    def flag(self):
        return max(self.action.option_strings, key=len) if self.action.option_strings else None

    @property
    def required(self):
        return self.action.required or self.flag is None


def leaves(parser, path=()):
    """(command words, parser) of every runnable command under `parser`."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, sub in subs[0].choices.items():
        yield from leaves(sub, path + (name,))


def kind_of(action):
    if action.dest == "port":
        return "port"
    if action.nargs == 0:
        return "flag"
    if action.type is Path:
        where = "out" if action.dest in OUTPUT_DESTS else "in"
        return "%s-%s" % (where, "dir" if action.metavar == "DIR" else "file")
    if action.type is not None:
        return "number"
    return "text"


def arguments(parser):
    groups = {}
    for i, g in enumerate(parser._mutually_exclusive_groups):
        for a in g._group_actions:
            groups[id(a)] = i
    out = []
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction) or a.dest.startswith("help"):
            continue  # --help, --help-script: they print help and succeed
        out.append(Arg(a, kind_of(a), groups.get(id(a))))
    return out


def fine_number(action):
    for text in NUMBER_CANDIDATES:
        try:
            action.type(text)
            return text
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            pass
    raise AssertionError("no fine value for %s: add one to NUMBER_CANDIDATES" % action.dest)


COMMANDS = {" ".join(path): parser for path, parser in leaves(cli.build_parser())}


def test_the_commands_are_found():
    assert {"sim", "panel", "protocol validate", "logs export", "settings push"} <= set(COMMANDS)
    for parser in COMMANDS.values():
        for arg in arguments(parser):
            if arg.kind == "number":
                fine_number(arg.action)  # each number has a value its type takes


# ---- broken inputs ------------------------------------------------------------------------


def json_paths(obj, path=()):
    """Every (path, value) inside a JSON value, itself first."""
    yield path, obj
    if isinstance(obj, dict):
        items = obj.items()
    else:
        items = enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        yield from json_paths(v, path + (k,))


def replaced(obj, path, value):
    if not path:
        return value
    obj = json.loads(json.dumps(obj))
    target = obj
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    return obj


OTHER_TYPES = [None, True, "text", [], {}, [1, "x"], {"a": {}}]
# Numbers with no upper bound, where a huge one is still valid: a protocol's own session
# cap (the effective cap is the lower of it and the engineer's).
UNBOUNDED = ("session_cap_nl",)


def json_type(v):
    return type(v).__name__ if not isinstance(v, bool) else "bool"


@st.composite
def file_contents(draw):
    """(name of the kind, bytes) of a broken input file."""
    kind = draw(
        st.sampled_from(["random", "truncated", "deep", "huge number", "wrong type", "empty"])
    )
    if kind == "random":
        return kind, draw(st.binary(max_size=600))
    if kind == "empty":
        return kind, b""
    seed = draw(st.sampled_from(SEEDS))
    if kind == "truncated":
        return kind, seed.encode()[: draw(st.integers(0, len(seed.encode()) - 1))]
    if kind == "deep":
        n = draw(st.integers(17, 6000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        inner = opener * n + ("1" if opener != "[" else "") + closer * n
        where = draw(st.sampled_from(["alone", "inside"]))
        text = inner if where == "alone" else seed.replace("{", '{"deep": %s, ' % inner, 1)
        return kind, text.encode()
    doc = json.loads(seed)
    if kind == "huge number":
        numbers = [
            p
            for p, v in json_paths(doc)
            if json_type(v) in ("int", "float") and p[-1] not in UNBOUNDED
        ]
        path = draw(st.sampled_from(numbers))
        huge = draw(
            st.sampled_from(["1e400", "-1e400", "1" + "0" * 30])
            | st.integers(20, 4000).map(lambda k: "9" * k)
        )
        marker = "__HUGE__"
        return kind, json.dumps(replaced(doc, path, marker)).replace('"%s"' % marker, huge).encode()
    paths = list(json_paths(doc))
    path, old = draw(st.sampled_from(paths))
    new = draw(st.sampled_from([v for v in OTHER_TYPES if json_type(v) != json_type(old)]))
    return kind, json.dumps(replaced(doc, path, new)).encode()


def make_input_file(draw, folder, name):
    """A broken input file at folder/name (or none there); the path given to the command."""
    kind = draw(st.sampled_from(["content"] * 6 + ["folder", "missing", "50 MB"]))
    path = folder / name
    if kind == "folder":
        path.mkdir()
    elif kind == "50 MB":
        with open(path, "wb") as f:
            f.truncate(HUGE_FILE_BYTES)  # sparse: costs no disk, and no memory unless read
    elif kind == "content":
        kind, data = draw(file_contents())
        path.write_bytes(data)
        note("%s: %s, %r" % (name, kind, data[:200]))
    return path


def make_input_dir(draw, folder, name):
    kind = draw(st.sampled_from(["missing", "a file", "under a file"]))
    if kind == "missing":
        return folder / name
    (folder / name).write_bytes(draw(st.binary(max_size=64)))
    return folder / name if kind == "a file" else folder / name / "log"


def make_output(draw, folder, name, is_dir):
    """(path, broken?) of an output: fresh, or where it cannot be."""
    kinds = ["a file", "under a file"] if is_dir else ["a folder", "in a missing folder"]
    kind = draw(st.sampled_from(["fresh"] * len(kinds) + kinds + ["under a file"]))
    path = folder / name
    if kind == "fresh":
        return path, False
    if kind == "a file":
        path.write_text("x")
    elif kind == "a folder":
        path.mkdir()
    elif kind == "under a file":
        path.write_text("x")
        path = path / "x"
    else:
        path = path / "x"
    return path, True


BROKEN_NUMBERS = (
    st.sampled_from(["", "-1", "x", "1x", "nan", "inf", "0x10", "1e999999", "--"])
    | st.integers(20, 5000).map(lambda k: "9" * k)
    | st.text(st.characters(categories=["L"]), min_size=1, max_size=8)
)
STRAY = st.sampled_from(["--zz", "--zz-top=1", "stray", "-q"]) | st.text(
    st.characters(categories=["L", "N"]), min_size=1, max_size=6
).map(lambda t: "--zz" + t)


def value_of(draw, arg, folder, name):
    """(the value for `arg`, what is wrong with it or None); its file, if any, made."""
    if arg.kind == "port":
        return str(folder / "no-such-tty"), "port"
    if arg.kind == "number":  # mostly fine, so that the files behind them are reached too
        if draw(st.integers(0, 3)):
            return fine_number(arg.action), None
        return draw(BROKEN_NUMBERS), "number"
    if arg.kind == "in-file":
        return str(make_input_file(draw, folder, name)), "input"
    if arg.kind == "in-dir":
        return str(make_input_dir(draw, folder, name)), "input"
    if arg.kind.startswith("out-"):
        path, broken = make_output(draw, folder, name, arg.kind == "out-dir")
        return str(path), "output" if broken else None
    # a plain string: anything may be fine, so it does not count as wrong (but a leading
    # "-", which argparse reads as an option wherever it stands, as a NAME too)
    return draw(st.text(min_size=1, max_size=10).filter(lambda t: not t.startswith("-"))), None


@st.composite
def command_line(draw, name, folder):
    """(argv, what is wrong in it) for the command `name`, its files made in `folder`."""
    parser = COMMANDS[name]
    args = arguments(parser)
    groups = parser._mutually_exclusive_groups
    # one member of each mutually exclusive group at most, exactly one if it is required
    picked = {
        i: draw(st.sampled_from([a for a in args if a.group == i] + ([] if g.required else [None])))
        for i, g in enumerate(groups)
    }
    wrong = []
    pieces = []  # (required?, positional?, words)
    for n, arg in enumerate(args):
        if arg.group is not None:
            if picked[arg.group] is not arg:
                continue
        elif not arg.required and not draw(st.booleans()):
            continue
        required = arg.required or (arg.group is not None and groups[arg.group].required)
        if arg.kind == "flag":
            pieces.append((required, False, [arg.flag]))
            continue
        value, why = value_of(draw, arg, folder, "arg%d" % n)
        if why:
            wrong.append(why)
        if arg.flag is None:
            pieces.append((required, True, [value]))
        elif value.startswith("-"):  # argparse would read it as an option
            pieces.append((required, False, ["%s=%s" % (arg.flag, value)]))
        else:
            pieces.append((required, False, [arg.flag, value]))
    droppable = [i for i, (required, _, _) in enumerate(pieces) if required]
    if droppable and draw(st.integers(0, 4)) == 0:
        del pieces[draw(st.sampled_from(droppable))]
        wrong.append("missing")
    words = [ws for _, positional, ws in pieces if positional]
    words += [ws for _, positional, ws in pieces if not positional]
    if not wrong or draw(st.integers(0, 4)) == 0:
        # between arguments, never between an option and its value (it would take it)
        words.insert(draw(st.integers(0, len(words))), [draw(STRAY)])
        wrong.append("stray")
    return name.split() + [w for ws in words for w in ws], wrong


# ---- running them -------------------------------------------------------------------


def state(folder):
    """What is in `folder`: every path, with a file's size and modification time."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        st_ = p.lstat()
        out[str(p.relative_to(folder))] = (p.is_dir(), st_.st_size, st_.st_mtime_ns)
    return out


def run_in(folder, argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(folder), contextlib.redirect_stdout(out):
        with contextlib.redirect_stderr(err):
            code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", sorted(COMMANDS))
@settings(
    max_examples=examples(30),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_broken_input_is_refused_in_one_line(name, data):
    with tempfile.TemporaryDirectory(prefix="injector-fuzz-") as tmp:
        folder = Path(tmp)
        argv, wrong = data.draw(command_line(name, folder), label="argv")
        before = state(folder)
        code, out, err = run_in(folder, argv)
        note("stderr: %r" % err)
        assert "Traceback" not in out + err
        assert "internal error" not in err
        assert code == 2, (code, err)
        lines = err.splitlines()
        assert lines and lines[0].startswith(("injector", "usage: injector")), err
        assert all(line.startswith(" ") for line in lines[1:]), err
        assert len(err) < 20_000, "a refusal echoed its input"
        if wrong == ["port"]:
            assert len(lines) == 1 and "no-such-tty: no such device" in lines[0]
        assert state(folder) == before, "a refused command wrote something"
        assert os.getcwd() != tmp
