"""The firmware type-checks against MicroPython's rp2 stubs (pyright; `make typecheck`).

The stubs are the micropython-rp2-rpi-pico-stubs and micropython-stdlib-stubs
packages; see host_tools/typecheck.py and pyrightconfig.json.
"""

import importlib.util
import json

import pytest

from host_tools import typecheck


@pytest.fixture(scope="module", autouse=True)
def need_pyright():
    if importlib.util.find_spec("pyright") is None:
        pytest.fail("pyright is not installed (a dev dependency): run `make test`")


def test_stubs_resolve_to_micropython():
    """machine, rp2 and micropython come from the rp2 stubs, not from a CPython package."""
    typings = typecheck.build_typings()
    for name in ("machine.pyi", "micropython.pyi", "rp2/__init__.pyi", "stdlib/builtins.pyi"):
        assert (typings / name).is_file(), name
    assert not (typings / "micropython").exists()  # adafruit-blinka's CPython `micropython`


def test_firmware_type_checks_against_rp2_stubs():
    r = typecheck.run_pyright("--outputjson", capture=True, timeout=240)
    try:
        report = json.loads(r.stdout)
    except ValueError:
        pytest.fail("pyright did not run:\n%s%s" % (r.stdout, r.stderr))
    assert report["summary"]["filesAnalyzed"] >= 10
    root = str(typecheck.ROOT) + "/"
    errors = [
        "%s:%d: %s (%s)"
        % (
            d["file"].replace(root, ""),
            d["range"]["start"]["line"] + 1,
            d["message"],
            d.get("rule", ""),
        )
        for d in report["generalDiagnostics"]
        if d["severity"] == "error"
    ]
    assert not errors, "pyright, firmware/ against the rp2 stubs:\n" + "\n".join(errors)
    assert r.returncode == 0, r.stdout + r.stderr
