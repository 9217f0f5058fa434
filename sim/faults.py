"""Fault injection: every fault in every phase of the machine, measured on the motors.

    from sim.faults import FAULTS, PHASES, run_cell
    cell = run_cell("occlusion", "inject")
    cell.passed, cell.reasons, cell.detect_ticks, cell.extra_ul

FAULTS maps a fault's name to a Fault: how to inject it into a running
simulator, when it becomes readable (the tick from which the firmware could
see it), the fault codes that count as catching it and the hazards it is about
(docs/hazards.toml). PHASES are where it is injected: idle (ready, not
shooting), homing, the four steps of a puncture (advance, inject, suck-back,
retract), prime and load. run_cell() brings a fresh simulator (real core,
machine model, FIFO lead) into the phase, injects the fault mid-motion, runs
on and measures, on the machine's side:

- detect_ticks: ticks from the fault becoming readable to the core's fault
  (1 = the very next tick). Most faults are readable at once; an occlusion
  only once the load cell's 80 Hz sample crosses the limit; lost steps once
  more than one full step is missing; a switch that contradicts the position
  only once the firmware knows the position (homed).
- stop_ticks: ticks, from the one that detected the fault, in which a motor
  still moved in a hazardous direction (forward: needle into the skin, plunger
  pushing) or moved at all with its driver disabled. 0: the flush stopped
  everything in the detecting tick.
- extra_ul: volume pushed after the fault; for an occlusion, the bolus that
  comes out once the block clears after the relief (hazard H4: <= 2 uL).
- max_depth_um: deepest needle tip from the injection on, against the
  usable needle length (and the set depth + 0.05 mm while a puncture runs).
- final_state, drivers_on, and, after a fault, that acknowledging leaves the
  core unhomed and a held trigger moves nothing (H3).

A fault that has nothing to act on in a phase (an occlusion while idle, lost
steps on an axis that stands still) is "n/a": the cell then shows that
nothing unsafe happened (no fault, no extra volume, no unplanned motion).

host_tools/safety_report.py writes the whole matrix to docs/safety-matrix.md;
tests/test_safety_matrix.py fails when any cell misses its target.
"""

import pickle
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Optional

from injcore import codes as C
from injcore import machine as M
from injcore import pio_word
from injcore.layout import WINDOW  # ticks of steps the core allows to be still queued
from injcore.machine import WDT_TIMEOUT_MS
from injcore.settings import MODE_CONTINUOUS, MODE_PRIME, MODE_SINGLE, Settings

from .machine import PLUNGER_UM_PER_STEP
from .session import Simulator

# Realistic settings: 1.5 mm deep, 10 uL a shot with 0.5 uL suck-back, 1 mL syringe.
SETTINGS = dict(
    mode=MODE_SINGLE,
    depth_um=1500,
    dose_nl=10_000,
    speed_um_s=20_000,
    rate_nl_s=50_000,
    suckback_nl=500,
    shot_rate_mhz=2000,
    syringe_model=1,
)

PHASES = ("idle", "homing", "advance", "inject", "suck-back", "retract", "prime", "load")
PHASE_STATE = {
    "idle": C.ST_READY,
    "homing": C.ST_HOMING,
    "advance": C.ST_ADVANCE,
    "inject": C.ST_INJECT,
    "suck-back": C.ST_SUCKBACK,
    "retract": C.ST_RETRACT,
    "prime": C.ST_PRIME,
    "load": C.ST_LOAD,
}
PUNCTURE_PHASES = ("advance", "inject", "suck-back", "retract")
# How far into a phase the fault comes (ms): mid-motion, well inside the phase.
PHASE_OFFSET_MS = {
    "idle": 20,
    "homing": 200,
    "advance": 80,
    "inject": 100,
    "suck-back": 8,
    "retract": 12,
    "prime": 100,
    "load": 30,
}
PRIME_HOLD_MS = 1500  # the trigger stays held this long after a fault injected while priming

# One plunger step of the 1 mL syringe, 5 nL: "zero" volume
ONE_STEP_UL = M.nl_for_plunger_steps(1, M.SYRINGES[1][M.SYR_AREA_CMM2]) / 1000
BOLUS_MAX_UL = 2.0  # H4
DEPTH_ERROR_UM = 50  # H2
DETECT_MAX_TICKS = 1  # H4/H6: within one control tick of the reading
STOP_MAX_TICKS = 1
HANG_DETECT_MAX_MS = 500  # H8
QUIET_MS = 50  # an undetected fault: the machine must sit still this long at the end


# ---- a fresh simulator in a known state, fast ---------------------------------------------


@lru_cache(maxsize=None)
def _snapshot(kind):
    """Pickled simulators, built once per process; each cell gets its own copy."""
    if kind == "unhomed":  # power-up: needle 2 mm past the nozzle face, no syringe
        sim = Simulator(trace=False, settings=Settings(**SETTINGS))
    elif kind == "ready":  # homed, full 1 mL syringe, primed, one puncture done
        sim = Simulator(trace=False, settings=Settings(**SETTINGS))
        assert sim.home()
        sim.load(1)
        sim.prime(800)
        sim.configure(**SETTINGS)
        assert sim.shot() is not None
    elif kind == "last-dose":  # enough left for one more dose only
        sim = _restore("ready")
        core, m = sim.core, sim.machine
        ps = core.plans()
        want = ps.dose_steps * 3 // 2 + ps.sb_steps
        core.configure(mode=MODE_PRIME)
        m.trigger = True
        sim.run_until(lambda s: s.core.plunger_limit_left() <= want, 200_000)
        m.trigger = False
        sim.run_until(lambda s: s.core.state == C.ST_READY, 2000)
        sim.settle()
        core.configure(mode=MODE_SINGLE)
        left = core.plunger_limit_left()
        assert ps.dose_steps + ps.sb_steps <= left < 2 * ps.dose_steps + ps.sb_steps, left
    elif kind == "empty":  # less than a dose left
        sim = _restore("last-dose")
        assert sim.shot() is not None
        ps = sim.core.plans()
        assert sim.core.plunger_limit_left() < ps.dose_steps + ps.sb_steps
    else:
        raise KeyError(kind)
    return pickle.dumps(sim)


def _restore(kind):
    return pickle.loads(_snapshot(kind))


def enter_phase(phase, base="ready", mode=MODE_SINGLE):
    """A simulator mid-way through `phase`, the trigger as the phase left it.

    sim.at_rest is (pusher face um, counted fluid steps, set depth um) from
    before the phase began, with nothing queued: what comes out is compared
    with what the core counted from there.
    """
    if phase == "homing":
        sim = _restore("unhomed")
        sim.at_rest = (sim.machine.face_um, sim.core.fluid_steps, sim.core.settings.depth_um)
        assert sim.core.start_homing()
        sim.run_ms(PHASE_OFFSET_MS[phase])
    else:
        sim = _restore(base)
        m, core = sim.machine, sim.core
        sim.at_rest = (m.face_um, core.fluid_steps, core.settings.depth_um)
        if core.settings.mode != mode:
            core.configure(mode=mode)
        if phase == "idle":
            sim.run_ms(PHASE_OFFSET_MS[phase])
        elif phase == "load":
            m.remove_syringe()
            sim.run_ms(5)
            assert core.start_load()
            sim.run_ms(PHASE_OFFSET_MS[phase])
        elif phase == "prime":
            core.configure(mode=MODE_PRIME)
            m.trigger = True
            sim.run_until(lambda s: s.core.state == C.ST_PRIME, 100)
            sim.run_ms(PHASE_OFFSET_MS[phase])
        else:
            m.trigger = True
            st = PHASE_STATE[phase]
            sim.run_until(lambda s: s.core.state == st, 2000)
            sim.run_ms(PHASE_OFFSET_MS[phase])
    if sim.core.state != PHASE_STATE[phase]:
        raise RuntimeError("could not stop mid-%s (state %s)" % (phase, sim.state))
    return sim


# ---- one run: the simulator stepped tick by tick and watched on the machine's side ----------


class Run:
    """A simulator after the injection, with what the cell measures."""

    def __init__(self, sim, fault, phase):
        self.sim = sim
        self.m = sim.machine
        self.fault = fault
        self.phase = phase
        self.i = 0  # ticks since the injection
        self.detect = None  # tick whose core.tick found the fault
        self.code = C.F_NONE
        self.detect_state = None  # core state in which it was found
        self.visible = None  # tick after which the fault was readable
        # After detection: ticks of hazardous motion (a forward step, or any step with
        # the drivers off) right from the detecting tick on (the stop), and any later.
        self.stop_ticks = None
        self.late_hazards = 0  # ticks with hazardous motion after the motors had stopped
        self.late_forward = 0  # forward steps among them
        self.steps_off = 0  # motor steps made with the drivers disabled, after detection
        self.fwd_after_um = 0.0  # forward pusher motion after detection
        self.max_depth = self.m.needle_tip_um()
        self.depth_at_start = self.max_depth
        self.last_forward = [None, None]  # last tick each motor stepped forward
        self._quiet_since = None
        self.face0, self.fluid0, self.set_depth = getattr(
            sim, "at_rest", (self.m.face_um, sim.core.fluid_steps, sim.core.settings.depth_um)
        )
        self.fwd_push_um = 0.0  # forward pusher motion with a syringe in, since the injection
        self.fwd_push_skin_um = 0.0  # ... of it while the needle tip was past the nozzle face
        self.stall_started = None  # overrun: the tick the control loop stopped
        self.dropped0 = (self.m.needle_axis.dropped, self.m.plunger_axis.dropped)
        self.deficit_at_detect = None
        self.vmax = [0, 0]  # most steps in one tick, needle and plunger, since the injection
        self.notes = []
        self.watch = True  # False once the operator acts (acknowledge, homing)
        self.area = self.m.syringe_area_mm2
        self.state0 = sim.core.state  # the phase's state at the injection
        self._prev_state = self.state0
        self.detected_in = None

    # ---- stepping

    def step(self, n=1, hang=False):
        for _ in range(n):
            m = self.m
            na, pa = m.needle_axis, m.plunger_axis
            n0, p0, f0 = na.motor_steps, pa.motor_steps, m.face_um
            d0 = (na.dropped, pa.dropped)
            if hang:
                self.sim.hang_step()
            else:
                self.sim.step()
            self.i += 1
            dn, dp = na.motor_steps - n0, pa.motor_steps - p0
            if self.detect is None:  # the speed the lost-step window had to cover
                self.vmax[0] = max(self.vmax[0], abs(dn) + na.dropped - d0[0])
                self.vmax[1] = max(self.vmax[1], abs(dp) + pa.dropped - d0[1])
            self.max_depth = max(self.max_depth, m.needle_tip_um())
            if dn > 0:
                self.last_forward[0] = self.i
            if dp > 0:
                self.last_forward[1] = self.i
            if m.face_um > f0 and m.syringe_present:
                self.fwd_push_um += m.face_um - f0
                if m.needle_tip_um() > 0:
                    self.fwd_push_skin_um += m.face_um - f0
            self._observe(dn, dp, m.face_um - f0)

    def _observe(self, dn, dp, dface):
        if not self.watch:
            return
        core, m = self.sim.core, self.m
        if self.detect is None:
            if core.fault:
                self.detect = self.i
                self.code = core.fault
                self.detect_state = core.state
                self.detected_in = self._prev_state  # the state the fault cut short
                self.face_at_detect = m.face_um
                self.tip_at_detect = m.needle_tip_um()
                self.deficit_at_detect = self.deficit()
            elif self.visible is None and self.fault.visible(self):
                self.visible = self.i
        self._prev_state = core.state
        if self.detect is not None:
            hazard = dn > 0 or dp > 0 or ((dn or dp) and not m.drivers_on)
            if self.stop_ticks is None:
                if not hazard:
                    self.stop_ticks = self.i - self.detect
            elif hazard:
                self.late_hazards += 1
                self.late_forward += max(dn, 0) + max(dp, 0)
            if (dn or dp) and not m.drivers_on:
                self.steps_off += abs(dn) + abs(dp)
            if dface > 0:
                self.fwd_after_um += dface

    def run_until(self, pred, timeout_ms, hang=False):
        for _ in range(int(timeout_ms)):
            if pred(self):
                return True
            self.step(hang=hang)
        return pred(self)

    # ---- figures

    def deficit(self):
        """Pulses dropped since the injection on the faulty axis (lost-step faults)."""
        ax = self.fault.axis
        if ax is None:
            return 0
        axis = self.m.needle_axis if ax == 0 else self.m.plunger_axis
        return axis.dropped - self.dropped0[ax]

    def quiet(self):
        m = self.m
        return not m.needle_axis.pending_steps() and not m.plunger_axis.pending_steps()

    def quiet_for(self, ms, states=(C.ST_READY, C.ST_UNHOMED)):
        """True once the queues have been empty in one of `states` for `ms` ticks."""
        if not self.quiet() or self.sim.core.state not in states:
            self._quiet_since = None
            return False
        if self._quiet_since is None:
            self._quiet_since = self.i
        return self.i - self._quiet_since >= ms

    def settled_fault(self):
        c = self.sim.core
        return c.state == C.ST_FAULT and not c.recovery_pending and self.quiet()

    def motion(self):
        m = self.m
        return m.needle_axis.motor_steps, m.plunger_axis.motor_steps

    # ---- the Simulator's face, for the injectors

    @property
    def machine(self):
        return self.m

    @property
    def core(self):
        return self.sim.core

    def hang_step(self):
        self.step(hang=True)


# ---- faults ----------------------------------------------------------------------------------


def _always(run):
    return True


def _homed(run):
    c = run.sim.core
    return c.homed and c.state != C.ST_LOAD


def _armed(run):
    """Checks that need a known position run in every state but unhomed."""
    return run.sim.core.state not in (C.ST_UNHOMED, C.ST_FAULT)


def _pressure(run):
    c = run.sim.core
    return run.m._hx711_mn > c.occlusion_mn and c.state not in (
        C.ST_UNHOMED,
        C.ST_RELIEF,
        C.ST_FAULT,
    )


def _lost(run):
    return run.deficit() > M.LOST_STEPS_TOL and _armed(run)


def _stuck_visible(run):
    c = run.sim.core
    return _homed(run) and c.needle.emitted() > M.um_to_needle_steps(M.HOME_STUCK_UM)


def _removed_visible(run):
    c = run.sim.core
    return c.homed and c.state in (C.ST_PRIME, C.ST_ADVANCE, C.ST_INJECT, C.ST_SUCKBACK)


@dataclass
class Fault:
    name: str
    title: str
    kind: str  # stop | hang | reset | empty | trigger | trigger-continuous
    hazards: tuple
    apply: Optional[Callable] = None  # apply(sim): the fault appears now (see INJECTORS)
    visible: Callable = _always  # visible(run): readable by the core from the next tick
    codes: tuple = ()  # fault codes that catch it
    clear: Optional[Callable] = None  # what the operator does before acknowledging
    axis: Optional[int] = None  # lost steps: 0 needle, 1 plunger
    bolus: bool = False  # an occlusion: measure what comes out once it clears
    target: str = ""  # the cell's target, in words (the report's legend)


# Injectors: each applies its fault to a running simulator now. They take a
# Simulator or a Run (which steps and watches one): anything with .machine,
# .core and hang_step().


def _set(attr, value=True):
    def apply(sim):
        setattr(sim.machine, attr, value)

    return apply


def _estop(sim):
    sim.machine.estop = True


def _estop_clear(sim):
    sim.machine.estop = False


def _block(sim):
    sim.machine.fluid.blocked = True


DROP_EVERY = 4  # lost steps: the PIO drops one pulse in four


def _drop(axis):
    def apply(sim):
        m = sim.machine
        (m.needle_axis if axis == 0 else m.plunger_axis).drop_every = DROP_EVERY

    return apply


def _underfill(sim):
    sim.machine.syringe_bottom_um = sim.machine.face_um  # the liquid ends here


def _remove(sim):
    sim.machine.remove_syringe()


def _overrun(sim):
    # The interrupt comes late by more than the FIFO holds: the queued words run
    # out, the motors starve, and the board counts it when the tick runs again.
    for _ in range(pio_word.LEAD_TICKS + 1):
        sim.hang_step()
    sim.core.overruns += 1


def _overrun_seen(run):
    c = run.core
    return c.overrun_pending


FAULTS = {
    f.name: f
    for f in (
        Fault(
            "estop",
            "emergency stop",
            "stop",
            ("H6", "H3", "H2"),
            _estop,
            codes=(C.F_ESTOP,),
            clear=_estop_clear,
            target="stopped within a tick, drivers off, the needle stays",
        ),
        Fault(
            "occlusion",
            "occlusion (needle blocked)",
            "stop",
            ("H4", "H6", "H3", "H2"),
            _block,
            visible=_pressure,
            codes=(C.F_OCCLUSION,),
            bolus=True,
            target="found within a tick of the load-cell reading; bolus after clearing <= 2 uL",
        ),
        Fault(
            "lost-needle",
            "lost steps, needle",
            "stop",
            ("H5", "H6", "H3", "H2"),
            _drop(0),
            visible=_lost,
            codes=(C.F_NEEDLE_LOST_STEPS,),
            axis=0,
            target="found once the deficit passes one full step and the FIFO window's margin",
        ),
        Fault(
            "lost-plunger",
            "lost steps, plunger",
            "stop",
            ("H5", "H6", "H7", "H3", "H2"),
            _drop(1),
            visible=_lost,
            codes=(C.F_PLUNGER_LOST_STEPS,),
            axis=1,
            target="found once the deficit passes one full step and the FIFO window's margin",
        ),
        Fault(
            "stall-needle",
            "stall flag, needle",
            "stop",
            ("H5", "H6", "H3", "H2"),
            _set("needle_stall"),
            visible=_armed,
            codes=(C.F_NEEDLE_STALL,),
            target="found the next tick",
        ),
        Fault(
            "stall-plunger",
            "stall flag, plunger",
            "stop",
            ("H5", "H6", "H7", "H3", "H2"),
            _set("plunger_stall"),
            visible=_armed,
            codes=(C.F_PLUNGER_STALL,),
            target="found the next tick",
        ),
        Fault(
            "home-open",
            "home switch never closes",
            "stop",
            ("H12", "H3", "H2"),
            _set("broken_home_switch"),
            visible=lambda run: False,
            codes=(C.F_NEEDLE_HOME_NOT_FOUND,),
            target="homing gives up after full travel + margin; n/a once homed",
        ),
        Fault(
            "home-stuck",
            "home switch stuck closed",
            "stop",
            ("H12", "H5", "H3", "H2"),
            _set("stuck_home_switch"),
            visible=_stuck_visible,
            codes=(C.F_NEEDLE_HOME_STUCK,),
            target="found the tick the needle is 0.5 mm from home, or after homing's back-off",
        ),
        Fault(
            "front-limit",
            "front limit switch early",
            "stop",
            ("H6", "H3", "H2"),
            _set("front_limit_early"),
            visible=_homed,
            codes=(C.F_PLUNGER_FRONT_LIMIT,),
            target="found the next tick once homed",
        ),
        Fault(
            "syringe-empty",
            "syringe runs empty (count)",
            "empty",
            ("H7",),
            target="the last dose completes in full, the next is refused, with the warning",
        ),
        Fault(
            "syringe-underfilled",
            "syringe empty early (under-filled)",
            "stop",
            ("H7", "H4", "H3", "H2"),
            _underfill,
            visible=_pressure,
            codes=(C.F_OCCLUSION,),
            target="the stopper bottoms out: found within a tick of the reading, alarm, "
            "nothing more pushed",
        ),
        Fault(
            "syringe-removed",
            "syringe removed",
            "stop",
            ("H7", "H6", "H3", "H2"),
            _remove,
            visible=_removed_visible,
            codes=(C.F_SYRINGE_REMOVED,),
            target="found the next tick while a dose or prime runs",
        ),
        Fault(
            "load-cell",
            "load cell disconnected",
            "stop",
            ("H4", "H6", "H3", "H2"),
            _set("load_cell_invalid"),
            visible=_armed,
            codes=(C.F_LOAD_CELL,),
            target="found the next tick",
        ),
        Fault(
            "overrun",
            "tick overrun (FIFO ran dry)",
            "stop",
            ("H8", "H6", "H3", "H2"),
            _overrun,
            visible=_overrun_seen,
            codes=(C.F_TICK_OVERRUN,),
            target="found by the tick that runs again",
        ),
        Fault(
            "hang",
            "hang (watchdog reset)",
            "hang",
            ("H8", "H3", "H2"),
            target="motors stop as the FIFO drains; watchdog reset <= 500 ms; then nothing moves",
        ),
        Fault(
            "reset",
            "reset mid-motion (power)",
            "reset",
            ("H3", "H2"),
            target="nothing moves until the operator homes, trigger held or not",
        ),
        Fault(
            "trigger-single",
            "trigger stuck (single)",
            "trigger",
            ("H3",),
            target="one puncture per press; after a fault the held trigger fires nothing",
        ),
        Fault(
            "trigger-continuous",
            "trigger held, released (continuous)",
            "trigger-continuous",
            ("H3",),
            target="shots only while held; release finishes the puncture and stops",
        ),
    )
}


def _hang(sim):
    for _ in range(WDT_TIMEOUT_MS):  # nothing feeds the watchdog
        sim.hang_step()
    sim.reset_board(C.RC_WATCHDOG)


def _press(sim):
    sim.machine.trigger = True


# name -> function(sim) that applies the fault to a running Simulator now. The
# syringe running empty is a state, not an event: see _snapshot("last-dose").
INJECTORS = {name: f.apply for name, f in FAULTS.items() if f.apply is not None}
INJECTORS.update(
    {
        "hang": _hang,
        "reset": lambda sim: sim.reset_board(C.RC_POWER_ON),
        "trigger-single": _press,
        "trigger-continuous": _press,
    }
)


# ---- the record of one cell ------------------------------------------------------------------


@dataclass
class Cell:
    fault: str
    phase: str
    applicable: bool = True  # False: "n/a — no hazard" (the fault had nothing to act on)
    code: int = C.F_NONE
    outcome: str = ""  # fault name, or what happened instead
    detect_ticks: Optional[int] = None
    stop_ticks: Optional[int] = None
    extra_ul: float = 0.0
    max_depth_um: float = 0.0
    limit_um: int = 0
    final_state: str = ""
    drivers_on: bool = False
    reasons: list = field(default_factory=list)  # why it failed; empty: passed
    notes: list = field(default_factory=list)

    @property
    def passed(self):
        return not self.reasons

    def fail(self, why):
        self.reasons.append(why)

    def summary(self):
        s = "%s @ %s: %s" % (self.fault, self.phase, "ok" if self.passed else "FAIL")
        s += " (%s; detect %s, stop %s, extra %.3f uL, depth %.0f/%d um, %s, drivers %s)" % (
            self.outcome or "-",
            self.detect_ticks,
            self.stop_ticks,
            self.extra_ul,
            self.max_depth_um,
            self.limit_um,
            self.final_state,
            "on" if self.drivers_on else "off",
        )
        if self.reasons:
            s += ": " + "; ".join(self.reasons)
        return s


def run_cell(fault, phase):
    """Inject `fault` (a FAULTS name) mid-`phase` and measure; returns a Cell."""
    f = FAULTS[fault]
    if phase not in PHASE_STATE:
        raise KeyError(phase)
    return _KINDS[f.kind](f, phase)


def run_matrix(faults=None, phases=PHASES):
    return [run_cell(f, p) for f in (faults or FAULTS) for p in phases]


# ---- shared checks -------------------------------------------------------------------------


def _new_cell(f, phase, run):
    core = run.sim.core
    return Cell(f.name, phase, limit_um=core.limits.needle_length_um)


def _check_depth(cell, run, set_depth_um=None):
    cell.max_depth_um = run.max_depth
    if run.max_depth > cell.limit_um:
        cell.fail(
            "needle tip %.0f um past the usable needle length %d um"
            % (run.max_depth, cell.limit_um)
        )
    if set_depth_um is not None and run.max_depth > set_depth_um + DEPTH_ERROR_UM:
        cell.fail(
            "needle tip %.0f um deeper than the set %d um + %d"
            % (run.max_depth, set_depth_um, DEPTH_ERROR_UM)
        )


def _set_depth(run, phase):
    return run.set_depth if phase in PUNCTURE_PHASES else None


def _note_push_needle_out(cell, run, phase):
    if phase in ("homing", "load") and run.fwd_push_um > run.fwd_push_skin_um:
        cell.notes.append(
            "%s pushed %.1f uL with the needle out (prime again)"
            % (phase, (run.fwd_push_um - run.fwd_push_skin_um) * run.area / 1000)
        )


def _over_count_ul(run, phase):
    """What went out beyond what the core counted, in uL (0 when all was counted).

    Homing and loading put the count back to zero (a full syringe at the rear
    switch): there, any push with a syringe in and the needle in the skin
    counts as extra.
    """
    if phase in ("homing", "load"):
        return run.fwd_push_skin_um * run.area / 1000
    real_um = run.m.face_um - run.face0
    counted_um = (run.sim.core.fluid_steps - run.fluid0) * PLUNGER_UM_PER_STEP
    return max(0.0, (real_um - counted_um) * run.area / 1000)


def _finish(cell, run):
    core, m = run.sim.core, run.m
    cell.final_state = C.STATE_NAMES[core.state]
    cell.drivers_on = m.drivers_on


def _nothing_moves(run, cell, ms, what, press=True):
    """Before the operator homes, nothing moves for `ms`: a fresh press (press=True,
    then released) or the trigger left as it is (held all along)."""
    m = run.m
    before = run.motion()
    face = m.face_um
    if press:
        m.trigger = False
        run.step(10)
        m.trigger = True
    run.step(ms)
    if press:
        m.trigger = False
        run.step(10)
    if run.motion() != before or m.face_um != face:
        cell.fail(
            "motion %s (needle %+d, plunger %+d steps)"
            % (what, run.motion()[0] - before[0], run.motion()[1] - before[1])
        )
    if m.drivers_on:
        cell.fail("drivers on %s" % what)


# ---- kind "stop": a fault the core must catch, stop on and latch ---------------------------------


def _run_stop(f, phase):  # noqa: C901  (one fault kind, its cases per phase)
    sim = enter_phase(phase)
    run = Run(sim, f, phase)
    core, m = sim.core, sim.machine
    cell = _new_cell(f, phase, run)
    if f.name == "overrun":
        run.stall_started = run.i
    f.apply(run)
    if run.visible is None and f.visible(run):
        run.visible = run.i
    if phase != "prime":
        m.trigger = False  # a single press
    timeout = 30_000 if phase in ("homing", "load") else 8000

    def done(r):
        if phase == "prime" and r.i == PRIME_HOLD_MS:
            m.trigger = False
        if r.detect is not None:
            return r.settled_fault() and r.i >= r.detect + 30
        return (
            r.quiet_for(QUIET_MS)
            and not m.trigger
            and r.i >= max(QUIET_MS * 8, PRIME_HOLD_MS if phase == "prime" else 0)
        )

    if not run.run_until(done, timeout):
        cell.fail("still %s after %d ms" % (C.STATE_NAMES[core.state], timeout))
    _finish(cell, run)
    _check_depth(cell, run, _set_depth(run, phase))

    if run.detect is None:
        cell.applicable = run.visible is not None
        cell.outcome = "no fault" if cell.applicable else "n/a — no hazard"
        if run.visible is not None:
            cell.fail("readable from tick %d, never caught" % run.visible)
        # Nothing more than counted went out: real pusher travel vs counted fluid steps.
        cell.extra_ul = _over_count_ul(run, phase)
        _note_push_needle_out(cell, run, phase)
        if cell.extra_ul > ONE_STEP_UL:
            cell.fail("%.3f uL pushed beyond the count" % cell.extra_ul)
        _check_homing_bound(f, phase, run, cell)
        return cell

    # Caught.
    cell.applicable = True
    cell.code = run.code
    cell.outcome = C.FAULT_NAMES[run.code]
    if run.code not in f.codes:
        want = " or ".join(repr(C.FAULT_NAMES[c]) for c in f.codes)
        cell.fail("caught as %r, expected %s" % (C.FAULT_NAMES[run.code], want))
    if C.STATE_NAMES[run.detect_state] != "fault":
        cell.fail("state %s right after the fault" % C.STATE_NAMES[run.detect_state])
    ref = run.visible if run.visible is not None else 0
    cell.detect_ticks = run.detect - ref
    cell.stop_ticks = run.stop_ticks if run.stop_ticks is not None else run.i - run.detect + 1
    if f.axis is not None:
        _check_lost_steps(f, run, cell)
    elif f.name in ("home-open", "home-stuck") and phase == "homing":
        _check_homing_bound(f, phase, run, cell)
    elif cell.detect_ticks > DETECT_MAX_TICKS:
        cell.fail(
            "caught %d ticks after it was readable (target %d)"
            % (cell.detect_ticks, DETECT_MAX_TICKS)
        )
    if run.stall_started is not None:
        since = run.detect - run.stall_started
        cell.notes.append("found %d ms after the loop stopped" % since)
        if since > HANG_DETECT_MAX_MS:
            cell.fail(
                "overrun found %d ms after the loop stopped (target %d)"
                % (since, HANG_DETECT_MAX_MS)
            )
    if run.detected_in != run.state0:
        cell.notes.append("caught in %s" % C.STATE_NAMES[run.detected_in])
    if run.detected_in in (C.ST_ADVANCE, C.ST_INJECT, C.ST_SUCKBACK) and m.syringe_present:
        # H7: a dose cut short is never silent (the fault alarm is checked below).
        given = (run.face_at_detect - run.face0) * run.area / 1000
        cell.notes.append(
            "net %.2f uL pushed when cut (dose %.2f%s)"
            % (
                max(0.0, given),
                core.settings.dose_nl / 1000,
                ", suck-back unfinished" if run.detected_in == C.ST_SUCKBACK else "",
            )
        )
    if cell.stop_ticks > STOP_MAX_TICKS:
        cell.fail(
            "motors moved on for %d ticks after the fault (target %d)"
            % (cell.stop_ticks, STOP_MAX_TICKS)
        )
    if run.late_forward:
        cell.fail("%d forward steps after the motors had stopped" % run.late_forward)
    if run.steps_off:
        cell.fail("%d steps with the drivers disabled" % run.steps_off)
    if core.state != C.ST_FAULT:
        cell.fail("ended %s, not latched in fault" % C.STATE_NAMES[core.state])
    if m.drivers_on:
        cell.fail("drivers still on in fault")
    if m.alarm_level != C.ALARM_FAULT:
        cell.fail("no fault alarm (level %d)" % m.alarm_level)
    if core.fault != run.code:
        cell.notes.append("then %s" % C.FAULT_NAMES[core.fault])
    pushed = run.fwd_after_um * run.area / 1000
    extra = pushed
    if pushed > 1e-9:
        cell.fail("%.3f uL pushed after the fault" % pushed)
    # Where the needle ended: withdrawn by the core, or left for the operator.
    tip = m.needle_tip_um()
    if tip > 0:
        cell.notes.append("needle left in at %.2f mm" % (tip / 1000))
    elif run.tip_at_detect > 0:
        cell.notes.append("needle withdrawn")
    if f.bolus and m.fluid.blocked:
        out0 = m.fluid.delivered_ul
        m.fluid.blocked = False
        run.step(300)
        bolus = max(0.0, m.fluid.delivered_ul - out0)
        extra += bolus
        cell.notes.append("bolus %.2f uL" % bolus)
        if bolus > BOLUS_MAX_UL:
            cell.fail("bolus %.2f uL after the block cleared (target %.1f)" % (bolus, BOLUS_MAX_UL))
    cell.extra_ul = extra
    # The operator clears the cause and acknowledges: unhomed, and nothing moves (H3).
    if f.clear:
        f.clear(run)
    run.step(5)
    run.watch = False
    if not core.acknowledge():
        cell.fail("acknowledge refused in state %s" % C.STATE_NAMES[core.state])
    if core.state != C.ST_UNHOMED:
        cell.fail("acknowledged into %s, not unhomed" % C.STATE_NAMES[core.state])
    _nothing_moves(run, cell, 300, "after acknowledging, trigger pressed")
    return cell


def _check_lost_steps(f, run, cell):
    """H5 with the FIFO window: the core may not tell queued steps from lost ones.

    Steps of the last WINDOW ticks may still be queued on the board
    (LEAD_TICKS..FIFO_TICKS and the word running); the simulator keeps exactly
    LEAD_TICKS. So a deficit may grow to one full step plus the steps of the
    WINDOW - LEAD_TICKS ticks beyond the lead, plus the tick that is
    being read, before the core can be sure of it.
    """
    vmax = run.vmax[f.axis]
    margin = M.LOST_STEPS_TOL + (WINDOW - pio_word.LEAD_TICKS + 1) * vmax
    deficit = run.deficit_at_detect
    um = deficit * (1000 / (M.NEEDLE_STEPS_PER_MM if f.axis == 0 else M.PLUNGER_STEPS_PER_MM))
    cell.notes.append("%d usteps (%.1f um) short when caught, allowed %d" % (deficit, um, margin))
    if deficit > margin:
        cell.fail("caught %d microsteps short; the window allows %d" % (deficit, margin))


def _check_homing_bound(f, phase, run, cell):
    """H12: homing never moves past the full travel plus margin, nor forward past its back-off."""
    if phase != "homing" or f.name not in ("home-open", "home-stuck"):
        return
    if f.name == "home-open":
        if run.detect is None:
            cell.fail("homing ended without finding the broken switch")
            return
        travel = M.um_to_needle_steps(M.NEEDLE_TRAVEL_UM + M.HOME_MARGIN_UM)
        moved = abs(run.sim.machine.needle_axis.count)
        cell.notes.append(
            "homing gave up after %.1f mm (travel + margin %.1f mm)"
            % (moved / M.NEEDLE_STEPS_PER_MM, travel / M.NEEDLE_STEPS_PER_MM)
        )
        if moved > travel:
            cell.fail("homing drove %d steps, past travel + margin (%d)" % (moved, travel))
    else:
        if run.detect is None:
            cell.fail("homing ended with the home switch stuck")
            return
        cell.notes.append(
            "forward %.2f mm (the back-off) before the fault"
            % ((run.max_depth - run.depth_at_start) / 1000)
        )
        if run.max_depth - run.depth_at_start > M.NEEDLE_HOME_BACKOFF_UM + 1:
            cell.fail(
                "homing moved the needle %.0f um forward, more than its back-off"
                % (run.max_depth - run.depth_at_start)
            )


# ---- kinds "hang" and "reset": the controller stops or restarts ------------------------------


def _run_restart(f, phase):  # noqa: C901  (one fault kind, its cases per phase)
    sim = enter_phase(phase)
    run = Run(sim, f, phase)
    core, m = sim.core, sim.machine
    cell = _new_cell(f, phase, run)
    cell.applicable = True
    if phase != "prime":
        m.trigger = False
    face0 = m.face_um
    if f.kind == "hang":
        # The control loop stops: the FIFO drains, then nothing; the watchdog,
        # fed only by ticks that ran their checks, resets the board.
        last = 0
        for _ in range(WDT_TIMEOUT_MS):
            before = run.motion()
            run.step(hang=True)
            if run.motion() != before:
                last = run.i
        cell.stop_ticks = last
        cell.detect_ticks = WDT_TIMEOUT_MS
        drained_ul = (m.face_um - face0) * run.area / 1000
        if drained_ul > 1e-9:
            cell.notes.append("%.2f uL of the dose ran from the FIFO" % drained_ul)
        if last > pio_word.FIFO_TICKS:
            cell.fail(
                "motors ran %d ticks into the hang (the FIFO holds %d)"
                % (last, pio_word.FIFO_TICKS)
            )
        if WDT_TIMEOUT_MS > HANG_DETECT_MAX_MS:
            cell.fail(
                "watchdog resets after %d ms (target %d)" % (WDT_TIMEOUT_MS, HANG_DETECT_MAX_MS)
            )
        cause = C.RC_WATCHDOG
    else:
        cell.stop_ticks = 0
        cell.detect_ticks = 0
        cause = C.RC_POWER_ON
    # The board restarts with the trigger held (stuck or still pressed).
    face1 = m.face_um
    m.trigger = True
    core = sim.reset_board(cause)
    cell.outcome = "%s reset" % C.RESET_NAMES[cause]
    if cause == C.RC_WATCHDOG and core.notice != C.N_WATCHDOG_RESET:
        cell.fail("no watchdog notice after the reset")
    before = run.motion()
    run.step(300)
    m.trigger = False
    run.step(20)
    m.trigger = True  # and pressed again
    run.step(100)
    m.trigger = False
    run.step(20)
    if run.motion() != before:
        cell.fail(
            "motion before the operator homed (needle %+d, plunger %+d)"
            % (run.motion()[0] - before[0], run.motion()[1] - before[1])
        )
    _finish(cell, run)
    cell.extra_ul = max(0.0, (m.face_um - face1) * run.area / 1000)
    if cell.extra_ul > 1e-9:
        cell.fail("%.3f uL pushed after the reset" % cell.extra_ul)
    if core.state != C.ST_UNHOMED or m.drivers_on:
        cell.fail("after the reset: %s, drivers %s" % (C.STATE_NAMES[core.state], m.drivers_on))
    depth_at_reset = m.needle_tip_um()
    if depth_at_reset > 0:
        cell.notes.append("needle in at %.2f mm until homed" % (depth_at_reset / 1000))
    # The operator homes: the needle comes out first, never deeper.
    deepest = run.max_depth
    run.max_depth = depth_at_reset
    assert core.start_homing()
    if not run.run_until(lambda r: r.sim.core.state in (C.ST_READY, C.ST_FAULT), 30_000):
        cell.fail("homing after the reset did not end")
    if core.state != C.ST_READY:
        cell.fail("homing after the reset: %s" % C.FAULT_NAMES[core.fault])
    if run.max_depth > max(depth_at_reset, 0.0) + 1:
        cell.fail("homing after the reset went %.0f um deeper" % (run.max_depth - depth_at_reset))
    run.max_depth = max(deepest, run.max_depth)
    _check_depth(cell, run, _set_depth(run, phase))
    return cell


# ---- kind "empty": the syringe's count reaches its end ------------------------------------------


def _run_empty(f, phase):  # noqa: C901  (one fault kind, its cases per phase)
    ps_base = "empty" if phase == "idle" else "last-dose"
    if phase == "homing":
        # Homing keeps a primed syringe's plunger and its count (homing.py): it is
        # still at its end afterwards.
        ps_base = "empty"
        sim = _restore("empty")
        core = sim.core
        assert core.start_homing()
        sim.run_ms(PHASE_OFFSET_MS["homing"])
    else:
        sim = enter_phase(phase, base=ps_base)
    run = Run(sim, f, phase)
    core, m = sim.core, sim.machine
    cell = _new_cell(f, phase, run)
    ps = core.plans()
    cell.stop_ticks = 0
    if phase != "prime":
        m.trigger = False
    warned = core.warning == C.W_NEAR_EMPTY and m.alarm_level == C.ALARM_WARNING
    punct0 = core.punctures
    limit = 20_000 if phase == "prime" else 30_000
    # Let the phase run out (prime: held until the count says the syringe is at its end).
    run.run_until(
        lambda r: (
            (core.state == C.ST_READY and r.quiet())
            if phase != "prime"
            else (core.state == C.ST_READY or core.plunger_limit_left() <= 0)
        ),
        limit,
    )
    m.trigger = False
    run.run_until(lambda r: core.state == C.ST_READY and r.quiet(), 2000)
    if phase == "load":
        m.insert_syringe(1)
        core.configure(syringe_model=1)
        run.step(10)
        if not core.confirm_syringe():  # the operator's OK on the load screen
            cell.fail("the syringe loaded could not be confirmed")
    if phase in PUNCTURE_PHASES:
        cell.applicable = True
        if not warned:
            cell.fail("no near-empty warning before the last dose")
        if core.punctures != punct0 + 1:
            cell.fail("the last puncture did not complete")
        else:
            p = sim.punctures[-1]
            if p.dose_steps != ps.dose_steps:
                cell.fail(
                    "partial dose without an alarm: %d of %d steps" % (p.dose_steps, ps.dose_steps)
                )
            cell.notes.append("last dose %.2f uL in full" % (p.dose_nl / 1000))
    elif phase == "prime":
        cell.applicable = True
        over = -core.plunger_limit_left()
        cell.notes.append(
            "prime stopped %d steps %s the dead space"
            % (abs(over), "into" if over > 0 else "before")
        )
        if over > 2 * M.PLUNGER_STEPS_PER_FULL_STEP:
            cell.fail("prime pushed %d steps into the dead space" % over)
    elif phase == "idle":
        cell.applicable = True
    else:
        cell.applicable = False
    # Now the trigger, for a shot: refused, nothing moves.
    if core.settings.mode != MODE_SINGLE:
        core.configure(mode=MODE_SINGLE)
    before = run.motion()
    run.step(20)
    m.trigger = True
    run.step(50)
    m.trigger = False
    run.step(20)
    moved = run.motion() != before
    if moved:
        cell.fail("a shot started with the syringe at its end")
    want = C.N_NOT_PRIMED if phase == "load" else C.N_SYRINGE_LOW  # a load unprimes
    cell.outcome = "refused: " + C.NOTICE_NAMES[core.notice] if core.notice else "no refusal"
    if core.notice != want:
        cell.fail(
            "the press gave %r, expected %r" % (C.NOTICE_NAMES[core.notice], C.NOTICE_NAMES[want])
        )
    if not cell.applicable:
        cell.outcome = "n/a — " + cell.outcome
    _finish(cell, run)
    cell.extra_ul = _over_count_ul(run, phase)
    _note_push_needle_out(cell, run, phase)
    if cell.extra_ul > ONE_STEP_UL:
        cell.fail("%.3f uL pushed beyond the count" % cell.extra_ul)
    if core.fault:
        cell.fail("fault %s" % C.FAULT_NAMES[core.fault])
    _check_depth(cell, run, _set_depth(run, phase))
    return cell


# ---- kinds "trigger" and "trigger-continuous": the operator's input ------------------------------


def _run_trigger(f, phase):  # noqa: C901  (one fault kind, its cases per phase)
    continuous = f.kind == "trigger-continuous"
    mode = MODE_CONTINUOUS if continuous else MODE_SINGLE
    if phase in ("homing", "load"):
        # Held through homing or loading: nothing may start when it ends (prime
        # mode: a start there needs only a syringe).
        sim = _restore("ready")
        core, m = sim.core, sim.machine
        core.configure(mode=MODE_PRIME)
        if phase == "homing":
            assert core.start_homing()
        else:
            m.remove_syringe()
            sim.run_ms(5)
            assert core.start_load()
        sim.run_ms(PHASE_OFFSET_MS[phase])
    elif phase == "prime":
        sim = enter_phase(phase, base="last-dose")
    else:
        sim = enter_phase(phase, mode=mode)
    run = Run(sim, f, phase)
    core, m = sim.core, sim.machine
    cell = _new_cell(f, phase, run)
    cell.stop_ticks = 0
    ps = core.plans()
    m.trigger = True  # stuck (or held on purpose)
    punct0 = core.punctures  # the puncture under way counts once it ends
    extra_shots = 0
    if phase in ("homing", "load"):
        cell.applicable = True
        run.run_until(lambda r: core.state in (C.ST_READY, C.ST_FAULT), 30_000)
        if phase == "load":
            m.insert_syringe(1)
            core.configure(syringe_model=1, mode=MODE_PRIME)
            run.step(1)  # the core reads the syringe switch
            if not core.confirm_syringe():  # the operator's OK on the load screen
                cell.fail("the syringe loaded could not be confirmed")
        face = m.face_um
        run.step(600)
        if m.face_um != face:
            cell.fail("the trigger held through %s started a prime" % phase)
            extra_shots += 1
        cell.outcome = "nothing fired after %s" % phase
    elif phase == "prime":
        cell.applicable = True
        if continuous:
            run.step(300)
            m.trigger = False
            released = run.i
            run.run_until(lambda r: core.state == C.ST_READY and r.quiet(), 2000)
            stop = _last_forward_plunger(run, released)
            cell.stop_ticks = stop
            k = core.plan_prime.ramp_ticks
            cell.notes.append(
                "prime stopped %d ticks after the release (ramp %d + lead %d)"
                % (stop, k, pio_word.LEAD_TICKS)
            )
            if stop > k + pio_word.LEAD_TICKS + 1:
                cell.fail("prime ran on %d ticks after the release" % stop)
            cell.outcome = "release stops the prime"
        else:
            run.run_until(lambda r: core.state == C.ST_READY and r.quiet(), 20_000)
            over = -core.plunger_limit_left()
            cell.notes.append("a stuck trigger primes to the dead space (%+d steps)" % over)
            if core.state != C.ST_READY or over > 2 * M.PLUNGER_STEPS_PER_FULL_STEP:
                cell.fail("prime did not stop at the dead space (%+d steps)" % over)
            cell.outcome = "prime stops at the dead space"
    else:
        cell.applicable = True
        if continuous:
            hold = 1200
            run.step(hold)
            m.trigger = False
            released_state = core.state
            running = core.state in C.PUNCTURING
            started0 = core.punctures + (1 if running else 0)  # the one under way finishes
            run.run_until(lambda r: core.state == C.ST_READY and r.quiet(), 5000)
            run.step(1000)
            shots = core.punctures - punct0
            if core.punctures != started0:
                cell.fail("%d punctures started after the release" % (core.punctures - started0))
                extra_shots = core.punctures - started0
            if shots < 2:
                cell.fail("only %d punctures while held in continuous mode" % shots)
            if any(p.dose_steps != ps.dose_steps for p in sim.punctures[-shots:]):
                cell.fail("a puncture cut short by the release")
            cell.outcome = "%d shots while held; released in %s, finished" % (
                shots,
                C.STATE_NAMES[released_state],
            )
        else:
            run.step(2500)
            shots = core.punctures - punct0
            extra_shots = max(0, shots - 1)
            if shots != 1:
                cell.fail("%d punctures for one press" % shots)
            cell.outcome = "%d puncture for one press" % shots
    cell.extra_ul = extra_shots * ps.dose_steps * PLUNGER_UM_PER_STEP * run.area / 1000
    _finish(cell, run)
    if core.fault:
        cell.fail("fault %s" % C.FAULT_NAMES[core.fault])
    if not continuous:
        _held_through_a_fault(run, cell)
    _check_depth(cell, run, _set_depth(run, phase))
    return cell


def _last_forward_plunger(run, since):
    """Ticks after `since` in which the plunger still stepped forward."""
    last = run.last_forward[1]
    return 0 if last is None or last < since else last - since


def _held_through_a_fault(run, cell):
    """After a fault and its acknowledgement, a trigger held all along fires nothing."""
    sim, m = run.sim, run.m
    core = sim.core
    m.trigger = True
    m.estop = True
    run.step(2)
    m.estop = False
    run.run_until(lambda r: r.settled_fault(), 2000)
    if not core.acknowledge():
        cell.fail("no fault to acknowledge after the E-stop")
        return
    _nothing_moves(run, cell, 300, "after acknowledging with the trigger held", press=False)
    m.trigger = True
    assert core.start_homing()
    run.run_until(lambda r: core.state in (C.ST_READY, C.ST_FAULT), 30_000)
    if core.state != C.ST_READY:
        cell.fail("homing after the E-stop: %s" % C.FAULT_NAMES[core.fault])
        return
    if not m.syringe_present:
        m.insert_syringe(1)
    core.configure(mode=MODE_PRIME)
    face = m.face_um
    run.step(500)
    if m.face_um != face:
        cell.fail("the trigger held through the fault started a prime")
    m.trigger = False
    run.step(20)
    m.trigger = True  # a fresh press works
    run.step(200)
    m.trigger = False
    run.run_until(lambda r: core.state == C.ST_READY and r.quiet(), 2000)
    if m.face_um <= face:
        cell.fail("a fresh press after the fault did nothing")


_KINDS = {
    "stop": _run_stop,
    "hang": _run_restart,
    "reset": _run_restart,
    "empty": _run_empty,
    "trigger": _run_trigger,
    "trigger-continuous": _run_trigger,
}
