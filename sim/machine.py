"""Physical models of the machine the core drives, on a simulated clock.

Everything here is CPython-only and may use floats: it is the world, not the
firmware. Positions come from the step words the core actually emitted.
"""

import math
import random
from collections import deque
from dataclasses import dataclass

from injcore import codes as C
from injcore import machine as M
from injcore import pio_word

NEEDLE_UM_PER_STEP = 1000 / M.NEEDLE_STEPS_PER_MM
PLUNGER_UM_PER_STEP = 1000 / M.PLUNGER_STEPS_PER_MM


class PioAxis:
    """One axis's PIO state machine and motor: words in, steps out.

    Like the board, it keeps `lead_ticks` ticks of words queued: the words the
    core puts in tick k move the motor in tick k + lead_ticks.
    """

    def __init__(self, start_steps=0, lead_ticks=pio_word.LEAD_TICKS):
        self.motor_steps = start_steps  # true position, microsteps from the switch point
        self.count = 0  # signed count of step pulses, what the counter SM reports
        self.lead_ticks = lead_ticks
        self.queue = deque()  # ticks of words not yet executed
        self.halts = 0
        self.words = []  # words of the current tick (kept for edge-level tests)
        self.record_words = False
        self.word_log = []
        self.lose_every = 0  # fault injection: drop one step in N (0 = never)
        self._lose_count = 0
        # Fault injection: the PIO emits one pulse in N fewer than its words carry
        # (0 = never). Unlike lose_every (a motor that skips steps the counter
        # still counts), a dropped pulse reaches neither the motor nor the counter.
        self.drop_every = 0
        self._drop_count = 0
        self.dropped = 0  # pulses dropped so far
        # The core stopped topping the FIFO up (a hang, a late tick): the words
        # still queued run out one tick at a time, then the motor stands still.
        self.drain = False
        self.cycles = 0  # PIO cycles consumed, must stay locked to ticks

    def put(self, seg):
        self.queue.append(tuple(seg))

    def emitted(self):
        return self.count

    def pending_steps(self):
        """Steps queued but not yet executed."""
        return sum(pio_word.decode(w)[1] for seg in self.queue for w in seg)

    def halt(self):
        """Flush the FIFO: queued motion never happens."""
        self.queue.clear()
        self.halts += 1

    def advance(self):
        """One tick of PIO time: execute the oldest queued tick once the lead is full."""
        if len(self.queue) > self.lead_ticks or (self.drain and self.queue):
            self._execute(self.queue.popleft())

    def board_reset(self):
        """The controller restarted: its state machines start over, the motor stays put.

        Queued words are lost and the pulse counter starts again from zero, as
        on the board after any reset.
        """
        self.queue.clear()
        self.count = 0
        self.drain = False

    def _execute(self, seg):
        for w in seg:
            d, n, _t = pio_word.decode(w)
            self.cycles += pio_word.word_cycles(w)
            if self.record_words:
                self.word_log.append(w)
            if not n:
                continue
            sign = 1 if d else -1
            if self.drop_every:
                kept = 0
                for _ in range(n):
                    self._drop_count += 1
                    if self._drop_count % self.drop_every:
                        kept += 1
                    else:
                        self.dropped += 1
                n = kept
            self.count += sign * n
            if self.lose_every:
                for _ in range(n):
                    self._lose_count += 1
                    if self._lose_count % self.lose_every:
                        self.motor_steps += sign
            else:
                self.motor_steps += sign * n


@dataclass(frozen=True)
class Line:
    """The needle on the syringe and the drug in it: what sets the line's resistance.

    The defaults are the reference line of machine.py (30 G x 4 mm, water);
    docs/line-model.md gives the figures and their sources.
    """

    gauge: int = M.REF_NEEDLE_GAUGE  # a key of machine.NEEDLE_ID_UM
    needle_length_um: int = M.REF_NEEDLE_LENGTH_UM
    viscosity_upa_s: int = M.REF_VISCOSITY_UPA_S

    def resistance_kpa_s_per_ul(self):
        """Hagen-Poiseuille through the needle's bore (machine.needle_r_pa_s_ml)."""
        r = M.needle_r_pa_s_ml(self.gauge, self.needle_length_um, self.viscosity_upa_s)
        return r / 1e6  # Pa per mL/s -> kPa per uL/s


AIR = "air"  # drawn in through a tip out of the skin
TISSUE = "tissue"  # drawn in through a tip in the skin: tissue fluid


class Fluid:
    """Syringe, line and needle: a compliant volume drained through a resistance.

    Plunger displacement compresses the line (compliance C, from the syringe
    model); the needle lets liquid out at Q = P / R (R from the Line): a
    first-order lag with time constant R*C. Force on the load cell is pressure
    times barrel area, plus the stopper's friction while it slides (Machine).
    A blocked needle has R -> infinity, so pressure and force climb with every
    step pushed.

    Below zero pressure (a suck-back) the tip draws in what is outside it:
    air with the tip out of the skin, tissue fluid with it in. What was drawn
    in sits at the tip and leaves first when the line pushes again, before any
    drug; air adds its own compliance (isothermal, at atmospheric pressure).
    `delivered_ul` is the drug that left the needle, net; `outflow_ul` is all
    that left, drawn-in volume included (the plunger's displacement less what
    the line holds).
    """

    P_ATM_KPA = 101.325  # air drawn in is at this absolute pressure

    def __init__(self, compliance_ul_per_kpa, r_kpa_s_per_ul, friction_n=0.0):
        # Machine.new_fluid gives the figures of a syringe model on the machine's Line.
        self.compliance_ul_per_kpa = compliance_ul_per_kpa
        self.r_kpa_s_per_ul = r_kpa_s_per_ul
        self.friction_n = friction_n  # the stopper's glide friction, while it slides
        self.excess_ul = 0.0  # volume squeezed into the line's compliance
        self.delivered_ul = 0.0  # drug out of the needle tip, net
        self.outflow_ul = 0.0  # all that left the tip, net
        self.drawn = []  # [kind, uL] drawn in at the tip, the newest last (it leaves first)
        self.blocked = False

    @property
    def air_ul(self):
        return sum(v for kind, v in self.drawn if kind == AIR)

    @property
    def drawn_in_ul(self):
        """Air and tissue fluid in the needle: pushed out before drug flows again."""
        return sum(v for _, v in self.drawn)

    def compliance(self):
        """uL per kPa: the line's, plus the air in it (V / P_atm)."""
        return self.compliance_ul_per_kpa + self.air_ul / self.P_ATM_KPA

    def tau_s(self):
        return self.r_kpa_s_per_ul * self.compliance()

    def pressure_kpa(self):
        return self.excess_ul / self.compliance()

    def step(self, pushed_ul, area_mm2, dt_s, tip_in_skin=True):
        """Advance dt_s with pushed_ul more displaced by the plunger; returns the force, N."""
        self.excess_ul += pushed_ul
        if self.blocked:
            out = 0.0
        else:
            out = self.excess_ul * (1.0 - math.exp(-dt_s / self.tau_s()))
        self.excess_ul -= out
        self.outflow_ul += out
        if out > 0:
            while out > 0 and self.drawn:  # what was drawn in leaves first
                seg = self.drawn[-1]
                took = min(out, seg[1])
                seg[1] -= took
                out -= took
                if seg[1] <= 1e-12:
                    self.drawn.pop()
            self.delivered_ul += out
        elif out < 0:
            kind = TISSUE if tip_in_skin else AIR
            if self.drawn and self.drawn[-1][0] == kind:
                self.drawn[-1][1] -= out
            else:
                self.drawn.append([kind, -out])
        return self.pressure_kpa() * area_mm2 / 1000.0  # kPa x mm^2 = mN


class Machine:
    """The injector's mechanics, switches and sensors around the core's ports."""

    STOPPER_N_PER_UM = 0.05  # a rubber stopper pressed on the barrel's end: 50 N/mm
    SLIDE_MS = 5  # the stopper counts as sliding this long after its last step
    # The stopper's glide friction grows with its rim: 0.3 N on the 1 mL's 14.8 mm
    # (an ESTIMATE: docs/line-model.md), 0.9 N on the 10 mL's 45 mm.
    FRICTION_N_PER_MM_RIM = 0.02

    def __init__(
        self, needle_start_um=3000.0, plunger_start_um=12000.0, seed=1, line=None, syringe_model=1
    ):
        self.rng = random.Random(seed)
        self.needle_axis = PioAxis(round(needle_start_um / NEEDLE_UM_PER_STEP))
        self.plunger_axis = PioAxis(round(plunger_start_um / PLUNGER_UM_PER_STEP))
        self.backlash_um = 20.0
        # The pusher face lags the nut by up to the backlash; it starts engaged forward.
        self.face_um = self.plunger_axis.motor_steps * PLUNGER_UM_PER_STEP
        self.line = line or Line()  # the needle and the drug (sim.machine.Line)
        self.syringe_present = False
        self.syringe_model = syringe_model
        self.syringe_area_mm2 = M.SYRINGES[syringe_model][M.SYR_AREA_CMM2] / 100
        self.fluid = self.new_fluid(syringe_model)
        self.syringe_face0_um = 0.0  # face position at which the syringe is full
        self.trigger = False
        self.pedal = False
        self.estop = False
        self.force_n = 0.0
        self._slide_dir = 0.0
        self._slide_until_us = 0
        self._hx711_mn = 0
        self._hx711_due_us = 0
        self.now_us = 0
        self.needle_depth_max_um = -1e9
        self.drivers_on = False
        self.stuck_home_switch = False  # fault injection
        self.broken_home_switch = False
        self.load_noise_n = 0.02
        self.alarm_level = 0
        # Fault injection (see tests/test_safety_matrix.py)
        self.needle_stall = False  # TMC2209 DIAG raised
        self.plunger_stall = False
        self.load_cell_invalid = False  # disconnected or saturated: the board reports FORCE_INVALID
        self.front_limit_early = False  # front limit switch closes wherever the plunger is
        # The syringe holds less than the core counts (under-filled, air): past this
        # pusher-face position the stopper sits on the barrel's end, moves no more
        # liquid and the rubber compresses (None = never reached).
        self.syringe_bottom_um = None

    # ---- ports the core reads and writes -----------------------------------

    def switches(self):
        sw = 0
        needle_um = self.needle_axis.motor_steps * NEEDLE_UM_PER_STEP
        if (needle_um <= 0 or self.stuck_home_switch) and not self.broken_home_switch:
            sw |= C.SW_NEEDLE_HOME
        nut_um = self.plunger_axis.motor_steps * PLUNGER_UM_PER_STEP
        if nut_um <= 0:
            sw |= C.SW_PLUNGER_REAR
        if nut_um >= M.PLUNGER_TRAVEL_UM:
            sw |= C.SW_PLUNGER_FRONT
        if self.syringe_present:
            sw |= C.SW_SYRINGE
        if self.trigger:
            sw |= C.SW_TRIGGER
        if self.pedal:
            sw |= C.SW_PEDAL
        if self.estop:
            sw |= C.SW_ESTOP
        if self.needle_stall:
            sw |= C.SW_NEEDLE_STALL
        if self.plunger_stall:
            sw |= C.SW_PLUNGER_STALL
        if self.front_limit_early:
            sw |= C.SW_PLUNGER_FRONT
        return sw

    def force_mn(self):
        if self.load_cell_invalid:
            return C.FORCE_INVALID
        return self._hx711_mn

    def drivers(self, on):
        self.drivers_on = bool(on)

    def alarm(self, level):
        self.alarm_level = level

    # ---- the world advancing one tick --------------------------------------

    def needle_tip_um(self):
        """Tip depth below the nozzle face (negative: behind it)."""
        return self.needle_axis.motor_steps * NEEDLE_UM_PER_STEP - M.NEEDLE_HOME_OFFSET_UM

    def step(self, dt_us):
        self.now_us += dt_us
        self.needle_axis.advance()
        self.plunger_axis.advance()
        tip = self.needle_tip_um()
        if tip > self.needle_depth_max_um:
            self.needle_depth_max_um = tip
        nut = self.plunger_axis.motor_steps * PLUNGER_UM_PER_STEP
        old_face = self.face_um
        if nut > self.face_um:
            self.face_um = nut
        elif nut < self.face_um - self.backlash_um:
            self.face_um = nut + self.backlash_um
        moved_um = self.face_um - old_face
        pushed = moved_um * self.syringe_area_mm2 / 1000.0 if self.syringe_present else 0.0
        bottom = self.syringe_bottom_um
        squeezed_um = 0.0
        if bottom is not None and self.syringe_present:
            squeezed_um = max(0.0, self.face_um - bottom)
            pushed -= (squeezed_um - max(0.0, old_face - bottom)) * self.syringe_area_mm2 / 1000.0
        self.force_n = (
            self.fluid.step(pushed, self.syringe_area_mm2, dt_us / 1e6, tip_in_skin=tip > 0)
            if self.syringe_present
            else 0.0
        )
        if moved_um:
            self._slide_dir = 1.0 if moved_um > 0 else -1.0
            self._slide_until_us = self.now_us + self.SLIDE_MS * 1000
        if self.syringe_present and self.now_us < self._slide_until_us:
            # The rubber stopper drags while it slides; at a slow speed the steps
            # come a few ms apart but the stopper does not stick between them.
            self.force_n += self._slide_dir * self.fluid.friction_n
        self.force_n += squeezed_um * self.STOPPER_N_PER_UM
        # The HX711 samples at 80 Hz: the core sees the latest sample, held.
        if self.now_us >= self._hx711_due_us:
            self._hx711_due_us = self.now_us + 12_500
            noise = self.rng.gauss(0.0, self.load_noise_n) if self.load_noise_n else 0.0
            self._hx711_mn = int(round((self.force_n + noise) * 1000))

    def insert_syringe(self, model=1):
        """A full syringe of `model` (an id of machine.SYRINGES) seated with its plunger against
        the pusher at the rear switch."""
        self.syringe_present = True
        self.syringe_model = model
        self.syringe_area_mm2 = M.SYRINGES[model][M.SYR_AREA_CMM2] / 100
        self.fluid = self.new_fluid(model)

    def new_fluid(self, model):
        """A primed line for syringe `model` on this machine's needle and drug."""
        area_mm2 = M.SYRINGES[model][M.SYR_AREA_CMM2] / 100
        rim_mm = 2 * math.sqrt(math.pi * area_mm2)
        return Fluid(
            compliance_ul_per_kpa=M.SYRINGES[model][M.SYR_COMPLIANCE_NL_KPA] / 1000,
            r_kpa_s_per_ul=self.line.resistance_kpa_s_per_ul(),
            friction_n=self.FRICTION_N_PER_MM_RIM * rim_mm,
        )

    def remove_syringe(self):
        self.syringe_present = False

    def starve(self, on):
        """The control loop stops feeding the FIFOs (on) or feeds them again (off)."""
        self.needle_axis.drain = self.plunger_axis.drain = bool(on)

    def board_reset(self):
        """The controller restarts: step queues and pulse counters start over, drivers off.

        The mechanics stay where they are: needle, plunger, syringe, fluid.
        """
        self.needle_axis.board_reset()
        self.plunger_axis.board_reset()
        self.drivers_on = False
