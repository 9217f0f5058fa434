"""The control core: one `tick(now_us)` a millisecond drives the whole machine.

Ports (duck-typed objects handed to Core; the board layer and the simulator
both provide them):
    needle, plunger  .put(words)      the two PIO words of this tick (array 'I')
                     .emitted()       signed steps actually sent to the motor so far
                     .halt()          drop queued words and stop stepping at once
    inputs           .switches()      bitmask of SW_* (1 = closed / pressed)
                     .force_mn()      latest load-cell force, mN
    outputs          .drivers(on)     enable both stepper drivers (EN is active low on the board)

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
STATE_NAMES = ("unhomed", "homing", "ready", "advance", "inject", "suck-back",
               "retract", "wait", "prime", "load", "fault")

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
FAULT_NAMES = ("none", "emergency stop", "needle home switch not found",
               "plunger rear switch not found", "plunger front limit reached",
               "needle past its soft limit")

# Notices: why the trigger did nothing (shown by the UI, cleared by the next action)
N_NONE = const(0)
N_NOT_HOMED = const(1)
N_NO_SYRINGE = const(2)
N_NOT_PRIMED = const(3)
N_SYRINGE_LOW = const(4)
N_BUSY = const(5)
N_WATCHDOG_RESET = const(6)
NOTICE_NAMES = ("", "home first", "no syringe", "prime first", "not enough left for a dose", "busy",
                "restarted by the watchdog: home first")

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
        self.settings = Settings()
        self.backlash_steps = M.um_to_plunger_steps(M.PLUNGER_BACKLASH_UM)
        self._needle_limit_steps = 0
        self._plans = (_PlanSet(), _PlanSet())
        self._active = 0  # index of the plan set the tick uses
        self._configuring = False
        self._area_cmm2, self._capacity_nl, self._dead_nl = self.settings.syringe()
        self._plan_static()
        self.configure(**(settings.as_dict() if settings else {}))

        self.state = ST_UNHOMED
        self.fault = F_NONE
        self.reset_cause = reset_cause
        self.notice = N_WATCHDOG_RESET if reset_cause == RC_WATCHDOG else N_NONE
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
        # Counters
        self.ticks = 0
        self.overruns = 0  # times the board let the PIO FIFOs run dry (the board counts them)
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
        # Short moves that bring an axis from where homing stopped to exactly zero.
        self.plan_settle = [Plan("settle %d" % d, 2).set(d, M.NEEDLE_HOME_SLOW_UM_S * ns // 1000, na)
                            for d in range(_SETTLE_MAX_STEPS + 1)]
        self._plunger_limit_steps = M.um_to_plunger_steps(M.PLUNGER_TRAVEL_UM) - self.backlash_steps

    def configure(self, **changes):
        """Apply operator settings; raises SettingsError and keeps the old ones if any is wrong."""
        self._configuring = True  # the tick starts no move while this is set
        try:
            if getattr(self, "state", ST_UNHOMED) not in (ST_UNHOMED, ST_READY, ST_FAULT):
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
            self._area_cmm2, self._capacity_nl, self._dead_nl = new.syringe()
            self.plan_prime.set(M.um_to_plunger_steps(M.PLUNGER_TRAVEL_UM),
                                M.plunger_steps_for_nl(M.PRIME_RATE_NL_S, self._area_cmm2),
                                M.um_to_plunger_steps(M.PLUNGER_ACCEL_UM_S2))
            self._needle_limit_steps = M.um_to_needle_steps(
                M.NEEDLE_HOME_OFFSET_UM + self.limits.needle_length_um)
            self._usable_steps = M.plunger_steps_for_nl(
                self._capacity_nl - self._dead_nl, self._area_cmm2)
            self._active = 1 - self._active
        finally:
            self._configuring = False

    def _plan_cycle(self, s, ps):
        area = s.syringe()[0]
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

    def acknowledge(self):
        """Clear a latched fault; motion then needs homing again."""
        if self.state == ST_FAULT:
            self.state = ST_UNHOMED
            self.fault = F_NONE
            self._fire_prev = True  # a held trigger fires nothing until pressed again
            return True
        return False

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
        self.needle_emitted = self.needle.emitted()
        self.plunger_emitted = self.plunger.emitted()
        self.force_mn = self.inputs.force_mn()
        self.ticks = (self.ticks + 1) & 0x3FFFFFFF  # 12 days, then wraps: never a big int
        state = self.state
        if sw & SW_ESTOP and state != ST_FAULT:
            self._fault(F_ESTOP)
            state = ST_FAULT

        fire = sw & _FIRE
        pressed = fire and not self._fire_prev
        self._fire_prev = fire

        self.needle.tick()
        if self.needle.pos > self._needle_limit_steps and self.homed:
            # Never deeper than the needle allows (H2). The commanded position
            # runs ahead of the motor, so the flush stops it short of the limit.
            self._fault(F_NEEDLE_SOFT_LIMIT)
            state = ST_FAULT
        n = self.plunger.tick()  # every tick, so both axes' PIO timelines stay locked
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

    # ---- sequencer (called from the tick; no allocation) --------------------

    def _fault(self, code):
        self.needle.halt()
        self.plunger.halt()
        self.outputs.drivers(False)
        self.fault = code
        self.state = ST_FAULT
        self.homed = False

    def _plunger_start(self, plan, direction):
        p = self.plunger
        self._comp_left = self.backlash_steps if p.last_dir != direction else 0
        p.start(plan, direction)

    def _can_fire(self):
        if self._configuring:
            self.notice = N_BUSY
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
            self.notice = N_SYRINGE_LOW
            return False
        self.notice = N_NONE
        return True

    def plunger_limit_left(self):
        """Fluid steps the syringe can still give before its dead space (kept current by configure)."""
        return self._usable_steps - self.fluid_steps

    def _on_press(self):
        mode = self.settings.mode
        if mode == MODE_PRIME:
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
        if self.settings.mode == MODE_CONTINUOUS and fire:
            self.state = ST_WAIT
        else:
            self.state = ST_READY

    def _prime_tick(self, fire):
        p = self.plunger
        if p.phase == IDLE:
            self.primed_steps += self.fluid_steps - self._prime_fluid0
            self.primed = True
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
