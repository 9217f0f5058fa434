"""Can the machine run a protocol's zones? The control core's own answer, zone by zone.

The host tools (`injector protocol validate|push`), the simulator and the device
ask the same question the same way: each zone's settings go through
Core.check_settings, the validation and planning Core.configure applies, so the
answer follows whatever the core plans (cycle time, backlash take-up, ...).

    zone_refusals(core, zones, syringe_model=None, syringe_id_um=None)
        -> [[refusal, ...] per zone]   ([] where the core would run the zone)

`zones` are settings dicts (injcore.protocol.Zone.settings). `core` is the
device's own Core (its syringe, limits, backlash and calibration; nothing is
applied to it), or a planning_core() on the host. syringe_model (and
syringe_id_um for a custom one) judges the zones with another syringe than the
one in use. A refusal is SettingsError's tuple: settings.refusal_text words it.

Small and apart from injcore.protocol (about 20 KB of heap): the device imports
it only where a protocol starts.
"""

from .settings import RANGES, Settings, SettingsError


def zone_refusals(core, zones, syringe_model=None, syringe_id_um=None):
    """Per zone, the refusals of its settings by `core` (with this syringe); [] where none."""
    syringe = {}
    if syringe_model is not None:
        syringe["syringe_model"] = syringe_model
    if syringe_id_um is not None:
        syringe["syringe_id_um"] = syringe_id_um
    out = []
    for settings in zones:
        changes = dict(settings)
        changes.update(syringe)
        try:
            core.check_settings(**changes)
            out.append([])
        except SettingsError as e:
            out.append(e.refusals)
    return out


class _Null:
    """Every port the core talks to (axes, inputs, outputs), doing nothing: a core that plans."""

    def put(self, words):
        pass

    def emitted(self):
        return 0

    def halt(self):
        pass

    def switches(self):
        return 0

    def force_mn(self):
        return 0

    def drivers(self, on):
        pass

    def alarm(self, level):
        pass


def planning_core(limits=None, backlash_steps=None, dose_factor_ppm=None, line_tau_us=None):
    """A Core on null ports with the engineer's limits, backlash, dose calibration and line
    time constant (None: the core's defaults): the machine as a host tool judges it.
    SettingsError if refused."""
    from .core import Core  # the host's: the device asks its own core

    null = _Null()
    # The shallowest depth: within any usable needle length the limits may set.
    start = Settings(depth_um=RANGES["depth_um"][0])
    core = Core(null, null, null, null, settings=start, limits=limits)
    if backlash_steps is not None:
        core.set_backlash(backlash_steps)
    if dose_factor_ppm is not None:
        core.set_calibration(dose_factor_ppm)
    if line_tau_us is not None:
        core.set_line_tau(line_tau_us)  # pressure advance: part of the cycle time
    return core
