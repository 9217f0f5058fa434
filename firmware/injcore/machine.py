"""The reference machine: every figure of the hardware lives here, once.

A builder with other parts edits this file, not the control core. Units are in
the names: _um micrometres, _nl nanolitres, _steps microsteps, _s per second,
_cmm2 hundredths of a square millimetre, _mn millinewtons.
"""

from .compat import const

TICK_US = const(1000)  # the control loop runs at 1 kHz
# A hang is caught within 400 ms (H8 asks 500). The main loop blocks at most
# ~25 ms (a display write); flash writes happen only while idle and are short.
WDT_TIMEOUT_MS = const(400)

# Needle axis (depth): 2 mm lead, 200 full steps/rev, 1/16 microstepping.
NEEDLE_STEPS_PER_MM = const(1600)  # 0.625 um per microstep
NEEDLE_STEPS_PER_FULL_STEP = const(16)
# At the home switch the needle tip sits this far behind the nozzle face on the skin.
NEEDLE_HOME_OFFSET_UM = const(1000)
NEEDLE_TRAVEL_UM = const(9000)  # mechanical travel from home to the hard stop
NEEDLE_MAX_SPEED_UM_S = const(80_000)  # retraction runs at this speed
NEEDLE_ACCEL_UM_S2 = const(5_000_000)
NEEDLE_HOME_FAST_UM_S = const(5000)
NEEDLE_HOME_SLOW_UM_S = const(500)
NEEDLE_HOME_BACKOFF_UM = const(1000)
# Nappage: between shots the needle waits this far behind the skin, not at home
# (an engineer limit, settings.Limits.hover_clearance_um; this is its default).
# 250 um is what the needle needs to reach 50 mm/s at its acceleration.
NEEDLE_HOVER_CLEARANCE_UM = const(250)

# Plunger axis (dose): 1 mm lead, 200 full steps/rev, 1/16 microstepping.
PLUNGER_STEPS_PER_MM = const(3200)
PLUNGER_STEPS_PER_FULL_STEP = const(16)
PLUNGER_TRAVEL_UM = const(66_000)  # rear switch to front limit switch
PLUNGER_MAX_SPEED_UM_S = const(10_000)
# The nut, the pusher and the syringe's plunger are light: 10 m/s^2 asks 0.07 N m of the
# motor (rotor and screw about 1e-6 kg m^2, 1 mm lead); the line, not inertia, shapes the flow.
PLUNGER_ACCEL_UM_S2 = const(10_000_000)
PLUNGER_HOME_FAST_UM_S = const(5000)
PLUNGER_HOME_SLOW_UM_S = const(500)
PLUNGER_HOME_BACKOFF_UM = const(1000)
PLUNGER_BACKLASH_UM = const(20)  # taken up on every reversal before fluid moves
# The take-up crosses the backlash without a ramp (the nut carries no load), so
# at a speed a stepper starts at without losing steps: 2.5 mm/s, 500 full steps/s.
PLUNGER_TAKEUP_SPEED_UM_S = const(2500)
# The longest line time constant (stopper compliance x needle resistance) an
# engineer may set (Core.set_line_tau); until then pressure advance plans with
# the reference line's estimate for the syringe (line_tau_us below).
LINE_TAU_MAX_US = const(60_000_000)
LINE_TAU_ESTIMATE = const(-1)  # stored and set for "not measured: the estimate"
# Backlash measurement (Core.start_backlash): a 50 um push engages the nut
# forward (about 0.9 uL out of a 1 mL syringe, into the cup), the line settles,
# then a slow 300 um back-off; a force drop of BACKLASH_DETECT_MN marks the
# pusher leaving the syringe's plunger. At 100 um/s the load cell's 12.5 ms
# sample period adds at most 1.3 um. The push runs at the plunger's top speed:
# a step of volume into the line, which squeezes the stopper by most of the
# 50 um (1 to 2 N with STOPPER_STIFFNESS_N_MM, whatever the barrel), and the
# force then falls with the line's time constant while it settles: the service
# screen reads tau from that fall (linefit.py). Pushed at the probe's speed,
# the force would be the flow's alone (a few tens of mN into a 1 mL syringe),
# below the stopper's friction and within the load cell's noise.
BACKLASH_PRELOAD_UM = const(50)
BACKLASH_PRELOAD_SPEED_UM_S = PLUNGER_MAX_SPEED_UM_S
BACKLASH_PROBE_UM = const(300)
BACKLASH_PROBE_SPEED_UM_S = const(100)
BACKLASH_SETTLE_MS = const(400)
BACKLASH_DETECT_MN = const(150)
BACKLASH_MAX_UM = const(200)
PRIME_RATE_NL_S = const(10_000)  # prime pushes slowly to purge air
# The load cell (board/hx711.py): the HX711 converts at 80 Hz (RATE high), so a
# new force every 12.5 ms; its readings scatter by about 20 mN (rms) from one
# sample to the next on the reference cell, what a force change must clear.
LOAD_CELL_HZ = const(80)
LOAD_CELL_NOISE_MN = const(20)

# Homing gives up after the full travel plus this margin (hazard H12).
HOME_MARGIN_UM = const(2000)

# The line between the plunger and the skin: the syringe, the needle and the drug
# (docs/line-model.md has the figures' sources). A push first squeezes the line's
# compliance C, then leaves through the needle's resistance R: a first-order lag,
# time constant R x C (line_tau_us). Compliance is in nL per kPa (= uL per MPa).
# The rubber stopper gives under the line pressure like a spring: A^2 / k for a
# barrel area A and an axial stiffness k; the hub, the barrel wall and the liquid
# add a little. Both figures are ESTIMATES: k puts a 50 mL syringe at 10 uL/kPa,
# inside the 9-21 uL/kPa measured on syringe-pump set-ups; a syringe's measured
# compliance replaces the estimate in its SYRINGES row.
STOPPER_STIFFNESS_N_MM = const(30)
LINE_COMPLIANCE_NL_KPA = const(5)


def compliance_nl_kpa(area_cmm2):
    """The line's compliance with a barrel of area_cmm2, nL per kPa: A^2 / k plus the rest."""
    k = STOPPER_STIFFNESS_N_MM * 10_000  # area_cmm2^2 / 10^4 is mm^4; mm^4 / (N/mm) is nL/kPa
    return (area_cmm2 * area_cmm2 + k // 2) // k + LINE_COMPLIANCE_NL_KPA


# Syringe models, keyed by the model id that the settings (syringe_model), the
# treatment log and stored records carry. The first ids equal the sizes in mL
# they were keyed by before there were models, so old records stay valid; a
# new model takes an unused id up to 31 (the log keeps 5 bits); 0 is
# CUSTOM_SYRINGE. Each entry, read by the SYR_* indexes: name (what the menu
# and reports show, at most 8 characters), nominal size uL, inner
# cross-section 0.01 mm^2, capacity nL, dead space nL, the line's compliance
# nL/kPa (compliance_nl_kpa's estimate from the area until the model's own is
# measured). BD Plastipak figures; the 3 mL dead space is not in the reference
# table and is taken as the 5 mL one. New columns go at the end: the indexes stay.
SYR_NAME = const(0)
SYR_NOMINAL_UL = const(1)
SYR_AREA_CMM2 = const(2)
SYR_CAPACITY_NL = const(3)
SYR_DEAD_NL = const(4)
SYR_COMPLIANCE_NL_KPA = const(5)
SYRINGES = {
    1: ("1 mL", 1000, 1734, 1_000_000, 70_000, compliance_nl_kpa(1734)),
    3: ("3 mL", 3000, 5789, 3_000_000, 75_000, compliance_nl_kpa(5789)),
    5: ("5 mL", 5000, 11290, 5_000_000, 75_000, compliance_nl_kpa(11290)),
    10: ("10 mL", 10_000, 16350, 10_000_000, 100_000, compliance_nl_kpa(16350)),
}
# Gravimetric calibration: what a syringe really delivers per counted volume,
# in ppm. Beyond +-20 % the syringe or the scale is wrong, not the table.
DOSE_FACTOR_ONE_PPM = const(1_000_000)
DOSE_FACTOR_MIN_PPM = const(800_000)
DOSE_FACTOR_MAX_PPM = const(1_200_000)
WATER_MG_PER_ML = const(998)  # at 20 C: the default density for a gravimetric calibration
CUSTOM_SYRINGE = const(0)  # the syringe model id of a custom inner diameter
CUSTOM_ID_MIN_UM = const(2000)
CUSTOM_ID_MAX_UM = const(30000)
CUSTOM_CAPACITY_NL = const(1_000_000)  # what a custom syringe is assumed to hold
CUSTOM_DEAD_NL = const(100_000)

# Engineer limits (defaults; the service menu may lower them).
NEEDLE_LENGTH_UM = const(4000)  # usable needle length: depth never exceeds it
NEEDLE_LENGTH_MAX_UM = const(6000)

# Needles: nominal inner diameter by gauge, um, regular wall (a thin-wall needle of
# the same gauge is wider; its maker states the bore). The needle's bore sets the
# line's resistance (needle_r_pa_s_ml); docs/line-model.md has the sources.
NEEDLE_ID_UM = {27: 210, 28: 184, 29: 184, 30: 159, 31: 133, 32: 108}
# The reference line the simulator and the figures assume: the usual mesotherapy
# needle (machine.md: 27-30 G of 3-6 mm), 30 G and 4 mm long (the usable length
# NEEDLE_LENGTH_UM allows), water. A 32 G line is 4.7 times slower (docs/line-model.md).
REF_NEEDLE_GAUGE = const(30)
REF_NEEDLE_LENGTH_UM = const(4000)
WATER_UPA_S = const(1002)  # viscosity at 20 C, micropascal seconds (1.002 mPa s)
# Non-cross-linked hyaluronic acid, as it flows through a fine needle: an ESTIMATE
# (it thins under shear: Pa s at rest, tens of mPa s at the bore's shear rates).
HYALURONIC_UPA_S = const(50_000)
REF_VISCOSITY_UPA_S = WATER_UPA_S

# Safety defaults (engineer limits, settings.Limits) and monitor figures
SESSION_CAP_NL = const(5_000_000)  # 5 mL a session unless the engineer says otherwise
# 400 kPa: 100 uL/s of water needs about 26 kPa through the reference 30 G x 4 mm
# needle, 120 kPa through a 32 G x 4 mm one and 390 kPa through a 32 G x 13 mm one
# (needle_r_pa_s_ml); a viscous drug needs a lower rate (docs/line-model.md).
OCCLUSION_KPA = const(400)
OCCLUSION_FRICTION_MN = const(500)  # stopper friction allowed on top of the pressure
RELIEF_MAX_UM = const(1000)  # plunger back-off after an occlusion, at most
RELIEF_SPEED_UM_S = const(2000)
LOST_STEPS_TOL = const(16)  # microsteps: one full step on either axis (H5)
HOME_STUCK_UM = const(500)  # a home switch closed this far from home contradicts the position
SWITCH_RELEASE_UM = const(200)  # a home switch still closed this far into the back-off is stuck
# Near-empty (H7): warn when fewer than NEAR_EMPTY_DOSES doses are left and less
# than NEAR_EMPTY_PERCENT of what the syringe gives, and always once the next dose
# is the last one (a dose that is a fifth of the syringe would warn from the start).
NEAR_EMPTY_DOSES = const(5)
NEAR_EMPTY_PERCENT = const(20)

# Microsteps per tick never exceed this: 256 kHz per axis (sizes the PIO word tables).
MAX_STEPS_PER_TICK = const(256)


def near_empty_steps(shot_steps, usable_steps):
    """Fewer fluid steps left than this: the near-empty warning (H7)."""
    warn = min(NEAR_EMPTY_DOSES * shot_steps, usable_steps * NEAR_EMPTY_PERCENT // 100)
    return max(warn, 2 * shot_steps)


def um_to_needle_steps(um):
    return um * NEEDLE_STEPS_PER_MM // 1000


def um_to_plunger_steps(um):
    return um * PLUNGER_STEPS_PER_MM // 1000


def area_cmm2_from_diameter(inner_diameter_um):
    """Cross-section of a custom barrel in 0.01 mm^2, integer maths (pi/4 to 9 digits)."""
    return (inner_diameter_um * inner_diameter_um * 785_398_163 + 5 * 10**12) // 10**13


def plunger_steps_for_nl(volume_nl, area_cmm2):
    """Microsteps that displace volume_nl, to the nearest step (outside the tick)."""
    num = volume_nl * PLUNGER_STEPS_PER_MM
    den = 10 * area_cmm2  # area in mm^2 x 1000 nL/uL ... = area_cmm2 * 10
    return (num + den // 2) // den


def nl_for_plunger_steps(steps, area_cmm2):
    """Volume in nL displaced by `steps` microsteps, to the nearest nL."""
    num = steps * 10 * area_cmm2
    return (num + PLUNGER_STEPS_PER_MM // 2) // PLUNGER_STEPS_PER_MM


def needle_r_pa_s_ml(gauge, length_um, viscosity_upa_s):
    """Flow resistance of a needle's bore, Pa per mL/s: Hagen-Poiseuille, 128 mu L / (pi d^4).

    Integer maths with pi as 355/113; outside the tick (the products pass 2^30:
    long integers on the device). 30 G x 4 mm with water: about 256,000.
    """
    d = NEEDLE_ID_UM[gauge]
    den = 355 * d * d * d * d
    return (128 * 113 * 1_000_000 * viscosity_upa_s * length_um + den // 2) // den


def line_tau_us(
    compliance_nl_kpa,
    gauge=REF_NEEDLE_GAUGE,
    length_um=REF_NEEDLE_LENGTH_UM,
    viscosity_upa_s=REF_VISCOSITY_UPA_S,
):
    """The line's time constant R x C in us, for a compliance (SYRINGES' column) and a needle.

    Pa s/mL times nL/kPa is ns. The 1 mL syringe on the reference line: about 18 ms.
    """
    r = needle_r_pa_s_ml(gauge, length_um, viscosity_upa_s)
    return (r * compliance_nl_kpa + 500) // 1000


def syringe_compliance_nl_kpa(model, area_cmm2):
    """The compliance of syringe `model` (SYRINGES' column), or of a custom barrel's area."""
    e = SYRINGES.get(model)
    return e[SYR_COMPLIANCE_NL_KPA] if e else compliance_nl_kpa(area_cmm2)
