"""The house rules a change can break without a test of its own failing."""

import ast
import re
from pathlib import Path

from host_tools import consts

ROOT = Path(__file__).resolve().parents[1]


def test_the_hot_path_constant_blocks_are_current():
    stale = [
        rel
        for rel in consts.HOT
        if consts.rewritten(consts.FIRMWARE / rel) != (consts.FIRMWARE / rel).read_text()
    ]
    assert not stale, "run `make consts`: stale blocks in %s" % stale


def test_a_stale_block_is_found(tmp_path, monkeypatch):
    firmware = tmp_path / "firmware"
    (firmware / "injcore").mkdir(parents=True)
    text = (consts.FIRMWARE / "injcore" / "tick.py").read_text()
    (firmware / "injcore" / "tick.py").write_text(
        text.replace("\n_ST_FAULT = const(", "\n_ST_FAULT = const(9")
    )
    monkeypatch.setattr(consts, "FIRMWARE", firmware)
    monkeypatch.setattr(consts, "HOT", ("injcore/tick.py",))
    assert consts.main(["--check"]) == 1


# Core's private state: only the core's own modules (firmware/injcore) may read it.
_PRIVATE = re.compile(r"\b(core|c)\._[a-z]\w*")


def test_nothing_outside_the_core_reads_its_private_fields():
    offenders = []
    for base in ("firmware/board", "firmware/ui", "sim", "host_tools", "tests"):
        for path in sorted((ROOT / base).rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if _PRIVATE.search(code):
                    offenders.append("%s:%d: %s" % (path.relative_to(ROOT), n, line.strip()))
    for path in sorted((ROOT / "firmware/injcore").glob("*.py")):
        if path.name in ("tlog.py", "protocol.py", "store.py", "persist.py", "rig.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if _PRIVATE.search(line.split("#", 1)[0]):
                    offenders.append("%s:%d: %s" % (path.relative_to(ROOT), n, line.strip()))
    assert not offenders, "\n".join(offenders)


# The simulator only simulates: reading its log and writing reports is the host tools' part
# (host_tools/sim_tool.py), so host_tools may import sim but never the other way round.
def _imported_modules(tree):
    """Every module name an import statement or an import_module/__import__ call names."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield node.lineno, [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            yield node.lineno, [node.module or ""]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
        ):
            yield node.lineno, [str(node.args[0].value)]


def test_the_simulator_imports_nothing_from_host_tools():
    offenders = []
    for path in sorted((ROOT / "sim").rglob("*.py")):
        for lineno, names in _imported_modules(ast.parse(path.read_text())):
            if any(n == "host_tools" or n.startswith("host_tools.") for n in names):
                offenders.append(
                    "%s:%d imports %s" % (path.relative_to(ROOT), lineno, ", ".join(names))
                )
    assert not offenders, "\n".join(offenders)
