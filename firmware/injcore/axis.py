"""One axis: a view of its block in the tick's state array, and the PIO word tables.

The stepping itself is injcore/motion.py's (axis_tick, start, stop): each tick
takes the next step count from the running move (ramp array or cruise
accumulator) and turns it into the two PIO words for that tick through the
tables built here once at import. Position is kept in microsteps from the
axis's zero (set by homing).

`Axis` is how the rest of the code sees one: the core makes two over its
state array, and a test or tool can make one on its own (`Axis(name, port)`),
which then has private arrays and puts its words to the port on each tick().
"""

# pyright: reportOptionalSubscript=false, reportOptionalCall=false

from array import array

from . import machine as M
from . import motion, pio_word
from .compat import const
from .planner import RAMP_TICKS_MAX

# ---- constants written by `make consts` from layout.py: do not edit ----
_IDLE = const(0)
_FORWARD = const(1)
_PAD_WORDS = const(66)
_A_POS = const(0)
_A_ORIGIN = const(1)
_A_PHASE = const(2)
_A_DIR = const(3)
_A_LAST_DIR = const(4)
_A_LAST_N = const(5)
_A_WORD = const(15)
_A_WORD2 = const(16)
_A_ROW = const(17)
_A_MOVES = const(18)
_A_TICKED = const(19)
_NA = const(125)
_PA = const(145)
_PL_PRIME = const(349)
_SIZE = const(763)
# ---- end of the written constants ----


def _words():
    """Step words for 0..MAX_STEPS_PER_TICK steps, then the pad words (direction-less)."""
    n_max = M.MAX_STEPS_PER_TICK
    words = array("I", bytes(8 * (n_max + 1)))
    for n in range(n_max + 1):
        words[n], words[n_max + 1 + n] = pio_word.tick_words(n)
    return words


# The tick ORs the direction bit into them.
WORDS = _words()
PAD_AT = M.MAX_STEPS_PER_TICK + 1  # index of the pad words in WORDS
STEP_WORDS = memoryview(WORDS)[:PAD_AT]
PAD_WORD_TABLE = memoryview(WORDS)[PAD_AT:]


def new_state():
    """A zeroed state array for the tick, with the word table's layout filled in."""
    s = array("i", bytes(4 * _SIZE))
    s[_PAD_WORDS] = PAD_AT
    s[_NA + _A_LAST_DIR] = -1
    s[_PA + _A_LAST_DIR] = -1
    s[_NA + _A_DIR] = _FORWARD
    s[_PA + _A_DIR] = _FORWARD
    return s


class Axis:
    def __init__(self, name, port, s=None, at=_NA, ramps=None):
        self.name = name
        self.port = port  # put(words), emitted(), halt(): see core.py
        self.at = at  # the axis's block in S
        self.seg = array("I", [STEP_WORDS[0], PAD_WORD_TABLE[0]])
        self.own = s is None  # on its own: private arrays, words put by tick()
        if s is None:
            s = new_state()
            ramps = array("H", bytes(4 * RAMP_TICKS_MAX))
        self.s = s
        self.ramps = ramps
        self.plan_at = None  # row -> Plan, for tools (the core sets it); an own axis keeps its plan
        self._own_plan = None

    def _get(self, field):
        return self.s[self.at + field]

    def _set_pos(self, v):
        self.s[self.at + _A_POS] = v

    def _set_origin(self, v):
        self.s[self.at + _A_ORIGIN] = v

    pos = property(lambda self: self._get(_A_POS), _set_pos)
    origin = property(lambda self: self._get(_A_ORIGIN), _set_origin)
    phase = property(lambda self: self._get(_A_PHASE))
    dirbit = property(lambda self: self._get(_A_DIR))
    last_dir = property(lambda self: self._get(_A_LAST_DIR))
    last_n = property(lambda self: self._get(_A_LAST_N))

    @property
    def sign(self):
        return 1 if self._get(_A_DIR) == _FORWARD else -1

    @property
    def busy(self):
        return self._get(_A_PHASE) != _IDLE

    def start(self, plan, direction):
        """Begin a planned move (outside the hot path of a steady tick)."""
        s = self.s
        if plan.table is not s:  # a plan of its own: copy it into this axis's row
            row = _PL_PRIME
            plan.write_row(s, row, 0)
            k = plan.ramp_ticks_max
            for i in range(k):
                self.ramps[i] = plan.accel[i]
                self.ramps[k + i] = plan.decel[i]
            self._own_plan = plan
        else:
            row = plan.row
        motion.start(s, self.at, row, direction)

    @property
    def moves(self):
        """How many moves this axis has started (wraps below 2**30)."""
        return self._get(_A_MOVES)

    @property
    def ticked(self):
        """`moves` when the axis last stepped (a move started later steps from the next tick)."""
        return self._get(_A_TICKED)

    def started(self):
        """(plan, direction) of the latest move started, for tools that record moves."""
        plan = self._own_plan if self.own else self.plan_at(self._get(_A_ROW))
        return plan, self._get(_A_DIR)

    def stop(self):
        """Decelerate to a stop along the move's own ramp (switch found, trigger released)."""
        motion.stop(self.s, self.at)

    def halt(self):
        """Stop generating steps now: words already queued are dropped too."""
        self.s[self.at + _A_PHASE] = _IDLE
        self.port.halt()

    def rezero(self, steps):
        """Move this axis's zero `steps` forward (homing found the switch there)."""
        self.pos -= steps
        self.origin += steps

    def emitted(self):
        """Steps the motor has actually been sent, in this axis's frame."""
        return self.port.emitted() - self.origin

    def words(self):
        """This tick's two words, as put to the port."""
        seg = self.seg
        seg[0] = self._get(_A_WORD)
        seg[1] = self._get(_A_WORD2)
        return seg

    def tick(self):
        """Step an axis of its own: emit this tick's words; return the step count."""
        n = motion.axis_tick(self.s, self.at, self.ramps, WORDS)
        self.port.put(self.words())
        return n
