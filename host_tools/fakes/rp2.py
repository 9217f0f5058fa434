"""Host fake of MicroPython's ``rp2`` module (RP2040 port) for tests.

Install it as ``sys.modules["rp2"]`` before importing board code.

``asm_pio`` is a real two-pass assembler that behaves like MicroPython's
decorator: it runs the decorated function's body twice with the PIO names
(``pull``, ``out``, ``jmp``, ``x``, ``pins``, ...) injected as the function's
*only* globals (module globals are hidden during assembly, as on the device,
so a PIO body cannot use module constants). Pass 0 counts instructions, side
sets and labels; pass 1 emits 16-bit opcodes. Like MicroPython, side-set
becomes optional (SIDE_EN, one more side-set bit, fewer delay bits) as soon as
one instruction of a program has no ``.side()``; without ``opt`` an instruction
lacking ``.side()`` would still drive side value 0.

The result is a ``Program``: the same 8-field list MicroPython returns
(opcodes, two load offsets, EXECCTRL, SHIFTCTRL, out/set/side-set init) plus
readable attributes (``opcodes``, ``labels``, ``wrap_target``, ``wrap``,
``sideset_count``, ``sideset_opt``, ``sideset_bits``, ``delay_max`` and the
decorator's configuration).

``StateMachine`` and ``PIO`` are recorders for board-layer tests: they keep
the init arguments and every ``put``/``exec``/``active``/``restart`` call in
order and never touch hardware. ``reset()`` forgets all state machines.

Deliberate differences from MicroPython 1.2x: the module globals come back
even when a PIO body raises (MicroPython leaves them cleared), and a side-set
value is checked against the pin count (MicroPython also lets a value reach
into the enable bit). The module itself also runs on MicroPython (the
webassembly interpreter), which tests/test_pio_step.py uses to compare.
"""

from array import array

__all__ = ["PIO", "PIOASMError", "Program", "StateMachine", "asm_pio", "asm_pio_encode", "reset"]


class PIOASMError(Exception):
    pass


class PIO:
    """Constants of ``rp2.PIO`` plus a recording stand-in for a PIO block."""

    IN_LOW = 0
    IN_HIGH = 1
    OUT_LOW = 2
    OUT_HIGH = 3
    SHIFT_LEFT = 0
    SHIFT_RIGHT = 1
    JOIN_NONE = 0
    JOIN_TX = 1
    JOIN_RX = 2
    IRQ_SM0 = 0x100
    IRQ_SM1 = 0x200
    IRQ_SM2 = 0x400
    IRQ_SM3 = 0x800

    _blocks = {}

    def __new__(cls, id):
        if id not in (0, 1):
            raise ValueError("invalid PIO block")
        block = cls._blocks.get(id)
        if block is None:
            block = object.__new__(cls)
            block.id = id
            block.programs = []
            cls._blocks[id] = block
        return block

    def add_program(self, program):
        if program not in self.programs:
            self.programs.append(program)

    def remove_program(self, program=None):
        if program is None:
            self.programs.clear()
        elif program in self.programs:
            self.programs.remove(program)

    def state_machine(self, id, program=None, **kwargs):
        if not 0 <= id <= 3:
            raise ValueError("invalid state machine")
        return StateMachine(self.id * 4 + id, program, **kwargs)


# EXECCTRL / SHIFTCTRL bit positions (RP2040 datasheet, PIO registers).
_SIDE_EN = 30
_SIDE_PINDIR = 29
_WRAP_TOP = 12
_WRAP_BOTTOM = 7
_FJOIN = 30
_PULL_THRESH = 25
_PUSH_THRESH = 20
_OUT_SHIFTDIR = 19
_IN_SHIFTDIR = 18
_AUTOPULL = 17
_AUTOPUSH = 16


class Program(list):
    """What ``asm_pio`` returns: MicroPython's 8-field program list, with names.

    Fields: [opcodes (array 'H'), PIO0 offset, PIO1 offset, EXECCTRL,
    SHIFTCTRL, out_init, set_init, sideset_init].
    """

    @property
    def opcodes(self):
        return list(self[0])

    @property
    def execctrl(self):
        return self[3]

    @property
    def shiftctrl(self):
        return self[4]

    @property
    def wrap_target(self):
        return (self[3] >> _WRAP_BOTTOM) & 0x1F

    @property
    def wrap(self):
        return (self[3] >> _WRAP_TOP) & 0x1F

    @property
    def sideset_opt(self):
        return bool(self[3] >> _SIDE_EN & 1)

    @property
    def sideset_bits(self):
        """Side-set bits in each opcode, the enable bit included (PINCTRL SIDESET_COUNT)."""
        return self.sideset_count + self.sideset_opt

    @property
    def delay_max(self):
        return 31 >> self.sideset_bits


_NAMED = {
    # wait sources ("pin" and "irq" are translated by wait())
    "gpio": 0,
    # in/out/mov/set sources and destinations
    "pins": 0,
    "x": 1,
    "y": 2,
    "null": 3,
    "pindirs": 4,
    "pc": 5,
    "status": 5,
    "isr": 6,
    "osr": 7,
    "exec": 8,  # out: 7, mov: 4
    # mov source operations
    "invert": lambda src: src | 0x08,
    "reverse": lambda src: src | 0x10,
    # jmp conditions
    "not_x": 1,
    "x_dec": 2,
    "not_y": 3,
    "y_dec": 4,
    "x_not_y": 5,
    "pin": 6,
    "not_osre": 7,
    # push/pull/irq flags: bit 0 says "given explicitly", 0x20 block/wait, 0x40 if*/clear
    "noblock": 0x01,
    "block": 0x21,
    "iffull": 0x40,
    "ifempty": 0x40,
    "clear": 0x40,
    "rel": lambda index: index | 0x10,
}

_DIRECTIVES = ("wrap_target", "wrap", "label")
_INSTRUCTIONS = ("word", "nop", "jmp", "wait", "in_", "out", "push", "pull", "mov", "irq", "set")


class _Assembler:
    """One program being assembled; every instruction method returns self so
    ``.side(v)``, ``.delay(n)`` and ``[n]`` apply to the instruction just emitted."""

    def __init__(
        self,
        *,
        out_init=None,
        set_init=None,
        sideset_init=None,
        side_pindir=False,
        in_shiftdir=PIO.SHIFT_LEFT,
        out_shiftdir=PIO.SHIFT_LEFT,
        autopush=False,
        autopull=False,
        push_thresh=32,
        pull_thresh=32,
        fifo_join=PIO.JOIN_NONE,
    ):
        self.config = {
            "out_init": out_init,
            "set_init": set_init,
            "sideset_init": sideset_init,
            "side_pindir": bool(side_pindir),
            "in_shiftdir": in_shiftdir,
            "out_shiftdir": out_shiftdir,
            "autopush": bool(autopush),
            "autopull": bool(autopull),
            "push_thresh": push_thresh,
            "pull_thresh": pull_thresh,
            "fifo_join": fifo_join,
        }
        if sideset_init is None:
            self.side_pins = 0
        elif isinstance(sideset_init, int):
            self.side_pins = 1
        else:
            self.side_pins = len(sideset_init)
        self.labels = {}
        self.opcodes = array("H")
        self.wrap_bottom = 0
        self.wrap_top = None
        self.side_opt = False
        self.side_bits = self.side_pins
        self.pass_no = 0
        self.count = 0
        self.sides = 0

    # -- passes -------------------------------------------------------------

    def begin(self, pass_no):
        if pass_no == 1:
            if self.sides != self.count and self.side_pins:
                # Not every instruction side-sets: MicroPython turns on SIDE_EN.
                self.side_opt = True
            self.side_bits = self.side_pins + self.side_opt
        self.pass_no = pass_no
        self.count = 0
        self.sides = 0

    def finish(self):
        if self.wrap_top is None:
            if not self.count:
                raise PIOASMError("empty program")
            self.wrap_top = self.count - 1
        c = self.config
        execctrl = (
            self.side_opt << _SIDE_EN
            | c["side_pindir"] << _SIDE_PINDIR
            | self.wrap_top << _WRAP_TOP
            | self.wrap_bottom << _WRAP_BOTTOM
        )
        shiftctrl = (
            c["fifo_join"] << _FJOIN
            | (c["pull_thresh"] & 0x1F) << _PULL_THRESH
            | (c["push_thresh"] & 0x1F) << _PUSH_THRESH
            | c["out_shiftdir"] << _OUT_SHIFTDIR
            | c["in_shiftdir"] << _IN_SHIFTDIR
            | c["autopull"] << _AUTOPULL
            | c["autopush"] << _AUTOPUSH
        )
        prog = Program(
            [
                self.opcodes,
                -1,
                -1,
                execctrl,
                shiftctrl,
                c["out_init"],
                c["set_init"],
                c["sideset_init"],
            ]
        )
        prog.labels = dict(self.labels)
        prog.sideset_count = self.side_pins
        prog.config = dict(c)
        for key, value in c.items():
            setattr(prog, key, value)
        return prog

    def names(self):
        ns = dict(_NAMED)
        for name in _DIRECTIVES + _INSTRUCTIONS:
            ns[name] = getattr(self, name)
        return ns

    # -- directives ---------------------------------------------------------

    def wrap_target(self):
        self.wrap_bottom = self.count

    def wrap(self):
        if not self.count:
            raise PIOASMError("wrap before any instruction")
        self.wrap_top = self.count - 1

    def label(self, name):
        if self.pass_no == 0:
            if name in self.labels:
                raise PIOASMError("duplicate label {}".format(name))
            self.labels[name] = self.count

    # -- modifiers ----------------------------------------------------------

    def side(self, value):
        self.sides += 1
        if self.pass_no:
            if not self.side_pins:
                raise PIOASMError("no sideset")
            if not 0 <= value < (1 << self.side_pins):
                raise PIOASMError("sideset too large")
            self.opcodes[-1] |= (self.side_opt << 12) | (value << (13 - self.side_bits))
        return self

    def delay(self, cycles):
        if self.pass_no:
            if not 0 <= cycles <= 31 >> self.side_bits:
                raise PIOASMError("delay too large")
            self.opcodes[-1] |= cycles << 8
        return self

    def __getitem__(self, cycles):
        return self.delay(cycles)

    # -- instructions -------------------------------------------------------

    def word(self, instr, label=None):
        self.count += 1
        if self.pass_no:
            target = 0
            if label is not None:
                if label not in self.labels:
                    raise PIOASMError("unknown label {}".format(label))
                target = self.labels[label]
            self.opcodes.append(instr | target)
        return self

    def nop(self):
        return self.word(0xA042)  # mov y, y

    def jmp(self, cond, label=None):
        if label is None:
            cond, label = 0, cond
        return self.word(cond << 5, label)

    def wait(self, polarity, src, index):
        if src == 6:  # the name "pin"
            src = 1
        elif src != 0:  # the irq instruction itself stands for "irq"
            src = 2
        return self.word(0x2000 | polarity << 7 | src << 5 | index)

    def in_(self, src, bits):
        if not 0 < bits <= 32:
            raise PIOASMError("invalid bit count {}".format(bits))
        return self.word(0x4000 | src << 5 | bits & 0x1F)

    def out(self, dest, bits):
        if dest == 8:
            dest = 7
        if not 0 < bits <= 32:
            raise PIOASMError("invalid bit count {}".format(bits))
        return self.word(0x6000 | dest << 5 | bits & 0x1F)

    @staticmethod
    def _flags(a, b):
        flags = a | b
        if not flags & 1:  # blocking unless noblock/block was named
            flags |= 0x20
        return flags & 0x60

    def push(self, a=0, b=0):
        return self.word(0x8000 | self._flags(a, b))

    def pull(self, a=0, b=0):
        return self.word(0x8080 | self._flags(a, b))

    def mov(self, dest, src):
        if dest == 8:
            dest = 4
        return self.word(0xA000 | dest << 5 | src)

    def irq(self, mod, index=None):
        if index is None:
            mod, index = 0, mod
        return self.word(0xC000 | (mod & 0x60) | index)

    def set(self, dest, data):
        return self.word(0xE000 | dest << 5 | data)


def asm_pio(**config):
    """Decorator: assemble a PIO function into a ``Program`` (MicroPython semantics)."""
    asm = _Assembler(**config)

    def assemble(func):
        module_globals = func.__globals__
        saved = dict(module_globals)
        module_globals.clear()
        module_globals.update(asm.names())
        try:
            asm.begin(0)
            func()
            asm.begin(1)
            func()
        finally:
            module_globals.clear()
            module_globals.update(saved)
        return asm.finish()

    return assemble


def asm_pio_encode(instr, sideset_count, sideset_opt=False):
    """Encode one instruction given as source text (what ``StateMachine.exec`` does).

    ``sideset_count`` counts the enable bit when ``sideset_opt`` is set. ``jmp``
    is not available here, as in MicroPython.
    """
    asm = _Assembler()
    asm.side_opt = bool(sideset_opt)
    asm.side_bits = sideset_count
    asm.side_pins = sideset_count - asm.side_opt
    asm.pass_no = 1
    names = dict(_NAMED)
    for name in _INSTRUCTIONS:
        names[name] = getattr(asm, name)
    names["jmp"] = None
    exec(instr, names)
    if len(asm.opcodes) != 1:
        raise PIOASMError("expecting exactly 1 instruction")
    return asm.opcodes[0]


_machines = {}
log = []  # every StateMachine call of every machine, in order: (id, name, ...)


def reset():
    """Forget every state machine, loaded program and logged call (call between tests)."""
    _machines.clear()
    _bound.clear()
    PIO._blocks.clear()
    log.clear()


# -- the PIO blocks' registers, as a viper `ptr32(0x50200000)` sees them ----------
# Word indexes (RP2040 datasheet 3.7): CTRL 0, FSTAT 1, FLEVEL 3, TXF0-3 4-7,
# RXF0-3 8-11, SMn_INSTR 54 + 6n. Each state machine's part is played by its
# StateMachine fake, or by whatever a test bound in its place (bind()).

_bound = {}  # state machine id -> the object that plays it


def bind(sm_id, obj):
    """Let `obj` (put/get/tx_fifo/rx_fifo/exec/active/restart) play state machine sm_id."""
    _bound[sm_id] = obj


class _Absent:
    """A state machine nobody made: empty FIFOs, stopped."""

    def active(self, value=None):
        return False

    def rx_fifo(self):
        return 0

    def tx_fifo(self):
        return 0

    def get(self):
        return 0

    def put(self, value):
        pass

    def exec(self, instr):
        pass

    def restart(self):
        pass


_ABSENT = _Absent()


def _sm(sm_id):
    # No allocation (the interrupt's allocation tests run through here on MicroPython).
    obj = _bound.get(sm_id)
    if obj is None:
        obj = _machines.get(sm_id)
    return _ABSENT if obj is None else obj


class _PioView:
    def __init__(self, block):
        self.block = block

    def __getitem__(self, i):
        first = 4 * self.block
        word = 0
        k = 0
        if i == 0:  # CTRL: the enable bits
            while k < 4:
                if _sm(first + k).active():
                    word |= 1 << k
                k += 1
        elif i == 1:  # FSTAT
            while k < 4:
                sm = _sm(first + k)
                if not sm.rx_fifo():
                    word |= 1 << (8 + k)
                if not sm.tx_fifo():
                    word |= 1 << (24 + k)
                k += 1
        elif i == 3:  # FLEVEL
            while k < 4:
                sm = _sm(first + k)
                word |= (sm.tx_fifo() & 15) << (8 * k) | (sm.rx_fifo() & 15) << (8 * k + 4)
                k += 1
        elif 8 <= i < 12:  # RXF: what get() gives; an empty FIFO reads 0
            sm = _sm(first + i - 8)
            if sm.rx_fifo() or not isinstance(sm, StateMachine):
                word = sm.get()
        return word

    def __setitem__(self, i, value):
        first = 4 * self.block
        if i == 0:  # CTRL: enable bits 0-3, restart bits 4-7 (self-clearing)
            k = 0
            while k < 4:
                sm = _sm(first + k)
                on = value >> k & 1
                if on != (1 if sm.active() else 0):
                    sm.active(on)
                if value >> (4 + k) & 1:
                    sm.restart()
                k += 1
        elif 4 <= i < 8:
            _sm(first + i - 4).put(value)
        elif 54 <= i < 78 and (i - 54) % 6 == 0:
            _sm(first + (i - 54) // 6).exec(value)


def _install_views():
    import machine

    if hasattr(machine, "add_view"):  # the host fake (on a board this module is not used)
        machine.add_view(0x50200000, _PioView(0))
        machine.add_view(0x50300000, _PioView(1))


class StateMachine:
    """Recording fake of ``rp2.StateMachine``: one object per id, like the port.

    ``calls`` is the ordered log: ("init", kwargs), ("exec", instr, opcode),
    ("put", [words]), ("active", bool), ("restart",), ("irq", kwargs); the
    module's ``log`` has the calls of all machines as (id, *call).
    ``puts`` holds every word written to the TX FIFO, ``execs`` the opcodes.
    Tests preload ``rx`` with words for ``get()`` and may set ``tx_level``.
    """

    def __new__(cls, id, program=None, *args, **kwargs):
        if not 0 <= id <= 7:
            raise ValueError("invalid state machine")
        sm = _machines.get(id)
        if sm is None:
            sm = object.__new__(cls)
            sm.id = id
            sm.program = None
            sm.config = {}
            sm.calls = []
            sm.puts = []
            sm.execs = []
            sm.rx = []
            sm.tx_level = 0
            sm._active = False
            _machines[id] = sm
        return sm

    def __init__(self, id, program=None, *args, **kwargs):
        if program is not None:
            self.init(program, *args, **kwargs)

    def init(
        self,
        program,
        freq=-1,
        *,
        in_base=None,
        out_base=None,
        set_base=None,
        jmp_pin=None,
        sideset_base=None,
        in_shiftdir=None,
        out_shiftdir=None,
        push_thresh=None,
        pull_thresh=None,
    ):
        if not isinstance(program, Program):
            raise TypeError("program must come from rp2.asm_pio")
        if program.sideset_count and sideset_base is None:
            raise ValueError("program side-sets but no sideset_base given")
        self.config = {
            "freq": freq,
            "in_base": in_base,
            "out_base": out_base,
            "set_base": set_base,
            "jmp_pin": jmp_pin,
            "sideset_base": sideset_base,
            "in_shiftdir": in_shiftdir,
            "out_shiftdir": out_shiftdir,
            "push_thresh": push_thresh,
            "pull_thresh": pull_thresh,
        }
        self.program = program
        self._active = False
        PIO(self.id // 4).add_program(program)
        self._record(("init", dict(self.config)))

    def _record(self, call):
        self.calls.append(call)
        log.append((self.id,) + call)

    def active(self, value=None):
        if value is not None:
            self._active = bool(value)
            self._record(("active", self._active))
        return self._active

    def restart(self):
        self._record(("restart",))

    def exec(self, instr):
        if isinstance(instr, str):
            bits = self.program.sideset_bits if self.program else 0
            opt = self.program.sideset_opt if self.program else False
            opcode = asm_pio_encode(instr, bits, opt)
        else:
            opcode = instr & 0xFFFF
        self.execs.append(opcode)
        self._record(("exec", instr, opcode))

    def put(self, value, shift=0):
        words = [value] if isinstance(value, int) else list(value)
        words = [(w << shift) & 0xFFFFFFFF for w in words]
        self.puts.extend(words)
        self._record(("put", words))

    def get(self, buf=None, shift=0):
        if buf is not None:
            raise NotImplementedError("get into a buffer")
        if not self.rx:
            raise RuntimeError("RX FIFO empty: get() would block forever on the device")
        return self.rx.pop(0) >> shift

    def rx_fifo(self):
        return len(self.rx)

    def tx_fifo(self):
        return self.tx_level

    def irq(self, handler=None, trigger=0, hard=False):
        self._record(("irq", {"handler": handler, "trigger": trigger, "hard": hard}))


try:  # in a MicroPython with the fakes on its path (the virtual board), machine is the fake too
    _install_views()
except ImportError:  # CPython before fakes.install() put machine in sys.modules: it calls this
    pass
