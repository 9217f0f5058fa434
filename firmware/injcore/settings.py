"""Operator settings, engineer limits and their validation (hazards H2, H10, H11).

Every value is an integer in the unit its name carries. A change is checked
whole against the machine and the engineer's limits; if any field is wrong the
change is refused with one message per field and the old settings stay.
"""

from . import machine as M
from .compat import const

from .codes import MODE_CONTINUOUS, MODE_NAMES, MODE_PRIME, MODE_SINGLE  # noqa: F401  (settings.MODE_*: the modes' one place is codes.py)

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
    """A refused change; `problems` lists one message per offending field."""

    def __init__(self, problems):
        super().__init__("; ".join(problems))
        self.problems = problems


class Limits:
    """Engineer limits: operator values can never exceed them (H11).

    needle_length_um   usable needle length: the needle's soft limit (H2)
    session_cap_nl     volume one session may deliver; no shot starts past it (H1)
    occlusion_kpa      line pressure that counts as a blocked needle (H4); the
                       force limit is this pressure on the syringe's barrel area
    """

    RANGES = {
        "needle_length_um": (RANGES["depth_um"][0], M.NEEDLE_LENGTH_MAX_UM, "um"),
        "session_cap_nl": (1000, 20_000_000, "nL"),
        "occlusion_kpa": (50, 1000, "kPa"),
    }

    def __init__(self, needle_length_um=M.NEEDLE_LENGTH_UM, session_cap_nl=M.SESSION_CAP_NL,
                 occlusion_kpa=M.OCCLUSION_KPA):
        self.needle_length_um = needle_length_um
        self.session_cap_nl = session_cap_nl
        self.occlusion_kpa = occlusion_kpa

    def check(self):
        problems = []
        for name in ("needle_length_um", "session_cap_nl", "occlusion_kpa"):
            lo, hi, unit = Limits.RANGES[name]
            v = getattr(self, name)
            if not is_int(v) or not lo <= v <= hi:
                problems.append("%s: %r is out of range; allowed %d..%d %s" % (name, v, lo, hi, unit))
        if problems:
            raise SettingsError(problems)


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
        problems = []
        for name in changes:
            if name not in values:
                problems.append("%s: no such setting; known: %s" % (name, ", ".join(FIELDS)))
        values.update(changes)
        problems.extend(problems_in(values, limits))
        if problems:
            raise SettingsError(problems)
        return Settings(**values)

    # Derived figures the planner needs, computed once per change, never in the tick.
    def syringe(self):
        """(area_cmm2, capacity_nl, dead_nl) of the syringe in use."""
        if self.syringe_model == M.CUSTOM_SYRINGE:
            return M.area_cmm2_from_diameter(self.syringe_id_um), M.CUSTOM_CAPACITY_NL, M.CUSTOM_DEAD_NL
        e = M.SYRINGES[self.syringe_model]
        return e[M.SYR_AREA_CMM2], e[M.SYR_CAPACITY_NL], e[M.SYR_DEAD_NL]

    def shot_period_us(self):
        return 1_000_000_000 // self.shot_rate_mhz


def is_int(value):
    """An integer and not a bool (True == 1 in Python): how stored and typed values are checked."""
    return isinstance(value, int) and not isinstance(value, bool)


def _range_problem(name, value, lo, hi, step, unit, note=""):
    if not is_int(value):
        return "%s: %r is not an integer; allowed %d..%d %s%s" % (name, value, lo, hi, unit, note)
    if not lo <= value <= hi or (value - lo) % step:
        return "%s: %d is out of range; allowed %d..%d %s in steps of %d%s" % (
            name, value, lo, hi, unit, step, note)
    return None


def problems_in(values, limits):
    """Every problem of a complete settings dict, one message per field."""
    problems = []

    def add(msg):
        if msg:
            problems.append(msg)

    for name in ("speed_um_s", "rate_nl_s", "shot_rate_mhz", "suckback_nl"):
        lo, hi, step, unit = RANGES[name]
        add(_range_problem(name, values[name], lo, hi, step, unit))

    lo, hi, step, unit = RANGES["depth_um"]
    hi = min(hi, limits.needle_length_um)
    add(_range_problem("depth_um", values["depth_um"], lo, hi, step, unit,
                       " (usable needle length %d um)" % limits.needle_length_um))

    lo, hi, step, unit = RANGES["dose_nl"]
    dose = values["dose_nl"]
    if is_int(dose) and dose >= FINE_DOSE_BELOW_NL:
        step = COARSE_DOSE_STEP_NL
    add(_range_problem("dose_nl", dose, lo, hi, step, unit,
                       " (0.5 uL steps below 10 uL, 1 uL steps above)"))

    mode = values["mode"]
    if not is_int(mode) or not 0 <= mode < len(MODE_NAMES):
        add("mode: %r is not a mode; allowed %s" % (mode, ", ".join(
            "%d=%s" % (i, n) for i, n in enumerate(MODE_NAMES))))

    syringe = values["syringe_model"]
    if not is_int(syringe) or (syringe not in M.SYRINGES and syringe != M.CUSTOM_SYRINGE):
        add("syringe_model: %r is not a syringe model; allowed %s or 0 for a custom inner diameter"
            % (syringe, "/".join(str(m) for m in sorted(M.SYRINGES))))
    elif syringe == M.CUSTOM_SYRINGE:
        lo, hi, step, unit = RANGES["syringe_id_um"]
        add(_range_problem("syringe_id_um", values["syringe_id_um"], lo, hi, step, unit))

    count = values["needle_count"]
    if not is_int(count) or count not in NEEDLE_COUNTS:
        add("needle_count: %r is not allowed; allowed %s" % (
            count, ", ".join(str(n) for n in NEEDLE_COUNTS)))
    return problems
