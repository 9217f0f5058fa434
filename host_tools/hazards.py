"""Hazard traceability: the hazard list, the tests that carry each hazard, docs/hazards.md.

The one source is docs/hazards.toml: each hazard's id (H1, H2, ...), what can
go wrong, the mitigation and the code that implements it, the target, and,
where the mitigation is not built yet, the issue that will build it. A test
says which hazards it checks with a marker:

    @pytest.mark.hazard("H2", "H6")
    def test_needle_soft_limit_...

tests/conftest.py imports the pytest hooks below. A marker naming a hazard
that is not in the list, or naming none, is a collection error of its module
(so a typo never counts as coverage, with or without xdist); with
`--hazard-map FILE` the hooks write the map hazard -> tests of everything
collected as JSON. `collect_map()` gets that map by running
`pytest --collect-only` over tests/ in a child process, so it sees the whole
suite whatever subset or xdist worker asks. tests/test_hazards.py fails when
a hazard has no test (unless it is declared planned), when a planned hazard
has tests after all, when the code a mitigation names is gone, and when
docs/hazards.md is not what this module generates.

    python -m host_tools.hazards                           # which tests cover which hazard
    python -m host_tools.hazards --write docs/hazards.md   # `make hazards`
    python -m host_tools.hazards --check docs/hazards.md   # exit 1 if stale or uncovered
"""

import argparse
import ast
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HAZARDS_TOML = ROOT / "docs" / "hazards.toml"
HAZARDS_MD = ROOT / "docs" / "hazards.md"
TESTS = ROOT / "tests"
REQUIRED = tuple("H%d" % n for n in range(1, 13))  # the list covers at least these
MARKER = "hazard"
MAP_OPTION = "--hazard-map"
ID_RE = re.compile(r"H[1-9][0-9]*\Z")

_HAZARD_KEYS = {"id", "title", "harm", "mitigation", "target", "code", "planned", "pending"}
_TEXT_KEYS = ("id", "title", "harm", "mitigation", "target")
_CODE_KEYS = {"file", "name", "does"}
_PLAN_KEYS = {"issue", "what"}


class HazardListError(ValueError):
    """docs/hazards.toml is malformed; the message names the entry and the key."""


class HazardWarning(UserWarning):
    """A hazard accepted without a test (or a part of one) because it is declared planned."""


@dataclass(frozen=True)
class CodeRef:
    file: str  # relative to the repository root
    name: str  # a module-level name or Class.method defined in that file
    does: str  # what that code does against the hazard


@dataclass(frozen=True)
class Plan:
    issue: int
    what: str


@dataclass(frozen=True)
class Hazard:
    id: str
    title: str
    harm: str  # what can go wrong
    mitigation: str
    target: str
    code: tuple[CodeRef, ...] = ()
    planned: Plan | None = None  # nothing built yet: no test expected until the issue lands
    pending: tuple[Plan, ...] = ()  # built in part: these parts are still to come


def _number(hid):
    return int(hid[1:]) if isinstance(hid, str) and ID_RE.match(hid) else 0


def _words(text):
    return " ".join(text.split())


# ---- the hazard list --------------------------------------------------------------------


def _plan(where, raw):
    if not isinstance(raw, dict) or set(raw) != _PLAN_KEYS:
        raise HazardListError("%s: needs exactly %s" % (where, ", ".join(sorted(_PLAN_KEYS))))
    issue, what = raw["issue"], raw["what"]
    if not isinstance(issue, int) or isinstance(issue, bool) or issue < 1:
        raise HazardListError("%s.issue: %r is not an issue number" % (where, issue))
    if not isinstance(what, str) or not what.strip():
        raise HazardListError("%s.what: must say what is still to be built" % where)
    return Plan(issue, _words(what))


def _hazard(where, raw):
    unknown = set(raw) - _HAZARD_KEYS
    if unknown:
        raise HazardListError("%s: unknown key(s) %s" % (where, ", ".join(sorted(unknown))))
    for key in _TEXT_KEYS:
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise HazardListError("%s: `%s` is missing or empty" % (where, key))
    if not ID_RE.match(raw["id"]):
        raise HazardListError("%s: id must be H followed by a number (H1, H12)" % where)
    refs = raw.get("code", [])
    pending = raw.get("pending", [])
    if not isinstance(refs, list) or not isinstance(pending, list):
        raise HazardListError("%s: code and pending are lists" % where)
    code = []
    for j, ref in enumerate(refs):
        if (
            not isinstance(ref, dict)
            or set(ref) != _CODE_KEYS
            or not all(isinstance(ref[k], str) and ref[k].strip() for k in _CODE_KEYS)
        ):
            raise HazardListError("%s: code[%d] needs file, name and does, all text" % (where, j))
        code.append(CodeRef(ref["file"], ref["name"], _words(ref["does"])))
    planned = _plan(where + ".planned", raw["planned"]) if "planned" in raw else None
    pending = tuple(_plan("%s.pending[%d]" % (where, j), p) for j, p in enumerate(pending))
    if planned and pending:
        raise HazardListError(
            "%s: either planned (nothing built) or pending (built in part), not both" % where
        )
    if not planned and not code:
        raise HazardListError("%s: a built mitigation must name its code" % where)
    return Hazard(
        id=raw["id"],
        title=_words(raw["title"]),
        harm=_words(raw["harm"]),
        mitigation=_words(raw["mitigation"]),
        target=_words(raw["target"]),
        code=tuple(code),
        planned=planned,
        pending=pending,
    )


def parse(text, source="docs/hazards.toml"):
    """The hazards in a TOML text, in the order of their numbers; HazardListError if malformed."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise HazardListError("%s: %s" % (source, e)) from None
    if (
        set(data) != {"hazard"}
        or not isinstance(data["hazard"], list)
        or not all(isinstance(raw, dict) for raw in data["hazard"])
    ):
        raise HazardListError("%s: expected only [[hazard]] tables" % source)
    hazards = [
        _hazard("%s: hazard %s" % (source, raw.get("id", "#%d" % (i + 1))), raw)
        for i, raw in enumerate(data["hazard"])
    ]
    ids = [h.id for h in hazards]
    dup = sorted({i for i in ids if ids.count(i) > 1}, key=_number)
    if dup:
        raise HazardListError("%s: %s listed twice" % (source, ", ".join(dup)))
    missing = [i for i in REQUIRED if i not in ids]
    if missing:
        raise HazardListError(
            "%s: %s missing (the list covers at least %s..%s)"
            % (source, ", ".join(missing), REQUIRED[0], REQUIRED[-1])
        )
    return tuple(sorted(hazards, key=lambda h: _number(h.id)))


def load(path=HAZARDS_TOML):
    path = Path(path)
    source = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    return parse(path.read_text(encoding="utf-8"), source)


def _defined_names(tree):
    """Module-level names, classes, and Class.attribute / Class.method names of a module."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add("%s.%s" % (node.name, sub.name))
                elif isinstance(sub, ast.Assign):
                    names.update(
                        "%s.%s" % (node.name, t.id) for t in sub.targets if isinstance(t, ast.Name)
                    )
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def code_problems(hazards, root=ROOT):
    """Mitigations naming a file or a name that is not there (renamed, moved, removed)."""
    problems = []
    parsed = {}
    for h in hazards:
        for ref in h.code:
            if ref.file not in parsed:
                path = root / ref.file
                parsed[ref.file] = (
                    _defined_names(ast.parse(path.read_text(encoding="utf-8")))
                    if path.is_file()
                    else None
                )
            names = parsed[ref.file]
            if names is None:
                problems.append(
                    "%s: its mitigation names %s, which does not exist" % (h.id, ref.file)
                )
            elif ref.name not in names:
                problems.append(
                    "%s: its mitigation names %s in %s, which is not defined there"
                    % (h.id, ref.name, ref.file)
                )
    return problems


# ---- the pytest plugin (tests/conftest.py imports the hooks) ----------------------------


def marker_ids(item):
    """The hazard ids an item's markers name (function, class and module marks), in order."""
    ids = []
    for mark in item.iter_markers(MARKER):
        ids.extend(a for a in mark.args if isinstance(a, str) and a not in ids)
    return ids


def marker_problems(items, known):
    """One message per bad hazard marker: no ids, keywords, an id that is not listed."""
    problems = []
    listed = ", ".join(sorted(known, key=_number))
    for item in items:
        for mark in item.iter_markers(MARKER):
            if not mark.args or mark.kwargs:
                problems.append(
                    '%s: write @pytest.mark.hazard("H1", ...) with one or more ids' % item.nodeid
                )
            for arg in mark.args:
                if not isinstance(arg, str) or arg not in known:
                    problems.append(
                        "%s: hazard %r is not in docs/hazards.toml (known: %s)"
                        % (item.nodeid, arg, listed)
                    )
    return problems


def node_name(item):
    """file::name of a test, its parameters dropped (tests/test_x.py::test_y)."""
    return item.nodeid.split("[", 1)[0]


def hazard_map(items, ids):
    """hazard id -> names of the tests carrying it, in collection order, each name once.

    Every id in `ids` is a key; an id only the markers name is added too, so
    the check can report it.
    """
    found = {i: [] for i in ids}
    for item in items:
        name = node_name(item)
        for hid in marker_ids(item):
            tests = found.setdefault(hid, [])
            if name not in tests:
                tests.append(name)
    return found


_KNOWN_KEY = pytest.StashKey[object]()  # frozenset of listed ids, None if the list does not load
_MAP_KEY = pytest.StashKey[dict]()


def _known(config):
    if _KNOWN_KEY not in config.stash:
        try:
            config.stash[_KNOWN_KEY] = frozenset(h.id for h in load())
        except (HazardListError, OSError):
            config.stash[_KNOWN_KEY] = None  # the suite still runs; tests/test_hazards.py says why
    return config.stash[_KNOWN_KEY]


def pytest_addoption(parser):
    parser.addoption(
        MAP_OPTION,
        metavar="FILE",
        default=None,
        help="write the map hazard id -> tests carrying @pytest.mark.hazard "
        "as JSON (host_tools/hazards.py)",
    )


def pytest_configure(config):
    """Registers the marker when this module is a plugin of its own (-p host_tools.hazards).

    The project registers it in pyproject.toml; tests/conftest.py imports the
    other hooks only.
    """
    config.addinivalue_line("markers", "hazard(*ids): the hazards (docs/hazards.toml) it checks")


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(collector, name, obj):
    """A bad hazard marker is a collection error of its module (under xdist too)."""
    res = yield
    known = _known(collector.config)
    if known is not None and res is not None:
        made = res if isinstance(res, list) else [res]
        problems = marker_problems([i for i in made if isinstance(i, pytest.Item)], known)
        if problems:
            raise collector.CollectError("bad hazard marker:\n  " + "\n  ".join(problems))
    return res


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    """Before -m or -k deselect anything: the map hazard -> tests, for --hazard-map."""
    known = _known(config) or ()
    config.stash[_MAP_KEY] = hazard_map(items, sorted(known, key=_number))


def pytest_collection_finish(session):
    path = session.config.getoption(MAP_OPTION)
    if path:
        found = session.config.stash.get(_MAP_KEY, {})
        Path(path).write_text(
            json.dumps({"tests": len(session.items), "hazards": found}, indent=1) + "\n"
        )


# ---- the map of the whole suite, and the check ---------------------------------------------


class CollectionError(RuntimeError):
    """pytest could not collect the suite, so the map would be incomplete."""


def child_env():
    """The environment for a child pytest: without what a parent pytest or xdist set."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST")) and k != "PYTEST_ADDOPTS"
    }
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    return env


def collect_map(tests=TESTS, python=sys.executable, timeout=300):
    """hazard id -> test names, from `pytest --collect-only` over `tests` in a child process."""
    with tempfile.TemporaryDirectory(prefix="hazards-") as tmp:
        out = Path(tmp) / "map.json"
        proc = subprocess.run(
            [
                python,
                "-m",
                "pytest",
                "--collect-only",
                "-q",
                "-p",
                "no:cacheprovider",
                MAP_OPTION,
                str(out),
                str(tests),
            ],
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
            raise CollectionError(
                "collecting %s for the hazard map failed (exit %d):\n%s"
                % (tests, proc.returncode, tail)
            )
        return json.loads(out.read_text())["hazards"]


def coverage(hazards, found):
    """(problems, warnings) of a hazard list against a map hazard id -> tests.

    Problems fail `make test`: a hazard with no test that is not declared
    planned; a planned hazard that has tests (the docs would still call it
    uncovered); tests carrying a hazard the list does not have. Warnings: a
    planned hazard with no test, parts of a hazard still pending.
    """
    problems, warnings = [], []
    for h in hazards:
        tests = found.get(h.id, [])
        if h.planned:
            if tests:
                problems.append(
                    "%s (%s) is declared planned for issue %d, but %d test(s) carry it now (%s): "
                    "remove `planned` from its entry in docs/hazards.toml, name its code, "
                    "then `make hazards`"
                    % (h.id, h.title, h.planned.issue, len(tests), ", ".join(tests))
                )
            else:
                warnings.append(
                    "%s (%s) has NO TEST: accepted only because it is planned for "
                    "issue %d (%s)" % (h.id, h.title, h.planned.issue, h.planned.what)
                )
            continue
        if not tests:
            problems.append(
                '%s (%s) has no test: no test carries @pytest.mark.hazard("%s"). Mark the tests '
                "that check its mitigation (%s); or, if that is not built yet, declare it "
                '`planned = { issue = N, what = "..." }` in docs/hazards.toml'
                % (h.id, h.title, h.id, "; ".join("%s %s" % (r.file, r.name) for r in h.code))
            )
        for p in h.pending:
            warnings.append(
                "%s (%s): part still planned for issue %d: %s" % (h.id, h.title, p.issue, p.what)
            )
    listed = {h.id for h in hazards}
    for hid in sorted(set(found) - listed, key=_number):
        if found[hid]:
            problems.append(
                "tests carry hazard %s, which docs/hazards.toml does not list: %s"
                % (hid, ", ".join(found[hid]))
            )
    return problems, warnings


# ---- docs/hazards.md ------------------------------------------------------------------------


def _cell(text):
    """Plain text in a table cell: no stray column breaks or emphasis."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("\n", " ")


def _covered(hazards, found):
    return sum(1 for h in hazards if found.get(h.id))


def render(hazards, found):
    """docs/hazards.md: a summary, then one row per hazard with the tests from the map."""
    problems, _ = coverage(hazards, found)
    uncovered = [h.id for h in hazards if not found.get(h.id) and not h.planned]
    planned = ", ".join("%s (issue %d)" % (h.id, h.planned.issue) for h in hazards if h.planned)
    lines = [
        "# Hazards, mitigations and the tests that check them",
        "",
        "<!-- Generated by `make hazards` (python -m host_tools.hazards --write docs/hazards.md)",
        "     from docs/hazards.toml and the tests' @pytest.mark.hazard markers. Do not edit:",
        "     change those and run `make hazards`; `make test` fails while this file is stale. -->",
        "",
        "The project's own hazard list (`docs/hazards.toml`). A test names the hazards it",
        'checks with `@pytest.mark.hazard("H4")`; `make test` fails when a listed hazard',
        "has no test, unless the hazard is declared planned with the issue that will build",
        "its mitigation. This is an engineering record of an open project, not a risk",
        "management file under ISO 14971.",
        "",
        "| | |",
        "|---|---|",
        "| hazards listed | %d |" % len(hazards),
        "| covered by tests | %d |" % _covered(hazards, found),
        "| planned, no test yet | %s |" % (planned or "none"),
        "| not covered (fails `make test`) | %s |" % (", ".join(uncovered) or "none"),
        "",
        "| Hazard | What can go wrong | Mitigation | Target | Tests |",
        "|---|---|---|---|---|",
    ]
    for h in hazards:
        mitigation = [_cell(h.mitigation)]
        if h.planned:
            mitigation.append(
                "**Planned, issue %d:** %s" % (h.planned.issue, _cell(h.planned.what))
            )
        for p in h.pending:
            mitigation.append("**Still to come, issue %d:** %s" % (p.issue, _cell(p.what)))
        mitigation += ["`%s` `%s`: %s" % (r.file, r.name, _cell(r.does)) for r in h.code]
        tests = found.get(h.id, [])
        if tests:
            cell = "<br>".join("`%s`" % t for t in tests)
        elif h.planned:
            cell = "none yet (planned, issue %d)" % h.planned.issue
        else:
            cell = "**none: not covered**"
        lines.append(
            "| **%s** %s | %s | %s | %s | %s |"
            % (h.id, _cell(h.title), _cell(h.harm), "<br>".join(mitigation), _cell(h.target), cell)
        )
    if problems:
        lines += ["", "## Open problems", ""] + ["- " + _cell(p) for p in problems]
    return "\n".join(lines) + "\n"


def stale_diff(path, text, limit=40):
    """'' if the file at `path` holds `text`, else the first lines of a unified diff."""
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if old == text:
        return ""
    diff = list(
        difflib.unified_diff(
            old.splitlines(), text.splitlines(), str(path), "generated", lineterm=""
        )
    )
    return "\n".join(diff[:limit] + (["..."] if len(diff) > limit else []))


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m host_tools.hazards", description="Hazard traceability (docs/hazards.toml)."
    )
    ap.add_argument("--write", metavar="MD", help="write the generated table to this file")
    ap.add_argument(
        "--check",
        metavar="MD",
        help="exit 1 if this file is stale, a hazard has no test or names missing code",
    )
    args = ap.parse_args(argv)
    try:
        hazards = load()
        found = collect_map()
    except (HazardListError, CollectionError) as e:
        print("hazards: %s" % e, file=sys.stderr)
        return 2
    problems, warnings = coverage(hazards, found)
    problems = code_problems(hazards) + problems
    text = render(hazards, found)
    for w in warnings:
        print("hazards: warning: %s" % w, file=sys.stderr)
    for p in problems:
        print("hazards: problem: %s" % p, file=sys.stderr)
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
        print(
            "hazards: wrote %s (%d hazards, %d covered by tests)"
            % (args.write, len(hazards), _covered(hazards, found))
        )
    if args.check:
        diff = stale_diff(args.check, text)
        if diff:
            print(
                "hazards: %s is out of date: run `make hazards`\n%s" % (args.check, diff),
                file=sys.stderr,
            )
            return 1
        return 1 if problems else 0
    if not args.write:
        for h in hazards:
            n = len(found.get(h.id, []))
            status = (
                "%d test(s)" % n
                if n
                else "planned (issue %d)" % h.planned.issue
                if h.planned
                else "NOT COVERED"
            )
            print("%-4s %-50s %s" % (h.id, h.title[:50], status))
    return 0


if __name__ == "__main__":
    sys.exit(main())
