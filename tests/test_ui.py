"""The operator interface (firmware/ui) on the loopback rig and the host framebuf.

Golden screenshots of every screen and alarm (tests/golden/*.png, written by
`make golden` after a deliberate change), the same screens rendered by the
real MicroPython framebuf pixel for pixel, every menu path, the limits, the
service code, alarms taking over, and random button sequences (hypothesis).
"""

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "firmware"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from host_tools import fakes, mpy, ui_scenes  # noqa: E402
from host_tools.screenshot import read_png, write_png  # noqa: E402
from injcore import codes as C  # noqa: E402
from injcore import machine as M  # noqa: E402
from injcore.rig import Rig  # noqa: E402
from injcore.settings import MODE_CONTINUOUS, MODE_PRIME, MODE_SINGLE  # noqa: E402
from ui import menu  # noqa: E402
from ui import screens as S  # noqa: E402
from ui.keys import (  # noqa: E402
    BACK,
    DOWN,
    LONG,
    OK,
    PRESS,
    RELEASE,
    REPEAT,
    SND_CLICK,
    SND_REFUSE,
    UP,
)

_, _, framebuf = fakes.install()
GOLDEN = ROOT / "tests" / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def fresh(homed=True):
    rig = Rig(needle_start_steps=0, plunger_start_steps=0)
    ui = S.Ui(rig.core, "test")
    ui.poll(0)
    if homed:
        rig.inputs.syringe = True
        ui_scenes._ready(rig.core)
    return rig, ui


def keys(ui, *buttons, event=PRESS):
    for b in buttons:
        ui.button(b, event, 0)


def draw(ui):
    buf = bytearray(1024)
    ui.draw(framebuf.FrameBuffer(buf, 128, 64, framebuf.MONO_VLSB), 0)
    return buf


# ---- golden screenshots -------------------------------------------------------------


@pytest.mark.parametrize("name", ui_scenes.SCENES)
def test_screen_matches_its_golden_screenshot(name):
    frame = ui_scenes.render(name, framebuf)
    path = GOLDEN / (name + ".png")
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        write_png(frame, path)
    assert path.exists(), "no golden for %s: run `make golden` and review the PNGs" % name
    assert read_png(path) == frame, "%s differs from %s (make golden after a deliberate change)" % (
        name,
        path,
    )
    assert any(frame), "blank screen"


def test_every_golden_belongs_to_a_scene():
    names = {p.stem for p in GOLDEN.glob("*.png")}
    assert names == set(ui_scenes.SCENES)


def test_scenes_are_what_they_claim():
    for name in ui_scenes.SCENES:
        core, ui = ui_scenes.scene(name)
        shown = ui.screen_name()
        if name.startswith("alarm_"):
            assert shown == "alarm", name
        elif name.startswith("status_"):
            assert shown == "status", name
        elif name.startswith("edit_"):
            assert shown == "edit", name


_MP_RENDER = """
import framebuf
import ubinascii
import ui_scenes
for name in ui_scenes.SCENES:
    print(name, ubinascii.hexlify(ui_scenes.render(name, framebuf)).decode())
"""


@pytest.mark.micropython
def test_every_screen_renders_the_same_on_micropython():
    if not mpy.available():
        pytest.skip("the npm MicroPython is not installed (make setup)")
    out = mpy.run(
        _MP_RENDER,
        {
            ROOT / "firmware" / "injcore": "/lib/injcore",
            ROOT / "firmware" / "ui": "/lib/ui",
            ROOT / "host_tools" / "ui_scenes.py": "/lib/ui_scenes.py",
        },
        heap=4 * 1024 * 1024,
    )
    real = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert set(real) == set(ui_scenes.SCENES)
    for name in ui_scenes.SCENES:
        host = ui_scenes.render(name, framebuf)
        assert bytes.fromhex(real[name]) == bytes(host), name


# ---- menus and edits -----------------------------------------------------------------


def test_ok_opens_the_menu_on_home_when_not_homed_and_ok_homes():
    rig, ui = fresh(homed=False)
    keys(ui, OK)
    assert ui.screen_name() == "menu" and ui.menu[ui.cursor].label == "Home"
    keys(ui, OK)
    assert rig.core.state == C.ST_HOMING and ui.screen_name() == "status"
    rig.run(60_000, until=lambda core: core.state != C.ST_HOMING)
    assert rig.core.state == C.ST_READY


@pytest.mark.parametrize("index", range(len(S.MAIN_MENU)))
def test_every_main_menu_path_leads_back_to_status(index):
    rig, ui = fresh()
    before = rig.core.settings.as_dict()
    keys(ui, OK)
    for _ in range(index):
        keys(ui, DOWN)
    item = S.MAIN_MENU[index]
    assert ui.menu[ui.cursor] is item
    keys(ui, OK)
    if item.kind == S._ACTION and item.key == S.A_HOME:
        assert ui.screen_name() == "status" and rig.core.state == C.ST_HOMING
        return
    if item.kind == S._ACTION and item.key == S.A_LOAD:
        assert rig.core.state == C.ST_LOAD  # the load screen then asks for the size
    # Without stored protocols the Protocol item says so and stays in the menu.
    expected = {
        S.A_LOAD: "syringe",
        S.A_PRIME: "prime",
        S.A_SESSION: "confirm",
        S.A_SERVICE: "pin",
        S.A_PROTOCOL: "menu",
    }
    assert ui.screen_name() == (expected[item.key] if item.kind == S._ACTION else "edit")
    if item.kind != S._ACTION:
        keys(ui, UP)  # changed, then cancelled
    if ui.screen_name() != "menu":
        keys(ui, BACK)
    assert ui.screen_name() == "menu"
    keys(ui, BACK)
    assert ui.screen_name() == "status"
    assert rig.core.settings.as_dict() == before


@pytest.mark.parametrize("index", range(len(S.SERVICE_MENU)))
def test_every_service_menu_path_leads_back_to_status(index):
    rig, ui = fresh()
    ui_scenes._service(ui)
    assert ui.screen_name() == "service"
    limits = dict(vars(rig.core.limits))
    for _ in range(index):
        keys(ui, DOWN)
    keys(ui, OK)
    if S.SERVICE_MENU[index].key == S.A_CONFIRM:  # an action in place: a message, same menu
        assert ui.screen_name() == "service" and "already confirmed" in ui.banner()
    elif S.SERVICE_MENU[index].key == S.A_REMOVE:  # no protocol storage on this Ui: a message
        assert ui.screen_name() == "service" and "no protocols" in ui.banner()
    else:
        assert ui.screen_name() in ("edit", "info", "calibration", "backlash", "pin")
        keys(ui, UP, DOWN, DOWN, BACK)
    assert ui.screen_name() == "service"
    keys(ui, BACK)
    assert ui.screen_name() == "menu"
    keys(ui, BACK)
    assert ui.screen_name() == "status"
    assert vars(rig.core.limits) == limits
    assert ui.service_pin == S.SERVICE_PIN  # New code left with BACK: unchanged


def test_long_back_goes_straight_to_status():
    rig, ui = fresh()
    ui_scenes._service(ui)
    keys(ui, OK)
    assert ui.screen_name() == "edit"
    ui.button(BACK, LONG, 0)
    assert ui.screen_name() == "status"


def test_a_value_applies_only_on_ok():
    rig, ui = fresh()
    ui_scenes._menu_at(ui, "Dose")
    keys(ui, OK, UP, UP, UP)
    assert rig.core.settings.dose_nl == 20_000
    assert ui.value == 23_000
    keys(ui, OK)
    assert rig.core.settings.dose_nl == 23_000
    assert ui.screen_name() == "menu"
    assert ui.take_sound() == SND_CLICK


def test_dose_steps_are_fine_below_10_ul():
    rig, ui = fresh()
    rig.core.configure(dose_nl=10_000)
    ui_scenes._menu_at(ui, "Dose")
    keys(ui, OK, DOWN)
    assert ui.value == 9_500
    keys(ui, UP, UP)
    assert ui.value == 11_000


def test_held_keys_repeat_and_go_ten_times_faster_after_a_second():
    rig, ui = fresh()
    ui_scenes._menu_at(ui, "Syr. ID")
    keys(ui, OK)
    v0 = ui.value
    keys(ui, UP)
    for _ in range(S.FAST_AFTER_REPEATS - 1):
        ui.button(UP, REPEAT, 0)
    assert ui.value == v0 + 10 * S.FAST_AFTER_REPEATS
    ui.button(UP, REPEAT, 0)
    assert ui.value == v0 + 10 * S.FAST_AFTER_REPEATS + 100
    ui.button(OK, REPEAT, 0)  # OK and BACK never repeat
    assert ui.screen_name() == "edit"
    ui.button(UP, RELEASE, 0)
    assert ui.screen_name() == "edit"


@pytest.mark.parametrize(
    "item", [i for i in S.MAIN_MENU + S.SERVICE_MENU if i.kind == S._NUM], ids=lambda i: i.key
)
def test_out_of_range_edits_clamp_at_the_limits_and_say_so(item):
    rig, ui = fresh()
    if item.target == S._LIMIT:
        ui_scenes._service(ui)
    ui_scenes._menu_at(ui, item.label)
    keys(ui, OK)
    lo, hi, why = ui.bounds(item)
    for _ in range(3000):
        if ui.note:
            break
        keys(ui, UP)
    assert ui.value == hi and ui.note.startswith("max " + item.text(hi))
    ui.take_sound()
    keys(ui, UP)
    assert ui.value == hi and ui.take_sound() == SND_REFUSE
    for _ in range(3000):
        keys(ui, DOWN)
        if ui.note:
            break
    assert ui.value == lo and ui.note == "min " + item.text(lo)


def test_operator_depth_stops_at_the_engineers_needle_length():
    rig, ui = fresh()
    rig.core.set_limits(needle_length_um=2000)
    ui_scenes._menu_at(ui, "Depth")
    keys(ui, OK)
    for _ in range(30):
        keys(ui, UP)
    assert ui.value == 2000 and "needle length" in ui.note
    keys(ui, OK)
    assert rig.core.settings.depth_um == 2000


@pytest.mark.hazard("H11")
def test_a_limit_below_the_depth_set_is_refused_with_a_message():
    rig, ui = fresh()
    rig.core.configure(depth_um=3000)
    ui_scenes._service(ui)
    keys(ui, OK)  # Needle len
    for _ in range(15):
        keys(ui, DOWN)
    assert ui.value == 2500
    keys(ui, OK)
    assert ui.screen_name() == "edit" and "lower it first" in ui.note
    assert rig.core.limits.needle_length_um == 4000
    assert ui.take_sound() == SND_REFUSE


@pytest.mark.hazard("H11")
def test_the_service_menu_needs_the_code_and_locks_after_three_wrong_ones():
    rig, ui = fresh()
    for _attempt in range(S.PIN_TRIES):
        ui_scenes._menu_at(ui, "Service")
        if ui.screen_name() == "menu":
            keys(ui, OK)
        assert ui.screen_name() == "pin"
        keys(ui, OK, OK, OK, OK)  # 0000
        assert ui.screen_name() in ("pin", "menu")
    assert ui.screen_name() == "menu" and "locked" in ui.banner()
    keys(ui, OK)  # on Service again: still locked, even with the right code
    assert ui.screen_name() == "menu"
    ui.poll(S.PIN_LOCK_MS + 1)
    ui_scenes._service(ui)
    assert ui.screen_name() == "service"


def test_service_code_back_steps_one_digit_then_leaves():
    rig, ui = fresh()
    ui_scenes._menu_at(ui, "Service")
    keys(ui, OK, UP, OK, UP)
    assert ui._pin_pos == 1
    keys(ui, BACK)
    assert ui._pin_pos == 0 and ui.screen_name() == "pin"
    keys(ui, BACK)
    assert ui.screen_name() == "menu"


def test_limit_edit_applies_through_the_core():
    rig, ui = fresh()
    ui_scenes._service(ui)
    ui_scenes._menu_at(ui, "Occlusion")
    keys(ui, OK, DOWN, DOWN, OK)
    assert rig.core.limits.occlusion_kpa == 380
    assert ui.screen_name() == "service"


def test_shot_rate_stops_at_what_a_puncture_allows():
    rig, ui = fresh()
    rig.core.configure(depth_um=2000, dose_nl=30_000)
    ui_scenes._menu_at(ui, "Shot rate")
    keys(ui, OK)
    lo, hi, why = ui.bounds(ui.item)
    assert why == "puncture time" and hi < 10_000
    assert rig.core.plans().cycle_ticks * hi <= 1_000_000_000 // 1000 * 1000
    for _ in range(200):
        keys(ui, UP)
    keys(ui, OK)
    assert rig.core.settings.shot_rate_mhz == hi
    rig.core.configure(mode=MODE_CONTINUOUS)  # the clamped rate is one the core accepts


def test_a_refused_change_stays_in_the_edit_and_says_why():
    rig, ui = fresh()
    rig.core.configure(mode=MODE_CONTINUOUS, shot_rate_mhz=5000, depth_um=500, dose_nl=2000)
    ui_scenes._menu_at(ui, "Dose")
    keys(ui, OK)
    for _ in range(120):
        keys(ui, UP)
    keys(ui, OK)
    assert ui.screen_name() == "edit" and "shot rate" in ui.note
    assert rig.core.settings.dose_nl == 2000


def test_settings_are_refused_while_firing():
    rig, ui = fresh()
    ui_scenes._menu_at(ui, "Depth")
    keys(ui, OK, UP)
    rig.core.state = C.ST_ADVANCE
    keys(ui, OK)
    assert ui.note.startswith("busy") and rig.core.settings.depth_um == 1000


def test_prime_switches_to_prime_mode_and_back():
    rig, ui = fresh()
    ui_scenes._menu_at(ui, "Prime")
    keys(ui, OK)
    assert ui.screen_name() == "prime" and rig.core.settings.mode == MODE_PRIME
    keys(ui, BACK)
    assert ui.screen_name() == "menu" and rig.core.settings.mode == MODE_SINGLE


def test_new_session_asks_first():
    rig, ui = fresh()
    ui_scenes._menu_at(ui, "New sess.")
    keys(ui, OK, BACK)
    assert rig.core.punctures == 37
    keys(ui, OK, OK, OK)  # New sess., yes, then OK on a blank lot: no lot
    assert rig.core.punctures == 0 and rig.core.delivered_nl() == 0
    assert ui.screen_name() == "status" and ui.banner() == "new session"


def test_the_product_lot_is_typed_with_the_buttons():
    rig, _ = fresh()
    started = []
    ui = S.Ui(rig.core, "test", new_session=lambda lot="": started.append(lot))
    ui_scenes._menu_at(ui, "New sess.")
    keys(ui, OK, OK)
    assert ui.screen_name() == "lot"
    keys(ui, UP, UP, OK)  # "1"
    keys(ui, DOWN, DOWN, OK)  # "-" then "Z"
    keys(ui, UP, BACK)  # a mistake on the third: back to the second
    keys(ui, OK)  # keeps "Z"
    for _ in range(11):
        keys(ui, UP)  # "A"
    keys(ui, OK, OK)  # blank: done
    assert started == ["1ZA"] and ui.screen_name() == "status"


def test_a_lot_fills_at_most_twelve_characters():
    rig, _ = fresh()
    started = []
    ui = S.Ui(rig.core, "test", new_session=lambda lot="": started.append(lot))
    ui_scenes._menu_at(ui, "New sess.")
    keys(ui, OK, OK)
    for _ in range(S.LOT_LEN + 3):
        keys(ui, UP, OK)
    assert started == ["0" * S.LOT_LEN]


# ---- loading: the syringe's size confirmed (H13) -------------------------------------------


def press_trigger(rig):
    rig.run(2)  # released first: a trigger held since boot fires nothing (H3)
    rig.inputs.trigger = True
    rig.run(30)
    rig.inputs.trigger = False
    rig.run(5)


def set_syringe(ui, model):
    """Menu > Syringe, UP until `model`, OK: the size set through the interface."""
    ui_scenes._menu_at(ui, "Syringe")
    keys(ui, OK)
    for _ in range(len(ui.item.choices)):
        if ui.value == model:
            break
        keys(ui, UP)
    keys(ui, OK)
    assert ui.core.settings.syringe_model == model and ui.screen_name() == "menu"


def load_to_the_question(rig, ui):
    """Menu > Load syr.: the plunger back, then a syringe seated; the screen asks."""
    ui_scenes._menu_at(ui, "Load syr.")
    keys(ui, OK)
    assert ui.screen_name() == "syringe" and rig.core.state == C.ST_LOAD
    rig.run(20_000, until=lambda core: core.state != C.ST_LOAD)
    assert rig.core.state == C.ST_READY
    rig.inputs.syringe = True
    rig.run(2)


def screen_text(ui):
    """The strings the current screen draws (fb.text calls), in order."""
    drawn = []
    fb = TextRecorder(drawn)
    ui.draw(fb, 0)
    return drawn


class TextRecorder:
    """A framebuf that keeps the text drawn, with its position, and draws nothing."""

    def __init__(self, drawn):
        self.drawn = drawn

    def text(self, s, x, y, c=1):
        self.drawn.append((s, x, y))

    def fill(self, c):
        pass

    def fill_rect(self, x, y, w, h, c):
        pass

    def rect(self, x, y, w, h, c):
        pass

    def hline(self, x, y, w, c):
        pass


@pytest.mark.hazard("H13")
def test_a_size_change_unloads_until_load_shows_the_size_and_ok_confirms_it():
    rig, ui = fresh()
    core = rig.core
    set_syringe(ui, 3)  # after loading and priming a 1 mL
    assert not core.syringe_confirmed and not core.primed
    keys(ui, BACK)
    assert ui.banner() == C.NOTICE_NAMES[C.N_SYRINGE_UNCONFIRMED]
    press_trigger(rig)
    assert core.punctures == 37 and core.notice == C.N_SYRINGE_UNCONFIRMED
    rig.inputs.syringe = False  # the 1 mL out: the load seats the 3 mL
    load_to_the_question(rig, ui)
    drawn = [s for s, _, _ in screen_text(ui)]
    assert "3 mL" in drawn and "this size?" in drawn and "OK: yes BACK: no" in drawn
    assert not core.syringe_confirmed
    keys(ui, OK)
    assert core.syringe_confirmed and ui.screen_name() == "status"
    assert ui.banner() == "confirmed: 3 mL" and ui.take_sound() == SND_CLICK


@pytest.mark.hazard("H13")
def test_declining_the_size_leaves_the_syringe_unconfirmed_and_nothing_primes():
    rig, ui = fresh()
    core = rig.core
    rig.inputs.syringe = False
    load_to_the_question(rig, ui)
    keys(ui, BACK)  # not this size
    assert ui.screen_name() == "menu" and not core.syringe_confirmed
    ui_scenes._menu_at(ui, "Prime")
    keys(ui, OK)
    assert ui.screen_name() == "prime" and "confirmed: BACK," in [s for s, _, _ in screen_text(ui)]
    face = rig.plunger.pos
    press_trigger(rig)
    assert rig.plunger.pos == face and core.notice == C.N_SYRINGE_UNCONFIRMED
    assert not core.primed
    keys(ui, BACK)
    # Load again: loaded already, nothing pushed since, so it asks without moving.
    ui_scenes._menu_at(ui, "Load syr.")
    keys(ui, OK)
    assert ui.screen_name() == "syringe" and core.state == C.ST_READY
    keys(ui, OK)
    assert core.syringe_confirmed


@pytest.mark.hazard("H13")
def test_ok_is_refused_while_loading_and_with_no_syringe_seated():
    rig, ui = fresh()
    core = rig.core
    rig.inputs.syringe = False
    ui_scenes._menu_at(ui, "Load syr.")
    keys(ui, OK)
    rig.run(2)
    ui.take_sound()
    keys(ui, OK)
    assert ui.note == "wait: loading" and ui.take_sound() == SND_REFUSE
    rig.run(20_000, until=lambda c: c.state != C.ST_LOAD)
    assert "seat a syringe" in [s for s, _, _ in screen_text(ui)]
    keys(ui, OK)
    assert ui.note == "seat one first" and not core.syringe_confirmed
    rig.inputs.syringe = True
    rig.run(2)
    keys(ui, OK)
    assert core.syringe_confirmed and ui.screen_name() == "status"


@pytest.mark.parametrize(
    "model,id_um",
    [(m, 4700) for m in sorted(M.SYRINGES)]
    + [(M.CUSTOM_SYRINGE, M.CUSTOM_ID_MIN_UM), (M.CUSTOM_SYRINGE, M.CUSTOM_ID_MAX_UM)],
)
def test_the_load_screens_fit_the_display_for_every_syringe(model, id_um):
    rig, ui = fresh()
    # 10 uL/s: what the plunger reaches with the narrowest bore
    rig.core.configure(syringe_model=model, syringe_id_um=id_um, rate_nl_s=10_000)
    rig.inputs.syringe = False
    seen = []
    ui_scenes._menu_at(ui, "Load syr.")
    keys(ui, OK)
    seen += screen_text(ui)  # loading
    rig.run(20_000, until=lambda c: c.state != C.ST_LOAD)
    keys(ui, OK)
    seen += screen_text(ui)  # no syringe: seat one (and the refusal's note)
    rig.inputs.syringe = True
    rig.run(2)
    seen += screen_text(ui)  # the question
    keys(ui, BACK)
    ui_scenes._menu_at(ui, "Prime")
    keys(ui, OK)
    seen += screen_text(ui)  # prime refused: why
    assert any(s == menu.syringe_text(rig.core.settings) for s, _, _ in seen)
    for s, x, y in seen:
        assert x >= 0 and x + len(s) * 8 <= 128 and 0 <= y <= 56, (s, x, y)


# ---- alarms ------------------------------------------------------------------------------


@pytest.mark.hazard("H3")
def test_an_alarm_takes_over_an_edit_and_drops_it():
    rig, ui = fresh()
    ui_scenes._menu_at(ui, "Depth")
    keys(ui, OK, UP, UP)
    rig.inputs.estop = True
    rig.run(2)
    ui.poll(10)
    assert ui.screen_name() == "alarm"
    keys(ui, OK)  # the stop is still pressed: refused
    assert rig.core.state == C.ST_FAULT and ui.take_sound() == SND_REFUSE
    rig.inputs.estop = False
    rig.run(2)
    keys(ui, OK)
    assert rig.core.state == C.ST_UNHOMED and ui.screen_name() == "status"
    assert rig.core.settings.depth_um == 1000  # the edit was never applied


def test_a_warning_is_a_banner_not_a_takeover():
    core, ui = ui_scenes.scene("status_warning")
    assert ui.screen_name() == "status"
    assert ui.banner() == "! " + C.WARNING_NAMES[C.W_NEAR_EMPTY]
    keys(ui, OK)
    assert ui.screen_name() == "menu"


def test_back_clears_a_notice():
    core, ui = ui_scenes.scene("status_watchdog")
    assert ui.banner() == C.NOTICE_NAMES[C.N_WATCHDOG_RESET]
    keys(ui, BACK)
    assert core.notice == C.N_NONE


# ---- random button sequences ---------------------------------------------------------------

BUTTONS = st.sampled_from((UP, DOWN, OK, BACK))
EVENTS = st.sampled_from((PRESS, PRESS, PRESS, REPEAT, LONG, RELEASE))
ACTIONS = st.one_of(
    st.tuples(st.just("key"), BUTTONS, EVENTS),
    st.tuples(st.just("wait"), st.integers(1, 400), st.just(0)),
    st.tuples(st.just("estop"), st.booleans(), st.just(0)),
    st.tuples(st.just("trigger"), st.booleans(), st.just(0)),
)


def way_back(rig, ui):
    """Reach the status screen the way an operator would; False if there is no way."""
    for _ in range(12):
        if ui.screen_name() == "status":
            return True
        if ui.screen_name() == "alarm":
            rig.inputs.estop = False
            rig.inputs.trigger = False
            rig.run(3000, until=lambda core: core.state == C.ST_FAULT)
            keys(ui, OK)
        else:
            keys(ui, BACK)
    return ui.screen_name() == "status"


@settings(
    max_examples=int(60 * float(os.environ.get("INJECTOR_SOAK", "1"))),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(ACTIONS, max_size=60), st.booleans())
def test_random_buttons_never_crash_strand_or_change_a_setting_without_ok(actions, homed):
    rig, ui = fresh(homed=homed)
    rig.inputs.syringe = True
    now = 0
    for kind, a, b in actions:
        before = rig.core.settings.as_dict()
        limits = dict(vars(rig.core.limits))
        if kind == "key":
            ui.button(a, b, now)
        elif kind == "wait":
            rig.run(a)
            now += a
            ui.poll(now)
        elif kind == "estop":
            rig.inputs.estop = a
        else:
            rig.inputs.trigger = a
        draw(ui)
        after = rig.core.settings.as_dict()
        changed = {k for k in after if after[k] != before[k]}
        if changed:
            confirmed = kind == "key" and a == OK and b == PRESS
            # Leaving the prime screen puts back the mode it replaced.
            restored = changed == {"mode"} and before["mode"] == MODE_PRIME
            assert confirmed or restored, (kind, a, b, changed)
        if vars(rig.core.limits) != limits:
            assert kind == "key" and a == OK and b == PRESS
    assert way_back(rig, ui), ui.screen_name()
    draw(ui)


@pytest.mark.hazard("H11")
def test_the_engineer_changes_the_service_code():
    rig, ui = fresh()
    ui_scenes._service(ui)
    ui_scenes._menu_at(ui, "New code")
    keys(ui, OK)
    assert ui.screen_name() == "pin"
    # The screen starts on the code in use, 2-5-8-0: to 1-2-3-4.
    for button, times in ((DOWN, 1), (DOWN, 3), (DOWN, 5), (UP, 4)):
        for _ in range(times):
            keys(ui, button)
        keys(ui, OK)
    assert ui.service_pin == (1, 2, 3, 4) and ui.screen_name() == "service"
    keys(ui, BACK, BACK)
    ui_scenes._menu_at(ui, "Service")
    keys(ui, OK)
    for digit in S.SERVICE_PIN:  # the old code no longer opens it
        for _ in range(digit):
            keys(ui, UP)
        keys(ui, OK)
    assert ui.screen_name() == "pin" and ui.note == "wrong code"
    keys(ui, BACK)
    ui_scenes._service(ui)  # the new one does
    assert ui.screen_name() == "service"
