"""A whole protocol session in the simulator (`injector sim --protocol`, host_tools/sim_tool.py).

load_protocol(FILE) parses a file with injcore.protocol.parse under the
default engineer Limits (ProtocolError: its problems). run_protocol does,
like an operator with the device:
  1. home; load the syringe model of machine.SYRINGES with the least usable
     volume (capacity less dead space) that holds the protocol's effective
     session cap plus the priming (PRIME_MS at the prime rate); one syringe,
     never a change mid-session; if none is large enough: SimError; if the
     core refuses a zone with it (injcore.feasible, as the device checks
     before a session): SimError naming the zone;
  2. a tlog.Recorder writes the firmware's treatment log to log_dir (a new
     log each run); the session starts (lot SIM), the syringe is primed;
  3. an injcore.protocol.Run starts, logged by a tlog.ProtocolLog; the main
     loop after every tick: run.poll(), protocol_log.poll(),
     recorder.poll(), recorder.service();
  4. per zone:
       point / papule (single mode): one trigger press a puncture, 200 ms
           between them (the operator moves the handpiece), until the zone's
           planned count is done or the core refuses a shot (its notice:
           zone cap, session cap, syringe low ...);
       nappage (continuous mode): the trigger held for planned / shot rate
           seconds plus NAPPAGE_MARGIN_MS, released as soon as the planned
           count is reached or the core stops firing (a cap);
       "free" zones: FREE_PUNCTURES (10) punctures, the same way;
     then the next zone (run.next()); after the last, run.end();
  5. the session ends; the Result says what ran and where the log is. Reading
     the log and writing the report is the host tools' part (sim_tool).

SimError: the session cannot be simulated (no syringe large enough, homing
failed, a zone the core refuses).
"""

from dataclasses import dataclass, field
from pathlib import Path

from injcore import codes as C
from injcore import machine as M
from injcore import protocol as P
from injcore import tlog
from injcore.feasible import zone_refusals
from injcore.settings import MODE_CONTINUOUS, Limits, refusal_text

from .session import Simulator

PRIME_MS = 1500
FREE_PUNCTURES = 10  # punctures fired in a "free" zone
MOVE_MS = 200  # between two single shots: the operator moves the handpiece
NAPPAGE_MARGIN_MS = 2000
LOT = "SIM"


class SimError(Exception):
    """The session cannot be simulated; the message says why (`injector sim` exits 1)."""


@dataclass
class ZoneResult:
    index: int
    name: str
    technique: str
    planned: int  # 0 = free
    target: int  # punctures aimed for (planned, or FREE_PUNCTURES)
    done: int = 0  # the Run's count
    used_nl: int = 0  # the Run's volume
    stop: str = ""  # "planned count reached" or the core's notice that stopped it
    capped: bool = False  # stopped by the zone cap


@dataclass
class Result:
    protocol: object
    sim: Simulator
    run: object
    recorder: object
    syringe_model: int  # an id of machine.SYRINGES
    session: int
    log_dir: Path
    zones: list = field(default_factory=list)  # ZoneResult


def prime_nl():
    return M.PRIME_RATE_NL_S * PRIME_MS // 1000


def usable_nl(model):
    """What a full syringe of `model` gives before its dead space."""
    e = M.SYRINGES[model]
    return e[M.SYR_CAPACITY_NL] - e[M.SYR_DEAD_NL]


def models_by_volume():
    """The models of machine.SYRINGES, the least usable volume first (ties: the lower id)."""
    return sorted(M.SYRINGES, key=lambda model: (usable_nl(model), model))


def choose_syringe(cap_nl):
    """The model with the least usable volume that holds cap_nl plus the priming, else SimError."""
    need = cap_nl + prime_nl()
    models = models_by_volume()
    for model in models:
        if usable_nl(model) >= need:
            return model
    largest = models[-1]
    raise SimError(
        "no syringe holds the session cap of %.1f uL plus %.1f uL of priming: the largest "
        "(%s) gives %.1f uL; one syringe a simulated session"
        % (
            cap_nl / 1000,
            prime_nl() / 1000,
            M.SYRINGES[largest][M.SYR_NAME],
            usable_nl(largest) / 1000,
        )
    )


def load_protocol(path, limits=None):
    """The Protocol of a file; ProtocolError (its .problems) if refused, OSError if unreadable."""
    data = Path(path).read_bytes()
    return P.parse(data, limits or Limits())


def _wait_ready(sim, timeout_ms=130_000):
    sim.run_until(lambda s: s.core.state == C.ST_READY, timeout_ms)
    sim.settle()


def _single_zone(sim, run, i, z):
    core = sim.core
    while run.done[i] < z.target:
        if sim.shot() is None:
            run.poll()
            if run.done[i] >= z.target:
                break
            z.stop = C.NOTICE_NAMES[core.notice] or "the trigger fired nothing (%s)" % sim.state
            z.capped = core.notice == C.N_ZONE_CAP
            return
        sim.run_ms(MOVE_MS)
    z.stop = "planned count reached"


def _nappage_zone(sim, run, i, z, zone):
    core, m = sim.core, sim.machine
    left = z.target - run.done[i]
    if left <= 0:
        z.stop = "planned count reached"
        return
    period_ms = 1_000_000 // zone.settings["shot_rate_mhz"]
    hold_ms = left * period_ms + NAPPAGE_MARGIN_MS
    p0 = core.punctures
    m.trigger = True
    t = 0
    reason = "trigger held %d ms" % hold_ms
    while t < hold_ms:
        sim.step()
        t += 1
        if core.punctures - p0 >= left:
            reason = "planned count reached"
            break
        if t > 5 and core.state == C.ST_READY:  # the core stopped firing with the trigger held
            reason = C.NOTICE_NAMES[core.notice] or "stopped firing (%s)" % sim.state
            z.capped = core.notice == C.N_ZONE_CAP
            break
        if core.state == C.ST_FAULT:
            reason = "fault: %s" % C.FAULT_NAMES[core.fault]
            break
    m.trigger = False
    _wait_ready(sim)
    sim.run_ms(5)  # a main-loop pass after the last puncture
    z.stop = reason


def run_protocol(protocol, log_dir, seed=1, lot=LOT):
    """Simulate the whole session of `protocol` (an injcore.protocol.Protocol), its treatment
    log written to `log_dir`; a Result."""
    log_dir = Path(log_dir)
    syringe = choose_syringe(protocol.session_cap_nl)
    sim = Simulator(seed=seed, trace=False)
    if not sim.home():
        raise SimError("homing failed: %s" % C.FAULT_NAMES[sim.core.fault])
    sim.load(model=syringe)
    verdicts = zone_refusals(sim.core, [z.settings for z in protocol.zones])
    for zone, refusals in zip(protocol.zones, verdicts):
        if refusals:
            raise SimError(
                "zone %r cannot run with the %s syringe: %s"
                % (zone.name, M.SYRINGES[syringe][M.SYR_NAME], refusal_text(refusals[0]))
            )
    recorder = sim.attach_log(log_dir)
    session = recorder.start_session(lot)
    sim.prime(PRIME_MS)
    run = P.Run(sim.core, protocol, recorder)
    if not run.start():
        raise SimError("the protocol's first zone was refused: %s" % run.message)
    plog = tlog.ProtocolLog(recorder, run)
    sim.main_loop.insert(0, lambda: (run.poll(), plog.poll()))
    res = Result(protocol, sim, run, recorder, syringe, session, log_dir)
    n = len(protocol.zones)
    for i, zone in enumerate(protocol.zones):
        assert run.index == i
        z = ZoneResult(i, zone.name, zone.technique, zone.planned, zone.planned or FREE_PUNCTURES)
        sim.run_ms(5)  # the main loop sees the zone
        if zone.mode == MODE_CONTINUOUS:
            _nappage_zone(sim, run, i, z, zone)
        else:
            _single_zone(sim, run, i, z)
        _wait_ready(sim)
        sim.run_ms(5)
        run.poll()
        z.done, z.used_nl = run.done[i], run.used_nl[i]
        res.zones.append(z)
        if not (run.next() if i + 1 < n else run.end()):
            raise SimError("zone change refused after %s: %s" % (zone.name, run.message))
        sim.run_ms(5)
    plog.poll()
    recorder.end_session()
    return res
