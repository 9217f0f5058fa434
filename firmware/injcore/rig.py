"""A minimal, integer-only test rig for the control core.

Runs unchanged on CPython and on MicroPython (it is copied into the
MicroPython interpreter by tests and benchmarks), so the same scripted
session can be compared step for step on both runtimes. It models only what
the core reads back: where each axis is (from the words it was handed), the
switches that position closes, the syringe, the trigger and the load cell.
For the full physical model see sim/machine.py.
"""

from injcore import codes as C
from injcore import machine as M
from injcore.core import Core


class AxisPort:
    """Decodes the two words of each tick into steps, like the PIO would.

    Words act at once (no FIFO lead): the rig checks the core's logic, the
    simulator (sim/machine.py) models the lead.
    """

    def __init__(self, start_steps):
        self.pos = start_steps  # true motor position, microsteps from the switch
        self.start = start_steps
        self.words = 0
        self.checksum = 0  # rolling hash of every word handed over

    def put(self, seg):
        # Written to allocate nothing on MicroPython (no iterator, no big ints),
        # so heap measurements of the tick see only the core.
        w = seg[0]
        n = (w >> 1) & 511
        if w & 1:
            self.pos += n
        else:
            self.pos -= n
        self.checksum = ((self.checksum & 0xFFFFF) * 31) ^ w ^ (seg[1] << 1 & 0x3FFFFFFF)
        self.words += 2

    def emitted(self):
        return self.pos - self.start  # steps sent since the port was made, like the PIO counter

    def halt(self):
        pass


class Inputs:
    def __init__(self, needle, plunger):
        self.needle = needle
        self.plunger = plunger
        self.syringe = False
        self.trigger = False
        self.estop = False
        self.force = 0
        self.plunger_front_steps = M.um_to_plunger_steps(M.PLUNGER_TRAVEL_UM)

    def switches(self):
        sw = 0
        if self.needle.pos <= 0:
            sw |= C.SW_NEEDLE_HOME
        if self.plunger.pos <= 0:
            sw |= C.SW_PLUNGER_REAR
        if self.plunger.pos >= self.plunger_front_steps:
            sw |= C.SW_PLUNGER_FRONT
        if self.syringe:
            sw |= C.SW_SYRINGE
        if self.trigger:
            sw |= C.SW_TRIGGER
        if self.estop:
            sw |= C.SW_ESTOP
        return sw

    def force_mn(self):
        return self.force


class Outputs:
    def __init__(self):
        self.enabled = False
        self.alarm_level = 0

    def drivers(self, on):
        self.enabled = on

    def alarm(self, level):
        self.alarm_level = level


class Rig:
    """Core + ports; `run(ms)` advances the simulated clock one tick at a time."""

    def __init__(self, needle_start_steps=3000, plunger_start_steps=20000, settings=None):
        self.needle = AxisPort(needle_start_steps)
        self.plunger = AxisPort(plunger_start_steps)
        self.inputs = Inputs(self.needle, self.plunger)
        self.outputs = Outputs()
        self.core = Core(self.needle, self.plunger, self.inputs, self.outputs, settings=settings)
        self.now_us = 0

    def run(self, ms, until=None):
        """Advance ms ticks, or fewer if until(core) becomes true. Returns ticks run."""
        core = self.core
        for i in range(ms):
            self.now_us = (self.now_us + M.TICK_US) & 0x3FFFFFFF  # like ticks_us: a small int
            core.tick()
            if until is not None and until(core):
                return i + 1
        return ms

    def snapshot(self):
        c = self.core
        return (
            c.ticks,
            c.state,
            c.needle.pos,
            c.plunger.pos,
            self.needle.pos,
            self.plunger.pos,
            c.fluid_steps,
            c.punctures,
            self.needle.checksum,
            self.plunger.checksum,
        )


def load_syringe(rig, run):
    """Load: the plunger to its rear switch, a syringe seated, its size confirmed.

    `run(ms, until)` advances the rig (Rig.run, or a logging wrapper of it).
    """
    core = rig.core
    core.start_load()
    run(20000, lambda c: c.state == C.ST_READY or c.state == C.ST_FAULT)
    rig.inputs.syringe = True
    run(1)  # the core reads the syringe switch
    return core.confirm_syringe()


def scripted_session(rig, log):
    """Home, load, prime, 3 single punctures, a burst of continuous ones.

    Calls log(line) with a snapshot every 50 ticks and at every puncture;
    the same script gives the same lines on every runtime.
    """
    core = rig.core

    def run_logged(ms, until=None):
        done = 0
        while done < ms:
            step = rig.run(1)
            done += step
            if core.ticks % 50 == 0:
                log(rig.snapshot())
            if until is not None and until(core):
                return done
        return done

    core.start_homing()
    run_logged(20000, lambda c: c.state == C.ST_READY or c.state == C.ST_FAULT)
    load_syringe(rig, run_logged)
    core.configure(mode=2)  # prime
    rig.inputs.trigger = True
    run_logged(800)
    rig.inputs.trigger = False
    run_logged(100)
    core.configure(mode=0, depth_um=1500, dose_nl=10000, suckback_nl=500)
    for _ in range(3):
        rig.inputs.trigger = True
        run_logged(20)
        rig.inputs.trigger = False
        run_logged(1000, lambda c: c.state == C.ST_READY)
        log(tuple(core.last_puncture))
    core.configure(mode=1, depth_um=600, dose_nl=2000, shot_rate_mhz=5000, speed_um_s=40000)
    rig.inputs.trigger = True
    run_logged(1500)
    rig.inputs.trigger = False
    run_logged(1000, lambda c: c.state == C.ST_READY)
    log(rig.snapshot())
    log(tuple(core.last_puncture))


# ---- profiling, shared by tests/test_micropython.py and host_tools/bench.py ----

try:
    # MicroPython. The WebAssembly build's ticks_us jumps in 1-2 ms steps and
    # disagrees with wall time, so time with ticks_ms over long runs instead.
    from time import ticks_diff, ticks_ms  # type: ignore[attr-defined]

    def ticks_us():
        return ticks_ms() * 1000  # type: ignore[operator]
except ImportError:  # CPython
    from time import perf_counter_ns  # type: ignore[attr-defined]

    def ticks_us():  # type: ignore[no-redef]
        return perf_counter_ns() // 1000

    def ticks_diff(a, b):  # type: ignore[misc]
        return a - b


def reference_loop(n=10000):
    """The reference workload: `x = x + 1` in a function (4.75 us per iteration on an RP2040)."""
    x = 0
    for _ in range(n):
        x = x + 1
    return x


def time_reference_us(repeat=5, scale=10):
    """Best time of 10,000 reference iterations (run `scale` times longer for clock resolution)."""
    best = -1
    for _ in range(repeat):
        t0 = ticks_us()
        reference_loop(10000 * scale)
        dt = ticks_diff(ticks_us(), t0)
        if best < 0 or dt < best:
            best = dt
    return best / scale


def measure_ticks(rig, ticks, heap=None):
    """Run `ticks` ticks; returns (bytes allocated in all, worst tick, wall us in all).

    `heap` is gc.mem_alloc on MicroPython (exact there), None on CPython.
    """
    core = rig.core
    total = worst = 0
    t = rig.now_us
    t0 = ticks_us()
    for _ in range(ticks):
        t = (t + 1000) & 0x3FFFFFFF
        rig.now_us = t
        if heap is None:
            core.tick()
        else:
            a = heap()
            core.tick()
            d = heap() - a
            total += d
            if d > worst:
                worst = d
    return total, worst, ticks_diff(ticks_us(), t0)


def profile(rig, measure):
    """Drive the rig through idle, ready and continuous punctures, calling measure(label, rig)."""
    core = rig.core
    measure("idle", rig)
    core.start_homing()
    rig.run(20000, lambda c: c.state == C.ST_READY)
    measure("ready", rig)
    load_syringe(rig, rig.run)
    core.configure(mode=2)
    rig.inputs.trigger = True
    rig.run(600)
    rig.inputs.trigger = False
    rig.run(200)
    core.configure(mode=1, depth_um=600, dose_nl=2000, shot_rate_mhz=5000, speed_um_s=40000)
    rig.inputs.trigger = True
    rig.run(50)
    measure("continuous", rig)
    return core.punctures
