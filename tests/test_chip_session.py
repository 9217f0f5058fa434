"""The firmware on the emulated Pico, through main.py, driven as an operator would.

host_tools/chip/session.py boots the compiled firmware (modules in ROMFS,
main.py and the stored settings on littlefs), homes from the buttons, loads
and primes a syringe, fires single punctures and a nappage burst, presses the
emergency stop and acknowledges it. The machine model around the chip counts
every STEP pulse; the core's own counts are read back over the REPL at the
end. Emulated time is deterministic, so every figure here is exact.

The other test runs the core's scripted rig session (injcore/rig.py) on the
chip, where the hot path is compiled to machine code (viper), and compares it
line by line with CPython: the two runtimes compute the same machine.

Marked `chip`: skipped with one line naming RP2040_DIR where the MicroPython
image or the boot ROM is missing, a failure under INJECTOR_REQUIRE_CHIP=1.
"""

import pytest

from host_tools.chip import ROOT, Chip, session
from host_tools.screenshot import read_png
from injcore import machine as M
from injcore.settings import Settings

pytestmark = pytest.mark.chip

US = 125  # cycles per microsecond at 125 MHz


def golden(name):
    return bytes(read_png(ROOT / "tests" / "golden" / (name + ".png")))


def frame_at(frames, marks, name):
    """The frame on the glass at a mark: the last one sent before it."""
    n = [m[2] for m in marks if m[0] == name][0]
    return frames[n - 1][1]


@pytest.mark.hazard("H1", "H2", "H5", "H6", "H8")
def test_a_session_through_main_py_on_the_chip(tmp_path):
    with Chip.with_firmware(tmp_path, files=session.settings_files()) as chip:
        run = session.Session(chip)
        rep = run.run()
        frames = chip.frames()
    st, core, marks = rep["status"], rep["core"], rep["marks"]
    model_n, model_p = st["needle"], st["plunger"]
    irq = st["irq"]

    # The steps counted on the pins equal the core's counts: 0 lost, either axis.
    assert core["needle_count"] == model_n["fwd"] - model_n["bwd"], (core, model_n)
    assert core["plunger_count"] == model_p["fwd"] - model_p["bwd"], (core, model_p)
    assert core["needle_emitted"] == model_n["pos"] and core["plunger_emitted"] == model_p["pos"]
    assert core["needle_pos"] == core["needle_emitted"]  # nothing left queued at the end
    assert (
        model_n["disabledSteps"] == model_p["disabledSteps"] == 0
    )  # no step into a disabled driver

    # Depth and dose measured from the pins equal the settings.
    s = Settings()
    depth_steps = M.um_to_needle_steps(M.NEEDLE_HOME_OFFSET_UM + s.depth_um)
    dose_steps = M.plunger_steps_for_nl(s.dose_nl, M.SYRINGES[s.syringe_model][M.SYR_AREA_CMM2])
    assert (core["depth_steps"], core["dose_steps"]) == (depth_steps, dose_steps)
    after_homing = [m[3] for m in marks if m[0] == "loaded"][0]
    shots = rep["punctures"][after_homing:]
    assert len(shots) == core["punctures"] >= session.SINGLE_PUNCTURES + 2, shots
    assert all(p["deepest"] == depth_steps for p in shots), shots
    assert all(p["dose_steps"] == dose_steps for p in shots), shots
    assert core["delivered"] == dose_steps * core["punctures"]

    # 0 overruns; every timer interrupt within 500 us, 250 us on average.
    assert core["overruns"] == 0
    assert irq["timer_over_500us"] == 0, "worst interrupt %d us" % (irq["timer_max"] // US)
    assert irq["timer_cycles"] // irq["timer_n"] <= 250 * US
    for state, b in irq["by_state"].items():
        assert b["max"] <= 500 * US and b["cycles"] // b["n"] <= 250 * US, (state, b)
    assert {"1", "2", "3", "4", "7", "8", "9", "10"} <= set(irq["by_state"])  # every state was met

    # The watchdog was fed all along and never expired.
    wd = st["watchdog"]
    assert wd["expired"] == 0 and st["resets"] == 0
    assert wd["feeds"] > 1000 and wd["gap_max_us"] < 400_000

    # The expected screens, pixel for pixel against the golden screenshots.
    assert frame_at(frames, marks, "boot") == golden("status_unhomed")
    assert frame_at(frames, marks, "menu") == golden("menu_home")
    assert frame_at(frames, marks, "estop") == golden("alarm_estop_held")
    assert frame_at(frames, marks, "acknowledged") != golden("alarm_estop_held")
    assert core["state"] == 0 and core["fault"] == 0  # acknowledged: unhomed, no fault

    # Room for the interface: heap after the session.
    assert core["mem_free"] >= 64 * 1024


def test_the_core_on_the_chip_matches_cpython_step_for_step(tmp_path):
    from injcore import rig as R

    lines = []
    R.scripted_session(R.Rig(), lambda line: lines.append(repr(line)))
    with Chip.with_firmware(tmp_path, main=False) as chip:
        chip.run_ms(1500)
        out = chip.exec(
            "from injcore import rig as R\n"
            "R.scripted_session(R.Rig(), lambda line: print(repr(line)))\n",
            max_ms=600_000,
        )
    got = out.splitlines()
    assert len(got) == len(lines) > 150, out[-2000:]
    for i, (a, b) in enumerate(zip(lines, got)):
        assert a == b, "line %d differs: CPython %s, chip %s" % (i, a, b)
