"""Can the machine run a protocol? One judgement, the control core's, on the host and the
device (injcore.feasible; issue 14, defect 5): `injector protocol validate|push` refuse a
zone the core would refuse, per syringe model, and the device's verdict is the host's."""

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from host_cli import run
from host_tools import protocol_tool as T
from host_tools import settings_tool as ST
from host_tools.simfs import SimFS
from injcore import machine as M
from injcore import store as S
from injcore.feasible import planning_core, zone_refusals
from injcore.fsio import DirFS
from injcore.protocol import ProtocolStore
from injcore.settings import (
    COARSE_DOSE_STEP_NL,
    FINE_DOSE_BELOW_NL,
    MODE_CONTINUOUS,
    MODE_SINGLE,
    RANGES,
    Limits,
    SettingsError,
)
from ui.protocols import Protocols, ZoneRefused

ROOT = Path(__file__).resolve().parents[1]
NAPPAGE = ROOT / "protocols" / "nappage-face-neck.json"
FACE = ROOT / "protocols" / "facial-skin-booster.json"

# The zone of the report: nappage, 20 uL a shot at 20 uL/s (1 s) and 3 shots a second.
TOO_FAST = {
    "name": "Neck",
    "technique": "nappage",
    "depth_um": 1000,
    "dose_nl": 20_000,
    "speed_um_s": 20_000,
    "rate_nl_s": 20_000,
    "shot_rate_mhz": 3000,
    "punctures": 50,
    "cap_nl": 1_100_000,
}
# Nappage at 10 shots a second: the 1 mL syringe's line allows it; a wider barrel holds
# more at the same pressure, and pressure advance takes longer to push and draw it back.
SMALL_ONLY = {
    "name": "Forehead",
    "technique": "nappage",
    "depth_um": 1000,
    "dose_nl": 2000,
    "speed_um_s": 50_000,
    "rate_nl_s": 100_000,
    "shot_rate_mhz": 10_000,
    "suckback_nl": 0,
    "punctures": 50,
    "cap_nl": 100_000,
}
# 8 shots a second with suck-back (the plunger reverses twice a shot): the reference
# backlash allows it, the longest an engineer may store does not.
REVERSING = dict(SMALL_ONLY, shot_rate_mhz=8000, suckback_nl=500)
LONG_BACKLASH_STEPS = M.um_to_plunger_steps(M.BACKLASH_MAX_UM)
POINT = {
    "name": "Cheek L",
    "technique": "point",
    "depth_um": 1000,
    "dose_nl": 10_000,
    "speed_um_s": 20_000,
    "rate_nl_s": 20_000,
    "punctures": 3,
    "cap_nl": 100_000,
}


def protocol(*zones, name="Too fast"):
    return {
        "format": 1,
        "name": name,
        "version": 1,
        "session_cap_nl": 2_000_000,
        "zones": [dict(z) for z in zones],
    }


def write(tmp_path, obj):
    f = tmp_path / "p.json"
    f.write_text(json.dumps(obj))
    return f


def models():
    return sorted(M.SYRINGES)


def name_of(model):
    return M.SYRINGES[model][M.SYR_NAME]


# ---- injector protocol validate ------------------------------------------------------------


@pytest.mark.hazard("H10")
def test_validate_refuses_the_reported_zone_with_every_syringe(capsys, tmp_path):
    f = write(tmp_path, protocol(POINT, TOO_FAST))
    code, out, err = run(capsys, "protocol", "validate", f)
    assert code == 2 and out == ""
    lines = [ln for ln in err.splitlines() if ln.startswith("  zones[")]
    assert len(lines) == len(M.SYRINGES)  # one a syringe: the point zone runs with each
    for line, model in zip(lines, models()):
        assert line.startswith(
            "  zones[1].shot_rate_mhz: zone 'Neck' cannot run with the %s syringe: 3000 is "
            "faster than one puncture with this depth, dose and speeds takes (" % name_of(model)
        ), line
        assert line.endswith("mHz  (machine)"), line
    assert "1 mL" in err and "(%d problems" % len(M.SYRINGES) in err


def test_validate_judges_only_the_syringes_named(capsys, tmp_path):
    f = write(tmp_path, protocol(POINT, TOO_FAST))
    code, out, err = run(capsys, "protocol", "validate", f, "--syringe", models()[0])
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("  zones[")]
    assert len(lines) == 1 and "the %s syringe" % name_of(models()[0]) in lines[0]
    # 10 shots/s of 2 uL: the 1 mL syringe only
    f = write(tmp_path, protocol(SMALL_ONLY))
    code, out, err = run(capsys, "protocol", "validate", f)
    wide = max(models(), key=lambda m: M.SYRINGES[m][M.SYR_AREA_CMM2])
    assert code == 2 and "cannot run with the %s syringe" % name_of(wide) in err
    assert "with the 1 mL syringe" not in err
    code, out, err = run(capsys, "protocol", "validate", f, "--syringe", 1)
    assert code == 0, err
    assert "machine: every zone runs with the 1 mL syringe" in out
    # the shipped nappage example runs with every syringe: no reversal, no take-up
    code, out, err = run(capsys, "protocol", "validate", NAPPAGE)
    assert code == 0, err


def test_a_protocol_the_machine_runs_still_passes(capsys):
    code, out, err = run(capsys, "protocol", "validate", FACE)
    assert code == 0, err
    names = ", ".join(name_of(m) for m in models())
    assert "machine: every zone runs with the %s syringe (backlash" % names in out
    code, out, err = run(
        capsys, "protocol", "validate", FACE, "--syringe", 0, "--syringe-id-um", 4700
    )
    assert code == 0 and "the custom 4.70 mm syringe" in out, err


def test_validate_uses_the_records_backlash_and_calibration(capsys, tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    rec = S.defaults()
    rec["calibration"]["backlash_steps"] = LONG_BACKLASH_STEPS
    S.Store(DirFS(str(dev)), "settings").save(rec)
    f = write(tmp_path, protocol(REVERSING))
    code, out, err = run(capsys, "protocol", "validate", f, "--syringe", 1)
    assert code == 0, err
    code, out, err = run(capsys, "protocol", "validate", f, "--syringe", 1, "--limits-from", dev)
    assert code == 2 and "cannot run with the 1 mL syringe" in err  # the take-up is longer


@pytest.mark.parametrize(
    "args,message",
    [
        (("--syringe", 2), "--syringe 2: no such model"),
        (("--syringe", 0), "needs --syringe-id-um"),
        (("--syringe-id-um", 4700), "--syringe-id-um goes with --syringe 0"),
    ],
)
def test_a_wrong_syringe_option_is_one_line(capsys, args, message):
    code, out, err = run(capsys, "protocol", "validate", FACE, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


# ---- injector protocol push ----------------------------------------------------------------


def _device(tmp_path, **calibration):
    dev = tmp_path / "dev"
    dev.mkdir(parents=True)
    rec = S.defaults()
    rec["calibration"].update(calibration)
    S.Store(DirFS(str(dev)), "settings").save(rec)
    return ST.Source(None, dev)  # the record as `push` reads it off a device


@pytest.mark.hazard("H10")
def test_push_refuses_the_reported_zone_and_sends_nothing(tmp_path, capsys, monkeypatch):
    sent = []
    monkeypatch.setattr(ST, "mpremote", lambda *a, **k: sent.append(a))
    f = write(tmp_path, protocol(POINT, TOO_FAST))
    assert T.push(_device(tmp_path), f) == 2
    err = capsys.readouterr().err
    assert sent == [] and "refused, nothing sent (%d problems)" % len(M.SYRINGES) in err
    for model in models():
        assert (
            "  zones[1].shot_rate_mhz: zone 'Neck' cannot run with the %s syringe: 3000 is "
            % (name_of(model))
            in err
        )
    reversing = write(tmp_path, protocol(REVERSING))
    long_bl = _device(tmp_path / "x", backlash_steps=LONG_BACKLASH_STEPS)
    assert T.push(long_bl, reversing, syringes=[(1, None)]) == 2
    assert sent == []


def test_push_sends_a_protocol_the_machine_runs(tmp_path, capsys, monkeypatch):
    key = ProtocolStore.key("Facial skin booster")

    def mpremote(port, *args, **kw):
        return subprocess.CompletedProcess(args, 0, 'SAVED ["Facial skin booster", "%s"]\n' % key)

    monkeypatch.setattr(ST, "mpremote", mpremote)
    assert T.push(_device(tmp_path), FACE) == 0
    assert "saved to" in capsys.readouterr().out


# ---- the host's verdict is the device's ------------------------------------------------------


def _grid(field, lo=None, hi=None):
    f_lo, f_hi, step, _ = RANGES[field]
    lo = f_lo if lo is None else lo
    hi = f_hi if hi is None else hi
    return st.integers(0, (hi - lo) // step).map(lambda k: lo + k * step)


def zone_settings():
    fine = _grid("dose_nl", hi=FINE_DOSE_BELOW_NL - RANGES["dose_nl"][2])
    coarse = st.integers(FINE_DOSE_BELOW_NL // COARSE_DOSE_STEP_NL, RANGES["dose_nl"][1] // 1000)
    return st.fixed_dictionaries(
        {
            "mode": st.sampled_from([MODE_SINGLE, MODE_CONTINUOUS]),
            "depth_um": _grid("depth_um", hi=Limits().needle_length_um),
            "dose_nl": fine | coarse.map(lambda k: k * COARSE_DOSE_STEP_NL),
            "speed_um_s": _grid("speed_um_s"),
            "rate_nl_s": _grid("rate_nl_s"),
            "shot_rate_mhz": _grid("shot_rate_mhz"),
            "suckback_nl": _grid("suckback_nl"),
        }
    )


def as_zone(settings):
    z = {k: v for k, v in settings.items() if k != "mode"}
    z.update(name="Zone", punctures=1, cap_nl=100_000)
    z["technique"] = "nappage" if settings["mode"] == MODE_CONTINUOUS else "point"
    return z


_DEVICE = {}


def device():
    """One simulated device for every example: homed, a syringe, its protocol store."""
    if not _DEVICE:
        from sim.session import Simulator

        sim = Simulator(trace=False)
        assert sim.home()
        sim.load(1)
        store = ProtocolStore(SimFS(), sim.core.limits)
        _DEVICE.update(sim=sim, store=store, protocols=Protocols(sim.core, store=store))
    return _DEVICE["sim"], _DEVICE["store"], _DEVICE["protocols"]


REPORTED = {k: v for k, v in TOO_FAST.items() if k in RANGES}  # its settings


@pytest.mark.hazard("H10")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zone=zone_settings(),
    model=st.sampled_from(models()),
    backlash=st.integers(0, M.um_to_plunger_steps(M.BACKLASH_MAX_UM)),
    factor=st.integers(M.DOSE_FACTOR_MIN_PPM // 1000, M.DOSE_FACTOR_MAX_PPM // 1000),
)
@example(
    zone=dict(REPORTED, mode=MODE_CONTINUOUS, suckback_nl=0), model=1, backlash=64, factor=1000
)
@example(
    zone=dict(REPORTED, mode=MODE_CONTINUOUS, dose_nl=2000, suckback_nl=0),
    model=1,
    backlash=64,
    factor=1000,
)
def test_the_host_and_the_device_agree(zone, model, backlash, factor):
    factor *= 1000
    host = zone_refusals(planning_core(Limits(), backlash, factor), [zone], model)[0]
    event("refused" if host else "runs")
    sim, store, protocols = device()
    core = sim.core
    core.configure(mode=MODE_SINGLE, syringe_model=model)  # the operator's syringe
    core.set_backlash(backlash)  # the engineer's service menu
    core.set_calibration(factor)
    if store.exists("Agreement"):  # the last example's: a changed protocol under its version
        store.remove("Agreement")  # is refused, so it goes first
    store.save(protocol(as_zone(zone), name="Agreement"))
    try:
        protocols.check("Agreement")
        device_verdict = []
    except ZoneRefused as e:
        device_verdict = [e.refusal]
    assert host[:1] == device_verdict  # the same code, the same figures (cycle, fastest rate)
    try:  # and what the core does when the zone is entered
        core.configure(**zone)
        entered = []
    except SettingsError as e:
        entered = e.refusals
    assert entered == host
    core.configure(mode=MODE_SINGLE)
