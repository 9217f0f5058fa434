"""Host fake of MicroPython's ``machine`` module (RP2040 port) for tests.

Install it as ``sys.modules["machine"]`` before importing board code. The
virtual board loads this same file as ``machine`` inside the WebAssembly
MicroPython, so it is plain Python that runs on both runtimes: no f-strings
with ``=``, no dataclasses, no typing, no CPython-only imports.

It is a recorder, not a simulator of the chip: every hardware action lands in
the module's ``log`` as a tuple, in order, e.g.

    ("pin_init", 4, 1, -1, 1)       Pin(4, Pin.OUT, value=1): id, mode, pull, value
                                    (-1: not given, as in the port's signature)
    ("pin", 4, 0)                   a write of 0 to pin 4 (value/on/off/toggle/...)
    ("pin_irq", 14, trigger, hard)
    ("pwm_init", 28)  ("pwm_freq", 28, 2000)  ("pwm_duty", 28, 32768)  ("pwm_deinit", 28)
    ("i2c_init", 1, scl, sda, hz)   ("i2c_write", 1, 0x3C, b"...") one transaction
                                    (writevto joins its parts)
    ("i2c_read", 1, addr, n)        ("i2c_nack", 1, addr)
    ("timer_init", -1, {...})       ("timer_deinit", -1)
    ("wdt_init", 5000)              ("freq", 125000000)      ("lightsleep", ms)
    ("reset",)  ("soft_reset",)     ("bootloader",)          ("mem32_write", addr, value)
    ("rtc_set", (year, month, day, weekday, h, m, s, subs))

Tests drive the outside world through ``set_input(pin, level)`` (which also
fires a pin's ``irq`` handler on a matching edge), ``add_i2c_device``,
``set_reset_cause`` and ``set_time_ms``/``advance_ms`` (the simulated clock the
watchdog is judged against; nothing here reads a real clock). ``reset_fake()``
forgets everything between tests.

Levels, as on the RP2040: an output pin reads what it drives; an input reads
the level a test set, else its pull (pull-up 1, pull-down or none 0, the reset
state of the pads being pull-down). ``mem32[0xD0000004]`` (SIO GPIO_IN) reads
GPIO 0-29 that way. ``driven(pin)`` is the history of levels a pin actually put
on its wire (None when it stopped driving), which is what a "never glitched
low" test needs: ``Pin(n, Pin.OUT)`` without ``value=`` drives the old output
latch (0 after reset) at once.

On MicroPython the read paths (Pin.value(), mem32[GPIO_IN]) allocate
nothing, so a tick that reads pins can be checked for zero allocation; every
recorded action allocates its log entry.

Deliberate differences: HARD_RESET and SOFT_RESET do not exist on the rp2
port (only PWRON_RESET and WDT_RESET, and machine.reset() itself reboots
through the watchdog, so it reads back as WDT_RESET); they are here for code
written for other ports. Out-of-range PWM and WDT arguments raise ValueError
like the port does (the messages differ).
"""

IDLE = 1
SLEEP = 2
DEEPSLEEP = 4
PWRON_RESET = 1
HARD_RESET = 2  # not on the rp2 port
WDT_RESET = 3
DEEPSLEEP_RESET = 4  # not on the rp2 port
SOFT_RESET = 5  # not on the rp2 port

WDT_MAX_MS = 8388  # RP2040: the watchdog counter's range
SIO_BASE = 0xD0000000
SIO_GPIO_IN = 0xD0000004
SIO_GPIO_OUT = 0xD0000010
_GPIO_COUNT = 30
_PWM_MIN_HZ = 8  # 125 MHz / (256 * 65536) rounded up
_PWM_MAX_HZ = 62_500_000

log = []  # every hardware action, in order (see the module docstring)

_pins = {}  # pin id -> _PinState
_pwm_slices = {}  # slice number -> freq_hz (both channels of a slice share it)
_i2c_devices = {}  # (bus or None, addr) -> _Device
_mem = {}  # address -> last value written (other than the special registers)
_timers = []
_state = {}
# What the rp2 port sets the RTC to at power-on and after every hard reset:
# 2021-01-01 00:00:00, a Friday (weekday 4; 0 is Monday).
RTC_POWER_ON = (2021, 1, 1, 4, 0, 0, 0, 0)

try:  # inside the virtual board: its bridge keeps the RTC across a soft reset
    import _vboard_js as _vb  # type: ignore[import-not-found]
except ImportError:
    _vb = None


def _fresh_state():
    _state.clear()
    _state.update(
        {
            "reset_cause": PWRON_RESET,
            "freq_hz": 125_000_000,
            "now_ms": 0,
            "irq_depth": 0,
            "idle_calls": 0,
            "wdt": None,
            "unique_id": b"\xe6\x61\x41\x04\x03\x2a\x5c\x2b",
            "rtc": RTC_POWER_ON,
        }
    )


_fresh_state()


def reset_fake():
    """Forget every pin, peripheral, device, log entry and setting (call between tests)."""
    log.clear()
    _pins.clear()
    _pwm_slices.clear()
    _i2c_devices.clear()
    _mem.clear()
    _timers.clear()
    _fresh_state()


# -- what tests use to play the outside world -----------------------------------


def set_input(pin_id, level):
    """Drive pin_id from outside at level (0/1), or None to let it float again.

    A level change on a pin with an ``irq`` handler whose trigger matches the
    edge calls the handler, as the port would (soft or hard alike).
    """
    st = _pin_state(pin_id)
    before = st.level()
    st.external = None if level is None else (1 if level else 0)
    after = st.level()
    if st.irq_handler is not None and before != after:
        edge = Pin.IRQ_RISING if after else Pin.IRQ_FALLING
        if st.irq_trigger & edge:
            st.irq_handler(st.owner)


def pin_level(pin_id):
    """The level pin_id reads now (what Pin(pin_id).value() would return)."""
    return _pin_state(pin_id).level()


def driven(pin_id):
    """Levels pin_id put on its wire, in order (None: stopped driving)."""
    return list(_pin_state(pin_id).driven)


def writes(pin_id=None):
    """The ("pin", id, level) writes of the log, for one pin or all."""
    return [e for e in log if e[0] == "pin" and (pin_id is None or e[1] == pin_id)]


def gpio_in():
    """SIO GPIO_IN as the RP2040 would show it: bit n = level of GPIO n."""
    word = 0
    for n in range(_GPIO_COUNT):
        if n in _pins:
            word |= _pins[n].level() << n
    return word


def add_i2c_device(addr, bus=None, reply=b""):
    """Make addr answer on I2C bus `bus` (an id, "soft", or None for every bus).

    `reply` is what reads return (repeated if a read is longer). Returns the
    device record: `.writes` (bytes of each transaction), `.reads` (count).
    """
    dev = _Device(addr, reply)
    _i2c_devices[(bus, addr)] = dev
    return dev


def set_reset_cause(cause):
    _state["reset_cause"] = cause


def set_time_ms(now_ms):
    """The simulated clock the watchdog is judged against."""
    _state["now_ms"] = now_ms


def advance_ms(dt_ms):
    _state["now_ms"] += dt_ms


def now_ms():
    return _state["now_ms"]


def timers():
    """Every Timer built since reset_fake(), in order."""
    return list(_timers)


def irq_depth():
    """disable_irq() calls not yet matched by enable_irq()."""
    return _state["irq_depth"]


def idle_calls():
    return _state["idle_calls"]


def watchdog():
    """The WDT started since reset_fake(), or None."""
    return _state["wdt"]


# -- Pin --------------------------------------------------------------------------


class _PinState:
    """One GPIO, shared by every Pin object built on the same id (as on the chip)."""

    def __init__(self, pin_id):
        self.id = pin_id
        self.mode = None  # never configured: an input with the reset pull-down
        self.pull = None
        self.latch = 0  # the output register, 0 after reset
        self.external = None
        self.driven = []
        self.irq_handler = None
        self.irq_trigger = 0
        self.owner = None
        self._wire = None  # what it drives now: 0, 1 or None

    def drive(self):
        """What the pin puts on the wire: 0/1, or None when it does not drive."""
        if self.mode == Pin.OUT:
            return self.latch
        if self.mode == Pin.OPEN_DRAIN and not self.latch:
            return 0
        return None

    def note(self):
        wire = self.drive()
        if wire != self._wire:
            self._wire = wire
            self.driven.append(wire)

    def level(self):
        wire = self.drive()
        if wire is not None:
            return wire
        if self.external is not None:
            return self.external
        if self.pull == Pin.PULL_UP:
            return 1
        return 0  # pull-down, or floating (read as 0)


def _pin_state(pin_id):
    if isinstance(pin_id, Pin):
        pin_id = pin_id.id
    st = _pins.get(pin_id)
    if st is None:
        st = _PinState(pin_id)
        _pins[pin_id] = st
    return st


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    ALT = 3
    ALT_SPI = 1
    ALT_UART = 2
    ALT_I2C = 3
    ALT_PWM = 4
    ALT_SIO = 5
    ALT_PIO0 = 6
    ALT_PIO1 = 7
    ALT_GPCK = 8
    ALT_USB = 9
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_LOW_LEVEL = 1
    IRQ_HIGH_LEVEL = 2
    IRQ_FALLING = 4
    IRQ_RISING = 8

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
        if isinstance(id, Pin):
            id = id.id
        if not isinstance(id, (int, str)):
            raise TypeError("pin id must be int or str")
        if isinstance(id, int) and not 0 <= id < _GPIO_COUNT:
            raise ValueError("invalid pin")
        self.id = id
        self._st = _pin_state(id)
        if mode != -1 or pull != -1 or value is not None or alt is not None:
            self.init(mode, pull, value=value, drive=drive, alt=alt)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
        st = self._st
        if mode not in (-1, Pin.IN, Pin.OUT, Pin.OPEN_DRAIN, Pin.ALT):
            raise ValueError("invalid pin mode")
        if pull not in (-1, None, Pin.PULL_UP, Pin.PULL_DOWN):
            raise ValueError("invalid pull")
        log.append(("pin_init", self.id, mode, pull, value))
        # The port writes the output latch before it turns the driver on, so
        # Pin(n, Pin.OUT, value=1) never shows a 0 on the wire.
        if value is not None:
            st.latch = 1 if value else 0
            st.note()
        if pull != -1:
            st.pull = pull
        if mode != -1:
            st.mode = mode
        st.note()

    def value(self, x=None):
        if x is None:
            return self._st.level()
        self._write(1 if x else 0)
        return None

    def __call__(self, x=None):
        return self.value(x)

    def _write(self, level):
        log.append(("pin", self.id, level))
        self._st.latch = level
        self._st.note()

    def on(self):
        self._write(1)

    def off(self):
        self._write(0)

    def high(self):
        self._write(1)

    def low(self):
        self._write(0)

    def toggle(self):
        self._write(self._st.latch ^ 1)

    def irq(self, handler=None, trigger=12, hard=False):  # 12: both edges
        log.append(("pin_irq", self.id, trigger, hard))
        self._st.owner = self  # the handler gets the Pin it was set on
        self._st.irq_handler = handler
        self._st.irq_trigger = trigger if handler is not None else 0
        return None

    def __repr__(self):
        return "Pin({})".format(self.id)


def _pin_id(dest):
    if isinstance(dest, Pin):
        return dest.id
    return dest


# -- mem32 ---------------------------------------------------------------------


class _Mem:
    """machine.mem8/16/32: reads of SIO GPIO_IN see the fake pins, other
    addresses read back the last value written (0 if none)."""

    def __init__(self, width):
        self.width = width
        self.mask = (1 << (8 * width)) - 1

    def __getitem__(self, addr):
        # GPIO_IN first, with no arithmetic on the address (above 2**30 it is
        # a big int on MicroPython): a tick reading the pins allocates nothing.
        if addr == SIO_GPIO_IN and self.width == 4:
            return gpio_in()
        if addr % self.width:
            raise ValueError("memory address not aligned")
        if addr == SIO_GPIO_OUT and self.width == 4:
            word = 0
            for n in range(_GPIO_COUNT):
                if n in _pins:
                    word |= _pins[n].latch << n
            return word
        return _mem.get(addr, 0) & self.mask

    def __setitem__(self, addr, value):
        if addr % self.width:
            raise ValueError("memory address not aligned")
        log.append(("mem{}_write".format(8 * self.width), addr, value & self.mask))
        _mem[addr] = value & self.mask


mem8 = _Mem(1)
mem16 = _Mem(2)
mem32 = _Mem(4)


# -- register views (what a viper `ptr32(address)` sees, on the fakes) ----------


class _SioView:
    """SIO as words from 0xD0000000: GPIO_IN (word 1) reads the fake pins."""

    def __getitem__(self, i):
        if i == 1:
            return gpio_in()
        return 0

    def __setitem__(self, i, value):
        log.append(("sio_write", i, value))


_views = {SIO_BASE: _SioView()}


def add_view(base, view):
    """Make `view` (index -> 32-bit word) the registers of the block at `base`."""
    _views[base] = view


def mem32_view(base):
    """The registers of the block at `base` as words (board/irq.py's ptr32 off the device)."""
    return _views[base]


# -- Timer ----------------------------------------------------------------------


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, **kwargs):
        self.id = id
        self.mode = None
        self.freq = None
        self.period = None
        self.callback = None
        self.hard = None
        self.active = False
        self.fired = 0
        _timers.append(self)
        if kwargs:
            self.init(**kwargs)

    def init(self, *, mode=1, freq=None, period=None, tick_hz=1000, callback=None, hard=None):
        if freq is not None and period is not None:
            raise ValueError("give freq or period, not both")
        if freq is not None and freq <= 0:
            raise ValueError("freq must be positive")
        self.mode = mode
        self.freq = freq
        self.period = period
        self.tick_hz = tick_hz
        self.callback = callback
        self.hard = hard
        self.active = True
        log.append(
            (
                "timer_init",
                self.id,
                {"mode": mode, "freq": freq, "period": period, "callback": callback, "hard": hard},
            )
        )

    def period_us(self):
        """The period the timer was set to, in microseconds (None if not running)."""
        if self.freq is not None:
            return 1_000_000 // self.freq
        if self.period is not None:
            return self.period * 1_000_000 // self.tick_hz
        return None

    def fire(self, times=1):
        """Run the callback `times` times as the timer would (a one-shot only once)."""
        for _ in range(times):
            if not self.active:
                break
            if self.mode == Timer.ONE_SHOT:
                self.active = False
            self.fired += 1
            if self.callback is not None:
                self.callback(self)

    def deinit(self):
        self.active = False
        log.append(("timer_deinit", self.id))


# -- PWM ------------------------------------------------------------------------


class PWM:
    """A PWM channel; both channels of a slice (pin >> 1 & 7) share the frequency."""

    def __init__(self, dest, *, freq=None, duty_u16=None, duty_ns=None, invert=False):
        self.pin = _pin_id(dest)
        if not isinstance(self.pin, int):
            raise ValueError("PWM needs a GPIO number")
        self.slice = (self.pin >> 1) & 7
        self._duty_u16 = 0
        self.invert = invert
        self.active = True
        log.append(("pwm_init", self.pin))
        if freq is not None:
            self.freq(freq)
        if duty_u16 is not None:
            self.duty_u16(duty_u16)
        if duty_ns is not None:
            self.duty_ns(duty_ns)

    def init(self, *, freq=None, duty_u16=None, duty_ns=None, invert=None):
        self.active = True
        if invert is not None:
            self.invert = invert
        if freq is not None:
            self.freq(freq)
        if duty_u16 is not None:
            self.duty_u16(duty_u16)
        if duty_ns is not None:
            self.duty_ns(duty_ns)

    def freq(self, hz=None):
        if hz is None:
            return _pwm_slices.get(self.slice, 0)
        if not _PWM_MIN_HZ <= hz <= _PWM_MAX_HZ:
            raise ValueError("freq out of range")
        _pwm_slices[self.slice] = hz
        self.active = True
        log.append(("pwm_freq", self.pin, hz))

    def duty_u16(self, value=None):
        if value is None:
            return self._duty_u16
        if not 0 <= value <= 65535:
            raise ValueError("duty_u16 out of range")
        self._duty_u16 = value
        self.active = True
        log.append(("pwm_duty", self.pin, value))

    def duty_ns(self, ns=None):
        hz = _pwm_slices.get(self.slice, 0)
        if ns is None:
            return self._duty_u16 * 1_000_000_000 // (65535 * hz) if hz else 0
        self.duty_u16(min(65535, ns * hz * 65535 // 1_000_000_000))

    def deinit(self):
        self.active = False
        log.append(("pwm_deinit", self.pin))


# -- I2C --------------------------------------------------------------------------


class _Device:
    def __init__(self, addr, reply):
        self.addr = addr
        self.reply = bytes(reply)
        self.writes = []
        self.reads = 0


def _device(bus, addr):
    dev = _i2c_devices.get((bus, addr))
    if dev is None:
        dev = _i2c_devices.get((None, addr))
    return dev


_EIO = 5  # what the rp2 port raises when nobody acknowledges the address


class I2C:
    """Recording I2C bus: transactions go to the devices of add_i2c_device()."""

    def __init__(self, id=0, *, scl=None, sda=None, freq=400_000, timeout=50_000):
        self._setup(id, scl, sda, freq, timeout)

    def _setup(self, bus, scl, sda, freq, timeout):
        self.bus = bus
        self.scl = _pin_id(scl)
        self.sda = _pin_id(sda)
        self.freq = freq
        self.timeout = timeout
        self.transactions = []  # (addr, "w"/"r", bytes written or read)
        log.append(("i2c_init", bus, self.scl, self.sda, freq))

    def init(self, *, scl=None, sda=None, freq=400_000, timeout=50_000):
        self._setup(
            self.bus,
            scl if scl is not None else self.scl,
            sda if sda is not None else self.sda,
            freq,
            timeout,
        )

    def scan(self):
        found = set()
        for bus, addr in _i2c_devices:
            if bus is None or bus == self.bus:
                found.add(addr)
        return sorted(found)

    def _target(self, addr):
        dev = _device(self.bus, addr)
        if dev is None:
            log.append(("i2c_nack", self.bus, addr))
            raise OSError(_EIO)
        return dev

    def writeto(self, addr, buf, stop=True):
        return self._write(addr, bytes(buf))

    def writevto(self, addr, vector, stop=True):
        data = b""
        for part in vector:
            data += bytes(part)
        return self._write(addr, data)

    def _write(self, addr, data):
        dev = self._target(addr)
        dev.writes.append(data)
        self.transactions.append((addr, "w", data))
        log.append(("i2c_write", self.bus, addr, data))
        return len(data)

    def readfrom_into(self, addr, buf, stop=True):
        dev = self._target(addr)
        dev.reads += 1
        reply = dev.reply or b"\x00"
        for i in range(len(buf)):
            buf[i] = reply[i % len(reply)]
        self.transactions.append((addr, "r", bytes(buf)))
        log.append(("i2c_read", self.bus, addr, len(buf)))

    def readfrom(self, addr, nbytes, stop=True):
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf, stop)
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        head = memaddr.to_bytes(addrsize // 8, "big")
        return self._write(addr, head + bytes(buf))

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        self._write(addr, memaddr.to_bytes(addrsize // 8, "big"))
        self.readfrom_into(addr, buf)

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf, addrsize=addrsize)
        return bytes(buf)


class SoftI2C(I2C):
    """Bit-banged I2C: the same recorder, on the bus named "soft"."""

    def __init__(self, scl, sda, *, freq=400_000, timeout=50_000):
        self._setup("soft", scl, sda, freq, timeout)


# -- WDT ------------------------------------------------------------------------


class WDT:
    """The watchdog: once started it cannot be stopped (a second WDT() on the
    port reconfigures the same one). Judged against the simulated clock."""

    def __init__(self, id=0, timeout=5000):
        if not 1 <= timeout <= WDT_MAX_MS:
            raise ValueError("timeout out of range (1..8388 ms)")
        self.timeout_ms = timeout
        self.feeds = 0
        self.fed_at_ms = _state["now_ms"]
        _state["wdt"] = self
        log.append(("wdt_init", timeout))

    def feed(self):
        self.feeds += 1
        self.fed_at_ms = _state["now_ms"]

    def expired(self, now_ms=None, since_feed_ms=None):
        """Whether the chip would have reset: at the simulated clock (or now_ms),
        or after since_feed_ms without a feed."""
        if since_feed_ms is None:
            if now_ms is None:
                now_ms = _state["now_ms"]
            since_feed_ms = now_ms - self.fed_at_ms
        return since_feed_ms > self.timeout_ms


# -- RTC ------------------------------------------------------------------------


class RTC:
    """The real-time clock: datetime() reads, datetime(tuple) sets (year, month, day,
    weekday, hours, minutes, seconds, subseconds), as `mpremote rtc --set` does.

    It starts at RTC_POWER_ON and does not run (no test waits on it). On the
    virtual board it lives in the bridge: it survives a soft reset (as the
    RP2040's does) and goes back to RTC_POWER_ON at a hard reset or power-on.
    """

    def __init__(self, id=0):
        pass

    def datetime(self, dt=None):
        if dt is None:
            if _vb is not None:
                text = _vb.rtc_get()
                return tuple(int(v) for v in text.split(",")) if text else RTC_POWER_ON
            return _state["rtc"]
        dt = tuple(int(v) for v in dt)
        if len(dt) != 8:
            raise ValueError("datetime: 8 values (year, month, day, weekday, h, m, s, subs)")
        log.append(("rtc_set", dt))
        if _vb is not None:
            _vb.rtc_set(",".join(str(v) for v in dt))
        _state["rtc"] = dt
        return None


# -- module functions -----------------------------------------------------------


class MachineReset(SystemExit):
    """Raised by reset()/soft_reset(): on the chip they never return."""


def reset_cause():
    return _state["reset_cause"]


def freq(hz=None):
    if hz is None:
        return _state["freq_hz"]
    _state["freq_hz"] = hz
    log.append(("freq", hz))
    return None


def unique_id():
    return _state["unique_id"]


def idle():
    _state["idle_calls"] += 1


def disable_irq():
    depth = _state["irq_depth"]
    _state["irq_depth"] = depth + 1
    return depth  # the state enable_irq() gets back


def enable_irq(state=0):
    _state["irq_depth"] = state


def lightsleep(time_ms=None):
    log.append(("lightsleep", time_ms))
    if time_ms:
        _state["now_ms"] += time_ms


def reset():
    log.append(("reset",))
    raise MachineReset("machine.reset()")


def soft_reset():
    log.append(("soft_reset",))
    raise MachineReset("machine.soft_reset()")


def bootloader(value=None):
    log.append(("bootloader",))
    raise MachineReset("machine.bootloader()")
