"""Long random runs of the whole machine: an operator and a faulty world in any order.

A hypothesis RuleBasedStateMachine drives the simulator (the real core, the
machine model, the FIFO lead) the way nobody scripts it: it presses and holds
the trigger and the pedal, homes, loads, inserts and pulls syringes, primes,
changes settings to good and bad values, acknowledges, starts new sessions,
raises and clears faults (E-stop, blocked needle, DIAG stall bits, a dead load
cell, a front limit switch that closes early, stuck or broken home switch,
a starved control loop) and lets 1 ms to 2 s of time pass between actions.

The invariants are checked after every 1 ms tick, on the machine's side (the
motors and the fluid model), not only on the core's counters:

- no motion without an operator action: after boot and after every fault no
  motor makes a forward step (needle into the skin, plunger pushing) until the
  operator has started homing; without it only the automatic relief moves run,
  and they only go backward. Motors stand still in the tick a fault is found,
  stand still unless the core was in a moving state a FIFO lead ago, and only
  move while the drivers are enabled. A puncture or a prime starts only on a
  fresh press of the trigger or the pedal;
- the needle tip never passes the usable needle length (+0.05 mm);
- the session volume never passes the engineer's cap: the core's counter, the
  sum of the punctures' counted doses, and what left the needle in the fluid
  model while the tip was in the skin;
- every completed puncture reached its depth and delivered its dose (±2 % from
  10 uL up, ±0.2 uL below) on counted plunger steps; a puncture cut by a fault
  leaves no record;
- the drivers are disabled in every fault state and before homing, and every
  fault sounds the alarm; an E-stop is a fault, drivers off, motors still, in
  the same tick;
- a refused settings change (bad value, or while busy) changes nothing.

`make test` runs 20 machines of up to 100 actions; `make soak`
(INJECTOR_SOAK=N) runs N times as many, three times as long. Each run adds
its figures (actions, simulated ms, punctures, faults) to
build/stateful_stats.json.
"""

import json
import pickle
import time
from collections import Counter, deque
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from injcore import codes as C
from injcore import machine as M
from injcore.settings import FINE_DOSE_BELOW_NL, Limits, SettingsError
from sim.machine import PLUNGER_UM_PER_STEP
from sim.session import Simulator
from soak import SCALE, examples

ROOT = Path(__file__).resolve().parents[1]
STATS_FILE = ROOT / "build" / "stateful_stats.json"

DEPTH_TOL_UM = 50  # the needle's depth tolerance (H2)
IDLE = C.IDLE  # configure() is allowed, nothing is commanded
MOVING = frozenset(
    (
        C.ST_HOMING,
        C.ST_LOAD,
        C.ST_ADVANCE,
        C.ST_INJECT,
        C.ST_SUCKBACK,
        C.ST_RETRACT,
        C.ST_WAIT,
        C.ST_PRIME,
        C.ST_RELIEF,
    )
)
PUNCTURE = frozenset(C.PUNCTURING)
# End-of-tick states of the last ticks to look back on when a motor moves: the words
# of tick k run in tick k + LEAD_TICKS, and the state that started them ended tick k - 1.
LOOKBACK = 6
CUSTOM_IDS_UM = (2000, 14_000)  # realistic custom bores: the slowest rate stays >= 36 steps/s
FAULT_FLAGS = (
    "needle_stall",
    "plunger_stall",
    "load_cell_invalid",
    "front_limit_early",
    "stuck_home_switch",
    "broken_home_switch",
)
FAULT_KINDS = ("estop", "occlusion", "overrun") + FAULT_FLAGS

STATS = Counter()


def dose_tolerance_nl(dose_nl):
    """H1's target: ±2 % from 10 uL up, ±0.2 uL below."""
    return dose_nl * 2 // 100 if dose_nl >= FINE_DOSE_BELOW_NL else 200


def _steps(lo, hi, step):
    return st.integers(0, (hi - lo) // step).map(lambda i: lo + i * step)


# Valid values per field (each one alone is valid; together they may still be
# refused for a cross-field reason: continuous shots faster than a puncture, a rate
# the plunger cannot reach with this bore). Doses mostly small, so runs stay short.
VALID = {
    "mode": st.integers(0, 1),  # prime (2) is the prime rule's
    "depth_um": _steps(300, 6000, 100),  # clipped to the needle length in the rule
    "dose_nl": st.one_of(
        _steps(1000, 9500, 500), _steps(10_000, 60_000, 1000), _steps(60_000, 200_000, 1000)
    ),
    "speed_um_s": _steps(5000, 50_000, 1000),
    "rate_nl_s": st.one_of(_steps(10_000, 100_000, 1000), _steps(2000, 9000, 1000)),
    "shot_rate_mhz": _steps(500, 10_000, 100),
    "suckback_nl": _steps(0, 2000, 100),
    "needle_count": st.sampled_from([1, 3, 5, 9]),
}

# (field, value) pairs that are wrong whatever else is set; "too deep" is the
# needle length + 100 um, worked out in the rule.
INVALID = st.sampled_from(
    [
        ("depth_um", 299),
        ("depth_um", 6100),
        ("depth_um", 1050),
        ("depth_um", 1000.0),
        ("depth_um", "1000"),
        ("depth_um", True),
        ("depth_um", None),
        ("depth_um", "too deep"),
        ("dose_nl", 500),
        ("dose_nl", 9750),
        ("dose_nl", 10_500),
        ("dose_nl", 201_000),
        ("dose_nl", -1000),
        ("dose_nl", 0),
        ("speed_um_s", 4000),
        ("speed_um_s", 51_000),
        ("speed_um_s", 20_500),
        ("rate_nl_s", 1000),
        ("rate_nl_s", 101_000),
        ("rate_nl_s", 2500),
        ("shot_rate_mhz", 400),
        ("shot_rate_mhz", 10_100),
        ("shot_rate_mhz", 2050),
        ("suckback_nl", -100),
        ("suckback_nl", 2100),
        ("suckback_nl", 150),
        ("mode", -1),
        ("mode", 3),
        ("mode", "single"),
        ("mode", 1.0),
        ("mode", False),
        ("syringe_model", 2),
        ("syringe_model", 20),
        ("syringe_model", -1),
        ("syringe_model", "1"),
        ("syringe_id_um", 1990),
        ("syringe_id_um", 30_010),
        ("syringe_id_um", 2005),
        ("needle_count", 0),
        ("needle_count", 2),
        ("needle_count", 10),
        ("volume_nl", 1000),
    ]
)


@lru_cache(maxsize=None)
def _ready_snapshot(size, seed, occlusion_kpa):
    """A simulator homed, loaded with a full syringe and primed, pickled: built once per
    process, so a run (and every replay while hypothesis shrinks) starts in microseconds."""
    sim = Simulator(seed=seed, trace=False)
    sim.core.limits = Limits(occlusion_kpa=occlusion_kpa)
    sim.core.configure()
    assert sim.home()
    sim.load(size)
    sim.prime(400)
    assert sim.core.state == C.ST_READY and sim.core.primed, sim.state
    return pickle.dumps(sim)


class CheckedSimulator(Simulator):
    """The simulator with the checker's hooks around every tick."""

    def __init__(self, checker, seed):
        self.checker = checker
        super().__init__(seed=seed, trace=False)

    def step(self):
        self.checker.before_tick()
        super().step()
        self.checker.after_tick()


class InjectorMachine(RuleBasedStateMachine):
    # ---- boot ---------------------------------------------------------------

    @initialize(
        cap=st.sampled_from([200_000, 50_000, M.SESSION_CAP_NL]),
        needle=st.sampled_from([M.NEEDLE_LENGTH_UM, 2000, 3000, M.NEEDLE_LENGTH_MAX_UM]),
        occlusion=st.sampled_from([M.OCCLUSION_KPA, 1000, 150]),
        seed=st.integers(0, 7),
        held=st.booleans(),
        quick=st.sampled_from([True, True, True, False]),
        size=st.sampled_from(sorted(M.SYRINGES)),
    )
    def boot(self, cap, needle, occlusion, seed, held, quick, size):
        """Power-up (the trigger perhaps held), or, quick, a machine already homed, loaded with a
        full syringe and primed. The engineer's limits: a session cap small enough to reach."""
        self.t_wall = time.perf_counter()
        self.ticks = 0
        self.steps = 0
        self.armed = quick  # an operator started homing since boot or the latest fault
        self.fire_prev = not quick  # as the core: a trigger held at boot fires nothing
        self.recent = deque(maxlen=LOOKBACK)
        self.faults = Counter()
        self.session_nl = 0  # counted doses of this session's punctures, each with its syringe
        self.session_punctures = 0
        self.skin_nl = 0.0  # model outflow while the needle tip was in the skin, this session
        self.skin_cut_nl = 0.0  # the part of it from punctures cut short by a fault
        self.cut_pushed_nl = 0  # what the plunger pushed in those (the core's own count)
        self.cut_planned_nl = 0  # their whole doses (+ suck-back)
        self._punct_skin_nl = 0.0  # ... from the puncture under way
        self._fluid0 = 0  # the core's fluid_steps when the puncture under way began
        self._in_cut = False  # a puncture was cut and the needle is not out yet
        self.session_swaps = 0  # syringes of another bore seated during this session
        self.skin_allow_nl = 0  # the fluid model's leeway over the counted doses (see below)
        self.cap_refusals = 0
        self.configs = Counter()
        self._fluid = None
        self._fluid_ul = 0.0
        self.syringe = (size, 4700)
        if quick:
            self.sim = pickle.loads(_ready_snapshot(size, seed, occlusion))
            self.sim.__class__ = CheckedSimulator
            self.sim.checker = self
        else:
            self.sim = CheckedSimulator(self, seed)
            self.sim.machine.trigger = held
        self._seen = len(self.sim.punctures)
        self.core, self.m = self.sim.core, self.sim.machine
        self.limits = Limits(needle_length_um=needle, session_cap_nl=cap, occlusion_kpa=occlusion)
        self.limits.check()
        self.core.limits = self.limits
        self.core.configure()
        # The model needle starts 2 mm deep: no needle length in the draw is shorter.
        self.max_tip_um = max(needle + DEPTH_TOL_UM, self.m.needle_tip_um())

    # ---- the checks around every tick -----------------------------------------

    def before_tick(self):
        m, c = self.m, self.core
        self._n0 = m.needle_axis.motor_steps
        self._p0 = m.plunger_axis.motor_steps
        self._state0 = c.state
        self._estop = m.estop
        self._fire = m.trigger or m.pedal
        self._punctures0 = c.punctures
        self._notice0 = c.notice

    def after_tick(self):  # noqa: C901  (every invariant checked after a tick, one branch each)
        m, c = self.m, self.core
        self.ticks += 1
        st_ = c.state
        dn = m.needle_axis.motor_steps - self._n0
        dp = m.plunger_axis.motor_steps - self._p0
        tip = m.needle_tip_um()
        where = "tick %d, %s -> %s" % (c.ticks, C.STATE_NAMES[self._state0], C.STATE_NAMES[st_])

        new_fault = c.fault_tick == c.ticks and c.fault != C.F_NONE
        if new_fault:
            self.faults[C.FAULT_NAMES[c.fault]] += 1
            if self._state0 in PUNCTURE:
                self._in_cut = True
                self.skin_cut_nl += self._punct_skin_nl
                self.cut_pushed_nl += max(0, c.steps_to_nl(c.fluid_steps - self._fluid0))
                ps = c.plans()
                self.cut_planned_nl += c.steps_to_nl(ps.dose_steps + ps.sb_steps)
                self.skin_allow_nl += 200 + c.settings.suckback_nl // 2
                STATS["punctures cut by a fault"] += 1
            self.armed = False
            assert dn == 0 and dp == 0, "%s: motors moved in the tick the fault (%s) was found" % (
                where,
                C.FAULT_NAMES[c.fault],
            )
            assert c.punctures == self._punctures0, (
                "%s: a puncture cut by a fault was recorded" % where
            )
        if st_ == C.ST_FAULT or st_ == C.ST_RELIEF:
            self.armed = False
            assert c.fault != C.F_NONE, "%s: fault state without a fault code" % where
        self.recent.append(st_)

        # H3: no motion without an operator action; only backward, automatic, moves after a fault.
        if dn or dp:
            assert m.drivers_on, "%s: motor moved %d/%d steps with the drivers disabled" % (
                where,
                dn,
                dp,
            )
            assert any(s in MOVING for s in self.recent), (
                "%s: motor moved %d/%d steps while the core sat idle" % (where, dn, dp)
            )
            if not self.armed:
                assert dn <= 0 and dp <= 0, (
                    "%s: forward step (needle %+d, plunger %+d) with nobody having started homing "
                    "since boot or the last fault (%s)" % (where, dn, dp, C.FAULT_NAMES[c.fault])
                )
        # H3: a puncture or a prime starts only on a fresh press.
        if self._state0 == C.ST_READY and st_ in (C.ST_ADVANCE, C.ST_PRIME):
            assert self._fire and not self.fire_prev, "%s without a fresh press" % where
        if self._state0 == C.ST_WAIT and st_ == C.ST_ADVANCE:
            assert self._fire, "%s: continuous shot with the trigger released" % where
        self.fire_prev = self._fire

        # H2: the needle never past its usable length.
        if dn > 0:
            assert tip <= self.limits.needle_length_um + DEPTH_TOL_UM, (
                "%s: needle tip %.1f um deep, usable length %d um"
                % (where, tip, self.limits.needle_length_um)
            )
        assert tip <= self.max_tip_um, "%s: needle tip %.1f um deep" % (where, tip)

        # H6: drivers off in every fault state (and before homing); E-stop stops at once.
        if st_ == C.ST_FAULT or st_ == C.ST_UNHOMED:
            assert not m.drivers_on, "%s: drivers enabled" % where
        if st_ == C.ST_FAULT or st_ == C.ST_RELIEF:
            assert m.alarm_level == C.ALARM_FAULT, "%s: a fault without the alarm" % where
        if self._estop:
            assert st_ == C.ST_FAULT and not m.drivers_on, "%s: E-stop pressed, not stopped" % where
            assert dn == 0 and dp == 0, "%s: motors moved with the E-stop pressed" % where

        # H1: what leaves the needle while the tip is in the skin, this session.
        fl = m.fluid
        if fl is not self._fluid:
            self._fluid, self._fluid_ul = fl, fl.delivered_ul
        out_ul = fl.delivered_ul - self._fluid_ul
        self._fluid_ul = fl.delivered_ul
        if st_ == C.ST_ADVANCE and self._state0 != C.ST_ADVANCE:
            self._punct_skin_nl = 0.0
            self._fluid0 = c.fluid_steps
        if tip > 0:
            self.skin_nl += out_ul * 1000
            self._punct_skin_nl += out_ul * 1000
            if self._in_cut:
                self.skin_cut_nl += out_ul * 1000
        else:
            self._in_cut = False

        if c.punctures != self._punctures0:
            self._check_puncture(where)
        if c.notice == C.N_SESSION_CAP and self._notice0 != C.N_SESSION_CAP:
            self.cap_refusals += 1

    def _check_puncture(self, where):
        c = self.core
        assert len(self.sim.punctures) == self._seen + 1 and c.punctures == self._punctures0 + 1
        self._seen += 1
        p = self.sim.punctures[-1]
        ps = c.plans()
        tol = dose_tolerance_nl(p.dose_set_nl)
        assert abs(p.dose_nl - p.dose_set_nl) <= tol, (
            "%s: puncture %d delivered %d nL counted, set %d nL (tolerance %d)"
            % (where, p.number, p.dose_nl, p.dose_set_nl, tol)
        )
        assert p.dose_steps == ps.dose_steps, (
            "%s: puncture %d counted %d plunger steps, planned %d"
            % (where, p.number, p.dose_steps, ps.dose_steps)
        )
        assert abs(p.depth_core_um - p.depth_set_um) <= 1, (
            "%s: puncture %d commanded %.1f um, set %d"
            % (where, p.number, p.depth_core_um, p.depth_set_um)
        )
        assert abs(p.depth_reached_um - p.depth_set_um) <= DEPTH_TOL_UM, (
            "%s: puncture %d reached %.1f um, set %d"
            % (where, p.number, p.depth_reached_um, p.depth_set_um)
        )
        self.session_nl += p.dose_nl
        self.session_punctures += 1
        self.skin_allow_nl += 200 + c.settings.suckback_nl // 2
        if self.session_swaps:
            STATS["punctures after a syringe change mid-session"] += 1

    # ---- invariants after every action -----------------------------------------

    @invariant()
    def session_volume_never_past_the_cap(self):
        c = self.core
        cap = self.limits.session_cap_nl
        # Rounding: each counted dose to the nearest nL, the cap to the nearest step, the
        # session restated in the steps of each new syringe to the nearest step.
        slack = 60 + self.session_punctures + 30 * self.session_swaps
        counted = c.delivered_nl()
        assert counted <= cap + slack, "core counts %d nL, cap %d" % (counted, cap)
        # What the core counts: the completed punctures, and those cut by a fault: at
        # least what they had pushed, at most their whole dose (+ suck-back).
        assert (
            self.session_nl + self.cut_pushed_nl - slack
            <= counted
            <= self.session_nl + max(self.cut_pushed_nl, self.cut_planned_nl) + slack
        ), (
            "the core says %d nL delivered this session; its punctures add up to %d nL, "
            "+ %d nL pushed in punctures cut by a fault"
            % (counted, self.session_nl, self.cut_pushed_nl)
        )
        # The fluid model: every drop that left the needle in the skin is on the session
        # counter (but the puncture under way), so none passes the cap. 1 uL, or what the
        # line's compliance still holds at the prime's flow (its time constant grows with
        # the barrel), for a prime just before the shot, and per puncture 0.2 uL + half
        # its suck-back: the line is still under pressure when the needle leaves, so the
        # suck-back does not all come back through the needle while it is in the skin
        # (see skin_allow_nl).
        held_nl = max(1000, 1.2 * M.PRIME_RATE_NL_S * self.m.fluid.tau_s())
        skin = self.skin_nl - (self._punct_skin_nl if c.state in PUNCTURE else 0)
        assert skin <= counted + held_nl + self.skin_allow_nl + slack, (
            "%.0f nL left the needle in the skin this session (%.0f nL of it in punctures cut by "
            "a fault); the core counts %d nL" % (skin, self.skin_cut_nl, counted)
        )
        assert skin <= cap + held_nl + self.skin_allow_nl + slack, (
            "%.0f nL left the needle in the skin this session, cap %d nL" % (skin, cap)
        )
        STATS["max skin outflow, % of the cap"] = max(
            STATS["max skin outflow, % of the cap"], int(self.skin_nl * 100 // cap)
        )
        STATS["max session volume, % of the cap"] = max(
            STATS["max session volume, % of the cap"], self.session_nl * 100 // cap
        )

    @invariant()
    def count(self):
        self.steps += 1

    # ---- operator --------------------------------------------------------------

    def _idle_wait(self, timeout_ms):
        """Let time pass until the core is idle and the motors have caught up."""
        sim, m = self.sim, self.m
        for _ in range(timeout_ms):
            if (
                self.core.state in IDLE
                and not m.needle_axis.pending_steps()
                and not m.plunger_axis.pending_steps()
            ):
                return
            sim.step()

    def _home(self, wait):
        before = self.core.state
        ok = self.core.start_homing()
        assert ok == (before in (C.ST_UNHOMED, C.ST_READY))
        if ok:
            self.armed = True
            assert self.core.state == C.ST_HOMING and self.m.drivers_on
            if wait:
                self._idle_wait(40_000)

    def _load(self, wait):
        """Plunger back to the rear switch (a seated syringe goes with it: the pusher holds it)."""
        before = self.core.state
        ok = self.core.start_load()
        assert ok == (before == C.ST_READY)
        if ok and wait:
            self._idle_wait(40_000)

    def _acknowledge(self):
        was = self.core.state
        ok = self.core.acknowledge()
        assert ok == (was == C.ST_FAULT)
        if ok:
            self.fire_prev = True
            assert self.core.state == C.ST_UNHOMED and not self.core.homed

    def _new_session(self):
        self.core.new_session()
        self.sim._seen = 0  # the simulator records a puncture when the core's count moves
        self.session_nl = 0
        self.session_punctures = 0
        self.skin_nl = self.skin_cut_nl = self._punct_skin_nl = 0.0
        self.cut_pushed_nl = self.cut_planned_nl = 0
        self.session_swaps = self.skin_allow_nl = 0
        assert self.core.delivered_nl() == 0

    # Hypothesis tries the rules with the fewest arguments first and falls back to
    # them when it turns rules off (swarm testing): the one rule without any is a
    # shot, the operator's most common action.
    @rule()
    def shot(self):
        """Hands off, one trigger press, wait until the puncture (or burst) has ended."""
        m = self.m
        m.trigger = m.pedal = False
        self.sim.run_ms(5)
        before = len(self.sim.punctures)
        self._tap("trigger", 30)
        self._idle_wait(30_000)
        STATS[
            "shots: "
            + (
                "fired"
                if len(self.sim.punctures) > before
                else C.NOTICE_NAMES[self.core.notice] or C.STATE_NAMES[self.core.state]
            )
        ] += 1

    @rule(name=st.sampled_from(["ok", "home", "load", "new session"]), wait=st.booleans())
    def button(self, name, wait):
        """A button of the board: OK acknowledges, home, load; a new session zeroes the
        counters. With `wait` the operator waits for homing or loading to end."""
        if name == "ok":
            self._acknowledge()
        elif name == "home":
            self._home(wait)
        elif name == "load":
            self._load(wait)
        else:
            self._new_session()

    def _insert_syringe(self, size, custom_id):
        """A full syringe fits only with the pusher back at the rear switch; set its size."""
        m = self.m
        if m.syringe_present or m.plunger_axis.motor_steps * PLUNGER_UM_PER_STEP > 50:
            return
        changes = {"syringe_model": size}
        if size == M.CUSTOM_SYRINGE:
            changes["syringe_id_um"] = custom_id
        area0 = self.core.area_cmm2
        if not self._configure(changes):
            return  # refused (busy, or too fast a rate for this bore): the operator keeps it out
        if self.core.area_cmm2 != area0 and self.session_nl + self.cut_pushed_nl:
            self.session_swaps += 1
        m.insert_syringe(size or 1)
        self.syringe = (size, custom_id)
        if size == M.CUSTOM_SYRINGE:
            m.syringe_area_mm2 = M.area_cmm2_from_diameter(custom_id) / 100
        self.sim.run_ms(1)  # the core reads the syringe switch
        # The operator confirms the size on the load screen: taken only right after a load.
        STATS[
            "syringe seated: "
            + ("confirmed" if self.core.confirm_syringe() else "no load to confirm")
        ] += 1

    @rule(
        size=st.sampled_from(sorted(M.SYRINGES) + [M.CUSTOM_SYRINGE]),
        custom_id=_steps(CUSTOM_IDS_UM[0], CUSTOM_IDS_UM[1], 10),
    )
    def syringe(self, size, custom_id):
        """Pull the syringe out (whenever: mid-shot too), or seat one of that size."""
        if self.m.syringe_present:
            self.m.remove_syringe()
        else:
            self._insert_syringe(size, custom_id)

    @rule(hold=st.integers(1, 1500))
    def prime(self, hold):
        """Mode prime, hold the trigger, release, back to the mode before."""
        old = self.core.settings.mode
        if not self._configure({"mode": 2}):
            return
        self.m.trigger = True
        self.sim.run_ms(hold)
        self.m.trigger = False
        self._idle_wait(3000)
        self._configure({"mode": old})

    def _tap(self, which, ms):
        setattr(self.m, which, True)
        self.sim.run_ms(ms)
        setattr(self.m, which, False)

    @rule(
        how=st.sampled_from(["tap", "press", "release"]),
        which=st.sampled_from(["trigger", "pedal"]),
        ms=st.integers(1, 300),
    )
    def fire(self, how, which, ms):
        """The trigger or the pedal: a tap that leaves the puncture running, or down, or up."""
        if how == "tap":
            self._tap(which, ms)
        else:
            setattr(self.m, which, how == "press")

    @rule(prime_ms=st.integers(0, 800))
    def recover(self, prime_ms):
        """What an operator does after a fault: wait for the machine to rest, OK, syringe
        out, home, syringe (back) in, prime."""
        m = self.m
        m.trigger = m.pedal = False  # hands off the trigger
        self._idle_wait(30_000)
        self._acknowledge()
        m.remove_syringe()  # homing with a syringe seated pumps it (the back-off pushes)
        self._home(True)
        self._insert_syringe(*self.syringe)
        if prime_ms:
            self.prime(prime_ms)

    # ---- settings ----------------------------------------------------------------

    def _snapshot(self):
        c = self.core
        return (
            c.settings.as_dict(),
            c.plans(),
            c.needle_limit_steps,
            c.cap_steps,
            c.occlusion_mn,
            c.volume_left_nl(),
        )

    def _configure(self, changes):
        """configure(); True if taken. A refusal must leave everything as it was."""
        c = self.core
        idle = c.state in IDLE
        before = self._snapshot()
        try:
            c.configure(**changes)
        except SettingsError as e:
            assert self._snapshot() == before, "refused change %r altered the core" % (changes,)
            if idle:  # each value is valid alone: only a cross-field rule may refuse it
                cross = ("shot_rate_mhz:", "rate_nl_s:")
                assert all(p.startswith(cross) for p in e.problems), e.problems
            self.configs["refused"] += 1
            return False
        assert idle, "settings changed while %s" % C.STATE_NAMES[c.state]
        want = dict(before[0], **changes)
        assert c.settings.as_dict() == want
        self.configs["taken"] += 1
        return True

    @rule(changes=st.fixed_dictionaries({}, optional=VALID))
    def configure(self, changes):
        if "depth_um" in changes:
            changes["depth_um"] = min(changes["depth_um"], self.limits.needle_length_um)
        self._configure(changes)

    @rule(bad=INVALID, changes=st.fixed_dictionaries({}, optional=VALID))
    def configure_invalid(self, bad, changes):
        c = self.core
        field, value = bad
        if value == "too deep":
            value = self.limits.needle_length_um + 100
        changes = dict(changes)
        if field == "syringe_id_um":
            changes["syringe_model"] = M.CUSTOM_SYRINGE  # the bore counts only for a custom syringe
        changes[field] = value
        before = self._snapshot()
        with pytest.raises(SettingsError):
            c.configure(**changes)
        assert self._snapshot() == before
        self.configs["invalid refused"] += 1

    # ---- the world ------------------------------------------------------------

    @rule(
        action=st.sampled_from(["raise", "clear", "clear all"]), kind=st.sampled_from(FAULT_KINDS)
    )
    def world(self, action, kind):
        """A fault appears (E-stop pressed, needle blocked, DIAG raised, load cell dead,
        front switch closed early, home switch stuck or broken, a starved loop), or goes."""
        m = self.m
        on = action == "raise"
        if action == "clear all":
            m.estop = m.fluid.blocked = False
            for flag in FAULT_FLAGS:
                setattr(m, flag, False)
        elif kind == "estop":
            m.estop = on
        elif kind == "occlusion":
            m.fluid.blocked = on
        elif kind == "overrun":
            if on:
                self.core.overruns += 1
        else:
            setattr(m, kind, on)
        if on:
            STATS["raised " + kind] += 1

    @rule(kind=st.sampled_from(FAULT_KINDS), after_ms=st.integers(1, 1500))
    def fault_in_a_shot(self, kind, after_ms):
        """The machine repaired and made ready if it was not (clear the faults, recover), a
        press, and a fault somewhere in the puncture that follows (or just after it)."""
        m = self.m
        self.world("clear all", kind)
        if self.core.state != C.ST_READY or not self.core.primed or not m.syringe_present:
            self.recover(300)
        m.trigger = m.pedal = False
        self.sim.run_ms(5)
        m.trigger = True
        self.sim.run_ms(min(after_ms, 30))
        m.trigger = False
        self.sim.run_ms(after_ms - min(after_ms, 30))
        STATS["faults in a shot, raised in " + C.STATE_NAMES[self.core.state]] += 1
        self.world("raise", kind)
        self.sim.run_ms(50)  # let it act: an occlusion takes a few HX711 samples to show

    @rule(ms=st.integers(1, 2000), until_idle=st.booleans())
    def advance(self, ms, until_idle):
        """1 ms to 2 s pass, or as long as the machine needs to come to rest (30 s at most)."""
        if until_idle:
            self._idle_wait(30_000)
        else:
            self.sim.run_ms(ms)

    def teardown(self):
        if not hasattr(self, "sim"):
            return
        STATS["runs"] += 1
        STATS["actions"] += self.steps - 1  # the first invariant pass follows boot
        STATS["simulated_ms"] += self.ticks
        STATS["punctures"] += len(self.sim.punctures)
        STATS["runs with punctures"] += bool(self.sim.punctures)
        STATS["runs that reached the session cap"] += bool(self.cap_refusals)
        STATS["cap refusals"] += self.cap_refusals
        STATS["wall_ms"] += int((time.perf_counter() - self.t_wall) * 1000)
        for name, n in self.faults.items():
            STATS["fault: " + name] += n
        for name, n in self.configs.items():
            STATS["settings " + name] += n


@pytest.mark.hazard("H1", "H2", "H3", "H4", "H5", "H6", "H7", "H8", "H10", "H12")
def test_random_operator_and_faults_keep_the_invariants():
    STATS.clear()
    t0 = time.perf_counter()
    run_state_machine_as_test(
        InjectorMachine,
        settings=settings(
            max_examples=examples(20),
            stateful_step_count=100 if SCALE == 1 else 300,
            deadline=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.filter_too_much,
                HealthCheck.data_too_large,
            ],
        ),
    )
    stats = dict(sorted(STATS.items()))
    stats["wall_s"] = round(time.perf_counter() - t0, 1)
    stats["simulated_hours"] = round(stats.get("simulated_ms", 0) / 3_600_000, 3)
    stats["soak_scale"] = SCALE
    STATS_FILE.parent.mkdir(parents=True, exist_ok=True)
    STATS_FILE.write_text(json.dumps(stats, indent=1) + "\n")
    print(
        "stateful: %(runs)d runs, %(actions)d actions, %(simulated_hours)s simulated h, "
        "%(punctures)d punctures in %(wall_s)s s" % dict(stats, punctures=stats.get("punctures", 0))
    )


# ---- the core bugs the random runs found (fixed in bab5c35), each as a short scene ----------


def _ready(sim, size, cap_nl):
    sim.core.limits = Limits(session_cap_nl=cap_nl)
    sim.core.configure()
    assert sim.home()
    sim.load(size)
    sim.prime(300)


@pytest.mark.hazard("H1")
def test_a_syringe_change_does_not_reopen_the_session_cap():
    sim = Simulator(trace=False)
    _ready(sim, 10, 200_000)
    sim.configure(dose_nl=50_000)
    for _ in range(3):
        assert sim.shot() is not None
    sim.load(1)  # a smaller bore: each counted step is less liquid
    sim.prime(300)
    while sim.shot() is not None:
        pass
    total = sum(p.dose_nl for p in sim.punctures)
    assert total <= 200_000, "%d punctures delivered %d nL, cap 200000 nL" % (
        len(sim.punctures),
        total,
    )
    assert abs(sim.core.delivered_nl() - total) <= 60


@pytest.mark.hazard("H1", "H6")
@pytest.mark.parametrize("phase", ["inject", "retract"])
def test_punctures_cut_by_a_fault_count_toward_the_session_cap(phase):
    """E-stop, acknowledge, home, prime, again: what the cut punctures pushed counts."""
    sim = Simulator(trace=False)
    c, m = sim.core, sim.machine
    _ready(sim, 1, 100_000)
    sim.configure(dose_nl=50_000, suckback_nl=0)
    pushed_nl = 0
    for _ in range(6):
        m.trigger = True
        sim.run_ms(30)
        m.trigger = False
        f0 = c.fluid_steps
        if phase == "inject":
            sim.run_until(lambda s: s.core.state == C.ST_INJECT, 2000)
            sim.run_ms(900)  # 50 uL at 50 uL/s: stopped at nine tenths of the dose
        else:
            sim.run_until(lambda s: s.core.state == C.ST_RETRACT, 3000)
            sim.run_ms(2)  # the whole dose is in, the needle still deep
        m.estop = True
        sim.run_ms(2)
        assert c.state == C.ST_FAULT and c.punctures == 0
        pushed_nl += c.steps_to_nl(c.fluid_steps - f0)
        m.estop = False
        sim.run_ms(10)
        assert c.acknowledge()
        assert c.delivered_nl() >= pushed_nl - 60, (
            "%d nL pushed by punctures cut in %s, the core counts %d nL"
            % (pushed_nl, phase, c.delivered_nl())
        )
        if c.delivered_nl() + 50_000 > 100_000:
            break
        assert sim.home()
        sim.prime(50)
    assert pushed_nl <= 100_000 + 60
