"""Settings are range-checked field by field; a refused change keeps the old settings (H10, H11)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from injcore import machine as M
from injcore.settings import FIELDS, RANGES, Limits, Settings, SettingsError
from sim.session import Simulator

LIMITS = Limits()


def test_defaults_are_valid():
    s = Settings()
    assert s.changed(LIMITS).as_dict() == s.as_dict()


@pytest.mark.hazard("H10")
@pytest.mark.parametrize(
    "field,value,expect",
    [
        ("depth_um", 200, "300..4000"),
        ("depth_um", 4100, "300..4000"),  # past the usable needle length
        ("depth_um", 1050, "steps of 100"),
        ("dose_nl", 500, "1000..200000"),
        ("dose_nl", 200_500, "1000..200000"),
        ("dose_nl", 1250, "steps of 500"),
        ("dose_nl", 12_500, "steps of 1000"),  # 1 uL steps from 10 uL
        ("speed_um_s", 4000, "5000..50000"),
        ("speed_um_s", 51_000, "5000..50000"),
        ("rate_nl_s", 1000, "2000..100000"),
        ("rate_nl_s", 101_000, "2000..100000"),
        ("shot_rate_mhz", 400, "500..10000"),
        ("shot_rate_mhz", 10_100, "500..10000"),
        ("suckback_nl", 2100, "0..2000"),
        ("suckback_nl", -100, "0..2000"),
        ("syringe_model", 2, "/".join(str(m) for m in sorted(M.SYRINGES))),
        ("needle_count", 2, "1, 3, 5, 9"),
        ("mode", 7, "single"),
    ],
)
def test_out_of_range_names_field_value_and_range(field, value, expect):
    with pytest.raises(SettingsError) as e:
        Settings().changed(LIMITS, **{field: value})
    msg = str(e.value)
    assert msg.startswith(field + ":")
    assert str(value) in msg
    assert expect in msg


@pytest.mark.hazard("H10")
@pytest.mark.parametrize("value", ["5", 5.0, None, True, [1]])
@pytest.mark.parametrize("field", FIELDS)
def test_wrong_types_refused(field, value):
    with pytest.raises(SettingsError) as e:
        Settings().changed(
            LIMITS, syringe_model=0, **{field: value}
        ) if field != "syringe_model" else Settings().changed(LIMITS, **{field: value})
    assert field + ":" in str(e.value)


@pytest.mark.hazard("H10")
def test_unknown_field_refused():
    with pytest.raises(SettingsError, match="colour: no such setting"):
        Settings().changed(LIMITS, colour=3)


@pytest.mark.hazard("H10")
def test_every_bad_field_is_reported():
    with pytest.raises(SettingsError) as e:
        Settings().changed(LIMITS, depth_um=9, dose_nl=9, speed_um_s=9)
    assert [p.split(":")[0] for p in e.value.problems] == ["speed_um_s", "depth_um", "dose_nl"]


@pytest.mark.hazard("H10")
def test_custom_syringe_diameter_checked_only_when_custom():
    Settings().changed(LIMITS, syringe_id_um=1)  # ignored for a 1 mL syringe
    with pytest.raises(SettingsError, match="syringe_id_um"):
        Settings().changed(LIMITS, syringe_model=0, syringe_id_um=1)
    s = Settings().changed(LIMITS, syringe_model=0, syringe_id_um=4700)
    assert s.syringe()[0] == 1735  # pi/4 x 4.7^2 mm^2 = 17.35 mm^2


def test_every_syringe_model_fits_the_log_the_menu_and_its_own_figures():
    """A new model in machine.SYRINGES is checked here; the tests running syringes iterate it."""
    from injcore import tlog

    id_bits = {name: bits for name, bits, _ in tlog._FIELDS[tlog.K_SESSION_START]}["syringe_model"]
    names = [e[M.SYR_NAME] for e in M.SYRINGES.values()]
    assert len(set(names)) == len(names)  # the menu tells them apart
    for model, e in M.SYRINGES.items():
        assert model != M.CUSTOM_SYRINGE and 0 < model < 1 << id_bits, model
        assert 0 < len(e[M.SYR_NAME]) <= 8 and all(" " <= c <= "~" for c in e[M.SYR_NAME]), e
        assert 0 < e[M.SYR_NOMINAL_UL] * 1000 <= e[M.SYR_CAPACITY_NL], e
        assert 0 <= e[M.SYR_DEAD_NL] < e[M.SYR_CAPACITY_NL] and e[M.SYR_AREA_CMM2] > 0, e
        figures = (e[M.SYR_AREA_CMM2], e[M.SYR_CAPACITY_NL], e[M.SYR_DEAD_NL])
        assert Settings().changed(LIMITS, syringe_model=model).syringe() == figures


@pytest.mark.hazard("H2", "H11")
def test_engineer_needle_length_caps_depth():
    short = Limits(needle_length_um=3000)
    with pytest.raises(SettingsError, match="usable needle length 3000"):
        Settings().changed(short, depth_um=3500)
    Settings().changed(short, depth_um=3000)


@pytest.mark.hazard("H10")
def test_core_keeps_previous_settings_after_refusal():
    sim = Simulator(trace=False)
    before = sim.core.settings.as_dict()
    plans_before = sim.core.plans().needle_in.distance
    with pytest.raises(SettingsError):
        sim.core.configure(depth_um=1500, dose_nl=-5)
    assert sim.core.settings.as_dict() == before
    assert sim.core.plans().needle_in.distance == plans_before


@pytest.mark.hazard("H10")
def test_continuous_rate_faster_than_a_puncture_is_refused():
    sim = Simulator(trace=False)
    with pytest.raises(SettingsError, match="shot_rate_mhz: 10000 is faster"):
        sim.core.configure(mode=1, depth_um=4000, dose_nl=20_000, shot_rate_mhz=10_000)
    assert sim.core.settings.mode == 0


@pytest.mark.hazard("H10")
def test_settings_refused_while_moving(ready_sim):
    ready_sim.machine.trigger = True
    ready_sim.run_ms(40)
    with pytest.raises(SettingsError, match="only while the injector is idle"):
        ready_sim.core.configure(depth_um=2000)


@pytest.mark.hazard("H10")
@given(field=st.sampled_from(sorted(RANGES)), value=st.integers(-(10**7), 10**7))
def test_any_integer_is_accepted_only_inside_its_range(field, value):
    lo, hi, step, _unit = RANGES[field]
    extra = {"syringe_model": 0} if field == "syringe_id_um" else {}
    if field == "depth_um":
        hi = min(hi, LIMITS.needle_length_um)
    if field == "dose_nl" and value >= 10_000:
        step = 1000
    ok = lo <= value <= hi and (value - lo) % step == 0
    try:
        s = Settings().changed(LIMITS, **{field: value}, **extra)
    except SettingsError as e:
        assert not ok, e
        assert field in str(e)
    else:
        assert ok and getattr(s, field) == value
