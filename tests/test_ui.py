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
from injcore import settings as SF  # noqa: E402
from injcore.rig import Rig  # noqa: E402
from injcore.settings import MODE_CONTINUOUS, MODE_PRIME, MODE_SINGLE  # noqa: E402
from ui import draw as D  # noqa: E402
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


def hold(ui, button, ms):
    """Hold `button` for `ms` on the board's debouncer (board/buttons.py, sampled every
    millisecond), its events to the Ui at their time; [(ms, ui.value)] after each event."""
    from board.buttons import Buttons

    b = Buttons()
    b.sample(0, 0)
    seen = []
    for now in range(1, ms + 40):
        b.sample(1 << button if now <= ms else 0, now)
        ev = b.get()
        while ev is not None:
            ui.button(ev[0], ev[1], now)
            seen.append((now, ui.value))
            ev = b.get()
    return seen


def test_a_held_key_speeds_up_gently_and_evenly():
    rig, ui = fresh()
    ui_scenes._menu_at(ui, "Dose")
    keys(ui, OK)
    assert ui.value == 20_000
    seen = hold(ui, UP, 8000)
    at = lambda ms: [v for t, v in seen if t <= ms][-1]  # noqa: E731
    # The first two seconds one step (1 uL) a repeat, ten a second: still under control.
    assert 30_000 <= at(1600) <= 32_000 and at(2000) <= 37_000
    assert at(3000) < 80_000  # not at the top yet (it was there after 3 s)
    assert at(5000) < 160_000 and at(7000) == 200_000  # the top within seconds more
    steps = [b - a for (_, a), (_, b) in zip(seen, seen[1:]) if b != a]
    assert all(b <= 5 * a // 2 for a, b in zip(steps, steps[1:])), steps  # never a jump
    assert max(steps) == 10 * 1000  # capped: 10 uL a repeat at most
    # Multiplied steps land on round figures.
    assert all(v % 5000 == 0 for t, v in seen if t >= 4000)


def test_a_short_range_never_takes_big_steps():
    rig, ui = fresh()
    ui_scenes._menu_at(ui, "Depth")
    keys(ui, OK)
    seen = hold(ui, UP, 10_000)
    values = [v for _, v in seen]
    assert values[-1] == 4000  # the needle length
    assert max(b - a for a, b in zip(values, values[1:])) <= 200  # 0.3..4.0 mm: 0.2 mm at most


def test_held_keys_repeat_only_up_and_down():
    rig, ui = fresh()
    ui_scenes._menu_at(ui, "Syr. ID")
    keys(ui, OK)
    v0 = ui.value
    keys(ui, UP)
    for _ in range(9):
        ui.button(UP, REPEAT, 0)
    assert ui.value == v0 + 100  # one step each: held no time at all
    assert menu.repeat_multiplier(10_000, 2800) == 50 and menu.repeat_multiplier(10_000, 57) == 2
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


@pytest.mark.hazard("H6")
def test_an_estop_mid_shot_says_where_the_needle_stayed_and_how_to_get_it_out():
    rig, ui = fresh()
    core = rig.core
    rig.run(2)
    rig.inputs.trigger = True
    rig.run(2000, until=lambda c: c.state == C.ST_INJECT)
    rig.inputs.estop = True
    rig.run(2)
    rig.inputs.trigger = False
    ui.poll(10)
    assert core.fault == C.F_ESTOP and ui.screen_name() == "alarm"
    texts = [s for s, _, _ in screen_text(ui)]
    assert "needle 1.0mm in" in texts and "OK, then Home" in texts
    assert "release the stop" in texts  # the footer while it is pressed
    rig.inputs.estop = False
    rig.run(2)
    keys(ui, OK)
    assert core.state == C.ST_UNHOMED and core.primed  # the line stayed closed
    assert ui.banner() == "needle 1.0mm in: menu > Home"
    keys(ui, OK, OK)  # the menu opens on Home
    rig.run(60_000, until=lambda c: c.state != C.ST_HOMING)
    assert core.state == C.ST_READY and core.needle_depth_um() <= 0
    assert ui.banner() == "" and core.primed


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


# ---- every text the firmware can show fits its box ---------------------------------------

SCREEN_W, SCREEN_H = 128, 64
BOX_LINES = D.FOOT_LINES  # a banner, a message, a note: two display lines at most


def whole(text, lines=BOX_LINES):
    """`text` wrapped as the screens wrap it: at most `lines` lines, nothing lost (a word
    longer than a line, a name without spaces, goes on over the next line)."""
    w = D.wrap(text)
    assert len(w) <= lines, (text, w)
    assert all(len(line) <= D.LINE_CHARS for line in w), (text, w)
    assert "".join(w).replace(" ", "") == text.replace(" ", ""), (text, w)
    return w


def drawn_texts(ui):
    drawn = []
    ui.draw(TextRecorder(drawn), 0)
    return drawn


def on_screen(drawn, overlap=True):
    """Every text inside the screen and (overlap=True) none over another."""
    for s, x, y in drawn:
        assert x >= 0 and x + len(s) * D.CHAR_W <= SCREEN_W, (s, x, y)
        assert 0 <= y <= SCREEN_H - 8, (s, x, y)
    if not overlap:
        return
    for i, (a, ax, ay) in enumerate(drawn):
        for b, bx, by in drawn[i + 1 :]:
            apart = (
                ax + len(a) * D.CHAR_W <= bx
                or bx + len(b) * D.CHAR_W <= ax
                or ay + 8 <= by
                or by + 8 <= ay
            )
            assert apart, ((a, ax, ay), (b, bx, by))


def shows(drawn, text):
    """`text` is on the screen whole: its wrapped lines, one under the other."""
    lines = whole(text)
    strings = [s for s, _, _ in drawn]
    for i in range(len(strings) - len(lines) + 1):
        if strings[i : i + len(lines)] == lines:
            return
    raise AssertionError("%r not on screen: %r" % (text, strings))


@pytest.mark.parametrize("code", range(1, len(C.FAULTS)))
@pytest.mark.parametrize("needle_um", [0, 1000, 12_300])
def test_every_alarm_fits_with_a_gap_between_fault_and_action(code, needle_um):
    core, ui = ui_scenes.scene("status_ready")
    ui_scenes._needle_in(core, needle_um, code)
    ui.poll(0)
    drawn = drawn_texts(ui)
    on_screen(drawn)
    body = [(s, y) for s, _, y in drawn if 9 < y < 55]
    name = whole(C.FAULT_NAMES[code])
    action = whole(C.FAULT_ACTIONS[code]) if C.FAULT_ACTIONS[code] else []
    needle = ["needle %smm in" % menu.fixed(needle_um, 1000, 1)] if needle_um else []
    assert [s for s, _ in body] == name + needle + action
    assert all(y + 8 <= 55 for _, y in body)  # above the footer
    ys = [y for _, y in body]
    assert ys[len(name)] - ys[len(name) - 1] > 9  # a gap after the fault's name
    if needle:
        assert ys[len(name) + 1] - ys[len(name)] > 9  # and after the needle's line


def test_every_notice_and_warning_fits_the_status_banner():
    for code in range(1, len(C.NOTICE_NAMES)):
        core, ui = ui_scenes.scene("status_ready")
        core.notice = code
        drawn = drawn_texts(ui)
        on_screen(drawn)
        shows(drawn, C.NOTICE_NAMES[code])
        assert ui.banner() == C.NOTICE_NAMES[code]
    for code in range(1, len(C.WARNING_NAMES)):
        whole("! " + C.WARNING_NAMES[code], 1)  # a line of its own


def refusals():
    """Every refusal explain() may be asked about: each code, for each field, with the
    widest ranges."""
    fields = (
        list(SF.FIELDS)
        + list(SF.Limits.RANGES)
        + [
            "settings",
            "limits",
            "calibration",
            "backlash",
            "dose_factor_ppm",
            "backlash_steps",
            "line_tau_us",
            "protocol_cap_nl",
        ]
    )
    E = SF.SettingsError  # noqa: N806
    codes = [getattr(E, n) for n in dir(E) if n.isupper() and isinstance(getattr(E, n), int)]
    assert len(codes) >= 8
    for field in fields:
        for code in codes:
            for lo, hi in ((1000, 20_000_000), (500, 857), (900, 500), (-1, 99_999_999)):
                yield E.refusal(field, code, hi + 1, lo, hi, 4000)
    yield "a problem in words: settings record 3 failed its checksum"


def test_every_refusal_explain_gives_fits_the_edit_screen_with_its_remedy():
    rig, ui = fresh()
    ui_scenes._menu_at(ui, "Depth")
    keys(ui, OK)
    for r in refusals():
        text = menu.explain(r)
        whole(text)
        ui.note = text
        drawn = drawn_texts(ui)
        on_screen(drawn)
        shows(drawn, text)
    E = SF.SettingsError  # noqa: N806
    assert "lower" in menu.explain(E.refusal("dose_nl", E.CYCLE, 3000, 500, 857, 1200))
    assert "lower" in menu.explain(E.refusal("dose_nl", E.CYCLE, 3000, 900, 500, 2200))


def _literal_texts():
    """The texts the firmware's screens put in a message, a banner or a note, as written
    in firmware/ui and board/app.py: ui.message(...), ui.sticky(...), ui.note = ...
    (a %d filled with the widest figure; %s texts are walked by the tests above)."""
    import ast

    found = []
    for path in sorted((ROOT / "firmware" / "ui").glob("*.py")) + [
        ROOT / "firmware" / "board" / "app.py"
    ]:
        for node in ast.walk(ast.parse(path.read_text())):
            arg = None
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in (
                "message",
                "sticky",
                "foot",
            ):
                arg = node.args[-1] if node.args else None
            elif isinstance(node, ast.Assign) and getattr(node.targets[0], "attr", "") == "note":
                arg = node.value
            if isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Mod):
                arg = arg.left
            for n in ast.walk(arg) if arg is not None else ():
                if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value:
                    if "%s" not in n.value:
                        found.append(n.value.replace("%d", "99999").replace("%02d", "99"))
    return found


def test_every_message_and_note_fits_two_lines():
    texts = _literal_texts()
    assert "set by the protocol" in texts and "release the trigger first" in texts
    for text in texts + [menu.BUSY]:
        whole(text)
    for model in list(M.SYRINGES) + [M.CUSTOM_SYRINGE]:
        for id_um in (M.CUSTOM_ID_MIN_UM, M.CUSTOM_ID_MAX_UM):
            settings = SF.Settings(syringe_model=model, syringe_id_um=id_um)
            whole("confirmed: " + menu.syringe_text(settings))
    core, ui = ui_scenes.scene("menu_end")
    ui.message("settings already confirmed")  # a message over a list: its two bottom lines
    drawn = drawn_texts(ui)
    on_screen(drawn, overlap=False)
    shows(drawn, "settings already confirmed")


def test_the_status_screen_keeps_its_counts_and_syringe_under_every_banner():
    for name in ui_scenes.SCENES:
        if not name.startswith("status_"):
            continue
        core, ui = ui_scenes.scene(name)
        drawn = drawn_texts(ui)
        on_screen(drawn)
        if ui.banner():
            shows(drawn, ui.banner())
        at = {y for _, _, y in drawn}
        assert S.status.COUNTS_Y in at and S.status.SYRINGE_Y in at, name


@pytest.mark.parametrize("name", ["Facial skin boost 3 mL X", "X" * 24])
def test_protocol_and_zone_names_at_their_longest_show_whole(name):
    from injcore import protocol as P

    assert len(name) == P.NAME_MAX
    core, ui = ui_scenes.scene("protocols")
    ui.protocols = ui_scenes._Stored(["Face booster", name])
    ui._proto_names = ui.protocols.names()
    ui._proto_cursor = 1
    drawn = drawn_texts(ui)
    on_screen(drawn, overlap=False)
    shows(drawn, name)
    ui._chosen = name
    ui.go("confirm")
    drawn = drawn_texts(ui)
    on_screen(drawn)
    shows(drawn, name)
    core, ui = ui_scenes.scene("status_protocol_long")
    zone = ui.run.protocol.zones[11].name
    assert len(zone) == P.ZONE_NAME_MAX and len(ui.run.protocol.zones) == P.MAX_ZONES
    drawn = drawn_texts(ui)
    on_screen(drawn)
    assert any(zone in s for s, _, _ in drawn)
    ui.run.refused = (11, SF.SettingsError.refusal("dose_nl", SF.SettingsError.CYCLE, 1, 2, 3))
    drawn = drawn_texts(ui)  # stopped there: the zone in place of the digits
    on_screen(drawn)
    assert any(zone in s for s, _, _ in drawn)
    ui.run.refused = None
    ui.run.index = 10
    ui.go("skip")
    drawn = drawn_texts(ui)
    on_screen(drawn)


def test_every_title_fits_its_mode_and_state():
    core, ui = ui_scenes.scene("status_ready")
    shown = {"NO SHOTS"}  # a stopped protocol (test_ui_protocol)
    for state in range(len(C.STATE_NAMES)):
        core.state = state
        shown.add(ui.state_text())
    for mode in C.MODE_NAMES:
        for state in shown:
            assert len(mode) + 1 + len(state) <= D.LINE_CHARS, (mode, state)


def test_figures_round_half_up():
    assert menu.fixed(51_960, 1000, 1) == "52.0"  # 2 x 26 uL, counted
    assert menu.fixed(1449, 1000, 1) == "1.4" and menu.fixed(1450, 1000, 1) == "1.5"
    assert menu.fixed(999, 1000, 0) == "1" and menu.fixed(499, 1000, 0) == "0"
    assert menu.fixed(179_950, 1000, 1) == "180.0" and menu.fixed(-1450, 1000, 1) == "-1.5"
    assert menu.fixed(4_999_999, 1_000_000, 2) == "5.00"
    assert menu.ml_text(999_949) == "999.9uL" and menu.ml_text(999_950) == "1.00mL"
    assert menu.used_of(239_600, 520_000) == "240/520uL"
    assert menu.used_of(999_960, 999_600) == "1.0/1.0mL"
    core, ui = ui_scenes.scene("status_ready")
    core.delivered_steps = ui_scenes._steps_for(core, 51_960)
    assert "tot 52.0uL" in [s for s, _, _ in drawn_texts(ui)]


@pytest.mark.parametrize(
    "item", [i for i in S.MAIN_MENU + S.SERVICE_MENU if i.kind != S._ACTION], ids=lambda i: i.key
)
def test_every_edit_screen_fits_at_both_ends(item):
    rig, ui = fresh()
    if item.target == S._LIMIT:
        ui_scenes._service(ui)
    ui_scenes._menu_at(ui, item.label)
    keys(ui, OK)
    for button in (UP, DOWN):
        for _ in range(3000):
            if not keys_moved(ui, button):
                break
        on_screen(drawn_texts(ui))


def keys_moved(ui, button):
    before = ui.value
    ui.button(button, PRESS, 0)
    return ui.value != before
