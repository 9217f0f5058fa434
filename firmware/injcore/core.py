"""The control core: planning, the operator's actions, and the face of the tick.

The tick itself, which runs every millisecond, is injcore/tick.py: it works on
the state array `Core.S`, which this class plans into and reads through
properties (state, fault, punctures, ...). The board's interrupt
(board/irq.py) calls it with the registers read into S's port block; the
simulator, the tests and the rig call `Core.tick()`, which does the same
through the ports below.

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

The safety monitor (hazards H1-H8, H12) runs inside every tick: see tick.tick.
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
from . import tick as T
from .axis import FORWARD, WORDS, Axis, new_state
from .compat import const
from .planner import RAMP_TICKS_MAX, Plan
from .settings import MODE_CONTINUOUS, Limits, Settings, SettingsError

from .codes import (
    ALARM_NONE, ALARM_WARNING, F_NONE, IDLE, N_BUSY, N_UNCONFIRMED, REC_NONE, SW_FIRE, N_NO_SYRINGE, N_NONE, N_NOT_HOMED,
    N_NOT_PRIMED, N_WATCHDOG_RESET, RC_POWER_ON, RC_WATCHDOG, RECORD_SIZE, ST_FAULT, ST_LOAD,
    ST_MEASURE, ST_READY, ST_UNHOMED, SW_SYRINGE,
)

# The ramps array: the fixed moves, the two cycle sets, then the short settle moves.
_STATIC_RAMPS = 10 * 2 * RAMP_TICKS_MAX
_CYCLE_RAMPS = 5 * 2 * RAMP_TICKS_MAX
_SETTLE_RAMP = 2  # ramp ticks a settle move needs at most
_RAMPS = _STATIC_RAMPS + 2 * _CYCLE_RAMPS + (T.SETTLE_MAX_STEPS + 1) * 2 * _SETTLE_RAMP


class _PlanSet:
    """The moves of one puncture cycle for one set of settings, at S[base]."""

    def __init__(self, s, ramps, base, rows, ramp_at):
        self.s = s
        self.base = base

        def plan(name, i):
            row = rows + i * T.ROW_SIZE
            s[base + T.C_NEEDLE_IN + i] = row
            return Plan(name, table=s, row=row, ramps=ramps, ramp_at=ramp_at + i * 2 * RAMP_TICKS_MAX)

        self.needle_in = plan("needle in", 0)
        self.needle_out = plan("needle out", 1)
        # Inject pushes dose + suck-back and suck-back draws suck-back back, so
        # every puncture nets exactly the dose whatever came before it.
        self.inject_fwd = plan("inject", 2)  # plunger last moved forward
        self.inject_rev = plan("inject after reversal", 3)  # + backlash take-up
        self.suckback = plan("suck-back", 4)  # + backlash take-up

    depth_steps = property(lambda self: self.s[self.base + T.C_DEPTH])
    dose_steps = property(lambda self: self.s[self.base + T.C_DOSE])
    sb_steps = property(lambda self: self.s[self.base + T.C_SB])
    cycle_ticks = property(lambda self: self.s[self.base + T.C_CYCLE])
    period_ticks = property(lambda self: self.s[self.base + T.C_PERIOD])


def _slot(i):
    """A Core attribute that is S[i]: the tick's own state, read and written in place."""

    def put(self, v):
        self.S[i] = v

    return property(lambda self: self.S[i], put)


class _Record:
    """The last puncture's record, fields P_*: a window on S (no copy to keep in step)."""

    def __init__(self, s, at, size):
        self.s = s
        self.at = at
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        if not 0 <= i < self.size:
            raise IndexError("puncture record field %d" % i)
        return self.s[self.at + i]

    def __setitem__(self, i, v):
        if not 0 <= i < self.size:
            raise IndexError("puncture record field %d" % i)
        self.s[self.at + i] = v

    def __iter__(self):
        return iter([self.s[self.at + i] for i in range(self.size)])


def _flag(i):
    """A Core attribute that is S[i] as a bool."""

    def put(self, v):
        self.S[i] = 1 if v else 0

    return property(lambda self: bool(self.S[i]), put)


class Core:
    # The tick's state, by name (injcore/tick.py owns the layout)
    state = _slot(T.STATE)
    fault = _slot(T.FAULT)
    fault_tick = _slot(T.FAULT_TICK)  # core.ticks when the latest fault was detected
    notice = _slot(T.NOTICE)
    warning = _slot(T.WARNING)
    alarm = property(lambda self: self.S[T.OUT_ALARM])
    switches = _slot(T.IN_SW)  # SW_* of the latest tick
    force_mn = _slot(T.IN_FORCE)  # load-cell force of the latest tick, mN
    ticks = _slot(T.TICKS)
    checked = _slot(T.CHECKED)  # tick number of the latest tick whose self-checks ran (watchdog)
    overruns = _slot(T.OVERRUNS)  # times the board let the PIO FIFOs run dry (the board counts them)
    needle_emitted = _slot(T.NEEDLE_EMITTED)
    plunger_emitted = _slot(T.PLUNGER_EMITTED)
    punctures = _slot(T.PUNCTURES)
    fluid_steps = _slot(T.FLUID_STEPS)  # plunger face position, microsteps from the rear switch
    delivered_steps = _slot(T.DELIVERED)  # net fluid steps pushed in punctures this session
    primed_steps = _slot(T.PRIMED_STEPS)
    backlash_measured_steps = _slot(T.BL_MEASURED)  # the last measurement; -1: none, or not found
    backlash_steps = property(lambda self: self.S[T.BACKLASH])
    primed = _flag(T.PRIMED)
    homed = _flag(T.HOMED)
    # No valid stored settings at boot: the defaults run, but nothing is
    # injected until an engineer confirms them (H9, service menu).
    unconfirmed = _flag(T.UNCONFIRMED)
    recovery_pending = property(lambda self: self.S[T.RECOVERY] != REC_NONE)  # a fault's recovery waits
    overrun_pending = property(lambda self: self.S[T.OVERRUNS] != self.S[T.OVERRUNS_SEEN])
    depth_reached_steps = property(lambda self: self.S[T.DEPTH_REACHED])  # this puncture's, so far
    cap_steps = property(lambda self: self.S[T.CAP_STEPS])  # the session cap in plunger steps
    needle_limit_steps = property(lambda self: self.S[T.NEEDLE_LIMIT])  # deepest allowed (H2)
    occlusion_mn = property(lambda self: self.S[T.OCCLUSION_MN])  # the force that trips H4
    area_cmm2 = property(lambda self: self._area_cmm2)  # the barrel area doses are counted with

    def __init__(self, needle_port, plunger_port, inputs, outputs, settings=None, limits=None,
                 reset_cause=RC_POWER_ON):
        self.inputs = inputs
        self.outputs = outputs
        s = self.S = new_state()
        self.ramps = array("H", bytes(2 * _RAMPS))
        self.needle = Axis("needle", needle_port, s, T.NA, self.ramps)
        self.plunger = Axis("plunger", plunger_port, s, T.PA, self.ramps)
        self.last_puncture = _Record(s, T.LAST, RECORD_SIZE)
        self.limits = limits or Limits()
        self.limits.check()
        self.settings = Settings()
        self.dose_factor_ppm = M.DOSE_FACTOR_ONE_PPM  # gravimetric calibration (set_calibration)
        self.protocol_cap_nl = 0  # a protocol's session cap, below the engineer's; 0: none
        s[T.BACKLASH] = M.um_to_plunger_steps(M.PLUNGER_BACKLASH_UM)
        s[T.LOST_TOL] = M.LOST_STEPS_TOL
        s[T.BL_SETTLE_TICKS] = M.BACKLASH_SETTLE_MS * 1000 // M.TICK_US
        s[T.BL_DETECT_MN] = M.BACKLASH_DETECT_MN
        s[T.BL_MEASURED] = -1
        s[T.ZONE_END] = -1
        s[T.HOME_STEP] = T.H_DONE
        s[T.FIRE_PREV] = SW_FIRE  # a trigger held at boot must be released first (H3)
        s[T.ACTIVE_SET] = T.SET0
        ramp_at = _STATIC_RAMPS
        self._plans = (_PlanSet(s, self.ramps, T.SET0, T.PL_CYCLE0, ramp_at),
                       _PlanSet(s, self.ramps, T.SET1, T.PL_CYCLE1, ramp_at + _CYCLE_RAMPS))
        self._area_cmm2, self._capacity_nl, self._dead_nl = self.settings.syringe()
        self._area_nominal = self._area_cmm2
        self._plan_static()
        self.needle.plan_at = self.plunger.plan_at = self.plan_at  # pyright: ignore[reportAttributeAccessIssue]
        self._drivers_out = False  # what the outputs port was last told
        self._alarm_out = ALARM_NONE
        self.reset_cause = reset_cause
        self.configure(**(settings.as_dict() if settings else {}))
        self.notice = N_WATCHDOG_RESET if reset_cause == RC_WATCHDOG else N_NONE
        self.outputs.drivers(False)

    # ---- planning (main loop; may allocate) --------------------------------

    def _plan(self, name, row, ramp_at, ramp_ticks_max=RAMP_TICKS_MAX):
        return Plan(name, ramp_ticks_max, table=self.S, row=row, ramps=self.ramps, ramp_at=ramp_at)

    def _plan_static(self):
        """Moves that depend only on the machine: homing, priming, relief, backlash, settling."""
        ns = M.NEEDLE_STEPS_PER_MM
        ps = M.PLUNGER_STEPS_PER_MM
        na = M.um_to_needle_steps(M.NEEDLE_ACCEL_UM_S2)
        pa = M.um_to_plunger_steps(M.PLUNGER_ACCEL_UM_S2)
        nb = M.um_to_needle_steps(M.NEEDLE_HOME_BACKOFF_UM)
        pb = M.um_to_plunger_steps(M.PLUNGER_HOME_BACKOFF_UM)
        bs = M.um_to_plunger_steps(M.BACKLASH_PROBE_SPEED_UM_S)
        at = iter(range(0, _STATIC_RAMPS, 2 * RAMP_TICKS_MAX))
        self.plan_needle_seek = self._plan("needle seek", T.PL_NEEDLE_SEEK, next(at)).set(
            M.um_to_needle_steps(M.NEEDLE_TRAVEL_UM + M.HOME_MARGIN_UM),
            M.NEEDLE_HOME_FAST_UM_S * ns // 1000, na)
        self.plan_needle_backoff = self._plan("needle back-off", T.PL_NEEDLE_BACKOFF, next(at)).set(
            nb, M.NEEDLE_HOME_FAST_UM_S * ns // 1000, na)
        self.plan_needle_approach = self._plan("needle approach", T.PL_NEEDLE_APPROACH, next(at)).set(
            2 * nb, M.NEEDLE_HOME_SLOW_UM_S * ns // 1000, na)
        self.plan_plunger_seek = self._plan("plunger seek", T.PL_PLUNGER_SEEK, next(at)).set(
            M.um_to_plunger_steps(M.PLUNGER_TRAVEL_UM + M.HOME_MARGIN_UM),
            M.PLUNGER_HOME_FAST_UM_S * ps // 1000, pa)
        self.plan_plunger_backoff = self._plan("plunger back-off", T.PL_PLUNGER_BACKOFF, next(at)).set(
            pb, M.PLUNGER_HOME_FAST_UM_S * ps // 1000, pa)
        self.plan_plunger_approach = self._plan("plunger approach", T.PL_PLUNGER_APPROACH, next(at)).set(
            2 * pb, M.PLUNGER_HOME_SLOW_UM_S * ps // 1000, pa)
        self.plan_prime = self._plan("prime", T.PL_PRIME, next(at))
        self.plan_bl_preload = self._plan("backlash preload", T.PL_BL_PRELOAD, next(at)).set(
            M.um_to_plunger_steps(M.BACKLASH_PRELOAD_UM), bs, pa)
        self.plan_bl_probe = self._plan("backlash probe", T.PL_BL_PROBE, next(at)).set(
            M.um_to_plunger_steps(M.BACKLASH_PROBE_UM), bs, pa)
        self.plan_relief = self._plan("relief", T.PL_RELIEF, next(at)).set(
            M.um_to_plunger_steps(M.RELIEF_MAX_UM), M.RELIEF_SPEED_UM_S * ps // 1000, pa)
        # Short moves that bring an axis from where homing stopped to exactly zero.
        base = _STATIC_RAMPS + 2 * _CYCLE_RAMPS
        self.plan_settle = [self._plan("settle %d" % d, T.PL_SETTLE + d * T.ROW_SIZE,
                                       base + d * 2 * _SETTLE_RAMP, _SETTLE_RAMP).set(
                                           d, M.NEEDLE_HOME_SLOW_UM_S * ns // 1000, na)
                            for d in range(T.SETTLE_MAX_STEPS + 1)]
        s = self.S
        s[T.HOME_STUCK_N] = M.um_to_needle_steps(M.HOME_STUCK_UM)
        s[T.RELEASE_N] = M.um_to_needle_steps(M.SWITCH_RELEASE_UM)
        s[T.RELEASE_P] = M.um_to_plunger_steps(M.SWITCH_RELEASE_UM)
        s[T.HOME_STUCK_P] = M.um_to_plunger_steps(M.HOME_STUCK_UM)

    def plan_at(self, row):
        """The Plan whose row in S is `row` (tools that record the moves; not the tick)."""
        plans = [self.plan_prime, self.plan_needle_seek, self.plan_needle_backoff,
                 self.plan_needle_approach, self.plan_plunger_seek, self.plan_plunger_backoff,
                 self.plan_plunger_approach, self.plan_bl_preload, self.plan_bl_probe,
                 self.plan_relief] + self.plan_settle
        for ps in self._plans:
            plans += [ps.needle_in, ps.needle_out, ps.inject_fwd, ps.inject_rev, ps.suckback]
        for p in plans:
            if p.row == row:
                return p
        raise KeyError("no plan at row %d" % row)

    @property
    def _active(self):
        """Index of the plan set the tick uses."""
        return 0 if self.S[T.ACTIVE_SET] == T.SET0 else 1

    @property
    def _configuring(self):
        return bool(self.S[T.CONFIGURING])

    def configure(self, **changes):
        """Apply operator settings; raises SettingsError and keeps the old ones if any is wrong."""
        s = self.S
        s[T.CONFIGURING] = 1  # the tick starts no move while this is set
        try:
            if self.state not in IDLE:
                raise SettingsError.one("settings", SettingsError.NOT_IDLE)
            new = self.settings.changed(self.limits, **changes)
            spare = self._plans[1 - self._active]
            self._plan_cycle(new, spare)
            if new.mode == MODE_CONTINUOUS and spare.cycle_ticks > spare.period_ticks:
                best = 1_000_000 // spare.cycle_ticks  # mHz
                raise SettingsError.one("shot_rate_mhz", SettingsError.CYCLE, new.shot_rate_mhz,
                                        500, best, spare.cycle_ticks)
            self.settings = new
            area0 = self._area_cmm2
            self._area_nominal, self._capacity_nl, self._dead_nl = new.syringe()
            self._area_cmm2 = self.dose_area(new)
            if self._area_cmm2 != area0 and self.delivered_steps:
                # The session is counted in plunger steps: a syringe of another
                # size must not reopen the cap (H1), so restate them in its steps.
                self.delivered_steps = M.plunger_steps_for_nl(
                    M.nl_for_plunger_steps(self.delivered_steps, area0), self._area_cmm2)
            self.plan_prime.set(M.um_to_plunger_steps(M.PLUNGER_TRAVEL_UM),
                                M.plunger_steps_for_nl(M.PRIME_RATE_NL_S, self._area_cmm2),
                                M.um_to_plunger_steps(M.PLUNGER_ACCEL_UM_S2))
            s[T.NEEDLE_LIMIT] = M.um_to_needle_steps(M.NEEDLE_HOME_OFFSET_UM + self.limits.needle_length_um)
            s[T.USABLE] = M.plunger_steps_for_nl(self._capacity_nl - self._dead_nl, self._area_cmm2)
            cap_nl = self.limits.session_cap_nl
            if 0 < self.protocol_cap_nl < cap_nl:
                cap_nl = self.protocol_cap_nl  # the smaller of the protocol's and the engineer's
            s[T.CAP_STEPS] = M.plunger_steps_for_nl(cap_nl, self._area_cmm2)
            # Occlusion (H4): the limit pressure on this barrel, plus stopper friction.
            occlusion_mn = self.limits.occlusion_kpa * self._area_nominal // 100 + M.OCCLUSION_FRICTION_MN
            s[T.OCCLUSION_MN] = occlusion_mn
            # Relief backs off below a quarter of it (the hazard asks for half): what
            # stays trapped in the line is then a microlitre or two at most.
            s[T.RELIEF_MN] = occlusion_mn // 4
            s[T.ACTIVE_SET] = spare.base
            T.update_warning(s)
            self._sync_outputs()
        finally:
            s[T.CONFIGURING] = 0

    def set_limits(self, **changes):
        """Apply engineer limits (the service menu); SettingsError keeps the old ones.

        Refused while the current operator settings would exceed the new
        limits (H11): the operator values are lowered first, never silently.
        """
        if self.state not in IDLE:
            raise SettingsError.one("limits", SettingsError.NOT_IDLE)
        values = {}
        for name in Limits.RANGES:
            values[name] = getattr(self.limits, name)
        problems = []
        for name in changes:
            if name not in values:
                problems.append("%s: no such limit; known: %s" % (name, ", ".join(Limits.RANGES)))
        if problems:
            raise SettingsError([SettingsError.refusal(name, SettingsError.NO_LIMIT)
                                 for name in changes if name not in values])
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
        return self.state in IDLE and self.axes_idle()

    def dose_area(self, s):
        """The barrel area volumes are counted with: the table's, times the calibration."""
        return s.syringe()[0] * self.dose_factor_ppm // M.DOSE_FACTOR_ONE_PPM

    def set_protocol_caps(self, session_cap_nl=0, zone_left_nl=-1):
        """A protocol's caps: its session cap (0: none; the engineer's still applies
        when smaller) and what the current zone may still receive (-1: no zone cap)."""
        self._reconfigure("protocol_cap_nl", session_cap_nl)  # the cap in steps; refused while moving
        if zone_left_nl < 0:
            self.S[T.ZONE_END] = -1
        else:
            self.S[T.ZONE_END] = self.delivered_steps + M.plunger_steps_for_nl(zone_left_nl, self._area_cmm2)

    def set_calibration(self, dose_factor_ppm):
        """Apply a gravimetric dose correction (delivered / counted, in ppm); SettingsError if refused."""
        if self.state not in IDLE:
            raise SettingsError.one("calibration", SettingsError.NOT_IDLE)
        lo, hi = M.DOSE_FACTOR_MIN_PPM, M.DOSE_FACTOR_MAX_PPM
        if not isinstance(dose_factor_ppm, int) or not lo <= dose_factor_ppm <= hi:
            raise SettingsError.one("dose_factor_ppm", SettingsError.RANGE, dose_factor_ppm, lo, hi)
        self._reconfigure("dose_factor_ppm", dose_factor_ppm)

    def _plan_cycle(self, st, ps):
        area = self.dose_area(st)
        needle_a = M.um_to_needle_steps(M.NEEDLE_ACCEL_UM_S2)
        plunger_a = M.um_to_plunger_steps(M.PLUNGER_ACCEL_UM_S2)
        depth = M.um_to_needle_steps(M.NEEDLE_HOME_OFFSET_UM + st.depth_um)
        dose = M.plunger_steps_for_nl(st.dose_nl, area)
        sb = M.plunger_steps_for_nl(st.suckback_nl, area)
        rate = M.plunger_steps_for_nl(st.rate_nl_s, area)
        rate_max = M.um_to_plunger_steps(M.PLUNGER_MAX_SPEED_UM_S)
        if rate > rate_max:
            raise SettingsError.one("rate_nl_s", SettingsError.PLUNGER, st.rate_nl_s,
                                    extra=M.PLUNGER_MAX_SPEED_UM_S)
        ps.needle_in.set(depth, M.um_to_needle_steps(st.speed_um_s), needle_a)
        ps.needle_out.set(depth, M.um_to_needle_steps(M.NEEDLE_MAX_SPEED_UM_S), needle_a)
        bl = self.backlash_steps
        ps.inject_fwd.set(dose + sb, rate, plunger_a)
        ps.inject_rev.set(dose + sb + bl, rate, plunger_a)
        ps.suckback.set(sb + bl if sb else 0, rate, plunger_a)
        s, b = self.S, ps.base
        s[b + T.C_DEPTH] = depth
        s[b + T.C_DOSE] = dose
        s[b + T.C_SB] = sb
        s[b + T.C_CYCLE] = (ps.needle_in.ticks + ps.inject_rev.ticks + ps.suckback.ticks
                            + ps.needle_out.ticks)
        s[b + T.C_PERIOD] = st.shot_period_us() // M.TICK_US
        s[b + T.C_MODE] = st.mode
        s[b + T.C_NEAR_EMPTY] = M.NEAR_EMPTY_DOSES * (dose + sb)

    # ---- operator actions (main loop) ---------------------------------------

    def start_homing(self):
        """Home both axes; the only way out of power-up, a reset or a fault (H3)."""
        if self.state not in (ST_UNHOMED, ST_READY):
            return False
        T.begin_homing(self.S, 0)
        self._sync_outputs()
        return True

    def start_load(self):
        """Plunger back to its rear switch so the syringe can be changed."""
        if self.state != ST_READY:
            self.notice = N_NOT_HOMED if self.state == ST_UNHOMED else N_BUSY
            return False
        T.begin_homing(self.S, 1)
        self.state = ST_LOAD
        self._sync_outputs()
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
        s = self.S
        self.notice = N_NONE
        s[T.BL_MEASURED] = -1
        s[T.BL_PHASE] = T.BL_PRELOAD
        T.plunger_start(s, T.PL_BL_PRELOAD, FORWARD)
        self.state = ST_MEASURE
        return True

    def set_backlash(self, steps):
        """Use `steps` of backlash for the compensation (a measurement's result)."""
        if self.state not in IDLE:
            raise SettingsError.one("backlash", SettingsError.NOT_IDLE)
        hi = M.um_to_plunger_steps(M.BACKLASH_MAX_UM)
        if not isinstance(steps, int) or not 0 <= steps <= hi:
            raise SettingsError.one("backlash_steps", SettingsError.RANGE, steps, 0, hi)
        old = self.S[T.BACKLASH]
        self.S[T.BACKLASH] = steps
        try:
            self.configure()
        except SettingsError:
            self.S[T.BACKLASH] = old
            raise

    def acknowledge(self):
        """Clear a latched fault; motion then needs homing again (H3)."""
        if self.state == ST_FAULT:
            s = self.S
            s[T.STATE] = ST_UNHOMED
            s[T.FAULT] = F_NONE
            s[T.RECOVERY] = REC_NONE
            s[T.FIRE_PREV] = SW_FIRE  # a held trigger fires nothing until pressed again
            s[T.OUT_ALARM] = ALARM_WARNING if self.warning else ALARM_NONE
            self._sync_outputs()
            return True
        return False

    def clear_notice(self):
        """The operator has read the notice (BACK): clear it while nothing runs."""
        if self.state == ST_READY or self.state == ST_UNHOMED:
            self.notice = N_NONE

    def require_confirmation(self, needed):
        """Stored settings were lost (H9): nothing is injected until an engineer confirms."""
        self.unconfirmed = bool(needed)

    def confirm_settings(self):
        """The engineer confirms the settings in use; False if nothing awaited confirmation."""
        if not self.unconfirmed:
            return False
        self.unconfirmed = False
        if self.notice == N_UNCONFIRMED:
            self.notice = N_NONE
        return True

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

    def plunger_limit_left(self):
        """Fluid steps the syringe can still give before its dead space (kept current by configure)."""
        return self.S[T.USABLE] - self.S[T.FLUID_STEPS]

    def can_fire(self):
        """May a puncture start now? If not, `notice` says why."""
        return bool(T.can_fire(self.S))

    def plans(self):
        return self._plans[self._active]

    # ---- the tick, where no interrupt runs it (simulator, tests, rig) -------------

    def tick(self, now_us=0):
        """One control tick through the ports: what the board's interrupt does in registers."""
        s = self.S
        s[T.IN_SW] = self.inputs.switches()
        s[T.IN_FORCE] = self.inputs.force_mn()
        needle = self.needle
        plunger = self.plunger
        s[T.IN_NCOUNT] = needle.port.emitted()
        s[T.IN_PCOUNT] = plunger.port.emitted()
        T.tick(s, self.ramps, WORDS)
        if s[T.OUT_HALT]:
            needle.port.halt()
            plunger.port.halt()
            s[T.IN_NCOUNT] = needle.port.emitted()
            s[T.IN_PCOUNT] = plunger.port.emitted()
            T.after_halt(s)
        put = s[T.OUT_PUT]
        if put & 1:
            needle.port.put(needle.words())
        if put & 2:
            plunger.port.put(plunger.words())
        if s[T.OUT_DRIVERS] != self._drivers_out or s[T.OUT_ALARM] != self._alarm_out:
            self._sync_outputs()

    def _sync_outputs(self):
        """Tell the outputs port what the tick decided (drivers, alarm), when it changed."""
        s = self.S
        on = bool(s[T.OUT_DRIVERS])
        if on != self._drivers_out:
            self._drivers_out = on
            self.outputs.drivers(on)
        level = s[T.OUT_ALARM]
        if level != self._alarm_out:
            self._alarm_out = level
            self.outputs.alarm(level)
