"""Gravimetric dose calibration: one computation for the device's menu and the host tool.

The operator fires doses into a cup and weighs it. The core counted the
volume its plunger steps should have given; the scale says what left. The
correction is the ratio, applied to the barrel area volumes are counted with
(Core.set_calibration).
"""

from . import machine as M
from .settings import SettingsError


def dose_area(settings, factor_ppm):
    """The barrel area volumes are counted with: the syringe table's, times the calibration."""
    return settings.syringe()[0] * factor_ppm // M.DOSE_FACTOR_ONE_PPM


def check_factor(factor_ppm):
    """A dose correction (delivered / counted, ppm) the core may apply; SettingsError if not."""
    lo, hi = M.DOSE_FACTOR_MIN_PPM, M.DOSE_FACTOR_MAX_PPM
    if not isinstance(factor_ppm, int) or not lo <= factor_ppm <= hi:
        raise SettingsError.one("dose_factor_ppm", SettingsError.RANGE, factor_ppm, lo, hi)


def weighed_nl(mass_dmg, density_mg_per_ml):
    """Volume of a mass in 0.1 mg units at a density in mg/mL."""
    return mass_dmg * 100_000 // density_mg_per_ml


def gravimetric(counted_nl, measured_nl, factor_ppm, area_nominal):
    """(new factor ppm or 0 if out of range, error before, error after), errors in 0.01 %.

    `factor_ppm` is the factor the counting used; `area_nominal` the syringe
    table's area (0.01 mm^2). The error after is what the same steps count as
    with the new factor, which differs only by the area's integer rounding.
    """
    counted = max(1, counted_nl)
    factor = factor_ppm * measured_nl // counted
    before = (measured_nl - counted) * 10_000 // counted
    if not M.DOSE_FACTOR_MIN_PPM <= factor <= M.DOSE_FACTOR_MAX_PPM:
        return 0, before, before
    area_old = area_nominal * factor_ppm // M.DOSE_FACTOR_ONE_PPM
    area_new = area_nominal * factor // M.DOSE_FACTOR_ONE_PPM
    after_nl = max(1, counted * area_new // max(1, area_old))
    return factor, before, (measured_nl - after_nl) * 10_000 // after_nl
