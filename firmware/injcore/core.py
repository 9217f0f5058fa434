"""The control core: one `tick(now_us)` a millisecond drives the whole machine.

Ports (duck-typed objects handed to Core; the board layer and the simulator
both provide them):
    needle, plunger  .put(words)      the two PIO words of this tick (array 'I')
                     .emitted()       signed steps actually sent to the motor so far
                     .halt()          drop queued words and stop stepping at once
    inputs           .switches()      bitmask of SW_* (1 = closed / pressed / stall flagged)
                     .force_mn()      latest load-cell force, mN; FORCE_INVALID when the
                                      cell is disconnected or saturated
    outputs          .drivers(on)     enable both stepper drivers (EN is active low on the board)
                     .alarm(level)    ALARM_NONE / ALARM_WARNING / ALARM_FAULT (display, buzzer)

The safety monitor (hazards H1-H8, H12) runs inside every tick: see _monitor.
A fault stops step generation (queued words flushed), disables the drivers
and latches until the operator acknowledges; then homing is needed again.

The board runs the tick from a 1 kHz timer and keeps the PIO FIFOs
pio_word.LEAD_TICKS..FIFO_TICKS ticks ahead of the motors, so the core's
`pos` runs ahead of the motor; `emitted()` says where the motor really is.
It counts late or starved ticks into `core.overruns` and passes the reset
cause to the constructor.

Everything the operator does that is not the trigger (homing, loading,
settings) arrives through methods called from the main loop, never from the
tick. The tick allocates nothing: no objects, floats, strings or exceptions.
"""

from array import array

from . import machine as M
from .axis import BACKWARD, FORWARD, IDLE, Axis
from .compat import const
from .planner import Plan
from .settings import MODE_CONTINUOUS, MODE_PRIME, MODE_SINGLE, Limits, Settings, SettingsError

# Input bits
SW_NEEDLE_HOME = const(1)
SW_PLUNGER_REAR = const(2)
SW_PLUNGER_FRONT = const(4)
SW_SYRINGE = const(8)
SW_TRIGGER = const(16)
SW_PEDAL = const(32)
SW_ESTOP = const(64)
SW_NEEDLE_STALL = const(128)  # TMC2209 DIAG: stall or driver error
SW_PLUNGER_STALL = const(256)
_STALLS = const(384)

FORCE_INVALID = const(-0x20000000)  # force_mn() of a disconnected or saturated load cell

# Alarm levels for outputs.alarm()
ALARM_NONE = const(0)
ALARM_WARNING = const(1)
ALARM_FAULT = const(2)

# Warnings: shown without stopping anything
W_NONE = const(0)
W_NEAR_EMPTY = const(1)
WARNING_NAMES = ("", "syringe nearly empty")
_FIRE = const(48)  # SW_TRIGGER | SW_PEDAL: either fires

# States
ST_UNHOMED = const(0)
ST_HOMING = const(1)
ST_READY = const(2)
ST_ADVANCE = const(3)
ST_INJECT = const(4)
ST_SUCKBACK = const(5)
ST_RETRACT = const(6)
ST_WAIT = const(7)
ST_PRIME = const(8)
ST_LOAD = const(9)
ST_FAULT = const(10)
ST_RELIEF = const(11)  # after a fault: plunger backs off, needle withdraws, then ST_FAULT
ST_MEASURE = const(12)  # plunger backlash measurement (service menu)
# Nothing is moving or about to move: settings, limits and calibration change only here.
IDLE_STATES = (ST_UNHOMED, ST_READY, ST_FAULT)
STATE_NAMES = ("unhomed", "homing", "ready", "advance", "inject", "suck-back",
               "retract", "wait", "prime", "load", "fault", "relieving", "measuring")

# Backlash measurement: engage the nut forward, let the line settle, then back
# off slowly; the pusher leaves the syringe's plunger once the backlash is
# taken up, and the load cell sees the stopper's friction and the suction turn
# the force negative.
_BL_PRELOAD = const(0)
_BL_SETTLE = const(1)
_BL_PROBE = const(2)
_BL_STOPPING = const(3)

# Homing steps, shared by homing (both axes) and loading (plunger only)
_H_NEEDLE_SEEK = const(0)
_H_NEEDLE_BACKOFF = const(1)
_H_NEEDLE_APPROACH = const(2)
_H_PLUNGER_SEEK = const(3)
_H_PLUNGER_BACKOFF = const(4)
_H_PLUNGER_APPROACH = const(5)
_H_PLUNGER_SETTLE = const(6)
_H_DONE = const(7)
_H_NEEDLE_SETTLE = const(8)
# Homing overshoot past the switch that a settle move corrects: the
# deceleration plus the up to FIFO_TICKS ticks of approach already queued.
_SETTLE_MAX_STEPS = const(24)

# Faults (safety monitor: issue 4 extends this list)
F_NONE = const(0)
F_ESTOP = const(1)
F_NEEDLE_HOME_NOT_FOUND = const(2)
F_PLUNGER_HOME_NOT_FOUND = const(3)
F_PLUNGER_FRONT_LIMIT = const(4)
F_NEEDLE_SOFT_LIMIT = const(5)
F_OCCLUSION = const(6)
F_LOAD_CELL = const(7)
F_NEEDLE_LOST_STEPS = const(8)
F_PLUNGER_LOST_STEPS = const(9)
F_NEEDLE_STALL = const(10)
F_PLUNGER_STALL = const(11)
F_NEEDLE_HOME_STUCK = const(12)
F_PLUNGER_REAR_STUCK = const(13)
F_TICK_OVERRUN = const(14)
F_SYRINGE_REMOVED = const(15)
FAULT_NAMES = ("none", "emergency stop", "needle home switch not found",
               "plunger rear switch not found", "plunger front limit reached",
               "needle past its soft limit", "occlusion: pressure too high",
               "load cell disconnected or saturated", "needle lost steps",
               "plunger lost steps", "needle driver stalled", "plunger driver stalled",
               "needle home switch stuck closed", "plunger rear switch stuck closed",
               "control loop overrun", "syringe removed during a shot")
# What the operator should do, per fault (the display shows it with the name)
FAULT_ACTIONS = ("", "release the stop, then OK", "check the needle axis, then OK",
                 "check the plunger axis, then OK", "check the syringe, then OK",
                 "check depth settings, then OK", "check needle and line, then OK",
                 "check the load cell, then OK", "check the needle axis, then OK",
                 "check the plunger axis, then OK", "check the needle axis, then OK",
                 "check the plunger axis, then OK", "check the home switch, then OK",
                 "check the rear switch, then OK", "OK; report if it repeats",
                 "reseat the syringe, then OK")

# Automatic moves after a fault (only those that are safe for the fault)
_REC_NONE = const(0)
_REC_RELIEF = const(1)  # plunger backs off until the pressure is down, then the needle withdraws
_REC_NEEDLE = const(2)  # the needle withdraws; the plunger stays

# Ticks of steps that may be queued between the core and the motor (FIFO + the word running)
_WINDOW = const(5)

# Notices: why the trigger did nothing (shown by the UI, cleared by the next action)
N_NONE = const(0)
N_NOT_HOMED = const(1)
N_NO_SYRINGE = const(2)
N_NOT_PRIMED = const(3)
N_SYRINGE_LOW = const(4)
N_BUSY = const(5)
N_WATCHDOG_RESET = const(6)
N_SESSION_CAP = const(7)
N_BACKLASH_FAILED = const(8)
N_UNCONFIRMED = const(9)
N_ZONE_CAP = const(10)
NOTICE_NAMES = ("", "home first", "no syringe", "prime first", "not enough left for a dose", "busy",
                "restarted by the watchdog: home first", "session volume cap reached",
                "backlash not found: check the syringe",
                "stored settings lost: defaults; an engineer must confirm them",
                "zone volume cap reached: go to the next zone")

# Why the controller (re)started, as the board reads it
RC_POWER_ON = const(0)
RC_WATCHDOG = const(1)
RC_SOFT = const(2)  # soft reset (Ctrl-D, machine.soft_reset)
RC_HARD = const(3)  # reset pin / machine.reset()
RESET_NAMES = ("power-on", "watchdog", "soft reset", "hard reset")

# Puncture record fields (array `last_puncture`)
P_NUMBER = const(0)
P_DEPTH_STEPS = const(1)  # deepest needle position reached, microsteps from home
P_DOSE_STEPS = const(2)  # net plunger fluid steps over the puncture
P_TICKS = const(3)  # duration
P_MODE = const(4)


class _PlanSet:
    """The moves of one puncture cycle for one set of settings."""

    def __init__(self):
        self.needle_in = Plan("needle in")
        self.needle_out = Plan("needle out")
        # Inject pushes dose + suck-back and suck-back draws suck-back back, so
        # every puncture nets exactly the dose whatever came before it.
        self.inject_fwd = Plan("inject")  # plunger last moved forward
        self.inject_rev = Plan("inject after reversal")  # + backlash take-up
        self.suckback = Plan("suck-back")  # + backlash take-up
        self.depth_steps = 0
        self.dose_steps = 0
        self.sb_steps = 0
        self.cycle_ticks = 0
        self.period_ticks = 0


class Core:
    def __init__(self, needle_port, plunger_port, inputs, outputs, settings=None, limits=None,
                 reset_cause=RC_POWER_ON):
        self.inputs = inputs
        self.outputs = outputs
        self.needle = Axis("needle", needle_port)
        self.plunger = Axis("plunger", plunger_port)
        self.limits = limits or Limits()
        self.limits.check()
        self.settings = Settings()
        self.dose_factor_ppm = M.DOSE_FACTOR_ONE_PPM  # gravimetric calibration (set_calibration)
        self.protocol_cap_nl = 0  # a protocol's session cap, below the engineer's; 0: none
        self.backlash_steps = M.um_to_plunger_steps(M.PLUNGER_BACKLASH_UM)
        self._needle_limit_steps = 0
        self._plans = (_PlanSet(), _PlanSet())
        self._active = 0  # index of the plan set the tick uses
        self._configuring = False
        self._area_cmm2, self._capacity_nl, self._dead_nl = self.settings.syringe()
        self._area_nominal = self._area_cmm2
        self._plan_static()
        self.configure(**(settings.as_dict() if settings else {}))

        self.state = ST_UNHOMED
        self.fault = F_NONE
        self.reset_cause = reset_cause
        self.notice = N_WATCHDOG_RESET if reset_cause == RC_WATCHDOG else N_NONE
        self.warning = W_NONE
        self.alarm = ALARM_NONE
        self.fault_tick = 0  # core.ticks when the latest fault was detected
        self._recovery = _REC_NONE
        self._relief_by_count = False  # the needle withdraws by count, not to its switch
        self._relief_phase = 0
        self._overruns_seen = 0
        # Steps of the last _WINDOW ticks per axis: how far the motor may lag the command.
        self._nring = array("i", [0] * 8)
        self._pring = array("i", [0] * 8)
        self._nwin = 0
        self._pwin = 0
        self.switches = 0
        self.force_mn = 0
        self._fire_prev = True  # a trigger held at boot must be released first (H3)
        self._home_step = _H_DONE
        self._shot_timer = 0
        self._puncture_ticks = 0
        self._puncture_fluid0 = 0
        self._comp_left = 0  # backlash steps still to take up in this plunger move
        self._depth_reached = 0
        self._prime_fluid0 = 0
        self._home_found = False
        self._trip_pos = 0
        self.primed = False
        self.homed = False
        # No valid stored settings at boot: the defaults run, but nothing is
        # injected until an engineer confirms them (H9, service menu).
        self.unconfirmed = False
        self._bl_phase = _BL_PRELOAD
        self._zone_end_steps = -1  # a protocol zone's cap, in session steps; -1: none
        self._bl_timer = 0
        self._bl_f0 = 0
        self._bl_pos0 = 0
        self.backlash_measured_steps = -1  # the last measurement; -1: none, or not found
        # Counters
        self.ticks = 0
        self.overruns = 0  # times the board let the PIO FIFOs run dry (the board counts them)
        self.checked = 0  # tick number of the latest tick whose self-checks ran (watchdog)
        self.needle_emitted = 0  # where the motors are (axis frame), read each tick
        self.plunger_emitted = 0
        self.punctures = 0
        self.fluid_steps = 0  # plunger face position, microsteps from the rear switch
        self.delivered_steps = 0  # net fluid steps pushed in punctures this session
        self.primed_steps = 0
        self.last_puncture = array("i", [0, 0, 0, 0, 0])
        self.outputs.drivers(False)

    # ---- planning (main loop; may allocate) --------------------------------

    def _plan_static(self):
        """Moves that depend only on the machine: homing and priming."""
        ns = M.NEEDLE_STEPS_PER_MM
        ps = M.PLUNGER_STEPS_PER_MM
        na = M.um_to_needle_steps(M.NEEDLE_ACCEL_UM_S2)
        pa = M.um_to_plunger_steps(M.PLUNGER_ACCEL_UM_S2)
        nb = M.um_to_needle_steps(M.NEEDLE_HOME_BACKOFF_UM)
        pb = M.um_to_plunger_steps(M.PLUNGER_HOME_BACKOFF_UM)
        self.plan_needle_seek = Plan("needle seek").set(
            M.um_to_needle_steps(M.NEEDLE_TRAVEL_UM + M.HOME_MARGIN_UM),
            M.NEEDLE_HOME_FAST_UM_S * ns // 1000, na)
        self.plan_needle_backoff = Plan("needle back-off").set(nb, M.NEEDLE_HOME_FAST_UM_S * ns // 1000, na)
        self.plan_needle_approach = Plan("needle approach").set(2 * nb, M.NEEDLE_HOME_SLOW_UM_S * ns // 1000, na)
        self.plan_plunger_seek = Plan("plunger seek").set(
            M.um_to_plunger_steps(M.PLUNGER_TRAVEL_UM + M.HOME_MARGIN_UM),
            M.PLUNGER_HOME_FAST_UM_S * ps // 1000, pa)
        self.plan_plunger_backoff = Plan("plunger back-off").set(pb, M.PLUNGER_HOME_FAST_UM_S * ps // 1000, pa)
        self.plan_plunger_approach = Plan("plunger approach").set(2 * pb, M.PLUNGER_HOME_SLOW_UM_S * ps // 1000, pa)
        self.plan_prime = Plan("prime")
        bs = M.um_to_plunger_steps(M.BACKLASH_PROBE_SPEED_UM_S)
        self.plan_bl_preload = Plan("backlash preload").set(
            M.um_to_plunger_steps(M.BACKLASH_PRELOAD_UM), bs, pa)
        self.plan_bl_probe = Plan("backlash probe").set(
            M.um_to_plunger_steps(M.BACKLASH_PROBE_UM), bs, pa)
        self.plan_relief = Plan("relief").set(M.um_to_plunger_steps(M.RELIEF_MAX_UM),
                                              M.RELIEF_SPEED_UM_S * ps // 1000, pa)
        # Short moves that bring an axis from where homing stopped to exactly zero.
        self.plan_settle = [Plan("settle %d" % d, 2).set(d, M.NEEDLE_HOME_SLOW_UM_S * ns // 1000, na)
                            for d in range(_SETTLE_MAX_STEPS + 1)]
        self._home_stuck_n = M.um_to_needle_steps(M.HOME_STUCK_UM)
        self._release_n = M.um_to_needle_steps(M.SWITCH_RELEASE_UM)
        self._release_p = M.um_to_plunger_steps(M.SWITCH_RELEASE_UM)
        self._home_stuck_p = M.um_to_plunger_steps(M.HOME_STUCK_UM)

    def configure(self, **changes):
        """Apply operator settings; raises SettingsError and keeps the old ones if any is wrong."""
        self._configuring = True  # the tick starts no move while this is set
        try:
            if getattr(self, "state", ST_UNHOMED) not in IDLE_STATES:
                raise SettingsError(["settings change only while the injector is idle"])
            new = self.settings.changed(self.limits, **changes)
            spare = self._plans[1 - self._active]
            self._plan_cycle(new, spare)
            if new.mode == MODE_CONTINUOUS and spare.cycle_ticks > spare.period_ticks:
                best = 1_000_000 // spare.cycle_ticks  # mHz
                raise SettingsError([
                    "shot_rate_mhz: %d is faster than one puncture with this depth, dose and "
                    "speeds takes (%d ms); allowed 500..%d mHz" % (
                        new.shot_rate_mhz, spare.cycle_ticks, best)])
            self.settings = new
            area0 = self._area_cmm2
            self._area_nominal, self._capacity_nl, self._dead_nl = new.syringe()
            self._area_cmm2 = self.dose_area(new)
            if self._area_cmm2 != area0 and getattr(self, "delivered_steps", 0):
                # The session is counted in plunger steps: a syringe of another
                # size must not reopen the cap (H1), so restate them in its steps.
                self.delivered_steps = M.plunger_steps_for_nl(
                    M.nl_for_plunger_steps(self.delivered_steps, area0), self._area_cmm2)
            self.plan_prime.set(M.um_to_plunger_steps(M.PLUNGER_TRAVEL_UM),
                                M.plunger_steps_for_nl(M.PRIME_RATE_NL_S, self._area_cmm2),
                                M.um_to_plunger_steps(M.PLUNGER_ACCEL_UM_S2))
            self._needle_limit_steps = M.um_to_needle_steps(
                M.NEEDLE_HOME_OFFSET_UM + self.limits.needle_length_um)
            self._usable_steps = M.plunger_steps_for_nl(
                self._capacity_nl - self._dead_nl, self._area_cmm2)
            cap_nl = self.limits.session_cap_nl
            if 0 < self.protocol_cap_nl < cap_nl:
                cap_nl = self.protocol_cap_nl  # the smaller of the protocol's and the engineer's
            self._cap_steps = M.plunger_steps_for_nl(cap_nl, self._area_cmm2)
            # Occlusion (H4): the limit pressure on this barrel, plus stopper friction.
            self._occlusion_mn = (self.limits.occlusion_kpa * self._area_nominal // 100
                                  + M.OCCLUSION_FRICTION_MN)
            # Relief backs off below a quarter of it (the hazard asks for half): what
            # stays trapped in the line is then a microlitre or two at most.
            self._relief_mn = self._occlusion_mn // 4
            self._active = 1 - self._active
            if getattr(self, "alarm", None) is not None:  # not while __init__ configures
                self._update_warning()
        finally:
            self._configuring = False

    def set_limits(self, **changes):
        """Apply engineer limits (the service menu); SettingsError keeps the old ones.

        Refused while the current operator settings would exceed the new
        limits (H11): the operator values are lowered first, never silently.
        """
        if self.state not in IDLE_STATES:
            raise SettingsError(["limits change only while the injector is idle"])
        values = {}
        for name in Limits.RANGES:
            values[name] = getattr(self.limits, name)
        problems = []
        for name in changes:
            if name not in values:
                problems.append("%s: no such limit; known: %s" % (name, ", ".join(Limits.RANGES)))
        if problems:
            raise SettingsError(problems)
        values.update(changes)
        new = Limits(**values)
        new.check()
        self.settings.changed(new)  # raises, naming the setting the new limits would exceed
        self._reconfigure("limits", new)

    def _reconfigure(self, name, value):
        """Set attribute `name` and re-plan; if the core refuses, the old value stays."""
        old = getattr(self, name)
        setattr(self, name, value)
        try:
            self.configure()
        except SettingsError:
            setattr(self, name, old)
            raise

    def axes_idle(self):
        """Neither axis has a move under way (the last steps may still be in the FIFOs)."""
        return not self.needle.phase and not self.plunger.phase

    def at_rest(self):
        """Idle and not moving: when the board may write flash (main loop)."""
        return self.state in IDLE_STATES and self.axes_idle()

    def dose_area(self, s):
        """The barrel area volumes are counted with: the table's, times the calibration."""
        return s.syringe()[0] * self.dose_factor_ppm // M.DOSE_FACTOR_ONE_PPM

    def set_protocol_caps(self, session_cap_nl=0, zone_left_nl=-1):
        """A protocol's caps: its session cap (0: none; the engineer's still applies
        when smaller) and what the current zone may still receive (-1: no zone cap)."""
        self._reconfigure("protocol_cap_nl", session_cap_nl)  # the cap in steps; refused while moving
        if zone_left_nl < 0:
            self._zone_end_steps = -1
        else:
            self._zone_end_steps = self.delivered_steps + M.plunger_steps_for_nl(zone_left_nl, self._area_cmm2)

    def set_calibration(self, dose_factor_ppm):
        """Apply a gravimetric dose correction (delivered / counted, in ppm); SettingsError if refused."""
        if self.state not in IDLE_STATES:
            raise SettingsError(["calibration changes only while the injector is idle"])
        lo, hi = M.DOSE_FACTOR_MIN_PPM, M.DOSE_FACTOR_MAX_PPM
        if not isinstance(dose_factor_ppm, int) or not lo <= dose_factor_ppm <= hi:
            raise SettingsError(["dose_factor_ppm: %r is out of range; allowed %d..%d ppm: "
                                 "check the syringe and the scale" % (dose_factor_ppm, lo, hi)])
        self._reconfigure("dose_factor_ppm", dose_factor_ppm)

    def _plan_cycle(self, s, ps):
        area = self.dose_area(s)
        needle_a = M.um_to_needle_steps(M.NEEDLE_ACCEL_UM_S2)
        plunger_a = M.um_to_plunger_steps(M.PLUNGER_ACCEL_UM_S2)
        depth = M.um_to_needle_steps(M.NEEDLE_HOME_OFFSET_UM + s.depth_um)
        dose = M.plunger_steps_for_nl(s.dose_nl, area)
        sb = M.plunger_steps_for_nl(s.suckback_nl, area)
        rate = M.plunger_steps_for_nl(s.rate_nl_s, area)
        rate_max = M.um_to_plunger_steps(M.PLUNGER_MAX_SPEED_UM_S)
        if rate > rate_max:
            raise SettingsError(["rate_nl_s: %d needs the plunger faster than %d um/s with this syringe"
                                 % (s.rate_nl_s, M.PLUNGER_MAX_SPEED_UM_S)])
        ps.depth_steps, ps.dose_steps, ps.sb_steps = depth, dose, sb
        ps.needle_in.set(depth, M.um_to_needle_steps(s.speed_um_s), needle_a)
        ps.needle_out.set(depth, M.um_to_needle_steps(M.NEEDLE_MAX_SPEED_UM_S), needle_a)
        bl = self.backlash_steps
        ps.inject_fwd.set(dose + sb, rate, plunger_a)
        ps.inject_rev.set(dose + sb + bl, rate, plunger_a)
        ps.suckback.set(sb + bl if sb else 0, rate, plunger_a)
        ps.cycle_ticks = (ps.needle_in.ticks + ps.inject_rev.ticks + ps.suckback.ticks
                          + ps.needle_out.ticks)
        ps.period_ticks = s.shot_period_us() // M.TICK_US

    # ---- operator actions (main loop) ---------------------------------------

    def start_homing(self):
        """Home both axes; the only way out of power-up, a reset or a fault (H3)."""
        if self.state not in (ST_UNHOMED, ST_READY):
            return False
        self._begin_homing(plunger_only=False)
        return True

    def start_load(self):
        """Plunger back to its rear switch so the syringe can be changed."""
        if self.state != ST_READY:
            self.notice = N_NOT_HOMED if self.state == ST_UNHOMED else N_BUSY
            return False
        self._begin_homing(plunger_only=True)
        self.state = ST_LOAD
        return True

    def start_backlash(self):
        """Measure the plunger's backlash (homed, primed, into a cup); False if refused."""
        if self.state != ST_READY or not self.homed:
            self.notice = N_NOT_HOMED if not self.homed else N_BUSY
            return False
        if not self.switches & SW_SYRINGE:
            self.notice = N_NO_SYRINGE
            return False
        if not self.primed:
            self.notice = N_NOT_PRIMED
            return False
        self.notice = N_NONE
        self.backlash_measured_steps = -1
        self._bl_phase = _BL_PRELOAD
        self._plunger_start(self.plan_bl_preload, FORWARD)
        self.state = ST_MEASURE
        return True

    def set_backlash(self, steps):
        """Use `steps` of backlash for the compensation (a measurement's result)."""
        if self.state not in IDLE_STATES:
            raise SettingsError(["backlash changes only while the injector is idle"])
        hi = M.um_to_plunger_steps(M.BACKLASH_MAX_UM)
        if not isinstance(steps, int) or not 0 <= steps <= hi:
            raise SettingsError(["backlash_steps: %r is out of range; allowed 0..%d" % (steps, hi)])
        self._reconfigure("backlash_steps", steps)

    def _measure_tick(self, force):
        p = self.plunger
        phase = self._bl_phase
        if phase == _BL_PRELOAD:
            if p.phase == IDLE:
                self._bl_phase = _BL_SETTLE
                self._bl_timer = M.BACKLASH_SETTLE_MS
        elif phase == _BL_SETTLE:
            self._bl_timer -= 1
            if self._bl_timer <= 0:
                self._bl_f0 = force
                self._bl_pos0 = self.plunger_emitted
                self._bl_phase = _BL_PROBE
                self._plunger_start(self.plan_bl_probe, BACKWARD)
        elif phase == _BL_STOPPING:
            if p.phase == IDLE:
                self.state = ST_READY
        elif force < self._bl_f0 - M.BACKLASH_DETECT_MN:
            self.backlash_measured_steps = self._bl_pos0 - self.plunger_emitted  # where the motor is
            p.stop()
            self._bl_phase = _BL_STOPPING
        elif p.phase == IDLE:
            self.notice = N_BACKLASH_FAILED
            self.state = ST_READY

    def acknowledge(self):
        """Clear a latched fault; motion then needs homing again (H3)."""
        if self.state == ST_FAULT:
            self.state = ST_UNHOMED
            self.fault = F_NONE
            self._recovery = _REC_NONE
            self._fire_prev = True  # a held trigger fires nothing until pressed again
            self._set_alarm(ALARM_WARNING if self.warning else ALARM_NONE)
            return True
        return False

    def _update_warning(self):
        """Near-empty (H7): fewer than NEAR_EMPTY_DOSES doses left. Warns, never stops."""
        ps = self._plans[self._active]
        w = W_NONE
        if self.primed and self.plunger_limit_left() < M.NEAR_EMPTY_DOSES * (ps.dose_steps + ps.sb_steps):
            w = W_NEAR_EMPTY
        self.warning = w
        if self.state != ST_FAULT and self.state != ST_RELIEF:
            self._set_alarm(ALARM_WARNING if w else ALARM_NONE)

    def new_session(self):
        self.punctures = 0
        self.delivered_steps = 0
        self.primed_steps = 0

    # ---- derived figures (main loop) ----------------------------------------

    def steps_to_nl(self, steps):
        """Volume of `steps` plunger fluid steps with the syringe in use."""
        return M.nl_for_plunger_steps(steps, self._area_cmm2)

    def delivered_nl(self):
        return self.steps_to_nl(self.delivered_steps)

    def primed_nl(self):
        return self.steps_to_nl(self.primed_steps)

    def volume_left_nl(self):
        """What the syringe still holds, from the plunger position (full at the rear switch)."""
        return max(0, self._capacity_nl - self.steps_to_nl(self.fluid_steps))

    def plans(self):
        return self._plans[self._active]

    # ---- the tick -----------------------------------------------------------

    def tick(self, now_us):
        sw = self.inputs.switches()
        self.switches = sw
        force = self.inputs.force_mn()
        self.force_mn = force
        self.needle_emitted = self.needle.emitted()
        self.plunger_emitted = self.plunger.emitted()
        t = (self.ticks + 1) & 0x3FFFFFFF  # 12 days, then wraps: never a big int
        self.ticks = t
        state = self.state
        if state != ST_FAULT:
            code = self._monitor(sw, force, state)
            if code:
                self._fault(code)
                state = ST_FAULT
        elif self._recovery and not sw & SW_ESTOP:
            self._start_recovery()
            state = self.state

        fire = sw & _FIRE
        pressed = fire and not self._fire_prev
        self._fire_prev = fire

        n = self.needle.tick()
        k = t & 7
        j = (t - _WINDOW) & 7
        self._nwin += n - self._nring[j]
        self._nring[k] = n
        if self.needle.pos > self._needle_limit_steps and self.homed:
            # Never deeper than the needle allows (H2). The commanded position
            # runs ahead of the motor, so the flush stops it short of the limit.
            self._fault(F_NEEDLE_SOFT_LIMIT)
            state = ST_FAULT
        n = self.plunger.tick()  # every tick, so both axes' PIO timelines stay locked
        self._pwin += n - self._pring[j]
        self._pring[k] = n
        if n:
            # Backlash take-up moves the nut, not the syringe plunger.
            c = self._comp_left
            if c:
                if n > c:
                    n -= c
                    c = 0
                else:
                    c -= n
                    n = 0
                self._comp_left = c
            if self.plunger.dirbit:
                self.fluid_steps += n
            else:
                self.fluid_steps -= n

        if state == ST_READY:
            if pressed:
                self._on_press()
        elif state >= ST_ADVANCE and state <= ST_WAIT:
            self._puncture_tick(fire)
        elif state == ST_PRIME:
            self._prime_tick(fire)
        elif state == ST_HOMING or state == ST_LOAD:
            self._homing_tick(sw)
        elif state == ST_RELIEF:
            self._relief_tick(sw, force)
        elif state == ST_MEASURE:
            self._measure_tick(force)
        self.checked = t

    # ---- safety monitor (every tick; no allocation) ---------------------------

    def _monitor(self, sw, force, state):
        """The fault this tick's inputs show, or F_NONE. Cheapest checks first."""
        if sw & SW_ESTOP:
            return F_ESTOP  # H6
        if self.overruns != self._overruns_seen:
            self._overruns_seen = self.overruns
            return F_TICK_OVERRUN  # H8: the motors were starved, timing is suspect
        if state == ST_UNHOMED:
            return F_NONE  # drivers off, nothing commanded
        if state == ST_RELIEF:
            # Backing off after a fault: the fault's own cause may persist (a
            # stall flag, a dead load cell); watch the axis that moves.
            if sw & SW_NEEDLE_STALL:
                return F_NEEDLE_STALL
            d = self.needle.pos - self.needle_emitted
            if d > self._nwin + M.LOST_STEPS_TOL or -d > self._nwin + M.LOST_STEPS_TOL:
                return F_NEEDLE_LOST_STEPS
            return F_NONE
        if force == FORCE_INVALID:
            return F_LOAD_CELL  # H4 needs a working load cell
        if force > self._occlusion_mn:
            return F_OCCLUSION  # H4
        if sw & _STALLS:
            return F_NEEDLE_STALL if sw & SW_NEEDLE_STALL else F_PLUNGER_STALL  # H5
        # H5: the motor may lag the command by the steps still queued, no more.
        d = self.needle.pos - self.needle_emitted
        if d > self._nwin + M.LOST_STEPS_TOL or -d > self._nwin + M.LOST_STEPS_TOL:
            return F_NEEDLE_LOST_STEPS
        d = self.plunger.pos - self.plunger_emitted
        if d > self._pwin + M.LOST_STEPS_TOL or -d > self._pwin + M.LOST_STEPS_TOL:
            return F_PLUNGER_LOST_STEPS
        if self.homed and state != ST_LOAD:
            # Switches that contradict the position (H12, H5)
            if sw & SW_NEEDLE_HOME and self.needle_emitted > self._home_stuck_n:
                return F_NEEDLE_HOME_STUCK
            if sw & SW_PLUNGER_REAR and self.plunger_emitted > self._home_stuck_p:
                return F_PLUNGER_REAR_STUCK
            if sw & SW_PLUNGER_FRONT:
                return F_PLUNGER_FRONT_LIMIT
            if not sw & SW_SYRINGE and (state == ST_PRIME or state == ST_MEASURE
                                        or (state >= ST_ADVANCE and state <= ST_SUCKBACK)):
                return F_SYRINGE_REMOVED  # H7: never a partial dose without an alarm
        return F_NONE

    # ---- sequencer (called from the tick; no allocation) --------------------

    def _fault(self, code):
        """Stop now: flush both axes, drivers off, latch the cause, alarm (H6)."""
        self.needle.halt()
        self.plunger.halt()
        self.outputs.drivers(False)
        # What was flushed never ran: the axes are where the motors are, and
        # the syringe lost none of the plunger steps that were thrown away.
        self.needle.pos = self.needle.emitted()
        e = self.plunger.emitted()
        self.fluid_steps -= self.plunger.pos - e
        self.plunger.pos = e
        for i in range(8):
            self._nring[i] = 0
            self._pring[i] = 0
        self._nwin = self._pwin = 0
        if self._comp_left:
            self._comp_left = 0
        self.fault = code
        self.fault_tick = self.ticks
        was = self.state
        if was >= ST_ADVANCE and was <= ST_RETRACT:
            # A puncture cut short still delivered what the plunger pushed: it
            # counts toward the session (H1) though it makes no puncture record.
            cut = self.fluid_steps - self._puncture_fluid0
            if cut > 0:
                self.delivered_steps += cut
        self.state = ST_FAULT
        self.homed = False
        # After the stop, only moves that make things safer, and only when the
        # axis that makes them is known to work.
        rec = _REC_NONE
        if was != ST_RELIEF and was != ST_UNHOMED and was != ST_HOMING and was != ST_LOAD:
            if code == F_OCCLUSION:
                rec = _REC_RELIEF
            elif (code == F_PLUNGER_LOST_STEPS or code == F_PLUNGER_STALL or code == F_LOAD_CELL
                  or code == F_PLUNGER_FRONT_LIMIT or code == F_SYRINGE_REMOVED
                  or code == F_PLUNGER_REAR_STUCK):
                if self.needle.pos > 0:
                    rec = _REC_NEEDLE
            elif code == F_NEEDLE_HOME_STUCK and self.needle.pos > 0:
                # The needle's steps are sound, only its switch lies: withdraw it
                # by count. Left in, homing's back-off would push it deeper.
                rec = _REC_NEEDLE
        self._relief_by_count = code == F_NEEDLE_HOME_STUCK
        self._recovery = rec
        self._set_alarm(ALARM_FAULT)

    def _set_alarm(self, level):
        if level != self.alarm:
            self.alarm = level
            self.outputs.alarm(level)

    def _start_recovery(self):
        """First tick after a fault that allows it: drivers back on, start backing off."""
        self.outputs.drivers(True)
        if self._recovery == _REC_RELIEF:
            self._plunger_start(self.plan_relief, BACKWARD)
            self._relief_phase = 0
        else:
            self.needle.start(self.plan_needle_seek, BACKWARD)
            self._relief_phase = 1
        self._recovery = _REC_NONE
        self.state = ST_RELIEF

    def _relief_tick(self, sw, force):
        """Plunger back until the pressure is down, then the needle out to home."""
        if self._relief_phase == 0:
            p = self.plunger
            if p.phase != IDLE:
                if force < self._relief_mn:
                    p.stop()
                return
            self.needle.start(self.plan_needle_seek, BACKWARD)
            self._relief_phase = 1
            return
        nd = self.needle
        if nd.phase != IDLE:
            if nd.pos <= 0 or (sw & SW_NEEDLE_HOME and not self._relief_by_count):
                nd.stop()
            return
        if self._nwin or self._pwin:
            return  # the last steps are still queued: drivers off once the motors have made them
        self.outputs.drivers(False)
        self.state = ST_FAULT  # latched: the operator acknowledges

    def _plunger_start(self, plan, direction):
        p = self.plunger
        self._comp_left = self.backlash_steps if p.last_dir != direction else 0
        p.start(plan, direction)

    def _can_fire(self):
        if self._configuring:
            self.notice = N_BUSY
            return False
        if self.unconfirmed:
            self.notice = N_UNCONFIRMED
            return False
        sw = self.switches
        if not sw & SW_SYRINGE:
            self.notice = N_NO_SYRINGE
            return False
        if not self.primed:
            self.notice = N_NOT_PRIMED
            return False
        ps = self._plans[self._active]
        if self.plunger_limit_left() < ps.dose_steps + ps.sb_steps:
            self.notice = N_SYRINGE_LOW  # H7: no shot the syringe cannot finish
            return False
        # Dose plus suck-back: a puncture cut before its suck-back leaves both in.
        if self._zone_end_steps >= 0 and self.delivered_steps + ps.dose_steps + ps.sb_steps > self._zone_end_steps:
            self.notice = N_ZONE_CAP  # a protocol zone never passes its own cap
            return False
        if self.delivered_steps + ps.dose_steps + ps.sb_steps > self._cap_steps:
            self.notice = N_SESSION_CAP  # H1: the session never passes the engineer's cap
            return False
        self.notice = N_NONE
        return True

    def plunger_limit_left(self):
        """Fluid steps the syringe can still give before its dead space (kept current by configure)."""
        return self._usable_steps - self.fluid_steps

    def _on_press(self):
        mode = self.settings.mode
        if mode == MODE_PRIME:
            if self.unconfirmed:
                self.notice = N_UNCONFIRMED
                return
            if not self.switches & SW_SYRINGE:
                self.notice = N_NO_SYRINGE
                return
            self.notice = N_NONE
            self._prime_fluid0 = self.fluid_steps
            self._plunger_start(self.plan_prime, FORWARD)
            self.state = ST_PRIME
        elif self._can_fire():
            self._start_puncture()

    def _start_puncture(self):
        ps = self._plans[self._active]
        self._shot_timer = ps.period_ticks
        self._puncture_ticks = 0
        self._puncture_fluid0 = self.fluid_steps
        self._depth_reached = 0
        self.needle.start(ps.needle_in, FORWARD)
        self.state = ST_ADVANCE

    def _puncture_tick(self, fire):
        state = self.state
        self._shot_timer -= 1
        if state == ST_WAIT:
            if not fire:
                self.state = ST_READY
            elif self._shot_timer <= 0:
                if self._can_fire():
                    self._start_puncture()
                else:
                    self.state = ST_READY
            return
        self._puncture_ticks += 1
        if state == ST_ADVANCE:
            if self.needle.phase == IDLE:
                ps = self._plans[self._active]
                self._depth_reached = self.needle.pos
                self._plunger_start(ps.inject_fwd if self.plunger.last_dir == FORWARD
                                    else ps.inject_rev, FORWARD)
                self.state = ST_INJECT
        elif state == ST_INJECT:
            if self.plunger.phase == IDLE:
                ps = self._plans[self._active]
                if ps.sb_steps:
                    self._plunger_start(ps.suckback, BACKWARD)
                    self.state = ST_SUCKBACK
                else:
                    self.needle.start(ps.needle_out, BACKWARD)
                    self.state = ST_RETRACT
        elif state == ST_SUCKBACK:
            if self.plunger.phase == IDLE:
                self.needle.start(self._plans[self._active].needle_out, BACKWARD)
                self.state = ST_RETRACT
        elif state == ST_RETRACT:
            if self.needle.phase == IDLE:
                self._end_puncture(fire)

    def _end_puncture(self, fire):
        rec = self.last_puncture
        self.punctures += 1
        dose = self.fluid_steps - self._puncture_fluid0
        self.delivered_steps += dose
        rec[P_NUMBER] = self.punctures
        rec[P_DEPTH_STEPS] = self._depth_reached
        rec[P_DOSE_STEPS] = dose
        rec[P_TICKS] = self._puncture_ticks
        rec[P_MODE] = self.settings.mode
        self._update_warning()
        if self.settings.mode == MODE_CONTINUOUS and fire:
            self.state = ST_WAIT
        else:
            self.state = ST_READY

    def _prime_tick(self, fire):
        p = self.plunger
        if p.phase == IDLE:
            self.primed_steps += self.fluid_steps - self._prime_fluid0
            self.primed = True
            self._update_warning()
            self.state = ST_READY
            return
        if not fire or self.fluid_steps >= self._usable_steps:
            p.stop()

    def _settle(self, ax):
        """Start the pre-planned move from where the axis stopped to zero; False on a fault."""
        off = ax.pos
        if off > _SETTLE_MAX_STEPS or off < -_SETTLE_MAX_STEPS:
            self._fault(F_NEEDLE_HOME_NOT_FOUND if ax is self.needle else F_PLUNGER_HOME_NOT_FOUND)
            return False
        if off < 0:
            ax.start(self.plan_settle[-off], FORWARD)
        else:
            ax.start(self.plan_settle[off], BACKWARD)
        return True

    def _begin_homing(self, plunger_only):
        self.outputs.drivers(True)
        self.notice = N_NONE
        self._home_found = False
        if plunger_only:
            self._home_step = _H_PLUNGER_SEEK
            self._plunger_start(self.plan_plunger_seek, BACKWARD)
        else:
            self.homed = False
            self._home_step = _H_NEEDLE_SEEK
            self.needle.start(self.plan_needle_seek, BACKWARD)
        self.state = ST_HOMING

    def _homing_tick(self, sw):
        step = self._home_step
        needle_step = step <= _H_NEEDLE_APPROACH
        ax = self.needle if needle_step else self.plunger
        seeking = step == _H_NEEDLE_SEEK or step == _H_NEEDLE_APPROACH \
            or step == _H_PLUNGER_SEEK or step == _H_PLUNGER_APPROACH
        if (step == _H_NEEDLE_BACKOFF or step == _H_PLUNGER_BACKOFF) and \
                sw & (SW_NEEDLE_HOME if needle_step else SW_PLUNGER_REAR) and \
                (self.needle_emitted if needle_step else self.plunger_emitted) - self._trip_pos > \
                (self._release_n if needle_step else self._release_p):
            # A working switch opens within a fraction of a millimetre: a stuck
            # one must not lead the needle a full back-off deeper (H12).
            self._fault(F_NEEDLE_HOME_STUCK if needle_step else F_PLUNGER_REAR_STUCK)
            return
        if seeking and not self._home_found and sw & (SW_NEEDLE_HOME if needle_step else SW_PLUNGER_REAR):
            self._home_found = True
            # Zero is where the switch closed: where the motor was when it was read,
            # not the commanded position, which runs ahead by the FIFO lead.
            self._trip_pos = self.needle_emitted if needle_step else self.plunger_emitted
            ax.stop()
        if ax.phase != IDLE:
            return
        if seeking and not self._home_found:
            # Full travel plus margin and no switch: broken or blocked (H12).
            self._fault(F_NEEDLE_HOME_NOT_FOUND if needle_step else F_PLUNGER_HOME_NOT_FOUND)
            return
        self._home_found = False
        if (step == _H_NEEDLE_BACKOFF or step == _H_PLUNGER_BACKOFF) and \
                sw & (SW_NEEDLE_HOME if needle_step else SW_PLUNGER_REAR):
            # Backed off a millimetre and the switch is still closed: stuck (H12).
            self._fault(F_NEEDLE_HOME_STUCK if needle_step else F_PLUNGER_REAR_STUCK)
            return
        if step == _H_NEEDLE_SEEK:
            ax.start(self.plan_needle_backoff, FORWARD)
        elif step == _H_NEEDLE_BACKOFF:
            ax.start(self.plan_needle_approach, BACKWARD)
        elif step == _H_NEEDLE_APPROACH or step == _H_PLUNGER_APPROACH:
            ax.rezero(self._trip_pos)
            if not self._settle(ax):
                return
            self._home_step = _H_NEEDLE_SETTLE if step == _H_NEEDLE_APPROACH else _H_PLUNGER_SETTLE
            return
        elif step == _H_NEEDLE_SETTLE:
            self._plunger_start(self.plan_plunger_seek, BACKWARD)
            self._home_step = _H_PLUNGER_SEEK
            return
        elif step == _H_PLUNGER_SEEK:
            self._plunger_start(self.plan_plunger_backoff, FORWARD)
        elif step == _H_PLUNGER_BACKOFF:
            self._plunger_start(self.plan_plunger_approach, BACKWARD)
        else:  # _H_PLUNGER_SETTLE
            # The plunger face rests at the rear switch: where a full syringe sits.
            self.fluid_steps = 0
            self._comp_left = 0
            self.primed = False
            self.homed = True
            self.state = ST_READY
            self._home_step = _H_DONE
            return
        self._home_step = step + 1
