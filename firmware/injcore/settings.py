"""Operator settings, engineer limits and their validation (hazards H2, H10, H11).

Every value is an integer in the unit its name carries. A change is checked
whole against the machine and the engineer's limits; if any field is wrong the
change is refused with one message per field and the old settings stay.
"""

from . import machine as M
from .codes import MODE_CONTINUOUS, MODE_NAMES, MODE_PRIME, MODE_SINGLE  # noqa: F401  (settings.MODE_*: the modes' one place is codes.py)
from .compat import const

NEEDLE_COUNTS = (1, 3, 5, 9)

# field -> (minimum, maximum, step, unit) for plain ranged integers.
RANGES = {
    "depth_um": (300, 6000, 100, "um"),
    "dose_nl": (1000, 200_000, 500, "nL"),  # 0.5 uL steps below 10 uL, 1 uL above
    "speed_um_s": (5000, 50_000, 1000, "um/s"),
    "rate_nl_s": (2000, 100_000, 1000, "nL/s"),
    "shot_rate_mhz": (500, 10_000, 100, "mHz"),  # shots per 1000 s
    "suckback_nl": (0, 2000, 100, "nL"),
    "syringe_id_um": (M.CUSTOM_ID_MIN_UM, M.CUSTOM_ID_MAX_UM, 10, "um"),
}
FINE_DOSE_BELOW_NL = const(10_000)
COARSE_DOSE_STEP_NL = const(1000)

FIELDS = (
    "mode",
    "depth_um",
    "dose_nl",
    "speed_um_s",
    "rate_nl_s",
    "shot_rate_mhz",
    "suckback_nl",
    "syringe_model",
    "syringe_id_um",
    "needle_count",
)


class SettingsError(ValueError):
    """A refused change; `refusals` holds one refusal per offending field.

    A refusal is a tuple (field, code, value, lo, hi, extra): the field, why
    (a code below), the value refused, the range allowed in the field's unit,
    and the one more figure some codes need. A string among the refusals is a
    problem already in words (a stored record's report: Store.save). The words
    are made only when asked for, by refusal_text: `problems` (one line per
    refusal) and str(e). The interface picks its short text from code and field.
    """

    # Why a change is refused: a refusal's code, its fields beyond (field, code, value).
    NOT_IDLE = 1  # only while the injector is idle; field: "settings", "limits", ...
    NO_SETTING = 2  # no such setting
    NO_LIMIT = 3  # no such limit
    NOT_INT = 4  # not an integer; lo, hi; depth_um's extra: the usable needle length
    RANGE = 5  # outside lo..hi or off a setting's step grid (grid_step); extra as NOT_INT
    CHOICE = 6  # not one of the field's choices (mode, syringe_model, needle_count)
    CYCLE = 7  # shot rate faster than one puncture takes; lo, hi; extra: the puncture, ms
    PLUNGER = 8  # injection rate the plunger cannot reach; extra: its top speed, um/s

    def __init__(self, refusals):
        super().__init__(refusals)
        self.refusals = refusals

    @staticmethod
    def refusal(field, code, value=None, lo=0, hi=0, extra=None):
        """One refusal: SettingsError.refusal("depth_um", SettingsError.RANGE, 7000, 300, 4000)."""
        return (field, code, value, lo, hi, extra)

    @staticmethod
    def one(field, code, value=None, lo=0, hi=0, extra=None):
        """One refusal's error: raise SettingsError.one("limits", SettingsError.NOT_IDLE)."""
        return SettingsError([SettingsError.refusal(field, code, value, lo, hi, extra)])

    @property
    def problems(self):
        """One message per refusal, as the host tools and the logs read them."""
        return [refusal_text(r) for r in self.refusals]

    def __str__(self):
        return "; ".join(self.problems)


class Limits:
    """Engineer limits: operator values can never exceed them (H11).

    needle_length_um   usable needle length: the needle's soft limit (H2)
    session_cap_nl     volume one session may deliver; no shot starts past it (H1)
    occlusion_kpa      line pressure that counts as a blocked needle (H4); the
                       force limit is this pressure on the syringe's barrel area
    hover_clearance_um where the needle waits between nappage shots, behind the skin
    """

    RANGES = {
        "needle_length_um": (RANGES["depth_um"][0], M.NEEDLE_LENGTH_MAX_UM, "um"),
        "session_cap_nl": (1000, 20_000_000, "nL"),
        "occlusion_kpa": (50, 1000, "kPa"),
        "hover_clearance_um": (100, M.NEEDLE_HOME_OFFSET_UM, "um"),
    }

    def __init__(
        self,
        needle_length_um=M.NEEDLE_LENGTH_UM,
        session_cap_nl=M.SESSION_CAP_NL,
        occlusion_kpa=M.OCCLUSION_KPA,
        hover_clearance_um=M.NEEDLE_HOVER_CLEARANCE_UM,
    ):
        self.needle_length_um = needle_length_um
        self.session_cap_nl = session_cap_nl
        self.occlusion_kpa = occlusion_kpa
        self.hover_clearance_um = hover_clearance_um

    def check(self):
        refusals = []
        for name in Limits.RANGES:
            lo, hi, _ = Limits.RANGES[name]
            v = getattr(self, name)
            if not is_int(v) or not lo <= v <= hi:
                refusals.append(_refusal(name, SettingsError.RANGE, v, lo, hi))
        if refusals:
            raise SettingsError(refusals)


class Settings:
    """One complete, valid set of operator settings."""

    def __init__(self, **values):
        self.mode = MODE_SINGLE
        self.depth_um = 1000
        self.dose_nl = 20_000
        self.speed_um_s = 20_000
        self.rate_nl_s = 50_000
        self.shot_rate_mhz = 2000
        self.suckback_nl = 500
        self.syringe_model = 1  # an id of machine.SYRINGES, or CUSTOM_SYRINGE
        self.syringe_id_um = 4700  # used only with a custom syringe (model 0)
        self.needle_count = 1
        for name in values:
            setattr(self, name, values[name])

    def as_dict(self):
        return {name: getattr(self, name) for name in FIELDS}

    def changed(self, limits, **changes):
        """A new Settings with `changes` applied, or SettingsError naming every bad field."""
        values = self.as_dict()
        refusals = [
            _refusal(name, SettingsError.NO_SETTING) for name in changes if name not in values
        ]
        values.update(changes)
        refusals.extend(problems_in(values, limits))
        if refusals:
            raise SettingsError(refusals)
        return Settings(**values)

    # Derived figures the planner needs, computed once per change, never in the tick.
    def syringe(self):
        """(area_cmm2, capacity_nl, dead_nl) of the syringe in use."""
        if self.syringe_model == M.CUSTOM_SYRINGE:
            return (
                M.area_cmm2_from_diameter(self.syringe_id_um),
                M.CUSTOM_CAPACITY_NL,
                M.CUSTOM_DEAD_NL,
            )
        e = M.SYRINGES[self.syringe_model]
        return e[M.SYR_AREA_CMM2], e[M.SYR_CAPACITY_NL], e[M.SYR_DEAD_NL]

    def shot_period_us(self):
        return 1_000_000_000 // self.shot_rate_mhz


def is_int(value):
    """An integer and not a bool (True == 1 in Python): how stored and typed values are checked."""
    return isinstance(value, int) and not isinstance(value, bool)


_refusal = SettingsError.refusal


def grid_step(field, value):
    """The step a ranged setting moves in at `value`: the dose is finer below 10 uL."""
    if field == "dose_nl" and is_int(value) and value >= FINE_DOSE_BELOW_NL:
        return COARSE_DOSE_STEP_NL
    return RANGES[field][2]


def _range_refusal(name, value, lo, hi, extra=None):
    if not is_int(value):
        return _refusal(name, SettingsError.NOT_INT, value, lo, hi, extra)
    if not lo <= value <= hi or (value - lo) % grid_step(name, value):
        return _refusal(name, SettingsError.RANGE, value, lo, hi, extra)
    return None


def problems_in(values, limits):
    """Every refusal of a complete settings dict, one per field (refusal_text words them)."""
    refusals = []

    def add(r):
        if r:
            refusals.append(r)

    for name in ("speed_um_s", "rate_nl_s", "shot_rate_mhz", "suckback_nl"):
        lo, hi, _, _ = RANGES[name]
        add(_range_refusal(name, values[name], lo, hi))

    lo, hi, _, _ = RANGES["depth_um"]
    hi = min(hi, limits.needle_length_um)
    add(_range_refusal("depth_um", values["depth_um"], lo, hi, limits.needle_length_um))

    lo, hi, _, _ = RANGES["dose_nl"]
    add(_range_refusal("dose_nl", values["dose_nl"], lo, hi))

    mode = values["mode"]
    if not is_int(mode) or not 0 <= mode < len(MODE_NAMES):
        add(_refusal("mode", SettingsError.CHOICE, mode))

    syringe = values["syringe_model"]
    if not is_int(syringe) or (syringe not in M.SYRINGES and syringe != M.CUSTOM_SYRINGE):
        add(_refusal("syringe_model", SettingsError.CHOICE, syringe))
    elif syringe == M.CUSTOM_SYRINGE:
        lo, hi, _, _ = RANGES["syringe_id_um"]
        add(_range_refusal("syringe_id_um", values["syringe_id_um"], lo, hi))

    count = values["needle_count"]
    if not is_int(count) or count not in NEEDLE_COUNTS:
        add(_refusal("needle_count", SettingsError.CHOICE, count))
    return refusals


def _unit(field):
    if field in RANGES:
        return RANGES[field][3]
    if field in Limits.RANGES:
        return Limits.RANGES[field][2]
    return "ppm" if field == "dose_factor_ppm" else ""  # backlash_steps: a bare count


def _cycle_text(field, value, lo, hi, puncture_ms):
    if hi < lo:  # not even the slowest rate: say what limits it
        return (
            "one puncture with this depth, dose and speeds takes %d ms: no shot rate from "
            "%d %s fits; lower the dose or the depth, or raise the injection rate"
            % (puncture_ms, lo, _unit(field))
        )
    return (
        "%d is faster than one puncture with this depth, dose and speeds takes (%d ms); "
        "allowed %d..%d %s" % (value, puncture_ms, lo, hi, _unit(field))
    )


def refusal_text(r, named=True):
    """The words of a refusal: "depth_um: 7000 is out of range; allowed ...".

    named=False leaves out the leading "field: " (the interface's fallback).
    """
    if isinstance(r, str):
        return r
    field, code, value, lo, hi, extra = r
    E = SettingsError  # noqa: N806  (the class, shorter: its codes read E.RANGE)
    if code == E.NOT_IDLE:  # "settings" and "limits" change, "calibration" changes
        verb = "change" if field[-1] == "s" else "changes"
        return "%s %s only while the injector is idle" % (field, verb)
    if code == E.NO_SETTING:
        text = "no such setting; known: " + ", ".join(FIELDS)
    elif code == E.NO_LIMIT:
        text = "no such limit; known: " + ", ".join(Limits.RANGES)
    elif code == E.CHOICE:
        if field == "mode":
            what = "not a mode; allowed " + ", ".join(
                "%d=%s" % (i, n) for i, n in enumerate(MODE_NAMES)
            )
        elif field == "syringe_model":
            what = "not a syringe model; allowed %s or 0 for a custom inner diameter" % "/".join(
                str(s) for s in sorted(M.SYRINGES)
            )
        else:
            what = "not allowed; allowed " + ", ".join(str(n) for n in NEEDLE_COUNTS)
        text = "%r is %s" % (value, what)
    elif code == E.CYCLE:
        text = _cycle_text(field, value, lo, hi, extra)
    elif code == E.PLUNGER:
        text = "%d needs the plunger faster than %d um/s with this syringe" % (value, extra)
    else:  # NOT_INT, RANGE
        text = "%r is %s; allowed %d..%d" % (
            value,
            "not an integer" if code == E.NOT_INT else "out of range",
            lo,
            hi,
        )
        unit = _unit(field)
        if unit:
            text += " " + unit
        if code == E.RANGE and field in RANGES:
            text += " in steps of %d" % grid_step(field, value)
        if field == "depth_um" and extra is not None:
            text += " (usable needle length %d um)" % extra
        elif field == "dose_nl":
            text += " (0.5 uL steps below 10 uL, 1 uL steps above)"
        elif field == "dose_factor_ppm":
            text += ": check the syringe and the scale"
    return field + ": " + text if named else text
