"""The control core: the one face of the injector's control, and its dispatcher.

`Core` is what the board, the simulator, the interface and the tools talk
to: settings and limits (configure, set_limits), the operator's actions
(start_homing, start_load, confirm_syringe, acknowledge, new_session), the
service routines (start_backlash and backlash_phase, set_backlash,
set_line_tau, set_calibration) and the figures (punctures, delivered_nl,
volume_left_nl, ...). It plans; the work is in its rooms:

    codes.py      the codes and their names; the fault table; groups of states
    layout.py     the tick's state array `S`, field by field
    tick.py       the 1 kHz tick and the safety monitor's checks
    motion.py     stepping an axis; plunger moves with backlash take-up
    monitor.py    a fault's stop and recovery (relief, needle withdrawal)
    homing.py     homing's table of steps, its moves, its tick
    puncture.py   the puncture's table of steps, its planning and cycle time,
                  prime, the firing gate, the near-empty warning
    backlash.py   measuring the plunger's backlash
    calib.py      the gravimetric dose correction

The tick works on the state array `Core.S`, which Core plans into and reads
through properties (state, fault, punctures, ...). The board's interrupt
(board/irq.py) runs it with the registers read into S's port block; the
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

from . import backlash, calib, homing, monitor, puncture
from . import machine as M
from .axis import WORDS, Axis, new_state
from .codes import (
    ALARM_NONE,
    ALARM_WARNING,
    F_NONE,
    FAULT_LINES,
    HOLD_DISPLAY,
    HOLD_SETTINGS,
    IDLE,
    N_BUSY,
    N_NO_SYRINGE,
    N_NONE,
    N_NOT_HOMED,
    N_SYRINGE_UNCONFIRMED,
    N_UNCONFIRMED,
    N_WATCHDOG_RESET,
    RC_POWER_ON,
    RC_WATCHDOG,
    REC_NONE,
    ST_FAULT,
    ST_HOMING,
    ST_LOAD,
    ST_READY,
    ST_UNHOMED,
    SW_FIRE,
    SW_SYRINGE,
)
from .compat import const
from .planner import RAMP_TICKS_MAX, Plan
from .puncture import can_fire, update_warning
from .settings import Limits, Settings, SettingsError
from .tick import after_halt, tick

# ---- constants written by `make consts` from codes.py, layout.py: do not edit ----
_ST_MEASURE = const(12)
_SETTLE_MAX_STEPS = const(24)
_IN_SW = const(0)
_IN_FORCE = const(1)
_IN_NCOUNT = const(2)
_IN_PCOUNT = const(3)
_OUT_PUT = const(4)
_OUT_HALT = const(5)
_OUT_DRIVERS = const(6)
_OUT_ALARM = const(7)
_OVERRUNS = const(8)
_STATE = const(9)
_FAULT = const(10)
_FAULT_TICK = const(11)
_FAULT_WAS = const(12)
_NOTICE = const(13)
_WARNING = const(14)
_TICKS = const(15)
_CHECKED = const(16)
_OVERRUNS_SEEN = const(17)
_NEEDLE_EMITTED = const(18)
_PLUNGER_EMITTED = const(19)
_FIRE_PREV = const(20)
_RECOVERY = const(21)
_GAP = const(33)
_DEPTH_REACHED = const(38)
_PRIMED = const(40)
_HOMED = const(41)
_UNCONFIRMED = const(42)
_SYRINGE_OK = const(43)
_CONFIGURING = const(44)
_BL_PHASE = const(45)
_BL_MEASURED = const(49)
_ZONE_END = const(50)
_PUNCTURES = const(51)
_FLUID_STEPS = const(52)
_DELIVERED = const(53)
_PRIMED_STEPS = const(54)
_ACTIVE_SET = const(55)
_NEEDLE_LIMIT = const(56)
_OCCLUSION_MN = const(57)
_RELIEF_MN = const(58)
_BACKLASH = const(59)
_USABLE = const(60)
_CAP_STEPS = const(61)
_LOST_TOL = const(69)
_TAKEUP_N = const(71)
_SET0 = const(72)
_SET1 = const(88)
_LAST = const(120)
_RECORD_SIZE = const(5)
_NA = const(125)
_PA = const(145)
_R_DIST = const(0)
_R_CRUISE = const(2)
_R_Q = const(3)
_R_R = const(4)
_R_DEN = const(5)
_R_ACC0 = const(6)
_PL_PRIME = const(349)
_PL_TAKEUP = const(385)
_PL_CYCLE0 = const(394)
_PL_CYCLE1 = const(466)
# ---- end of the written constants ----

# The ramps array: the fixed moves, the two plan sets, then the short settle moves.
_STATIC_MOVES = (
    10  # homing's 6, prime, backlash's 2, relief (one more runs out of ramps: StopIteration)
)
_STATIC_RAMPS = _STATIC_MOVES * 2 * RAMP_TICKS_MAX
_SETTLE_RAMP = 2  # ramp ticks a settle move needs at most
_RAMPS = _STATIC_RAMPS + 2 * puncture.SET_RAMPS + (_SETTLE_MAX_STEPS + 1) * 2 * _SETTLE_RAMP


def _syringe_size(st):
    """What fixes the barrel of settings `st`: the model, and the bore of a custom one."""
    return (st.syringe_model, st.syringe_id_um if st.syringe_model == M.CUSTOM_SYRINGE else 0)


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


def _bit(i, bit):
    """A Core attribute that is one bit of S[i] as a bool."""

    def put(self, v):
        self.S[i] = self.S[i] | bit if v else self.S[i] & ~bit

    return property(lambda self: bool(self.S[i] & bit), put)


class Core:
    # The tick's state, by name (layout.py)
    state = _slot(_STATE)
    fault = _slot(_FAULT)
    fault_tick = _slot(_FAULT_TICK)  # core.ticks when the latest fault was detected
    notice = _slot(_NOTICE)
    warning = _slot(_WARNING)
    alarm = property(lambda self: self.S[_OUT_ALARM])
    switches = _slot(_IN_SW)  # SW_* of the latest tick
    force_mn = _slot(_IN_FORCE)  # load-cell force of the latest tick, mN
    ticks = _slot(_TICKS)
    checked = _slot(_CHECKED)  # tick number of the latest tick whose self-checks ran (watchdog)
    overruns = _slot(_OVERRUNS)  # times the board let the PIO FIFOs run dry (the board counts them)
    needle_emitted = _slot(_NEEDLE_EMITTED)
    plunger_emitted = _slot(_PLUNGER_EMITTED)
    punctures = _slot(_PUNCTURES)
    fluid_steps = _slot(_FLUID_STEPS)  # plunger face position, microsteps from the rear switch
    delivered_steps = _slot(_DELIVERED)  # net fluid steps pushed in punctures this session
    primed_steps = _slot(_PRIMED_STEPS)
    backlash_measured_steps = _slot(_BL_MEASURED)  # the last measurement; -1: none, or not found
    # The measurement's phase (backlash.BL_*) while one runs, else BL_NONE: the main
    # loop fits the line's time constant to the force during BL_SETTLE (linefit.py).
    backlash_phase = property(
        lambda self: self.S[_BL_PHASE] if self.S[_STATE] == _ST_MEASURE else backlash.BL_NONE
    )
    backlash_steps = property(lambda self: self.S[_BACKLASH])
    primed = _flag(_PRIMED)
    homed = _flag(_HOMED)
    # No valid stored settings at boot: the defaults run, but nothing is
    # injected until an engineer confirms them (H9, service menu).
    unconfirmed = _bit(_UNCONFIRMED, HOLD_SETTINGS)
    # The board found no display: the operator could see neither depth, dose nor
    # an alarm, so nothing is injected or primed (the board sets it at boot).
    no_display = _bit(_UNCONFIRMED, HOLD_DISPLAY)
    fault_was = _slot(_FAULT_WAS)  # the state the latest fault cut short
    # The seated syringe was loaded and the operator confirmed its size: doses
    # are counted with that size, so nothing is injected without it (H13).
    syringe_confirmed = _flag(_SYRINGE_OK)
    # A load is under way or has ended, and its syringe awaits confirmation.
    syringe_to_confirm = property(lambda self: self._load_to_confirm)
    recovery_pending = property(
        lambda self: self.S[_RECOVERY] != REC_NONE
    )  # a fault's recovery waits
    overrun_pending = property(lambda self: self.S[_OVERRUNS] != self.S[_OVERRUNS_SEEN])
    depth_reached_steps = property(lambda self: self.S[_DEPTH_REACHED])  # this puncture's, so far
    cap_steps = property(lambda self: self.S[_CAP_STEPS])  # the session cap in plunger steps
    needle_limit_steps = property(lambda self: self.S[_NEEDLE_LIMIT])  # deepest allowed (H2)
    occlusion_mn = property(lambda self: self.S[_OCCLUSION_MN])  # the force that trips H4
    area_cmm2 = property(lambda self: self._area_cmm2)  # the barrel area doses are counted with

    def __init__(
        self,
        needle_port,
        plunger_port,
        inputs,
        outputs,
        settings=None,
        limits=None,
        reset_cause=RC_POWER_ON,
    ):
        self.inputs = inputs
        self.outputs = outputs
        s = self.S = new_state()
        self.ramps = array("H", bytes(2 * _RAMPS))
        self.needle = Axis("needle", needle_port, s, _NA, self.ramps)
        self.plunger = Axis("plunger", plunger_port, s, _PA, self.ramps)
        self.last_puncture = _Record(s, _LAST, _RECORD_SIZE)
        self.limits = limits or Limits()
        self.limits.check()
        self.settings = Settings()
        self.dose_factor_ppm = M.DOSE_FACTOR_ONE_PPM  # gravimetric calibration (set_calibration)
        self.protocol_cap_nl = 0  # a protocol's session cap, below the engineer's; 0: none
        # (tau us, the compliance it was measured with): set_line_tau
        self._tau_measured = None  # type: tuple[int, int] | None
        s[_TAKEUP_N] = max(
            1, M.um_to_plunger_steps(M.PLUNGER_TAKEUP_SPEED_UM_S) * M.TICK_US // 1_000_000
        )
        # A load began and its syringe awaits the operator's confirmation (H13).
        self._load_to_confirm = False
        self.syringe_confirms = 0  # syringes confirmed since boot (the log notes each)
        s[_LOST_TOL] = M.LOST_STEPS_TOL
        s[_ZONE_END] = -1
        s[_FIRE_PREV] = SW_FIRE  # a trigger held at boot must be released first (H3)
        s[_ACTIVE_SET] = _SET0
        monitor.load(s)
        homing.load(s)
        puncture.load(s)
        ramp_at = _STATIC_RAMPS
        self._plans = (
            puncture.PlanSet(s, self.ramps, _SET0, _PL_CYCLE0, ramp_at),
            puncture.PlanSet(s, self.ramps, _SET1, _PL_CYCLE1, ramp_at + puncture.SET_RAMPS),
        )
        self._area_cmm2, self._capacity_nl, self._dead_nl = self.settings.syringe()
        self._area_nominal = self._area_cmm2
        self._plan_static()
        s[_GAP] = s[_BACKLASH]  # unknown until homing: as if last moved back
        self.needle.plan_at = self.plunger.plan_at = self.plan_at  # pyright: ignore[reportAttributeAccessIssue]
        self._drivers_out = False  # what the outputs port was last told
        self._alarm_out = ALARM_NONE
        self.reset_cause = reset_cause
        self.configure(**(settings.as_dict() if settings else {}))
        self.notice = N_WATCHDOG_RESET if reset_cause == RC_WATCHDOG else N_NONE
        self.outputs.drivers(False)

    # ---- planning (main loop; may allocate) --------------------------------

    def new_plan(self, name, row, ramp_at, ramp_ticks_max=RAMP_TICKS_MAX):
        """A move planned into S's row `row`, its ramps at `ramp_at` (the rooms plan with it)."""
        return Plan(name, ramp_ticks_max, table=self.S, row=row, ramps=self.ramps, ramp_at=ramp_at)

    def _plan_static(self):
        """Moves that depend only on the machine: homing, priming, relief, backlash, settling."""
        at = iter(range(0, _STATIC_RAMPS, 2 * RAMP_TICKS_MAX))
        (
            self.plan_needle_seek,
            self.plan_needle_backoff,
            self.plan_needle_approach,
            self.plan_plunger_seek,
            self.plan_plunger_backoff,
            self.plan_plunger_approach,
        ) = homing.plan(self, at)
        self.plan_prime = self.new_plan("prime", _PL_PRIME, next(at))  # its speed: configure()
        self.plan_bl_preload, self.plan_bl_probe = backlash.plan(self, at)
        self.plan_relief = monitor.plan(self, at)
        self.plan_settle = homing.plan_settles(
            self, _STATIC_RAMPS + 2 * puncture.SET_RAMPS, _SETTLE_RAMP
        )

    def plan_at(self, row):
        """The Plan whose row in S is `row` (tools that record the moves; not the tick)."""
        if row == _PL_TAKEUP:
            return self._takeup_plan()
        plans = [
            self.plan_prime,
            self.plan_needle_seek,
            self.plan_needle_backoff,
            self.plan_needle_approach,
            self.plan_plunger_seek,
            self.plan_plunger_backoff,
            self.plan_plunger_approach,
            self.plan_bl_preload,
            self.plan_bl_probe,
            self.plan_relief,
        ] + self.plan_settle
        for ps in self._plans:
            plans += ps.plans()
        for p in plans:
            if p.row == row:
                return p
        raise KeyError("no plan at row %d" % row)

    def _takeup_plan(self):
        """The latest take-up (motion.plunger_start writes its row): a Plan without ramps."""
        s, r = self.S, _PL_TAKEUP
        p = Plan("take-up", 1)
        p.distance = s[r + _R_DIST]
        p.cruise_ticks = s[r + _R_CRUISE]
        p.cruise_q, p.cruise_r = s[r + _R_Q], s[r + _R_R]
        p.cruise_den, p.cruise_acc0 = s[r + _R_DEN], s[r + _R_ACC0]
        return p

    @property
    def _active(self):
        """Index of the plan set the tick uses."""
        return 0 if self.S[_ACTIVE_SET] == _SET0 else 1

    @property
    def _configuring(self):
        return bool(self.S[_CONFIGURING])

    def _plan(self, changes):
        """The settings `changes` make, planned into the spare plan set (the tick reads only
        the active one); SettingsError if they are wrong or the machine cannot run them.
        Every refusal of new settings belongs here: check_settings shares it."""
        new = self.settings.changed(self.limits, **changes)
        spare = self._plans[1 - self._active]
        puncture.plan_cycle(self, new, spare)  # raises if the machine cannot
        return new, spare

    def check_settings(self, **changes):
        """What configure(**changes) would refuse, without applying anything: SettingsError
        if refused. Busy or not: a protocol's zones are judged before they are entered."""
        self._plan(changes)

    def configure(self, **changes):
        """Apply operator settings; raises SettingsError and keeps the old ones if any is wrong."""
        s = self.S
        s[_CONFIGURING] = 1  # the tick starts no move while this is set
        try:
            if self.state not in IDLE:
                raise SettingsError.one("settings", SettingsError.NOT_IDLE)
            new, spare = self._plan(changes)
            old, self.settings = self.settings, new
            self._line_tau_us = self.line_tau_for(new)  # read each main-loop pass (tlog)
            if _syringe_size(new) != _syringe_size(old):
                self._unload()  # the device cannot see the barrel: confirm it, prime it (H13)
            area0 = self._area_cmm2
            self._area_nominal, self._capacity_nl, self._dead_nl = new.syringe()
            self._area_cmm2 = self.dose_area(new)
            if self._area_cmm2 != area0 and self.delivered_steps:
                # The session is counted in plunger steps: a syringe of another
                # size must not reopen the cap (H1), so restate them in its steps.
                self.delivered_steps = M.plunger_steps_for_nl(
                    M.nl_for_plunger_steps(self.delivered_steps, area0), self._area_cmm2
                )
            self.plan_prime.set(
                M.um_to_plunger_steps(M.PLUNGER_TRAVEL_UM),
                M.plunger_steps_for_nl(M.PRIME_RATE_NL_S, self._area_cmm2),
                M.um_to_plunger_steps(M.PLUNGER_ACCEL_UM_S2),
            )
            s[_NEEDLE_LIMIT] = M.um_to_needle_steps(
                M.NEEDLE_HOME_OFFSET_UM + self.limits.needle_length_um
            )
            s[_USABLE] = M.plunger_steps_for_nl(self._capacity_nl - self._dead_nl, self._area_cmm2)
            cap_nl = self.limits.session_cap_nl
            if 0 < self.protocol_cap_nl < cap_nl:
                cap_nl = self.protocol_cap_nl  # the smaller of the protocol's and the engineer's
            s[_CAP_STEPS] = M.plunger_steps_for_nl(cap_nl, self._area_cmm2)
            # Occlusion (H4): the limit pressure on this barrel, plus stopper friction.
            occlusion_mn = (
                self.limits.occlusion_kpa * self._area_nominal // 100 + M.OCCLUSION_FRICTION_MN
            )
            s[_OCCLUSION_MN] = occlusion_mn
            # Relief backs off below a quarter of it (the hazard asks for half): what
            # stays trapped in the line is then a microlitre or two at most.
            s[_RELIEF_MN] = occlusion_mn // 4
            s[_ACTIVE_SET] = spare.base
            update_warning(s)
            self._sync_outputs()
        finally:
            s[_CONFIGURING] = 0

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
            raise SettingsError(
                [
                    SettingsError.refusal(name, SettingsError.NO_LIMIT)
                    for name in changes
                    if name not in values
                ]
            )
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

    def dose_area(self, settings):
        """The barrel area volumes are counted with (calib.dose_area)."""
        return calib.dose_area(settings, self.dose_factor_ppm)

    def set_protocol_caps(self, session_cap_nl=0, zone_left_nl=-1):
        """A protocol's caps: its session cap (0: none; the engineer's still applies
        when smaller) and what the current zone may still receive (-1: no zone cap)."""
        self._reconfigure(
            "protocol_cap_nl", session_cap_nl
        )  # the cap in steps; refused while moving
        if zone_left_nl < 0:
            self.S[_ZONE_END] = -1
        else:
            self.S[_ZONE_END] = self.delivered_steps + M.plunger_steps_for_nl(
                zone_left_nl, self._area_cmm2
            )

    def set_calibration(self, dose_factor_ppm):
        """Apply a gravimetric dose correction (delivered / counted, ppm); SettingsError if not."""
        if self.state not in IDLE:
            raise SettingsError.one("calibration", SettingsError.NOT_IDLE)
        calib.check_factor(dose_factor_ppm)
        self._reconfigure("dose_factor_ppm", dose_factor_ppm)

    # ---- operator actions (main loop) ---------------------------------------

    def start_homing(self):
        """Home both axes; the only way out of power-up, a reset or a fault (H3)."""
        if self.state not in (ST_UNHOMED, ST_READY):
            return False
        self._load_to_confirm = False  # only a load ends with a syringe to confirm
        homing.begin_homing(self.S, 0)
        self._sync_outputs()
        return True

    def start_load(self):
        """Plunger back to its rear switch so the syringe can be changed."""
        if self.state != ST_READY:
            self.notice = N_NOT_HOMED if self.state == ST_UNHOMED else N_BUSY
            return False
        self._unload()  # the syringe is changed now: its size is confirmed once seated
        homing.begin_homing(self.S, 1)
        self.state = ST_LOAD
        self._load_to_confirm = True
        self._sync_outputs()
        return True

    def _unload(self):
        """Another syringe, or another size: not primed, nothing injected until confirmed."""
        self.S[_SYRINGE_OK] = 0
        self.S[_PRIMED] = 0

    def confirm_syringe(self):
        """The operator confirms that the syringe seated is the size set (H13).

        Only once a load has ended with a syringe seated: the device cannot see
        the barrel, so its size is what the operator confirms then. A size set
        between the load's end and this is the one confirmed (the plunger has
        not moved since). False if refused: still loading, no syringe seated,
        or no load since the last confirmation or homing. A size change or a
        new load clears it again.
        """
        s = self.S
        if self.state != ST_READY or not self._load_to_confirm or not s[_IN_SW] & SW_SYRINGE:
            return False
        s[_SYRINGE_OK] = 1
        self._load_to_confirm = False
        self.syringe_confirms += 1
        if self.notice == N_SYRINGE_UNCONFIRMED or self.notice == N_NO_SYRINGE:
            self.notice = N_NONE
        return True

    def start_backlash(self):
        """Measure the plunger's backlash (homed, primed, into a cup); False if refused."""
        return backlash.start(self)

    def set_backlash(self, steps):
        """Use `steps` of backlash for the compensation (a measurement's result)."""
        if self.state not in IDLE:
            raise SettingsError.one("backlash", SettingsError.NOT_IDLE)
        backlash.check(steps)
        old = self.S[_BACKLASH]
        self.S[_BACKLASH] = steps
        try:
            self.configure()
        except SettingsError:
            self.S[_BACKLASH] = old
            raise
        if self.S[_GAP] > steps:
            self.S[_GAP] = steps

    def set_line_tau(self, tau_us):
        """The line's time constant pressure advance uses (a measurement's result, us;
        0: no pressure advance; LINE_TAU_ESTIMATE: back to the reference line's estimate)."""
        if self.state not in IDLE:
            raise SettingsError.one("line_tau_us", SettingsError.NOT_IDLE)
        if tau_us == M.LINE_TAU_ESTIMATE:
            tau_us = None
        if tau_us is not None and (
            not isinstance(tau_us, int) or not 0 <= tau_us <= M.LINE_TAU_MAX_US
        ):
            raise SettingsError.one(
                "line_tau_us", SettingsError.RANGE, tau_us, 0, M.LINE_TAU_MAX_US
            )
        c = M.syringe_compliance_nl_kpa(self.settings.syringe_model, self._area_nominal)
        self._reconfigure("_tau_measured", None if tau_us is None else (tau_us, c))

    def line_tau_for(self, settings):
        """The line's time constant pressure advance plans `settings` with, us: the measured
        one (set_line_tau) scaled to the syringe's compliance (the needle's resistance stays),
        else the reference line's estimate for the syringe (machine.line_tau_us)."""
        c = M.syringe_compliance_nl_kpa(settings.syringe_model, settings.syringe()[0])
        if self._tau_measured is not None:
            tau_us, c0 = self._tau_measured
            return tau_us * c // c0
        return M.line_tau_us(c)

    @property
    def line_tau_us(self):
        """The time constant the settings in use were planned with (configure keeps it: its
        estimate takes long integers on the device, and the log reads it every pass)."""
        return self._line_tau_us

    @property
    def line_tau_stored(self):
        """What the store keeps: the measured time constant for the syringe set (which the
        store keeps beside it), or LINE_TAU_ESTIMATE."""
        return self.line_tau_us if self._tau_measured is not None else M.LINE_TAU_ESTIMATE

    def acknowledge(self):
        """Clear a latched fault; motion then needs homing again (H3).

        A fault that may have opened the line (codes.FAULTS' last column) leaves the
        syringe unprimed; one that kept it closed leaves it primed, and homing then
        moves the needle alone (homing.py)."""
        if self.state == ST_FAULT:
            s = self.S
            if not FAULT_LINES[s[_FAULT]]:
                s[_PRIMED] = 0
            s[_STATE] = ST_UNHOMED
            s[_FAULT] = F_NONE
            s[_RECOVERY] = REC_NONE
            s[_FIRE_PREV] = SW_FIRE  # a held trigger fires nothing until pressed again
            s[_OUT_ALARM] = ALARM_WARNING if self.warning else ALARM_NONE
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

    def needle_depth_um(self):
        """How deep the needle tip is below the skin surface (um; <= 0: out of it), from
        the needle's count; None where that count is not known: not homed since power-up
        or a reset, or stopped while homing."""
        s = self.S
        if not s[_HOMED]:
            was = s[_FAULT_WAS]
            if s[_STATE] == ST_HOMING or was == ST_UNHOMED or was == ST_HOMING:
                return None
        steps = self.needle.pos
        return (steps * 1000 + M.NEEDLE_STEPS_PER_MM // 2) // M.NEEDLE_STEPS_PER_MM - (
            M.NEEDLE_HOME_OFFSET_UM
        )

    def plunger_limit_left(self):
        """Fluid steps the syringe can still give before its dead space (configure keeps it)."""
        return self.S[_USABLE] - self.S[_FLUID_STEPS]

    def can_fire(self):
        """May a puncture start now? If not, `notice` says why."""
        return bool(can_fire(self.S))

    def plans(self):
        return self._plans[self._active]

    # ---- the tick, where no interrupt runs it (simulator, tests, rig) -------------

    def tick(self):
        """One control tick through the ports: what the board's interrupt does in registers."""
        s = self.S
        s[_IN_SW] = self.inputs.switches()
        s[_IN_FORCE] = self.inputs.force_mn()
        needle = self.needle
        plunger = self.plunger
        s[_IN_NCOUNT] = needle.port.emitted()
        s[_IN_PCOUNT] = plunger.port.emitted()
        tick(s, self.ramps, WORDS)
        if s[_OUT_HALT]:
            needle.port.halt()
            plunger.port.halt()
            s[_IN_NCOUNT] = needle.port.emitted()
            s[_IN_PCOUNT] = plunger.port.emitted()
            after_halt(s)
        put = s[_OUT_PUT]
        if put & 1:
            needle.port.put(needle.words())
        if put & 2:
            plunger.port.put(plunger.words())
        if s[_OUT_DRIVERS] != self._drivers_out or s[_OUT_ALARM] != self._alarm_out:
            self._sync_outputs()

    def _sync_outputs(self):
        """Tell the outputs port what the tick decided (drivers, alarm), when it changed."""
        s = self.S
        on = bool(s[_OUT_DRIVERS])
        if on != self._drivers_out:
            self._drivers_out = on
            self.outputs.drivers(on)
        level = s[_OUT_ALARM]
        if level != self._alarm_out:
            self._alarm_out = level
            self.outputs.alarm(level)
