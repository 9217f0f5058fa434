"""Emulator bench of the shipped PIO step programs (firmware/board/pio_step.py).

    .venv/bin/python host_tools/pio_bench.py

prints one figure per line (`name: value unit`): the step rates the step
generator sustains, the edge timing error against injcore.pio_word's model,
the pulse/DIR timing and the depth of the joined TX FIFO in ms of motion.

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


def emulator_config(prog, *, freq=-1, sideset_base=None, out_base=None, jmp_pin=None, in_base=None, **_):
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
        while self.pending and self.pending[0][0] <= self.state.clock and len(fifo) < self.fifo_depth:
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
        if kind == 1 and self.inputs is not None and (opcode >> 5) & 3 in (0, 1):  # wait would stall
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
                stop_when=lambda op, s: progressed and self._should_stop(op, s, until),
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


def standard_streams():
    """The tick streams the tests and the bench check against the model."""
    ramp = list(range(0, 201)) + list(range(199, -1, -1))
    return {
        "single_step": tick_stream([(1, 1)] * 4 + [(0, 1)] * 2),
        "needle_max": tick_stream([(1, 160)] * 12),
        "direction_changes": tick_stream(
            [(1, 50), (0, 50), (1, 1), (0, 1), (1, 160), (0, 160), (0, 0), (1, 7), (0, 511)]
        ),
        "ramp": tick_stream([(1, n) for n in ramp]),
    }


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


def measure():
    """All bench figures as [(name, value, unit)]."""
    ps = load_pio_step()
    from injcore import pio_word as pw

    figures = []
    # Peak and sustained rate: back-to-back max-count words with timing 0.
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
    figures.append(("tick_contract_max_rate", pw.MAX_COUNT * (1_000_000 // pw.TICK_US), "steps/s"))
    figures.append(("step_pulse_high", min(highs), "cycles"))
    figures.append(("step_pulse_high_ns", min(highs) * 1_000_000_000 // pw.PIO_HZ, "ns"))

    # Edge timing error over the standard streams.
    worst = 0
    n_edges = 0
    dir_setup = _FOREVER
    for words in standard_streams().values():
        sm = run_words(words, pio_step=ps)
        worst = max(worst, edge_error(sm, words))
        edges, highs, setup = analyse(sm)
        n_edges += len(edges)
        dir_setup = min([dir_setup] + setup)
    figures.append(("edge_timing_error_max", worst, "cycles"))
    figures.append(("edges_checked", n_edges, "edges"))
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

    # The counter on a recorded waveform with direction changes, read once per tick.
    words = standard_streams()["direction_changes"]
    gen = run_words(words, pio_step=ps)
    cnt = step_count_sm(gen.changes, ps)
    worst = cost = 0
    for k in range(1, len(words) // 2 + 1):
        t = min(gen.state.clock, k * pw.TICK_CYCLES) + gen.done_at[0]
        cnt.run(until=t)
        expected = sum(1 if d else -1 for e, d in pw.edge_cycles(words) if e + gen.done_at[0] < t - 8)
        before = cnt.state.clock
        worst = max(worst, abs(ps.read_count(cnt) - expected))
        cost = max(cost, cnt.state.clock - before)
    figures.append(("counter_error_max", worst, "steps"))
    figures.append(("counter_read_cost", cost, "cycles"))
    return figures


def main():
    for name, value, unit in measure():
        print("{}: {} {}".format(name, value, unit))


if __name__ == "__main__":
    main()
