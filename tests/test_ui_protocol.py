"""A protocol run from the buttons: choose, walk the zones, skip, go back, end (issue 7).

The simulator fires the punctures; the interface, the stored protocol
(injcore.protocol.ProtocolStore on a SimFS), the Run and the treatment log
are the firmware's.
"""

import json

import pytest

from host_tools.simfs import SimFS
from host_tools.ui_scenes import _menu_at
from injcore import codes as C
from injcore import machine as M
from injcore import tlog
from injcore.protocol import ProtocolStore
from injcore.settings import SettingsError
from sim.session import Simulator
from ui import draw as D
from ui import menu, session
from ui import screens as S
from ui.keys import BACK, DOWN, OK, PRESS, UP
from ui.protocols import Protocols

PROTOCOL = {
    "format": 1,
    "name": "Test three zones",
    "version": 2,
    "session_cap_nl": 400_000,
    "zones": [
        {
            "name": "Cheek L",
            "technique": "point",
            "depth_um": 1000,
            "dose_nl": 10_000,
            "speed_um_s": 20_000,
            "rate_nl_s": 20_000,
            "punctures": 3,
            "cap_nl": 100_000,
        },
        {
            "name": "Eye L",
            "technique": "papule",
            "depth_um": 800,
            "dose_nl": 5_000,
            "speed_um_s": 20_000,
            "rate_nl_s": 10_000,
            "punctures": 4,
            "cap_nl": 30_000,
        },
        {
            "name": "Neck",
            "technique": "point",
            "depth_um": 1500,
            "dose_nl": 20_000,
            "speed_um_s": 20_000,
            "rate_nl_s": 40_000,
            "punctures": 2,
            "cap_nl": 100_000,
        },
    ],
}


def keys(ui, *buttons):
    for b in buttons:
        ui.button(b, PRESS, 0)


@pytest.fixture
def rig():
    sim = Simulator(trace=False)
    assert sim.home()
    sim.load(1)
    sim.prime(800)
    fs = SimFS()
    store = ProtocolStore(fs, sim.core.limits)
    store.save(json.dumps(PROTOCOL))
    log = tlog.Log(fs, "log")
    recorder = tlog.Recorder(sim.core, log)
    protocols = Protocols(sim.core, recorder=recorder, store=store)
    ui = S.Ui(sim.core, "test", new_session=recorder.start_session, protocols=protocols)

    def main_loop():  # the board's order: interface, then the log
        ui.poll(sim.now_us // 1000)
        recorder.poll()
        recorder.service()

    sim.main_loop.append(main_loop)
    return sim, ui, log


def start(ui):
    _menu_at(ui, "Protocol")
    keys(ui, OK)
    assert ui.screen_name() == "protocols" and ui._proto_names == ["Test three zones"]
    keys(ui, OK)  # the protocol: a new session ...
    assert ui.screen_name() == "confirm"
    keys(ui, OK, OK)  # ... yes, no lot
    assert ui.run is not None and ui.screen_name() == "status"


def fire(sim, n):
    for _ in range(n):
        sim.shot()


def test_a_protocol_is_walked_zone_by_zone_from_the_buttons(rig):
    sim, ui, log = rig
    start(ui)
    core = sim.core
    assert core.settings.dose_nl == 10_000 and core.settings.depth_um == 1000
    fire(sim, 3)
    st = ui.run.status()
    assert (st["zone"], st["done"], st["planned"]) == ("Cheek L", 3, 3)
    keys(ui, DOWN)  # complete: straight to the next zone
    assert ui.run.index == 1 and core.settings.dose_nl == 5_000 and core.settings.depth_um == 800
    fire(sim, 2)
    keys(ui, DOWN)  # 2 of 4: the interface asks before skipping
    assert ui.screen_name() == "skip"
    keys(ui, BACK)
    assert ui.run.index == 1 and ui.screen_name() == "status"
    keys(ui, DOWN, OK)  # skip it
    assert ui.run.index == 2 and ui.run.skipped[1]
    fire(sim, 1)
    keys(ui, UP)  # back to the skipped zone: its counts are kept
    assert ui.run.index == 1 and ui.run.done[1] == 2
    fire(sim, 2)
    assert ui.run.done[1] == 4
    used_eye = ui.run.used_nl[1]
    assert used_eye == pytest.approx(4 * 5_000, rel=0.01)
    keys(ui, DOWN)
    fire(sim, 1)
    assert ui.run.done[2] == 2
    keys(ui, DOWN)  # past the last zone: the protocol is done
    assert ui.run is None and "protocol done" in ui.banner()
    assert core.protocol_cap_nl == 0  # the caps are off again
    sim.settle()
    sim.run_ms(5)
    recs = list(log.records())
    kinds = [r["kind"] for r in recs]
    assert tlog.K_PROTOCOL in kinds and kinds.count(tlog.K_ZONE) >= 4
    zones = [r["zone"] for r in recs if r["kind"] == tlog.K_PUNCTURE]
    assert zones == [0, 0, 0, 1, 1, 2, 1, 1, 2]


def test_zone_values_are_locked_while_a_protocol_runs_and_ending_it_frees_them(rig):
    sim, ui, log = rig
    start(ui)
    _menu_at(ui, "Dose")
    keys(ui, OK)
    assert ui.screen_name() == "menu" and ui.banner() == "set by the protocol"
    _menu_at(ui, "Protocol")
    keys(ui, OK)
    assert ui._proto_names[0] == "End protocol"
    keys(ui, OK)
    assert ui.run is None and sim.core.protocol_cap_nl == 0
    _menu_at(ui, "Dose")
    keys(ui, OK)
    assert ui.screen_name() == "edit"


@pytest.mark.hazard("H1")
def test_a_zone_cap_stops_firing_in_that_zone_with_a_message(rig):
    sim, ui, log = rig
    start(ui)
    keys(ui, DOWN)  # Cheek L not done: skip to the eye zone (30 uL cap, 5 uL doses)
    keys(ui, OK)
    fire(sim, 8)
    assert (
        5 <= ui.run.done[1] <= 6 and sim.core.notice == C.N_ZONE_CAP
    )  # 30 uL of 5 uL doses, to the step
    assert ui.run.status()["capped"]
    assert ui.run.used_nl[1] <= 30_000
    assert "zone volume cap" in ui.banner()


# ---- a zone the core refuses (issue 14, defect 5) ------------------------------------------

POINT = PROTOCOL["zones"][0]
# The reported zone: nappage, 20 uL a shot at 20 uL/s (1 s) but 3 shots a second.
TOO_FAST = dict(
    POINT, name="Neck", technique="nappage", dose_nl=20_000, shot_rate_mhz=3000, cap_nl=200_000
)
# 2 uL at 3 shots/s with suck-back (the plunger reverses twice a shot): the
# reference backlash allows it, the longest the engineer may set (two take-ups of
# 128 ms) does not.
SMALL_ONLY = dict(TOO_FAST, name="Forehead", dose_nl=2000, cap_nl=100_000, suckback_nl=500)
LONG_BACKLASH_STEPS = M.um_to_plunger_steps(M.BACKLASH_MAX_UM)


def proto(name, *zones):
    return dict(PROTOCOL, name=name, zones=[dict(z) for z in zones])


def choose(ui, name):
    """Menu > Protocol, then OK on `name`."""
    _menu_at(ui, "Protocol")
    keys(ui, OK)
    for _ in ui._proto_names:
        if ui._proto_names[ui._proto_cursor] == name:
            break
        keys(ui, DOWN)
    keys(ui, OK)


def end_protocol(ui):
    _menu_at(ui, "Protocol")
    keys(ui, OK)
    assert ui._proto_names[0] == "End protocol"
    keys(ui, OK)
    assert ui.run is None


def motion(sim):
    """Where the machine's needle and plunger are, and the fluid pushed (what left the
    needle and what the line still holds: that keeps flowing out after a shot), in nL."""
    m = sim.machine
    pushed_nl = round((m.fluid.delivered_ul + m.fluid.excess_ul) * 1000)
    return m.needle_axis.motor_steps, m.plunger_axis.motor_steps, pushed_nl


def assert_trigger_fires_nothing(sim):
    before = motion(sim), sim.core.punctures, sim.core.delivered_steps
    assert sim.shot() is None
    sim.hold_trigger(1500)  # held, as in nappage
    sim.run_ms(50)
    assert (motion(sim), sim.core.punctures, sim.core.delivered_steps) == before
    assert sim.core.notice == C.N_ZONE_CAP


def draw_lines(ui):
    """The banner's lines, once the status screen has drawn (on the host's framebuf)."""
    from host_tools.fakes import framebuf

    buf = bytearray(1024)
    ui.draw(framebuf.FrameBuffer(buf, 128, 64, framebuf.MONO_VLSB), 0)
    return D.wrap(ui.banner())


@pytest.mark.hazard("H10")
def test_a_protocol_the_core_refuses_never_starts_and_the_trigger_fires_nothing(rig):
    sim, ui, log = rig
    core = sim.core
    recorder = ui.protocols.recorder
    ui.protocols.store.save(json.dumps(proto("Too fast", POINT, TOO_FAST)))
    fire(sim, 2)  # a manual session under way
    counters = core.punctures, core.delivered_steps, recorder.session
    manual = core.settings.as_dict()
    choose(ui, "Too fast")
    # no confirm (counters to zero), no lot: straight back to the status screen, stopped
    assert ui.screen_name() == "status"
    assert (core.punctures, core.delivered_steps, recorder.session) == counters
    assert core.settings.as_dict() == manual  # no zone was applied
    assert ui.run.refused[0] == 1 and ui.run.refused[1][1] == SettingsError.CYCLE
    assert ui.state_text() == "NO SHOTS"
    assert draw_lines(ui) == ["shots too fast;", "OK>Protocol>End"]
    assert_trigger_fires_nothing(sim)
    assert not keys(ui, DOWN) and not keys(ui, UP) and ui.run.index == 0  # no way round it
    assert draw_lines(ui)[1] == "OK>Protocol>End"  # above the zone-cap notice
    end_protocol(ui)  # what the screen says: OK, Protocol, End
    assert core.protocol_cap_nl == 0 and ui.state_text() == "READY"
    assert core.punctures == counters[0] and recorder.session == counters[2]
    assert sim.shot() is not None  # the manual settings again, on purpose


@pytest.mark.hazard("H10")
def test_a_zone_refused_later_stops_the_run_with_the_trigger_off(rig):
    sim, ui, log = rig
    core = sim.core
    ui.protocols.store.save(json.dumps(proto("Small syringe", POINT, SMALL_ONLY)))
    choose(ui, "Small syringe")  # the reference backlash runs both zones
    keys(ui, OK, OK)
    run = ui.run
    assert run is not None and run.refused is None
    fire(sim, 1)
    core.set_backlash(LONG_BACKLASH_STEPS)  # the engineer applies a measurement: zone 0 runs
    fire(sim, 1)
    assert run.done[0] == 2
    keys(ui, DOWN, OK)  # skip the rest of zone 0: the nappage zone is too fast now
    assert ui.run is run and run.refused[0] == 1 and run.index == 0
    assert ui.state_text() == "NO SHOTS"
    assert draw_lines(ui) == ["shots too fast;", "OK>Protocol>End"]
    assert_trigger_fires_nothing(sim)
    core.set_calibration(1_050_000)  # the zone cap follows the steps of a new dose area
    sim.run_ms(5)
    assert_trigger_fires_nothing(sim)
    assert not keys(ui, UP)
    end_protocol(ui)
    assert core.protocol_cap_nl == 0 and sim.shot() is not None


def test_a_zone_refused_between_choice_and_lot_starts_no_session(rig):
    sim, ui, log = rig
    core = sim.core
    recorder = ui.protocols.recorder
    ui.protocols.store.save(json.dumps(proto("Small syringe", POINT, SMALL_ONLY)))
    fire(sim, 1)
    choose(ui, "Small syringe")
    keys(ui, OK)
    assert ui.screen_name() == "lot"
    counters = core.punctures, core.delivered_steps, recorder.session
    core.set_backlash(LONG_BACKLASH_STEPS)  # a longer take-up since
    keys(ui, OK)  # the lot is complete: checked again before the session
    assert (core.punctures, core.delivered_steps, recorder.session) == counters
    assert ui.run.refused[0] == 1 and ui.state_text() == "NO SHOTS"
    assert_trigger_fires_nothing(sim)


@pytest.mark.parametrize(
    "code",
    [SettingsError.CYCLE, SettingsError.PLUNGER, SettingsError.NOT_IDLE, SettingsError.RANGE],
)
def test_the_stopped_banner_fits_two_display_lines(code):
    class Run:
        refused = (0, SettingsError.refusal("shot_rate_mhz", code, 3000, 500, 857, 1166))

    lines = D.wrap(session.stopped_text(Run()))
    assert len(lines) == 2 and lines[1] == session.LEAVE
    assert all(len(line) <= D.LINE_CHARS for line in lines)
    for mode in menu.MODE_LABELS:  # the title: the mode, then the state
        assert len(mode.upper()) + 1 + len("NO SHOTS") <= D.LINE_CHARS


# ---- Service > Protocols: removing a stored one (issue 15) -------------------------------


def service_protocols(ui):
    """Service (with its code) > Protocols: the list of the stored protocols."""
    from host_tools.ui_scenes import _service

    _service(ui)
    _menu_at(ui, "Protocols")
    keys(ui, OK)


def texts_fit(ui):
    drawn = []

    class Fb:
        def text(self, s, x, y, c=1):
            drawn.append((s, x, y))

        def fill(self, c):
            pass

        def fill_rect(self, *a):
            pass

    ui.draw(Fb(), 0)
    assert drawn and all(x >= 0 and x + len(s) * D.CHAR_W <= 128 for s, x, _ in drawn), drawn
    return [s for s, _, _ in drawn]


def test_the_service_menu_removes_a_stored_protocol_once_ok_confirms(rig):
    sim, ui, log = rig
    store = ui.protocols.store
    store.save(json.dumps(dict(PROTOCOL, name="A protocol, a long name")))
    writes = []
    ui.protocols.flash = lambda fn, *a: (writes.append(fn.__name__), fn(*a))[1]
    service_protocols(ui)
    assert ui.screen_name() == "proto-remove"
    assert ui._rm_names == ["A protocol, a long name", "Test three zones"]
    assert "A protocol, a lo" in texts_fit(ui)  # 16 characters a line
    keys(ui, OK)
    assert ui.screen_name() == "proto-remove-ok"
    shown = texts_fit(ui)
    assert "A protocol, a" in shown and "long name" in shown  # the whole name, wrapped
    keys(ui, BACK)  # no: nothing removed
    assert ui.screen_name() == "proto-remove" and len(store.names()) == 2 and not writes
    keys(ui, OK, OK)  # yes
    assert store.names() == ["Test three zones"] and writes == ["remove"]
    assert ui.screen_name() == "proto-remove" and ui._rm_names == ["Test three zones"]
    assert "protocol removed" in texts_fit(ui)
    keys(ui, BACK)
    assert ui.screen_name() == "service"


def test_the_protocol_a_run_uses_or_a_busy_machine_keeps_it_stored(rig):
    sim, ui, log = rig
    store = ui.protocols.store
    start(ui)
    service_protocols(ui)
    keys(ui, OK, OK)  # the one running
    assert ui.screen_name() == "proto-remove-ok" and ui.note == "in use: end it"
    assert store.names() == ["Test three zones"]
    assert "in use: end it" in texts_fit(ui)
    session.finish_run(ui)
    sim.core.at_rest = lambda: False  # the needle still on its way
    keys(ui, OK)
    assert ui.note == "injector busy" and store.names() == ["Test three zones"]
    del sim.core.at_rest
    keys(ui, OK)  # the last one: back to the service menu, which says so
    assert store.names() == [] and ui.screen_name() == "service"
    assert "protocol removed" in ui.banner()
    _menu_at(ui, "Protocols")
    keys(ui, OK)
    assert ui.screen_name() == "service" and "none stored" in ui.banner()
