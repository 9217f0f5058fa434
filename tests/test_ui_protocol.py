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
from injcore import tlog
from injcore.protocol import ProtocolStore
from sim.session import Simulator
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
