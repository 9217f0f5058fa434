"""`injector calibrate`: the host side of the gravimetric dose calibration.

    injector calibrate --counted-ul X --mass-mg M [--density MG_PER_ML]
                       [--port PORT | --dir DIR] [--apply]

The operator fires doses into a cup; the device counted X uL, the scale says
M mg. The computation is the firmware's (injcore.calib.gravimetric, the same
as the device's menu), with the dose factor and syringe area of the stored
record (injcore.store: calibration.dose_factor_ppm; settings.syringe_model /
syringe_id_um through Settings.syringe()). --apply stores the new factor the
way `injector settings push` does (validated, then Store.save on the folder or
on the device itself). Without --port/--dir the firmware's defaults are used
(factor 1.000000, 1 mL syringe) and nothing can be applied.

Exit codes: 0 done; 2 an error, a factor out of range, or a refused write.
"""

import argparse
import sys
from decimal import Decimal, InvalidOperation

from host_tools import settings_tool as T
from host_tools.cliutil import clip
from injcore import calib  # noqa: E402  (settings_tool put firmware/ on sys.path)
from injcore import machine as M  # noqa: E402
from injcore import store as S  # noqa: E402
from injcore.settings import Settings  # noqa: E402

# What a weighing can sensibly be: ten doses of the largest syringe (10 mL) fit well
# inside; anything bigger is a typo (and would overflow the arithmetic further on).
COUNTED_UL_MAX = 100_000
MASS_MG_MAX = 100_000


def _decimal(scale, what, most, unit):
    """argparse type: a decimal number in (0, most] -> int in units of 1/scale, rounded
    half up; at least one unit."""

    def parse(text):
        try:
            d = Decimal(text)
        except InvalidOperation:
            raise argparse.ArgumentTypeError(
                "%s must be a number, not %r" % (what, clip(text))
            ) from None
        if not d.is_finite() or d <= 0:
            raise argparse.ArgumentTypeError("%s must be more than 0, not %s" % (what, clip(text)))
        if d > most:
            raise argparse.ArgumentTypeError(
                "%s is too large; at most %d %s" % (clip(text, 12), most, unit)
            )
        units = int((d * scale).to_integral_value(rounding="ROUND_HALF_UP"))
        if units < 1:
            raise argparse.ArgumentTypeError(
                "%s is below the resolution of %s %s" % (clip(text, 12), 1 / scale, unit)
            )
        return units

    return parse


def _density(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "the density is an integer in mg/mL, not %r" % clip(text)
        ) from None
    if not 100 <= v <= 5000:
        raise argparse.ArgumentTypeError(
            "a density of %s mg/mL is not plausible (100..5000)" % clip(text, 12)
        )
    return v


def add_parser(sub):
    p = sub.add_parser(
        "calibrate",
        help="gravimetric dose calibration: a new dose factor from a weighed volume",
        description="The new dose factor from the volume the device counted and the mass a "
        "scale weighed (injcore.calib.gravimetric, as on the device), using the "
        "stored dose factor and syringe of --port/--dir (the defaults without). "
        "--apply stores it (calibration.dose_factor_ppm) like `injector settings "
        "push`. Exit 0, 2 on an error or a factor out of range (%d..%d ppm). %s"
        % (M.DOSE_FACTOR_MIN_PPM, M.DOSE_FACTOR_MAX_PPM, T.PORT_NOTE),
    )
    p.add_argument(
        "--counted-ul",
        type=_decimal(1000, "--counted-ul", COUNTED_UL_MAX, "uL"),
        required=True,
        metavar="X",
        help="the volume the device counted, uL (e.g. 200 or 199.5)",
    )
    p.add_argument(
        "--mass-mg",
        type=_decimal(10, "--mass-mg", MASS_MG_MAX, "mg"),
        required=True,
        metavar="M",
        help="the mass the scale weighed, mg (0.1 mg resolution)",
    )
    p.add_argument(
        "--density",
        type=_density,
        default=M.WATER_MG_PER_ML,
        metavar="MG_PER_ML",
        help="the liquid's density, mg/mL (default %d: water at 20 C)" % M.WATER_MG_PER_ML,
    )
    T.add_source_args(p, required=False)
    p.add_argument(
        "--apply",
        action="store_true",
        help="store the new factor on --port/--dir (validated first)",
    )
    p.add_argument(
        "--onto-defaults",
        action="store_true",
        help="with --apply: allow it when there is no valid record (see settings push)",
    )
    p.set_defaults(run=run)


def _ul(nl):
    return ("%.3f" % (nl / 1000)).rstrip("0").rstrip(".")


def _pct(hundredths):
    return "%+.2f %%" % (hundredths / 100)


def compute(payload, counted_nl, mass_dmg, density):
    """(factor_old, area, measured_nl, (factor_new or 0, before, after)) for a stored payload."""
    factor = payload["calibration"]["dose_factor_ppm"]
    area = Settings(**payload["settings"]).syringe()[0]
    measured = calib.weighed_nl(mass_dmg, density)
    return factor, area, measured, calib.gravimetric(counted_nl, measured, factor, area)


def run(args):
    src = T.Source.of(args)
    if args.apply and args.port is None and args.dir is None:
        print(
            "injector calibrate: --apply needs --port PORT or --dir DIR (where to store it)",
            file=sys.stderr,
        )
        return 2
    try:
        code = _run(args, src)
    except BrokenPipeError:  # the reader of stdout went away: cli.main ends quietly
        src.finish()
        raise
    except (T.ToolError, OSError) as e:
        print("injector calibrate: %s" % e, file=sys.stderr)
        code = 2
    if not src.finish():
        code = 2
    return code


def _run(args, src):
    if args.port is None and args.dir is None:
        payload, info = (
            S.defaults(),
            {
                "defaults": True,
                "slot": None,
                "generation": 0,
                "migrated_from": None,
                "problems": {},
            },
        )
        where = "the firmware's defaults (no --port/--dir)"
    else:
        payload, info, _ = src.load()
        where = (
            "%s: no valid record, the defaults" % src.where
            if info["defaults"]
            else "%s: %s.%s, generation %d"
            % (src.where, T.STORE_NAME, info["slot"], info["generation"])
        )
    s = payload["settings"]
    model = s["syringe_model"]
    syringe = (
        "custom, inner diameter %s mm" % _ul(s["syringe_id_um"])
        if model == M.CUSTOM_SYRINGE
        else M.SYRINGES[model][M.SYR_NAME]
    )
    factor, area, measured, (new, before, after) = compute(
        payload, args.counted_ul, args.mass_mg, args.density
    )
    print("record:   %s" % where)
    print("syringe:  %s (area %.2f mm^2)" % (syringe, area / 100))
    print("counted:  %s uL" % _ul(args.counted_ul))
    print(
        "weighed:  %s uL  (%s mg at %d mg/mL)"
        % (_ul(measured), _ul(args.mass_mg * 100), args.density)
    )
    print("error:    %s before" % _pct(before))
    print("factor:   %d ppm now" % factor)
    if not new:
        lo, hi = M.DOSE_FACTOR_MIN_PPM, M.DOSE_FACTOR_MAX_PPM
        print(
            "injector calibrate: the new factor would be %d ppm, out of range (%d..%d ppm): "
            "check the syringe, the scale and the counted volume; nothing changed"
            % (factor * measured // max(1, args.counted_ul), lo, hi),
            file=sys.stderr,
        )
        return 2
    print("new:      %d ppm  (%s after; x%.6f)" % (new, _pct(after), new / 1e6))
    if not args.apply:
        print("not applied (--apply stores it)")
        return 0
    merged = T.merge(payload, {"calibration": {"dose_factor_ppm": new}})
    return T.write_record(src, payload, info, merged, full=False, onto_defaults=args.onto_defaults)
