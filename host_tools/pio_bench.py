"""Emulator bench of the shipped PIO step programs (firmware/board/pio_step.py).

    .venv/bin/python host_tools/pio_bench.py

prints one figure per line (`name: value unit`): the step rates the step
generator sustains (the program's peak, the rate the two-words-per-tick
contract allows, what injcore.axis's tables and the planned moves reach per
axis), the edge timing error against injcore.pio_word's model over the
planner streams, the steps checked, the pulse/DIR timing and the depth of the
joined TX FIFO in ms of motion.

The planner streams (planner_streams()) are made by the real injcore code:
the Core through one full puncture on the rig's inputs (both axes), and
injcore.axis.Axis running injcore.planner.Plan moves (the fastest needle move
over the full travel, single-step moves, back-and-forth moves). A recording
port keeps each tick's two words, the Axis's position and every move started,
so a run can be checked against the edge model, the planner's closed form
tick by tick, the Axis's position and the step counter.

The library part is the harness tests/test_pio_step.py uses too: it imports
the shipped source with the host fake of rp2 (host_tools/fakes/rp2.py), runs the
assembled opcodes in rp2040-pio-emulator (pioemu) and records the pins.

pioemu facts the harness builds on (rp2040-pio-emulator 0.88):
  * emulate() yields (before, after) once per instruction; a delay [n] is a
    jump of the clock, so the pins in `after` hold from `before.clock` on.
  * `wait pin n` reads GPIO n (in_base is ignored), hence STEP is GPIO 0 here;
    `mov ..., reverse(...)` is not supported; the TX FIFO is an unbounded
    deque (the harness enforces the depth); side-set `opt` is not supported.
  * out_count defaults to 32: out(pins, 1) would clobber every pin unless the
    count comes from the program (out_init).
Long waits are fast-forwarded (accelerate=True): a `jmp x--/y--` onto itself
with its register at n is n taken iterations of (1 + delay) cycles, a stalled
`wait` on an input waveform lasts until the waveform's next change, a stalled
`pull` until the CPU's next put. The tests check the accelerated and the plain
emulation give the same waveform.
"""

import os
import sys
from bisect import bisect_right
from collections import deque
from dataclasses import replace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")
TESTS = os.path.join(ROOT, "tests")

STEP_PIN = 0  # emulated GPIO numbers; pioemu's wait ignores in_base, so STEP is GPIO 0
DIR_PIN = 1

_FOREVER = 1 << 62


def load_pio_step():
    """Import firmware/board/pio_step.py with the fake rp2 (the shipped file itself)."""
    for path in (TESTS, FIRMWARE):  # firmware ends up first
        if path not in sys.path:
            sys.path.insert(0, path)
    from host_tools.fakes import rp2 as fake_rp2

    if sys.modules.setdefault("rp2", fake_rp2) is not fake_rp2:
        raise ImportError("sys.modules['rp2'] is not host_tools/fakes/rp2.py")
    board = sys.modules.get("board")
    board_dir = os.path.join(FIRMWARE, "board")
    if board is not None and os.path.dirname(os.path.abspath(board.__file__)) != board_dir:
        raise ImportError("'board' is {} (Adafruit Blinka's board.py?)".format(board.__file__))
    from board import pio_step

    return pio_step


def _pin_count(init):
    if init is None:
        return 0
    return 1 if isinstance(init, int) else len(init)


def emulator_config(
    prog, *, freq=-1, sideset_base=None, out_base=None, jmp_pin=None, in_base=None, **_
):
    """pioemu.emulate() keyword arguments for a Program and its StateMachine arguments."""
    from injcore.pio_word import PIO_HZ

    if freq != PIO_HZ:
        raise ValueError("the state machine does not run at the PIO clock of the words")
    if prog.sideset_opt:
        raise NotImplementedError("pioemu has no optional side-set")
    if in_base not in (None, 0):
        raise NotImplementedError("pioemu's wait reads absolute GPIOs: in_base must be 0")
    return {
        "side_set_base": sideset_base or 0,
        "side_set_count": prog.sideset_bits,
        "out_base": out_base or 0,
        "out_count": max(1, _pin_count(prog.out_init)),
        "jmp_pin": jmp_pin or 0,
        "wrap_target": prog.wrap_target,
        "wrap_top": prog.wrap,
        "shift_osr_right": prog.out_shiftdir == 1,
        "shift_isr_right": prog.in_shiftdir == 1,
        "auto_pull": prog.autopull,
        "auto_push": prog.autopush,
        "pull_threshold": prog.pull_thresh,
        "push_threshold": prog.push_thresh,
    }


def waveform_reader(changes):
    """pins_at(cycle) and next_change(cycle) of a recorded [(cycle, pins)] list."""
    times = [t for t, _ in changes]
    values = [p for _, p in changes]

    def pins_at(cycle):
        i = bisect_right(times, cycle)
        return values[i - 1] if i else 0

    def next_change(cycle):
        i = bisect_right(times, cycle)
        return times[i] if i < len(times) else _FOREVER

    return pins_at, next_change


class EmulatedSM:
    """One state machine in pioemu, driven like rp2.StateMachine (put/get/exec/rx_fifo).

    Records output pin changes in `changes` [(cycle, pins)] and, for
    `trace_addr`, the cycles at which that instruction completed (`done_at`).
    `inputs` is a recorded waveform [(cycle, pins)] the pins read from.
    put() words enter a TX FIFO of `fifo_depth`; words given to feed() with a
    ready cycle enter it when ready and there is room (a blocking sm.put()).
    """

    def __init__(self, prog, cfg, *, inputs=None, fifo_depth=8, trace_addr=None, accelerate=True):
        import pioemu

        self._emulate = pioemu.emulate
        self.prog = prog
        self.opcodes = prog.opcodes
        self.cfg = dict(cfg)
        self.fifo_depth = fifo_depth
        self.trace_addr = trace_addr
        self.accelerate = accelerate
        self.state = pioemu.State()
        self.pins = 0
        self.changes = []
        self.done_at = []
        self.stall_cycles = 0
        self.fifo_max = 0
        self.pending = deque()  # (ready cycle, word)
        self.starved = False
        self.side_bits = prog.sideset_bits
        self.side_base = cfg["side_set_base"]
        self.inputs = inputs
        if inputs is not None:
            self._pins_at, self._next_change = waveform_reader(inputs)

            def source(state: pioemu.State) -> int:
                return self._pins_at(state.clock)

            self.cfg["input_source"] = source

    # -- rp2.StateMachine look-alike ----------------------------------------

    def put(self, word):
        if len(self.state.transmit_fifo) >= self.fifo_depth:
            raise RuntimeError("TX FIFO full: put() would block")
        self._set_fifo(deque([*self.state.transmit_fifo, word & 0xFFFFFFFF]))

    def get(self):
        rx = deque(self.state.receive_fifo)
        if not rx:
            raise RuntimeError("RX FIFO empty: get() would block")
        word = rx.popleft()
        self.state = replace(self.state, receive_fifo=rx)
        return word

    def rx_fifo(self):
        return len(self.state.receive_fifo)

    def tx_fifo(self):
        return len(self.state.transmit_fifo)

    def exec(self, instr):
        """A forced instruction: executes now, takes one cycle, the PC stays."""
        if isinstance(instr, str):
            instr = sys.modules["rp2"].asm_pio_encode(instr, self.side_bits, False)
        kind = instr >> 13
        if kind in (0, 1):
            raise NotImplementedError("forced jmp/wait")
        if kind == 4 and instr & 0xA0 == 0xA0 and not self.state.transmit_fifo:
            raise RuntimeError("forced pull on an empty TX FIFO would stall")
        if kind == 4 and instr & 0xA0 == 0x20 and len(self.state.receive_fifo) >= 4:
            raise RuntimeError("forced push on a full RX FIFO would stall")
        cfg = dict(self.cfg, wrap_target=0, wrap_top=0)
        start = self.state
        run = self._emulate(
            [instr],
            stop_when=lambda _op, s: s.clock > start.clock,
            initial_state=replace(start, program_counter=0),
            **cfg,
        )
        before, after = next(run)
        self._note_pins(before.clock, after.pin_values)
        self.state = replace(after, program_counter=start.program_counter)

    # -- feeding ------------------------------------------------------------

    def feed(self, words, ready=0):
        """Words the CPU puts as soon as they are ready and the FIFO has room."""
        for w in words:
            self.pending.append((ready, w & 0xFFFFFFFF))

    def _set_fifo(self, fifo):
        self.state = replace(self.state, transmit_fifo=fifo)
        self.fifo_max = max(self.fifo_max, len(fifo))

    def _refill_due(self, state):
        return (
            self.pending
            and self.pending[0][0] <= state.clock
            and len(state.transmit_fifo) < self.fifo_depth
        )

    def _refill(self):
        fifo = deque(self.state.transmit_fifo)
        while (
            self.pending and self.pending[0][0] <= self.state.clock and len(fifo) < self.fifo_depth
        ):
            fifo.append(self.pending.popleft()[1])
        self._set_fifo(fifo)

    # -- running ------------------------------------------------------------

    def _note_pins(self, cycle, pins):
        if pins != self.pins:
            self.changes.append((cycle, pins))
            self.pins = pins

    def _apply_side_set(self, opcode, state):
        if not self.side_bits:
            return state
        value = (opcode >> (13 - self.side_bits)) & ((1 << self.side_bits) - 1)
        mask = ((1 << self.side_bits) - 1) << self.side_base
        pins = (state.pin_values & ~mask) | (value << self.side_base)
        self._note_pins(state.clock, pins)
        return replace(state, pin_values=pins)

    def _horizon(self, until):
        """The next cycle at which something outside the program happens."""
        h = until
        if self.pending and len(self.state.transmit_fifo) < self.fifo_depth:
            h = min(h, self.pending[0][0])
        return h

    def _fast_forward(self, opcode, until):
        """Skip a self-loop, a stalled pull or a stalled wait; False if none applies."""
        s = self.state
        kind = opcode >> 13
        delay = (opcode >> 8) & (0x1F >> self.side_bits)
        if kind == 0 and (opcode & 0x1F) == s.program_counter:  # jmp onto itself
            cond = (opcode >> 5) & 7
            if cond not in (2, 4):
                return False
            reg = s.x_register if cond == 2 else s.y_register
            if reg == 0:
                return False
            n = max(1, min(reg, (self._horizon(until) - s.clock) // (1 + delay)))
            s = self._apply_side_set(opcode, s)
            if cond == 2:
                s = replace(s, x_register=reg - n)
            else:
                s = replace(s, y_register=reg - n)
            self.state = replace(s, clock=s.clock + n * (1 + delay))
            return True
        if kind == 4 and opcode & 0x80 and opcode & 0x20:  # pull block
            if s.transmit_fifo or not self.pending:
                return False
            target = min(until, self.pending[0][0])
            if target <= s.clock:
                return False
            s = self._apply_side_set(opcode, s)
            self.stall_cycles += target - s.clock
            self.state = replace(s, clock=target)
            return True
        if kind == 1 and self.inputs is not None and (opcode >> 5) & 3 in (0, 1):  # wait gpio/pin
            polarity = (opcode >> 7) & 1
            pin = opcode & 0x1F
            if (self._pins_at(s.clock) >> pin) & 1 == polarity:
                return False
            target = min(until, self._next_change(s.clock))
            if target <= s.clock + 1:
                return False
            s = self._apply_side_set(opcode, s)
            self.state = replace(s, clock=target)
            return True
        return False

    def _should_stop(self, opcode, state, until):
        if state.clock >= until or self._refill_due(state):
            return True
        kind = opcode >> 13
        if kind == 4 and opcode & 0xA0 == 0xA0 and not state.transmit_fifo:  # pull block, dry
            return not self.pending or self.accelerate
        if not self.accelerate:
            return False
        if kind == 0:  # jmp x--/y-- onto itself with its register > 1
            if (opcode & 0x1F) != state.program_counter:
                return False
            cond = (opcode >> 5) & 7
            return (cond == 2 and state.x_register > 1) or (cond == 4 and state.y_register > 1)
        if (
            kind == 1 and self.inputs is not None and (opcode >> 5) & 3 in (0, 1)
        ):  # wait would stall
            level = (self._pins_at(state.clock) >> (opcode & 0x1F)) & 1
            return level != (opcode >> 7) & 1
        return False

    def run(self, until=_FOREVER):
        """Emulate until cycle `until`, or until the TX FIFO runs dry with nothing pending."""
        self.starved = False
        while self.state.clock < until:
            if self._refill_due(self.state):
                self._refill()
            progressed = False
            steps = self._emulate(
                self.opcodes,
                # progressed late-bound on purpose: the loop below sets it while the steps run
                stop_when=lambda op, s: progressed and self._should_stop(op, s, until),  # noqa: B023
                initial_state=self.state,
                **self.cfg,
            )
            for before, after in steps:
                progressed = True
                if before.program_counter == self.trace_addr:
                    if after.program_counter == self.trace_addr:
                        self.stall_cycles += after.clock - before.clock
                    else:
                        self.done_at.append(before.clock)
                self._note_pins(before.clock, after.pin_values)
                self.state = after
            if self.state.clock >= until:
                break
            if self._refill_due(self.state):
                continue
            opcode = self.opcodes[self.state.program_counter]
            if (
                opcode >> 13 == 4
                and opcode & 0xA0 == 0xA0
                and not self.state.transmit_fifo
                and not self.pending
            ):
                self.starved = True
                break
            if self.accelerate and self._fast_forward(opcode, until):
                continue
            if not progressed:
                raise AssertionError("emulation made no progress at {}".format(self.state))
        return self


# -- the axis as start_axis leaves it ------------------------------------------


def start_axis_record(pio_step=None):
    """Run the shipped start_axis against the recording fake rp2 (GPIO 0 = STEP, 1 = DIR).

    Returns the (generator, counter) fake StateMachines with their calls.
    """
    ps = pio_step or load_pio_step()
    fake = sys.modules["rp2"]
    fake.reset()
    return ps.start_axis(0, 1, STEP_PIN, DIR_PIN)


def emulate_as_started(fake_sm, **kwargs):
    """An EmulatedSM configured and reset by replaying a fake StateMachine's calls."""
    sm = EmulatedSM(fake_sm.program, emulator_config(fake_sm.program, **fake_sm.config), **kwargs)
    for call in fake_sm.calls:
        if call[0] == "put":
            for word in call[1]:
                sm.put(word)
        elif call[0] == "exec":
            sm.exec(call[2])
    # Forced instructions run before active(1): the waveform starts after them.
    sm.state = replace(sm.state, clock=0)
    sm.changes.clear()
    sm.pins = sm.state.pin_values
    return sm


# -- the step generator -------------------------------------------------------


def step_gen_sm(pio_step=None, *, accelerate=True, fifo_depth=8):
    """An EmulatedSM running step_gen as start_axis leaves it (OSR cleared, at address 0)."""
    ps = pio_step or load_pio_step()
    gen, _ = start_axis_record(ps)
    return emulate_as_started(
        gen, fifo_depth=fifo_depth, trace_addr=ps.step_gen.wrap_target, accelerate=accelerate
    )


def run_words(words, *, accelerate=True, pio_step=None):
    """Emulate step_gen on a word stream that sits in an unbounded FIFO; returns the SM."""
    sm = step_gen_sm(pio_step, accelerate=accelerate, fifo_depth=len(words) + 1)
    for w in words:
        sm.put(w)
    return sm.run()


def analyse(sm, step_pin=STEP_PIN, dir_pin=DIR_PIN):
    """Rising edges [(cycle, dir)] counted from the first pull, pulse high times and
    the time DIR had been stable at each edge."""
    t0 = sm.done_at[0] if sm.done_at else 0
    edges, highs, dir_setup = [], [], []
    step = direction = 0
    rise = dir_changed = None
    for t, pins in sm.changes:
        s = (pins >> step_pin) & 1
        d = (pins >> dir_pin) & 1
        if d != direction:
            direction = d
            dir_changed = t
        if s and not step:
            rise = t
            edges.append((t - t0, d))
            dir_setup.append(_FOREVER if dir_changed is None else t - dir_changed)
        elif step and not s:
            highs.append(t - rise)
        step = s
    return edges, highs, dir_setup


# -- the step counter ---------------------------------------------------------


def step_count_sm(changes, pio_step=None, *, accelerate=True):
    """An EmulatedSM running step_count, as start_axis leaves it, on a recorded
    STEP/DIR waveform [(cycle, pins)] (e.g. a step_gen run's `changes`)."""
    _, count = start_axis_record(pio_step)
    return emulate_as_started(count, inputs=changes, accelerate=accelerate)


# -- streams and figures ------------------------------------------------------


def tick_stream(ticks, pio_word=None):
    """Words for a list of (direction, steps) ticks; the direction goes into both words."""
    if pio_word is None:
        load_pio_step()
        from injcore import pio_word
    words = []
    for d, n in ticks:
        step, pad = pio_word.tick_words(n)
        words += [step | d, pad | d]
    return words


def hand_streams():
    """Hand-written (direction, steps) tick streams: edge cases beyond what the planner makes."""
    ramp = list(range(0, 201)) + list(range(199, -1, -1))
    return {
        "single_step": tick_stream([(1, 1)] * 4 + [(0, 1)] * 2),
        "needle_max": tick_stream([(1, 160)] * 12),
        "direction_changes": tick_stream(
            [(1, 50), (0, 50), (1, 1), (0, 1), (1, 160), (0, 160), (0, 0), (1, 7), (0, 511)]
        ),
        "ramp": tick_stream([(1, n) for n in ramp]),
    }


# -- streams from the real planner, axis runner and core ------------------------


def _injcore():
    load_pio_step()  # puts firmware/ on the path
    from injcore import axis, core, machine, planner, rig, settings

    return axis, core, machine, planner, rig, settings


class Move:
    """One Axis.start() while recording: the plan's figures copied (plans are reused)."""

    def __init__(self, tick, plan, direction):
        self.tick = tick  # index of the first tick the move emits
        self.name = plan.name
        self.distance = plan.distance
        self.ramp_ticks = plan.ramp_ticks
        self.cruise_ticks = plan.cruise_ticks
        self.direction = direction

    @property
    def end(self):
        """Index of the tick after the move's last one."""
        return self.tick + 2 * self.ramp_ticks + self.cruise_ticks if self.distance else self.tick

    def __repr__(self):
        return "Move({!r} at tick {}: {} steps {}, K={} C={})".format(
            self.name,
            self.tick,
            self.distance,
            "fwd" if self.direction else "back",
            self.ramp_ticks,
            self.cruise_ticks,
        )


def plan_tick_steps(distance, ramp_ticks, cruise_ticks):
    """Steps per tick of a plan from the planner's closed form (not from its arrays):
    floor(p(k)) - floor(p(k-1)), p(k) = D k^2/den, D K (2k-K)/den, D - D (N-k)^2/den."""
    if distance == 0:
        return []
    k, n = ramp_ticks, 2 * ramp_ticks + cruise_ticks
    if k == 0:  # a take-up: no ramps, p(t) = floor(D t / N)
        return [distance * t // n - distance * (t - 1) // n for t in range(1, n + 1)]
    den = 2 * k * (n - k)

    def p(t):
        if t <= k:
            return distance * t * t // den
        if t <= n - k:
            return distance * k * (2 * t - k) // den
        return distance - -(-distance * (n - t) * (n - t) // den)

    return [p(t) - p(t - 1) for t in range(1, n + 1)]


def _recording_port(start_steps=0):
    _, _, _, _, rig, _ = _injcore()

    class RecordingPort(rig.AxisPort):
        """rig.AxisPort (so the rig's switches see the motor) that, while `recording`,
        copies the words of every tick and notes the Axis's position and moves."""

        def __init__(self, start_steps):
            super().__init__(start_steps)
            self.start_steps = start_steps
            self.recording = False
            self.axis = None
            self.tick_words = []  # (step word, pad word) per recorded tick
            self.axis_pos = []  # the Axis's position before each recorded tick's steps
            self.moves = []

        def attach(self, axis):
            """Watch `axis` (whose port this is): its position and every move it starts."""
            self.axis = axis
            self.seen_moves = axis.moves
            return self

        def put(self, seg):
            super().put(seg)
            ax = self.axis
            if ax.moves != self.seen_moves:
                # A move started since the last put: before this tick's steps were
                # taken (its steps are in these words) or after (in the next tick's).
                if self.recording:
                    if (ax.moves - self.seen_moves) & 0x3FFFFFFF != 1:
                        raise AssertionError("%s: two moves started between ticks" % ax.name)
                    plan, direction = ax.started()
                    at = len(self.tick_words) + (0 if ax.ticked == ax.moves else 1)
                    self.moves.append(Move(at, plan, direction))
                self.seen_moves = ax.moves
            if self.recording:
                self.tick_words.append((seg[0], seg[1]))  # copied: seg is reused
                n = ax.last_n  # the tick has moved pos already: where it was before
                self.axis_pos.append(ax.pos - n if seg[0] & 1 else ax.pos + n)

        def emitted(self):
            """Signed steps sent since the port started, as board.pio_step.read_count
            gives them (words act at once here: no FIFO lead)."""
            return self.pos - self.start_steps

        def halt(self):
            """Nothing is queued: every word has acted when put() returns."""

        def stream(self, name):
            positions = self.axis_pos + [self.axis.pos]
            return PlannedStream(name, self.axis.name, self.tick_words, positions, self.moves)

    return RecordingPort(start_steps)


class PlannedStream:
    """The words an Axis put, tick by tick, with what the plans and the Axis say of them."""

    def __init__(self, name, axis, tick_words, positions, moves):
        self.name = name
        self.axis = axis  # "needle" or "plunger"
        self.tick_words = list(tick_words)
        self.words = [w for pair in self.tick_words for w in pair]
        self.positions = list(positions)  # Axis.pos at the start of each tick, then at the end
        self.moves = list(moves)
        if len(self.positions) != len(self.tick_words) + 1:
            raise ValueError("one position per tick plus the final one")

    @property
    def ticks(self):
        return len(self.tick_words)

    @property
    def distance(self):
        """Steps the plans add up to: every rising edge the stream must make."""
        return sum(m.distance for m in self.moves)

    @property
    def net(self):
        """Signed position change the Axis reports."""
        return self.positions[-1] - self.positions[0]

    def axis_tick_steps(self):
        """Signed steps per tick by the Axis's own position."""
        return [b - a for a, b in zip(self.positions, self.positions[1:])]

    def planned_tick_steps(self):
        """Signed steps per tick by the planner's closed form of every recorded move."""
        out = [0] * self.ticks
        for m in self.moves:
            sign = 1 if m.direction else -1
            for i, n in enumerate(plan_tick_steps(m.distance, m.ramp_ticks, m.cruise_ticks)):
                if m.tick + i >= self.ticks:
                    raise ValueError("{} runs past the recording".format(m))
                out[m.tick + i] += sign * n
        return out

    def max_tick_steps(self):
        return max(abs(n) for n in self.axis_tick_steps()) if self.ticks else 0

    def __repr__(self):
        return "PlannedStream({!r}, {} ticks, {} steps, net {})".format(
            self.name, self.ticks, self.distance, self.net
        )


def axis_stream(name, axis_name, moves, idle_before=1, idle_after=1):
    """Run planned moves back to back on an injcore Axis, as the core does (the next
    move starts in the tick the previous one ends, so its steps come in the next tick)."""
    axis, _, _, _, _, _ = _injcore()
    port = _recording_port()
    ax = port.attach(axis.Axis(axis_name, port)).axis
    port.recording = True
    for _ in range(idle_before):
        ax.tick()
    for plan, direction in moves:
        ax.start(plan, direction)
        while ax.busy:
            ax.tick()
    for _ in range(idle_after):
        ax.tick()
    return port.stream(name)


PUNCTURE = {  # the recorded puncture: settings fields
    "depth_um": 1500,
    "speed_um_s": 40_000,
    "dose_nl": 10_000,
    "rate_nl_s": 50_000,
    "suckback_nl": 500,
    "syringe_model": 1,
}


def puncture_streams(**settings):
    """Both axes' words over one full single-shot puncture of the real Core.

    The rig (injcore/rig.py's inputs, with recording axis ports) is homed, a
    syringe loaded and primed (plunger last moved forward), one puncture is
    fired unrecorded, then the second is recorded from the trigger press to
    READY: needle in at the puncture speed, inject dose + suck-back after the
    reversal (backlash taken up), suck-back (reversal, backlash taken up),
    needle out at the axis maximum. Returns (needle stream, plunger stream, core).
    """
    _, C, M, _, rig, S = _injcore()  # noqa: N806  (module aliases, as `import codes as C`)
    fields = dict(PUNCTURE, **settings)
    needle = _recording_port(3000)
    plunger = _recording_port(20000)
    inputs = rig.Inputs(needle, plunger)
    core = C.Core(needle, plunger, inputs, rig.Outputs())
    needle.attach(core.needle)
    plunger.attach(core.plunger)

    def run(ticks, until):
        for _ in range(ticks):
            core.tick()
            if until(core):
                return
        state = C.STATE_NAMES[core.state]
        raise AssertionError("core state {} after {} ticks".format(state, ticks))

    def ready(c):
        return c.state == C.ST_READY

    core.start_homing()
    run(30_000, ready)
    core.start_load()
    run(30_000, ready)
    inputs.syringe = True
    core.tick()  # the core reads the syringe switch
    if not core.confirm_syringe():
        raise AssertionError("the syringe loaded was not confirmed")
    core.configure(mode=S.MODE_PRIME)
    inputs.trigger = True
    core.tick()
    inputs.trigger = False  # releasing stops the prime along its ramp
    run(1000, ready)
    if not core.primed:
        raise AssertionError("prime did not finish")
    core.configure(mode=S.MODE_SINGLE, **fields)
    for record in (False, True):
        needle.recording = plunger.recording = record
        inputs.trigger = True
        core.tick()  # the press
        inputs.trigger = False
        run(10_000, ready)
    needle.recording = plunger.recording = False
    return needle.stream("puncture_needle"), plunger.stream("puncture_plunger"), core


def planner_streams():
    """The word streams the tests and the bench run through the emulator, all made
    by injcore's planner and Axis (and the Core for the puncture). Cached."""
    global _PLANNER_STREAMS
    if _PLANNER_STREAMS is None:
        _PLANNER_STREAMS = _make_planner_streams()
    return dict(_PLANNER_STREAMS)


_PLANNER_STREAMS = None


def _make_planner_streams():
    axis, _, M, planner, _, _ = _injcore()  # noqa: N806  (a module alias, as `import machine as M`)
    from injcore.layout import BACKWARD as BACK  # noqa: N811  (shorter)
    from injcore.layout import FORWARD as FWD

    Plan = planner.Plan  # noqa: N806  (the class, as `from injcore.planner import Plan`)
    needle_v = M.um_to_needle_steps(M.NEEDLE_MAX_SPEED_UM_S)
    needle_a = M.um_to_needle_steps(M.NEEDLE_ACCEL_UM_S2)
    plunger_v = M.um_to_plunger_steps(M.PLUNGER_MAX_SPEED_UM_S)
    plunger_a = M.um_to_plunger_steps(M.PLUNGER_ACCEL_UM_S2)
    slow = M.um_to_needle_steps(M.NEEDLE_HOME_SLOW_UM_S)  # the settle moves' speed
    streams = {}
    needle, plunger, _ = puncture_streams()
    streams[needle.name] = needle
    streams[plunger.name] = plunger
    # The fastest allowed needle move: full travel in and out at the axis limits.
    travel = M.um_to_needle_steps(M.NEEDLE_TRAVEL_UM)
    full = Plan("needle full travel").set(travel, needle_v, needle_a)
    streams["needle_fastest"] = axis_stream("needle_fastest", "needle", [(full, FWD), (full, BACK)])
    # The plunger at its limits over 2 mm (its full travel would be 211 200 steps).
    fast = Plan("plunger fastest").set(M.um_to_plunger_steps(2000), plunger_v, plunger_a)
    streams["plunger_fastest"] = axis_stream("plunger_fastest", "plunger", [(fast, FWD)])
    # Single steps: moves of a few steps so slow that every tick carries 0 or 1.
    streams["single_step"] = axis_stream(
        "single_step",
        "needle",
        [
            (Plan("1 step").set(1, slow, needle_a), FWD),
            (Plan("3 steps").set(3, slow, needle_a), BACK),
            (Plan("4 very slow").set(4, 150, needle_a), FWD),
            (Plan("8 steps").set(8, slow, needle_a), BACK),
        ],
    )
    # Direction changes: short moves back and forth, reversing in consecutive ticks.
    two = Plan("2 fast").set(2, needle_v, needle_a)  # one step in each of 2 ticks
    one = Plan("1 fast").set(1, needle_v, needle_a)
    mid = Plan("40 fast").set(40, needle_v, needle_a)
    big = Plan("400 fast").set(400, needle_v, needle_a)
    moves = [
        (two, FWD),
        (two, BACK),
        (two, FWD),
        (one, BACK),
        (one, FWD),
        (mid, BACK),
        (mid, FWD),
        (big, BACK),
        (big, FWD),
        (two, BACK),
    ]
    streams["direction_changes"] = axis_stream("direction_changes", "needle", moves, idle_before=0)
    return streams


def standard_streams():
    """name -> words of every planner stream (see planner_streams)."""
    return {name: s.words for name, s in planner_streams().items()}


def reversals_in_consecutive_ticks(stream):
    """Ticks k where tick k-1 stepped one way and tick k the other."""
    steps = stream.axis_tick_steps()
    return [k for k in range(1, len(steps)) if steps[k - 1] * steps[k] < 0]


def edges_per_tick(edges, ticks):
    """Signed edges in each tick window of TICK_CYCLES (edges timed from the first pull)."""
    from injcore.pio_word import TICK_CYCLES

    out = [0] * ticks
    for t, d in edges:
        out[t // TICK_CYCLES] += 1 if d else -1
    return out


def counter_per_tick(gen, stream, pio_step=None):
    """Run step_count on gen's waveform and read it at every tick boundary, like the
    control loop would: [(read value, Axis position - start)] per tick."""
    from injcore.pio_word import TICK_CYCLES

    ps = pio_step or load_pio_step()
    cnt = step_count_sm(gen.changes, ps)
    t0 = gen.done_at[0]
    out = []
    for k in range(1, stream.ticks + 1):
        cnt.run(until=t0 + k * TICK_CYCLES)
        out.append((ps.read_count(cnt), stream.positions[k] - stream.positions[0]))
    return out


def edge_error(sm, words):
    """Largest |emulated - model| edge time (cycles); raises if the edges do not pair up."""
    from injcore.pio_word import edge_cycles

    model = edge_cycles(words)
    edges, _, _ = analyse(sm)
    if len(edges) != len(model):
        raise AssertionError("{} edges emulated, {} in the model".format(len(edges), len(model)))
    err = 0
    for (t, d), (tm, dm) in zip(edges, model):
        if d != dm:
            raise AssertionError("DIR {} at edge {}, model says {}".format(d, t, dm))
        err = max(err, abs(t - tm))
    return err


def check_planned_stream(stream, pio_step=None):
    """Emulate one planner stream through step_gen and step_count; returns a dict of
    what it found (the tests assert on the same harness, one stream per test)."""
    ps = pio_step or load_pio_step()
    gen = run_words(stream.words, pio_step=ps)
    edges, highs, setup = analyse(gen)
    per_tick = edges_per_tick(edges, stream.ticks)
    planned = stream.planned_tick_steps()
    counts = counter_per_tick(gen, stream, ps)
    return {
        "gen": gen,
        "edges": edges,
        "edge_error": edge_error(gen, stream.words),
        "highs": highs,
        "dir_setup": setup,
        "per_tick": per_tick,
        "plan_error": max((abs(a - b) for a, b in zip(per_tick, planned)), default=0),
        "counter_error": max((abs(a - b) for a, b in counts), default=0),
        "counter_final": counts[-1][0] if counts else 0,
    }


def measure():
    """All bench figures as [(name, value, unit)]."""
    ps = load_pio_step()
    from injcore import axis as axis_mod
    from injcore import pio_word as pw
    from injcore.machine import TICK_US

    figures = []
    # The program's peak: back-to-back max-count words with timing 0.
    words = [pw.encode(1, pw.MAX_COUNT, 0)] * 3
    sm = run_words(words, pio_step=ps)
    edges, highs, setup = analyse(sm)
    times = [t for t, _ in edges]
    inner = times[: pw.MAX_COUNT]
    period = (inner[-1] - inner[0]) / (len(inner) - 1)
    sustained = len(times) * pw.PIO_HZ / (sm.state.clock - sm.done_at[0])
    figures.append(("min_step_period", round(period), "cycles"))
    figures.append(("peak_step_rate", round(pw.PIO_HZ / period), "steps/s"))
    figures.append(("sustained_step_rate", round(sustained), "steps/s"))
    figures.append(("step_low_at_peak", round(period) - min(highs), "cycles"))
    # TMC2209 wants >= 100 ns (13 cycles) low too: timing >= 13 - (STEP_FIXED - HIGH).
    safe_period = pw.HIGH + 13
    figures.append(("tmc2209_safe_step_rate", round(pw.PIO_HZ / safe_period), "steps/s"))
    # The tick contract: MAX_COUNT steps in one tick's two words, ticks back to back.
    words = tick_stream([(1, pw.MAX_COUNT)] * 3, pw)
    sm = run_words(words, pio_step=ps)
    n = len(analyse(sm)[0])
    rate = n * pw.PIO_HZ // (sm.state.clock - sm.done_at[0])
    figures.append(("tick_contract_max_rate", rate, "steps/s"))
    # What injcore.axis can emit: its word tables stop at machine.MAX_STEPS_PER_TICK.
    table_max = max(pw.decode(w)[1] for w in axis_mod.STEP_WORDS)
    figures.append(("axis_table_max_rate", table_max * (1_000_000 // TICK_US), "steps/s"))
    figures.append(("step_pulse_high", min(highs), "cycles"))
    figures.append(("step_pulse_high_ns", min(highs) * 1_000_000_000 // pw.PIO_HZ, "ns"))

    # The planner streams: every edge, every tick's step count, the counter each tick.
    streams = planner_streams()
    worst = plan_err = count_err = n_edges = 0
    high = set()
    dir_setup = _FOREVER
    planned_max = {}
    for s in streams.values():
        r = check_planned_stream(s, ps)
        if len(r["edges"]) != s.distance:
            raise AssertionError(
                "{}: {} edges, the plans say {}".format(s.name, len(r["edges"]), s.distance)
            )
        worst = max(worst, r["edge_error"])
        plan_err = max(plan_err, r["plan_error"])
        count_err = max(count_err, r["counter_error"], abs(r["counter_final"] - s.net))
        n_edges += len(r["edges"])
        high |= set(r["highs"])
        dir_setup = min([dir_setup] + r["dir_setup"])
        planned_max[s.axis] = max(planned_max.get(s.axis, 0), s.max_tick_steps())
    for axis_name in sorted(planned_max):
        figures.append(
            (
                "{}_planned_max_rate".format(axis_name),
                planned_max[axis_name] * (1_000_000 // TICK_US),
                "steps/s",
            )
        )
    figures.append(("planner_streams", len(streams), "streams"))
    figures.append(("edge_timing_error_max", worst, "cycles"))
    figures.append(("steps_checked", n_edges, "steps"))
    figures.append(("plan_step_error_max", plan_err, "steps"))
    figures.append(("counter_error_max", count_err, "steps"))
    figures.append(("step_pulse_high_planned", max(high) if high else 0, "cycles"))
    figures.append(("dir_setup_min", dir_setup, "cycles"))

    # FIFO depth: fill the joined TX FIFO with 4 ticks, never refill, time to starvation.
    sm = step_gen_sm(ps)
    sm.feed(tick_stream([(1, 100)] * 10, pw))
    sm.pending = deque(list(sm.pending)[:8])
    sm.run()
    figures.append(("fifo_words", sm.fifo_max, "words"))
    ran = sm.state.clock - sm.done_at[0]
    figures.append(("fifo_depth", ran * 1000 / pw.PIO_HZ, "ms"))
    figures.append(("startup_latency", sm.done_at[0], "cycles"))

    # The cost of one counter read (a forced instruction) to the counter.
    s = streams.get("direction_changes") or next(iter(streams.values()))
    gen = run_words(s.words, pio_step=ps)
    cnt = step_count_sm(gen.changes, ps)
    cost = 0
    for k in range(1, s.ticks + 1):
        cnt.run(until=gen.done_at[0] + k * pw.TICK_CYCLES)
        before = cnt.state.clock
        ps.read_count(cnt)
        cost = max(cost, cnt.state.clock - before)
    figures.append(("counter_read_cost", cost, "cycles"))
    return figures


def main():
    for name, value, unit in measure():
        print("{}: {} {}".format(name, value, unit))


if __name__ == "__main__":
    main()
