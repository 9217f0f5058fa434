"""Named screens of the operator interface, built the same way on CPython and MicroPython.

Each scene starts from a fresh core on the loopback rig (injcore.rig), puts
the machine in a state (by poking the core where a real fault would take a
physical cause) and reaches the screen with the interface's own button
events. tests/test_ui.py renders every scene on the host framebuf for the
golden screenshots (tests/golden/*.png), and the key ones on the real
MicroPython framebuf, pixel for pixel. Runs on MicroPython: no f-strings
beyond its subset, no CPython-only modules.
"""

from injcore import codes as C
from injcore import linefit
from injcore import machine as M
from injcore.rig import Rig
from injcore.settings import MODE_CONTINUOUS, SettingsError
from ui.keys import DOWN, OK, PRESS, UP
from ui.screens import Ui
from ui.service import cal_compute

WIDTH = 128
HEIGHT = 64
VERSION = "test"  # fixed, so a version bump does not change the goldens


def _ready(core, punctures=37, delivered_nl=740_000, left_nl=180_000):
    """Homed, loaded, primed, with a session under way: the state fields the screens read."""
    core.state = C.ST_READY
    core.switches |= C.SW_SYRINGE  # a syringe seated
    core.homed = True
    core.syringe_confirmed = True
    core.primed = True
    core.punctures = punctures
    core.delivered_steps = _steps_for(core, delivered_nl)
    capacity = core.settings.syringe()[1]
    core.fluid_steps = _steps_for(core, capacity - left_nl)


def _steps_for(core, nl):
    # Inverse of core.steps_to_nl, to the step.
    lo, hi = 0, 1 << 24
    while lo < hi:
        mid = (lo + hi) // 2
        if core.steps_to_nl(mid) < nl:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _keys(ui, *buttons):
    for b in buttons:
        ui.button(b, PRESS, 0)


def _fault(core, code):
    core.state = C.ST_FAULT
    core.fault = code


def _needle_in(core, depth_um, fault=C.F_NONE, was=C.ST_INJECT):
    """The needle's tip `depth_um` below the skin where `fault` (if any) stopped a shot."""
    core.needle.pos = M.um_to_needle_steps(M.NEEDLE_HOME_OFFSET_UM + depth_um)
    if fault:
        _fault(core, fault)
    core.fault_was = was


def _menu_at(ui, label):
    """Open the main menu (or stay in the current one) and move to `label`: up to
    the top first, then down, so it never spins whatever line the menu opened on."""
    if ui.screen_name() == "status":
        _keys(ui, OK)
    for _ in range(len(ui.menu)):
        _keys(ui, UP)
    for _ in range(len(ui.menu)):
        if ui.menu[ui.cursor].label == label:
            return
        _keys(ui, DOWN)
    raise ValueError("no menu item %r" % label)


def _service(ui):
    _menu_at(ui, "Service")
    _keys(ui, OK)
    for digit in ui.service_pin:
        for _ in range(digit):
            _keys(ui, UP)
        _keys(ui, OK)


# A small protocol for the protocol screens (injcore.protocol's format).
PROTOCOL_JSON = (
    '{"format": 1, "name": "Face booster", "version": 1, "session_cap_nl": 1000000,'
    ' "zones": [{"name": "Malar L", "technique": "point", "depth_um": 1000,'
    ' "dose_nl": 20000, "speed_um_s": 20000, "rate_nl_s": 20000, "punctures": 25,'
    ' "cap_nl": 520000}, {"name": "Periorb L", "technique": "papule",'
    ' "depth_um": 800, "dose_nl": 10000, "speed_um_s": 20000, "rate_nl_s": 10000,'
    ' "punctures": 5, "cap_nl": 60000}]}'
)


class _Stored:
    """What ui.protocols.Protocols gives the interface, without a filesystem."""

    def __init__(self, names):
        self._names = names

    def names(self):
        return self._names

    def remove(self, name):
        self._names = [n for n in self._names if n != name]

    def poll(self, run):
        run.poll()


# The longest names a protocol allows (injcore.protocol: NAME_MAX, ZONE_NAME_MAX), on
# twelve zones (MAX_ZONES): what the screens must fit.
LONG_NAME = "Facial skin boost 3 mL X"  # 24
LONG_ZONE = "Periorbita%02d"  # 12


def _long_protocol_json():
    zones = []
    for i in range(12):
        zones.append(
            '{"name": "%s", "technique": "point", "depth_um": 800, "dose_nl": 10000,'
            ' "speed_um_s": 20000, "rate_nl_s": 10000, "punctures": 1000, "cap_nl": 999000}'
            % (LONG_ZONE % (i + 1))
        )
    return '{"format": 1, "name": "%s", "version": 1, "session_cap_nl": 5000000, "zones": [%s]}' % (
        LONG_NAME,
        ", ".join(zones),
    )


def _protocol_run(core, ui, text=PROTOCOL_JSON):
    from injcore.protocol import Run, parse

    run = Run(core, parse(text, core.limits))
    run.start()
    ui.protocols = _Stored(["Face booster", "Pain: low back"])
    ui.run = run
    return run


def scene(name):  # noqa: C901  (one branch per named scene)
    """(core, ui) showing the scene `name`."""
    rig = Rig(needle_start_steps=0, plunger_start_steps=0)
    core = rig.core
    ui = Ui(core, VERSION)
    ui.poll(0)
    if name == "status_unhomed":
        pass
    elif name == "status_ready":
        _ready(core)
    elif name == "status_nappage":
        core.configure(mode=MODE_CONTINUOUS, depth_um=500, dose_nl=2500)
        _ready(core, punctures=412, delivered_nl=1_030_000, left_nl=620_000)
    elif name == "status_firing":
        _ready(core)
        core.state = C.ST_INJECT
    elif name == "status_homing":
        core.state = C.ST_HOMING
    elif name == "status_warning":
        _ready(core, left_nl=90_000)
        core.warning = C.W_NEAR_EMPTY
    elif name == "status_notice":
        _ready(core, punctures=0, delivered_nl=0)
        core.primed = False
        core.notice = C.N_NOT_PRIMED
    elif name == "status_watchdog":
        core.notice = C.N_WATCHDOG_RESET
    elif name == "status_unconfirmed":  # the size changed after loading and priming
        _ready(core)
        core.configure(syringe_model=3)
    elif name == "status_no_syringe":  # pulled out near the end: both say so
        _ready(core, left_nl=90_000)
        core.switches &= ~C.SW_SYRINGE
        core.warning = C.W_NEAR_EMPTY
    elif name == "status_not_primed":
        _ready(core, punctures=0, delivered_nl=0)
        core.primed = False
    elif name == "status_settings_lost":  # no valid stored settings (H9)
        _ready(core)
        core.unconfirmed = True
    elif name == "status_warning_notice":  # the warning marks the volume left under a notice
        _ready(core, left_nl=15_000)
        core.warning = C.W_NEAR_EMPTY
        core.notice = C.N_SYRINGE_LOW
    elif name == "status_needle_in":  # an E-stop acknowledged, the needle still in
        _ready(core)
        _needle_in(core, 1000)
        core.state = C.ST_UNHOMED
        core.homed = False
    elif name == "status_counts_max":  # the widest figures the counts line may show
        _ready(core, punctures=99_999, delivered_nl=4_999_999, left_nl=999_960)
    elif name == "menu_home":
        _keys(ui, OK)
    elif name == "menu_end":
        _ready(core)
        _menu_at(ui, "Service")
    elif name == "edit_depth":
        _ready(core)
        _menu_at(ui, "Depth")
        _keys(ui, OK, UP, UP)
    elif name == "edit_depth_max":
        _ready(core)
        _menu_at(ui, "Depth")
        _keys(ui, OK)
        for _ in range(40):
            _keys(ui, UP)
    elif name == "edit_dose":
        _ready(core)
        _menu_at(ui, "Dose")
        _keys(ui, OK, DOWN)
    elif name == "edit_mode":
        _ready(core)
        _menu_at(ui, "Mode")
        _keys(ui, OK, UP)
    elif name == "edit_syringe":
        _ready(core)
        _menu_at(ui, "Syringe")
        _keys(ui, OK, DOWN)
    elif name == "confirm_session":
        _ready(core)
        _menu_at(ui, "New sess.")
        _keys(ui, OK)
    elif name == "lot":
        _ready(core)
        _menu_at(ui, "New sess.")
        _keys(ui, OK, OK, UP, OK, UP, UP, OK, DOWN)
    elif name == "status_protocol":
        _ready(core)
        run = _protocol_run(core, ui)
        core.punctures += 12  # twelve shots of 20 uL in the first zone
        core.delivered_steps = _steps_for(core, 240_000 + core.steps_to_nl(core.delivered_steps))
        run.poll()
    elif name == "status_protocol_banner":  # a message: the zone's counts stay
        _ready(core)
        run = _protocol_run(core, ui)
        core.punctures += 12
        core.delivered_steps = _steps_for(core, 240_000 + core.steps_to_nl(core.delivered_steps))
        run.poll()
        ui.message("protocol started")
    elif name == "status_protocol_long":  # the longest names, the twelfth zone
        _ready(core)
        run = _protocol_run(core, ui, _long_protocol_json())
        for _ in range(11):
            run.next()
        core.punctures += 999
        core.delivered_steps = _steps_for(core, 998_000 + core.steps_to_nl(core.delivered_steps))
        run.poll()
    elif name == "protocols_long":  # a name longer than a line: whole at the bottom
        _ready(core)
        ui.protocols = _Stored(["Face booster", LONG_NAME, "Pain: low back"])
        _menu_at(ui, "Protocol")
        _keys(ui, OK, DOWN)
    elif name == "confirm_protocol":  # a protocol's new session: its name whole
        _ready(core)
        ui._chosen = LONG_NAME
        ui.go("confirm")
    elif name == "status_protocol_stopped":
        _ready(core)
        run = _protocol_run(core, ui)
        # its second zone refused by the core (say, since another syringe): stopped there
        run.stop(1, SettingsError.refusal("shot_rate_mhz", SettingsError.CYCLE, 3000, 500, 857))
    elif name == "protocols":
        _ready(core)
        ui.protocols = _Stored(["Face booster", "Nappage face", "Pain: low back"])
        _menu_at(ui, "Protocol")
        _keys(ui, OK, DOWN)
    elif name == "skip":
        _ready(core)
        _protocol_run(core, ui)
        _keys(ui, DOWN)
    elif name == "syringe_loading":  # Load: the plunger on its way back
        _ready(core)
        _menu_at(ui, "Load syr.")
        _keys(ui, OK)
        rig.run(5)
    elif name == "syringe_confirm":  # the load done, a syringe seated: is it the size set?
        _ready(core)
        core.configure(syringe_model=3)
        rig.inputs.syringe = True
        _menu_at(ui, "Load syr.")
        _keys(ui, OK)
        rig.run(20_000, lambda c: c.state != C.ST_LOAD)
    elif name == "prime":
        _ready(core)
        _menu_at(ui, "Prime")
        _keys(ui, OK)
    elif name == "pin":
        _menu_at(ui, "Service")
        _keys(ui, OK, UP, UP, OK, UP)
    elif name == "pin_wrong":
        _menu_at(ui, "Service")
        _keys(ui, OK, OK, OK, OK, OK)
    elif name == "service":
        _service(ui)
    elif name == "proto_remove":  # Service > Protocols: which one to remove
        ui.protocols = _Stored(["Face booster", "Nappage face and neck 2", "Pain: low back"])
        _service(ui)
        _menu_at(ui, "Protocols")
        _keys(ui, OK, DOWN)
    elif name == "proto_remove_ok":  # ... and OK: remove it? (a long name on two lines)
        ui.protocols = _Stored(["Face booster", "Nappage face and neck 2", "Pain: low back"])
        _service(ui)
        _menu_at(ui, "Protocols")
        _keys(ui, OK, DOWN, OK)
    elif name == "edit_limit":
        _service(ui)
        _keys(ui, OK, DOWN)
    elif name == "info":
        _service(ui)
        _menu_at(ui, "Dev. info")
        _keys(ui, OK)
    elif name == "calibration":
        _service(ui)
        _menu_at(ui, "Calibrate")
        _keys(ui, OK)
    elif name == "cal_run":
        _ready(core)
        _service(ui)
        _menu_at(ui, "Calibrate")
        _keys(ui, OK, OK)
        core.punctures += 3  # three of the shots fired
    elif name == "cal_result":
        _ready(core)
        _service(ui)
        _menu_at(ui, "Calibrate")
        _keys(ui, OK, OK)
        ui._cal_expected_nl = 200_000  # ten 20 uL shots counted ...
        ui.cal["mass_dmg"] = 2058  # ... and 205.8 mg on the scale
        cal_compute(ui)
        ui.go("cal-result")
    elif name == "backlash":
        _ready(core)
        _service(ui)
        _menu_at(ui, "Backlash")
        _keys(ui, OK)
        core.backlash_measured_steps = 70
        ui.line_fit.status, ui.line_fit.tau_us = linefit.S_OK, 42_300  # read in the settle
    elif name == "alarm_relief":
        _fault(core, C.F_OCCLUSION)
        core.state = C.ST_RELIEF
    elif name == "alarm_estop_held":
        rig.inputs.estop = True
        rig.run(2)
    elif name == "alarm_estop_needle":  # stopped mid-shot: the needle stays 1 mm in
        _ready(core)
        _needle_in(core, 1000, C.F_ESTOP)
    elif name == "alarm_stall_needle":  # the longest alarm: two lines, the needle, the action
        _ready(core)
        _needle_in(core, 2000, C.F_NEEDLE_STALL)
    elif name.startswith("alarm_"):
        _fault(core, int(name[6:]))
    else:
        raise ValueError("no scene %r" % name)
    ui.poll(0)
    return core, ui


SCENES = (
    "status_unhomed",
    "status_ready",
    "status_nappage",
    "status_firing",
    "status_homing",
    "status_warning",
    "status_notice",
    "status_watchdog",
    "status_unconfirmed",
    "status_no_syringe",
    "status_not_primed",
    "status_settings_lost",
    "status_warning_notice",
    "status_needle_in",
    "status_counts_max",
    "menu_home",
    "menu_end",
    "edit_depth",
    "edit_depth_max",
    "edit_dose",
    "edit_mode",
    "edit_syringe",
    "confirm_session",
    "lot",
    "status_protocol",
    "status_protocol_stopped",
    "status_protocol_banner",
    "status_protocol_long",
    "protocols",
    "protocols_long",
    "confirm_protocol",
    "skip",
    "syringe_loading",
    "syringe_confirm",
    "prime",
    "pin",
    "pin_wrong",
    "service",
    "proto_remove",
    "proto_remove_ok",
    "edit_limit",
    "info",
    "calibration",
    "cal_run",
    "cal_result",
    "backlash",
    "alarm_relief",
    "alarm_estop_held",
    "alarm_estop_needle",
    "alarm_stall_needle",
) + tuple("alarm_%d" % code for code in range(1, len(C.FAULT_NAMES)))


def render(name, framebuf):
    """The scene's 1024-byte MONO_VLSB frame, drawn with the given framebuf module."""
    core, ui = scene(name)
    buf = bytearray(WIDTH * HEIGHT // 8)
    fb = framebuf.FrameBuffer(buf, WIDTH, HEIGHT, framebuf.MONO_VLSB)
    ui.draw(fb, 0)
    return buf
