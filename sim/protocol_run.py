"""A whole protocol session in the simulator: `injector sim --protocol FILE [--out DIR] [--seed N]`.

What it does, like an operator with the device:
  1. parse FILE with injcore.protocol.parse under the default engineer
     Limits (a refused file: its problems, exit 2);
  2. home; load the smallest syringe (1, 3, 5, 10 mL) whose usable volume
     (capacity less dead space) holds the protocol's effective session cap
     plus the priming (PRIME_MS at the prime rate); one syringe, never a
     change mid-session; if even 10 mL is too small: say so, exit 1;
  3. a tlog.Recorder writes the firmware's treatment log to DIR/log (a new
     log each run); the session starts (lot SIM), the syringe is primed;
  4. an injcore.protocol.Run starts, logged by a tlog.ProtocolLog; the main
     loop after every tick: run.poll(), protocol_log.poll(),
     recorder.poll(), recorder.service();
  5. per zone:
       point / papule (single mode): one trigger press a puncture, 200 ms
           between them (the operator moves the handpiece), until the zone's
           planned count is done or the core refuses a shot (its notice:
           zone cap, session cap, syringe low ...);
       nappage (continuous mode): the trigger held for planned / shot rate
           seconds plus NAPPAGE_MARGIN_MS, released as soon as the planned
           count is reached or the core stops firing (a cap);
       "free" zones: FREE_PUNCTURES (10) punctures, the same way;
     then the next zone (run.next()); after the last, run.end();
  6. the session ends, the log is decoded (host_tools.logs) and the report
     written to DIR/report (host_tools.report: summary.md with the zone by
     zone planned-vs-delivered table, plan.png and the usual charts).

Exit codes: 0 done, 1 the session cannot be simulated (no syringe large
enough, homing failed), 2 a bad protocol file.
"""

import sys
from dataclasses import dataclass, field
from pathlib import Path

from injcore import codes as C
from injcore import machine as M
from injcore import protocol as P
from injcore import tlog
from injcore.settings import MODE_CONTINUOUS, Limits

from .session import Simulator

OUT = Path("build/sim/protocol")
SYRINGE_SIZES = (1, 3, 5, 10)
PRIME_MS = 1500
FREE_PUNCTURES = 10  # punctures fired in a "free" zone
MOVE_MS = 200  # between two single shots: the operator moves the handpiece
NAPPAGE_MARGIN_MS = 2000
LOT = "SIM"


class SimError(Exception):
    """The session cannot be simulated (exit 1); the message says why."""


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
    syringe_ml: int
    session: int
    log_dir: Path
    report_dir: Path
    zones: list = field(default_factory=list)  # ZoneResult
    decoded: object = None
    report_files: list = field(default_factory=list)


def prime_nl():
    return M.PRIME_RATE_NL_S * PRIME_MS // 1000


def choose_syringe(cap_nl):
    """The smallest syringe whose usable volume holds cap_nl plus the priming; SimError if none."""
    need = cap_nl + prime_nl()
    for ml in SYRINGE_SIZES:
        _, capacity, dead = M.SYRINGES[ml]
        if capacity - dead >= need:
            return ml
    ml = SYRINGE_SIZES[-1]
    _, capacity, dead = M.SYRINGES[ml]
    raise SimError("no syringe holds the session cap of %.1f uL plus %.1f uL of priming: the largest "
                   "(%d mL) gives %.1f uL; one syringe a simulated session" % (
                       cap_nl / 1000, prime_nl() / 1000, ml, (capacity - dead) / 1000))


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


def run_protocol(protocol, out=OUT, seed=1, lot=LOT):
    """Simulate the whole session of `protocol` (an injcore.protocol.Protocol); a Result."""
    from host_tools import logs, report  # the engineer's tools, on the log the firmware wrote

    out = Path(out)
    syringe = choose_syringe(protocol.session_cap_nl)
    log_dir = out / "log"
    sim = Simulator(seed=seed, trace=False)
    if not sim.home():
        raise SimError("homing failed: %s" % C.FAULT_NAMES[sim.core.fault])
    sim.load(size_ml=syringe)
    recorder = sim.attach_log(log_dir)
    session = recorder.start_session(lot)
    sim.prime(PRIME_MS)
    run = P.Run(sim.core, protocol, recorder)
    if not run.start():
        raise SimError("the protocol's first zone was refused: %s" % run.message)
    plog = tlog.ProtocolLog(recorder, run)
    sim.main_loop.insert(0, lambda: (run.poll(), plog.poll()))
    res = Result(protocol, sim, run, recorder, syringe, session, log_dir, out / "report")
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
    res.decoded = logs.read_dir(log_dir)
    res.report_files = report.write_report(res.decoded, session, res.report_dir)
    return res


def print_summary(res, file=None):
    file = file or sys.stdout
    p = res.protocol
    print("protocol %r v%d: %d zones, %d mL syringe, session cap %.1f uL" % (
        p.name, p.version, len(p.zones), res.syringe_ml, p.session_cap_nl / 1000), file=file)
    for z in res.zones:
        planned = z.planned or "free (%d)" % FREE_PUNCTURES
        print("  %2d %-12s %-8s %4d / %-10s %9.3f uL  %s" % (
            z.index + 1, z.name, z.technique, z.done, planned, z.used_nl / 1000, z.stop), file=file)
    core = res.sim.core
    print("delivered %.3f uL in %d punctures; primed %.3f uL; simulated %.1f s" % (
        core.delivered_nl() / 1000, core.punctures, core.primed_nl() / 1000, res.sim.now_us / 1e6),
        file=file)
    print("treatment log: %s (%d records); report: %s" % (
        res.log_dir, len(res.decoded.records), res.report_dir), file=file)


def main(path, out=OUT, seed=1):
    """The CLI's body: exit code 0 / 1 / 2 (messages on stderr, no traceback)."""
    try:
        protocol = load_protocol(path)
    except P.ProtocolError as e:
        print("injector sim: %s is not a valid protocol:" % path, file=sys.stderr)
        for line in e.problems:
            print("  " + line, file=sys.stderr)
        return 2
    except OSError as e:
        print("injector sim: cannot read %s: %s" % (path, e.strerror or e), file=sys.stderr)
        return 2
    try:
        res = run_protocol(protocol, out, seed)
    except SimError as e:
        print("injector sim: %s" % e, file=sys.stderr)
        return 1
    print_summary(res)
    return 0
