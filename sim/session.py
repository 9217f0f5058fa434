"""The simulator: the real control core, the machine model and a simulated clock."""

from collections import deque
from dataclasses import dataclass, field

from injcore import codes as C
from injcore import layout as L
from injcore import machine as M
from injcore.core import Core
from injcore.settings import MODE_NAMES, Settings

from .machine import NEEDLE_UM_PER_STEP, Machine

# Where a dose goes, measured on the model's side (sim.machine: the fluid and the
# motors' true positions), not from what the core counted.
AT_DEPTH_UM = 50  # "at depth": the tip within this of the set depth
TAIL_MS = 3000  # a puncture's tail is watched this long after the tip left the skin
# The device id the simulator's log names (a board's is its RP2040's unique id): fixed, fake.
SIM_DEVICE_ID = "5100000000000001"
ENTRY_WINDOW_TICKS = 3  # the needle's speed at skin entry: its travel over these ticks


@dataclass
class Puncture:
    """One finished puncture: the core's record, and what the model saw of it.

    The drug figures come from the fluid model's `delivered_ul` (drug that
    left the needle; what a suck-back drew in is not drug), split by where
    the tip was when it left: before the tip entered the skin
    (pre_entry_nl), in the skin (in_skin_nl; at_depth_nl the part of it with
    the tip within AT_DEPTH_UM of the set depth) and after the tip left the
    skin (tail_nl, until the next puncture started or TAIL_MS passed, whichever
    came first; Simulator.tail_ms). dose_out_nl adds them up; the shares are
    of the dose set.
    """

    number: int
    mode: str
    depth_set_um: int
    depth_reached_um: float  # true tip depth in the model
    depth_core_um: float  # what the core commanded, from its step count
    dose_set_nl: int
    dose_steps: int
    dose_nl: int  # from counted plunger steps
    outflow_nl: float  # drug out of the needle in the fluid model, advance to the puncture's end
    duration_ms: int
    start_ms: float
    pre_entry_nl: float = 0.0  # drug out before the tip entered the skin (on the skin)
    in_skin_nl: float = 0.0  # drug out while the tip was in the skin (tip > 0 um)
    at_depth_nl: float = 0.0  # of in_skin_nl, with the tip within AT_DEPTH_UM of the set depth
    tail_nl: float = 0.0  # drug out after the tip left the skin (on the skin)
    tail_ms: float = 0.0  # how long the tail has been watched so far
    entry_speed_um_s: float | None = None  # the needle's speed as the tip crossed 0 um
    interval_ms: float | None = None  # from the previous puncture's start (nappage: 1 / rate)
    # Air and tissue fluid in the needle (drawn in by suck-backs) when the puncture
    # started and when its tail ended: what was drawn in has displaced drug, so the
    # drug out is the plunger's net push plus the growth of this column.
    drawn_in_start_nl: float = 0.0
    drawn_in_end_nl: float = 0.0

    @property
    def dose_out_nl(self):
        """All the drug this puncture put out: before, in and after the skin."""
        return self.pre_entry_nl + self.in_skin_nl + self.tail_nl

    @property
    def dose_error(self):
        """Drug out against the dose set, as a fraction (+0.01: 1 % more)."""
        return self.dose_out_nl / self.dose_set_nl - 1

    @property
    def in_skin_share(self):
        return self.in_skin_nl / self.dose_set_nl

    @property
    def at_depth_share(self):
        """The share of the dose set that left with the tip at its set depth."""
        return self.at_depth_nl / self.dose_set_nl


class _Meter:
    """The model-side figures of the puncture under way, and of its tail once it is recorded."""

    def __init__(self, start_ms, depth_set_um, tail_ms, drawn_in_nl):
        self.start_ms = start_ms
        self.depth_set_um = depth_set_um
        self.tail_watch_ms = tail_ms
        self.drawn_in_start_nl = self.drawn_in_end_nl = drawn_in_nl
        self.phase = "pre"  # pre -> skin -> tail -> done
        self.pre_entry_nl = self.in_skin_nl = self.at_depth_nl = self.tail_nl = 0.0
        self.tail_start_ms = None
        self.tail_ms = 0.0
        self.entry_speed_um_s = None
        self.record = None  # the Puncture, once the core has counted it

    def add(self, now_ms, tip_um, drug_nl, tips, drawn_in_nl):
        self.drawn_in_end_nl = drawn_in_nl
        if self.phase == "pre":
            if tip_um > 0:
                self.phase = "skin"
                span = len(tips) - 1
                if span > 0:
                    self.entry_speed_um_s = (tips[-1] - tips[0]) * 1000 / (span * M.TICK_US / 1000)
            else:
                self.pre_entry_nl += drug_nl
        if self.phase == "skin":
            if tip_um > 0:
                self.in_skin_nl += drug_nl
                if abs(tip_um - self.depth_set_um) <= AT_DEPTH_UM:
                    self.at_depth_nl += drug_nl
            else:
                self.phase = "tail"
                self.tail_start_ms = now_ms - M.TICK_US / 1000  # it left during this tick
        if self.phase == "tail":
            self.tail_nl += drug_nl
            self.tail_ms = now_ms - self.tail_start_ms
            if self.tail_ms >= self.tail_watch_ms:
                self.phase = "done"
        if self.record is not None:
            self.flush()

    def flush(self):
        p = self.record
        p.pre_entry_nl, p.in_skin_nl = self.pre_entry_nl, self.in_skin_nl
        p.at_depth_nl, p.tail_nl, p.tail_ms = self.at_depth_nl, self.tail_nl, self.tail_ms
        p.entry_speed_um_s = self.entry_speed_um_s
        p.drawn_in_start_nl, p.drawn_in_end_nl = self.drawn_in_start_nl, self.drawn_in_end_nl


@dataclass
class Trace:
    t_ms: list = field(default_factory=list)
    needle_tip_um: list = field(default_factory=list)
    plunger_um: list = field(default_factory=list)
    delivered_ul: list = field(default_factory=list)
    force_n: list = field(default_factory=list)
    state: list = field(default_factory=list)

    def rows(self):
        return zip(
            self.t_ms,
            self.needle_tip_um,
            self.plunger_um,
            self.delivered_ul,
            self.force_n,
            self.state,
        )


class Simulator:
    """Drive it like an operator: press buttons, hold the trigger, advance time."""

    def __init__(self, settings=None, seed=1, trace=True, machine=None):
        self.machine = machine or Machine(seed=seed)
        m = self.machine
        self.core = Core(m.needle_axis, m.plunger_axis, m, m, settings=settings)
        self.now_us = 0
        self.tracing = trace
        self.trace = Trace()
        self.punctures = []
        self._seen = 0
        self._outflow0 = 0.0
        self._start_ms = 0.0
        self._meter = None  # the model-side figures of the puncture under way (_Meter)
        self.tail_ms = TAIL_MS  # how long a puncture's tail is watched (a slow line: longer)
        self._fluid = self.machine.fluid
        self._drug_ul = self._fluid.delivered_ul
        self._tips = deque(maxlen=ENTRY_WINDOW_TICKS + 1)  # the tip's last positions, um
        self._prev_state = self.core.state
        self.main_loop = []  # callables run after every tick, like the board's main loop

    def attach_log(self, log_dir):
        """Write the firmware's treatment log to a fresh `log_dir`, polled like the
        board's main loop polls it; returns the tlog.Recorder."""
        from injcore import tlog
        from injcore.fsio import DirFS

        log_dir.mkdir(parents=True, exist_ok=True)
        for old in log_dir.glob("*" + tlog.NAME_SUFFIX):
            old.unlink()  # a new run, a new log
        recorder = tlog.Recorder(
            self.core, tlog.Log(DirFS(str(log_dir)), ""), device_id=SIM_DEVICE_ID, firmware="sim"
        )  # no clock: its sessions are "time unknown"
        self.main_loop.append(lambda: (recorder.poll(), recorder.service()))
        return recorder

    # ---- time ----------------------------------------------------------------

    def step(self):
        core, m = self.core, self.machine
        self.now_us += M.TICK_US
        core.tick()
        m.step(M.TICK_US)
        state = core.state
        if state == C.ST_ADVANCE and self._prev_state != C.ST_ADVANCE:
            m.needle_depth_max_um = -1e9
            self._outflow0 = m.fluid.delivered_ul
            self._start_ms = self.now_us / 1000
            if self._meter is not None and self._meter.record is not None:
                self._meter.phase = "done"  # the next puncture ends the last one's tail
            self._meter = _Meter(
                self._start_ms, core.settings.depth_um, self.tail_ms, m.fluid.drawn_in_ul * 1000
            )
        self._prev_state = state
        self._measure()
        if core.punctures != self._seen:
            self._record()
        for fn in self.main_loop:
            fn()
        if self.tracing:
            t = self.trace
            t.t_ms.append(self.now_us / 1000)
            t.needle_tip_um.append(m.needle_tip_um())
            t.plunger_um.append(m.face_um)
            t.delivered_ul.append(core.delivered_nl() / 1000)
            t.force_n.append(m.force_n)
            t.state.append(state)

    def run_ms(self, ms):
        for _ in range(int(ms)):
            self.step()

    def hang_step(self):
        """One millisecond in which the control loop does not run (a hang, a late tick).

        The FIFOs are not topped up: the words already queued run out, then the
        motors stand still. The world goes on; the core sees nothing of it.
        """
        m = self.machine
        m.starve(True)
        self.now_us += M.TICK_US
        m.step(M.TICK_US)
        m.starve(False)
        self._measure()
        if self.tracing:
            t = self.trace
            t.t_ms.append(self.now_us / 1000)
            t.needle_tip_um.append(m.needle_tip_um())
            t.plunger_um.append(m.face_um)
            t.delivered_ul.append(self.core.delivered_nl() / 1000)
            t.force_n.append(m.force_n)
            t.state.append(self.core.state)

    def reset_board(self, reset_cause=C.RC_POWER_ON, settings=None):
        """The controller restarts (power cut, watchdog) with the machine as it is.

        A new core boots on the same machine: queued steps are lost, the pulse
        counters start over, the drivers are off. Nothing is stored yet (hazard
        H9), so the core starts with `settings` or the defaults.
        """
        m = self.machine
        m.board_reset()
        self.core = Core(
            m.needle_axis, m.plunger_axis, m, m, settings=settings, reset_cause=reset_cause
        )
        self._seen = 0
        self._prev_state = self.core.state
        return self.core

    def run_until(self, predicate, timeout_ms):
        """Advance until predicate(sim) holds; returns elapsed ms or raises TimeoutError."""
        for i in range(int(timeout_ms)):
            if predicate(self):
                return i
            self.step()
        if predicate(self):
            return int(timeout_ms)
        raise TimeoutError(
            "simulated %d ms without reaching the condition (state %s)"
            % (timeout_ms, C.STATE_NAMES[self.core.state])
        )

    def settle(self, timeout_ms=100):
        """Run until the motors have executed every queued step (the FIFO lead)."""
        m = self.machine
        return self.run_until(
            lambda s: not m.needle_axis.pending_steps() and not m.plunger_axis.pending_steps(),
            timeout_ms,
        )

    def _measure(self):
        """Where the drug that left the needle this tick went (the _Meter of the puncture)."""
        m = self.machine
        tip = m.needle_tip_um()
        self._tips.append(tip)
        if m.fluid is not self._fluid:  # a syringe inserted: a new line, counted from zero
            self._fluid, self._drug_ul = m.fluid, 0.0
        drug_nl = (m.fluid.delivered_ul - self._drug_ul) * 1000
        self._drug_ul = m.fluid.delivered_ul
        meter = self._meter
        if meter is not None and meter.phase != "done":
            meter.add(self.now_us / 1000, tip, drug_nl, self._tips, m.fluid.drawn_in_ul * 1000)

    def _record(self):
        core, m = self.core, self.machine
        rec = core.last_puncture
        s = core.settings
        self._seen = core.punctures
        prev = self.punctures[-1] if self.punctures else None
        self.punctures.append(
            Puncture(
                number=rec[L.P_NUMBER],
                mode=MODE_NAMES[rec[L.P_MODE]],
                depth_set_um=s.depth_um,
                depth_reached_um=m.needle_depth_max_um,
                depth_core_um=rec[L.P_DEPTH_STEPS] * NEEDLE_UM_PER_STEP - M.NEEDLE_HOME_OFFSET_UM,
                dose_set_nl=s.dose_nl,
                dose_steps=rec[L.P_DOSE_STEPS],
                dose_nl=core.steps_to_nl(rec[L.P_DOSE_STEPS]),
                outflow_nl=(m.fluid.delivered_ul - self._outflow0) * 1000,
                duration_ms=rec[L.P_TICKS],
                start_ms=self._start_ms,
                interval_ms=self._start_ms - prev.start_ms if prev else None,
            )
        )
        if self._meter is not None:
            self._meter.record = self.punctures[-1]
            self._meter.flush()

    # ---- asking the core ----------------------------------------------------------

    def highest_shot_rate_mhz(self, **settings):
        """The highest nappage rate the core accepts with `settings`, in mHz; None if none.

        Found by asking the core (Core.configure, a SettingsError for a rate it
        refuses) on the setting's grid, by bisection; the settings the core
        had are put back. Only while the core is idle.
        """
        from injcore.settings import MODE_CONTINUOUS, RANGES, SettingsError

        core = self.core
        before = core.settings.as_dict()
        lo, hi, step, _ = RANGES["shot_rate_mhz"]

        def accepts(rate):
            try:
                core.configure(**dict(settings, mode=MODE_CONTINUOUS, shot_rate_mhz=rate))
            except SettingsError:
                return False
            return True

        try:
            if not accepts(lo):
                return None
            good, bad = 0, (hi - lo) // step + 1  # grid indexes: good accepted, bad refused
            while bad - good > 1:
                mid = (good + bad) // 2
                if accepts(lo + mid * step):
                    good = mid
                else:
                    bad = mid
            return lo + good * step
        finally:
            core.configure(**before)

    # ---- operator actions ------------------------------------------------------

    @property
    def state(self):
        return C.STATE_NAMES[self.core.state]

    def home(self, timeout_ms=30_000):
        if not self.core.start_homing():
            raise RuntimeError("homing refused in state %s" % self.state)
        self.run_until(lambda s: s.core.state in (C.ST_READY, C.ST_FAULT), timeout_ms)
        self.settle()
        return self.core.state == C.ST_READY

    def load(self, model=1, timeout_ms=30_000, confirm=True):
        """Set the size `model` (an id of machine.SYRINGES), plunger back to the rear
        switch, seat a full syringe of that model and confirm its size (the operator's
        OK on the load screen; confirm=False: declined)."""
        self.configure(syringe_model=model)
        self.machine.remove_syringe()
        self.run_ms(5)
        if not self.core.start_load():
            raise RuntimeError("load refused in state %s" % self.state)
        self.run_until(lambda s: s.core.state in (C.ST_READY, C.ST_FAULT), timeout_ms)
        self.settle()
        self.machine.insert_syringe(model)
        self.run_ms(1)  # the core reads the syringe switch
        if confirm and not self.core.confirm_syringe():
            raise RuntimeError("syringe not confirmed in state %s" % self.state)

    def configure(self, **changes):
        self.core.configure(**changes)

    def hold_trigger(self, ms):
        self.machine.trigger = True
        self.run_ms(ms)
        self.machine.trigger = False

    def prime(self, ms=1000):
        old = self.core.settings.mode
        self.configure(mode=2)
        self.hold_trigger(ms)
        self.run_until(lambda s: s.core.state == C.ST_READY, 5000)
        self.settle()
        self.configure(mode=old)

    def shot(self, timeout_ms=130_000):
        """One trigger press in single mode; waits for the puncture to finish."""
        before = self.core.punctures
        self.machine.trigger = True
        self.run_ms(30)
        self.machine.trigger = False
        self.run_ms(1)  # the core sees the release even when it refused the shot
        self.run_until(lambda s: s.core.state == C.ST_READY, timeout_ms)
        self.settle()
        return self.punctures[-1] if self.core.punctures > before else None

    def burst(self, hold_ms, timeout_ms=10_000):
        """Hold the trigger in continuous mode for hold_ms; waits for the last puncture to end."""
        before = len(self.punctures)
        self.hold_trigger(hold_ms)
        self.run_until(lambda s: s.core.state == C.ST_READY, timeout_ms)
        self.settle()
        return self.punctures[before:]


def default_settings(**values):
    return Settings(**values)
