"""The simulator: the real control core, the machine model and a simulated clock."""

from dataclasses import dataclass, field

from injcore import codes as C
from injcore import layout as L
from injcore import machine as M
from injcore.core import Core
from injcore.settings import MODE_NAMES, Settings

from .machine import NEEDLE_UM_PER_STEP, Machine


@dataclass
class Puncture:
    number: int
    mode: str
    depth_set_um: int
    depth_reached_um: float  # true tip depth in the model
    depth_core_um: float  # what the core commanded, from its step count
    dose_set_nl: int
    dose_steps: int
    dose_nl: int  # from counted plunger steps
    outflow_nl: float  # what left the needle in the fluid model during the puncture
    duration_ms: int
    start_ms: float


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
        recorder = tlog.Recorder(self.core, tlog.Log(DirFS(str(log_dir)), ""))
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
        self._prev_state = state
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

    def _record(self):
        core, m = self.core, self.machine
        rec = core.last_puncture
        s = core.settings
        self._seen = core.punctures
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
            )
        )

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
