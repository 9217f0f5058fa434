"""What the device keeps across power cuts, between the core and the store (H9).

snapshot(core, pin) is the record (injcore.store's current schema) of what is
in use now; restore(core, payload) applies a loaded record through the core's
own validation and returns the service code. The board saves a snapshot whenever
it differs from the last one saved, and only while both axes are idle.
"""

from . import store as S
from .settings import Settings, SettingsError


def snapshot(core, pin):
    lim = core.limits
    return {
        "settings": core.settings.as_dict(),
        "limits": {name: getattr(lim, name) for name in S.LIMIT_FIELDS},
        "calibration": {
            "dose_factor_ppm": core.dose_factor_ppm,
            "backlash_steps": core.backlash_steps,
            "line_tau_us": core.line_tau_stored,
        },
        "service_pin": "".join(str(d) for d in pin),
    }


def pin_digits(text):
    """'2580' -> (2, 5, 8, 0); the default code for anything else."""
    if not isinstance(text, str) or len(text) != 4 or not all("0" <= c <= "9" for c in text):
        text = S.DEFAULT_SERVICE_PIN
    return tuple(ord(c) - 48 for c in text)


def restore(core, payload):
    """Apply a loaded record to an idle core; returns (pin, problems).

    Each part goes through the core's validation; a part it refuses keeps the
    core's value and is reported, never half applied.
    """
    problems = []
    try:
        core.set_limits(**payload["limits"])
    except (SettingsError, TypeError, KeyError) as e:
        problems.append("limits: %s" % e)
    try:
        core.configure(**Settings(**payload["settings"]).as_dict())
    except (SettingsError, TypeError, KeyError) as e:
        problems.append("settings: %s" % e)
    cal = payload.get("calibration", {})
    try:
        core.set_calibration(cal.get("dose_factor_ppm", core.dose_factor_ppm))
        core.set_backlash(cal.get("backlash_steps", core.backlash_steps))
        core.set_line_tau(cal.get("line_tau_us", core.line_tau_stored))
    except (SettingsError, TypeError) as e:
        problems.append("calibration: %s" % e)
    return pin_digits(payload.get("service_pin")), problems
