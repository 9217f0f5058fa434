"""The constant blocks of the hot-path modules, written from the modules that define them.

MicroPython's viper inlines a `const()` only where the module itself defines
it: a code imported from injcore/codes.py would be a dictionary look-up and a
boxed object on every use, in the 1 kHz interrupt. So each hot-path module
carries the constants it uses, written here between two marker lines from
their one definition (SOURCES), as private names: `STATE` of layout.py is
`_STATE` there. MicroPython keeps a module's `_NAME = const()` out of its
globals, so the copies cost no RAM on the device (about 4 KB as public names).
`make consts` rewrites the blocks; `python -m host_tools.consts --check` (run
by the tests) fails while one is stale, naming it.

    python -m host_tools.consts [--check]
"""

import argparse
import ast
import importlib
import io
import re
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"

# Where each constant is defined, as importable modules (firmware/ on the path)
SOURCES = ("injcore.codes", "injcore.layout")
# The modules that carry a written block: the viper hot path, and the
# Python-side modules that index S (so layout.py is never imported on the device)
HOT = (
    "injcore/tick.py",
    "injcore/motion.py",
    "injcore/monitor.py",
    "injcore/homing.py",
    "injcore/puncture.py",
    "injcore/backlash.py",
    "board/irq.py",
    "injcore/core.py",
    "injcore/axis.py",
    "injcore/planner.py",
)

BEGIN = "# ---- constants written by `make consts` from %s: do not edit ----"
END = "# ---- end of the written constants ----"
_BLOCK = re.compile(
    r"^# ---- constants written by .*?^# ---- end of the written constants ----\n", re.S | re.M
)


def defined_consts(module):
    """{name: value} of the `NAME = const(...)` lines of a source module, in its order."""
    if str(FIRMWARE) not in sys.path:
        sys.path.insert(0, str(FIRMWARE))
    mod = importlib.import_module(module)
    path = Path(mod.__file__)
    out = {}
    for node in ast.parse(path.read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", None) == "const"
        ):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out[t.id] = getattr(mod, t.id)
    return out


def _names_used(text):
    """Identifiers in source text, outside comments and strings."""
    names = set()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.NAME:
            names.add(tok.string)
    return names


def block_for(text, own_module):
    """The constant block for a hot-path module's text (its block excluded)."""
    body = _BLOCK.sub("", text)
    imported = {
        a.asname or a.name
        for node in ast.parse(body).body
        if isinstance(node, ast.ImportFrom)
        for a in node.names
    }
    used = _names_used(body) - imported  # a name the module imports is not written twice
    own = {
        tg.id
        for node in ast.parse(body).body
        if isinstance(node, ast.Assign)
        for tg in node.targets
        if isinstance(tg, ast.Name)
    }
    lines = []
    sources = []
    for module in SOURCES:
        if module == own_module:
            continue
        picked = [(n, v) for n, v in defined_consts(module).items() if "_" + n in used]
        clash = sorted("_" + n for n, _ in picked if "_" + n in own)
        if clash:
            raise SystemExit(
                "%s defines %s itself, and %s defines it too: rename one"
                % (own_module, ", ".join(clash), module)
            )
        if picked:
            sources.append(module.split(".")[-1] + ".py")
            lines += ["_%s = const(%d)" % (n, v) for n, v in picked]
    if not lines:
        return ""
    return "\n".join([BEGIN % ", ".join(sources)] + lines + [END]) + "\n"


def rewritten(path):
    """The module's text with its block written anew (the block must exist, once)."""
    text = path.read_text()
    found = _BLOCK.findall(text)
    if len(found) != 1:
        raise SystemExit(
            "%s: needs exactly one block starting %r (found %d)"
            % (path, BEGIN.split(" from ")[0], len(found))
        )
    module = ".".join(path.relative_to(FIRMWARE).with_suffix("").parts)
    return _BLOCK.sub(
        lambda m: block_for(text, module) or (BEGIN % "nothing" + "\n" + END + "\n"), text
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if a block is stale; write nothing")
    args = ap.parse_args(argv)
    stale = []
    for rel in HOT:
        path = FIRMWARE / rel
        new = rewritten(path)
        if new != path.read_text():
            stale.append(rel)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print("stale constant blocks (run `make consts`): %s" % ", ".join(stale), file=sys.stderr)
        return 1
    for rel in stale:
        print("wrote the constants of firmware/%s" % rel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
