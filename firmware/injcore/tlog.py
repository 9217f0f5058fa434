"""The treatment log: what every puncture did, on flash, in a ring of files (H9).

Records
-------
Every record is REC_BYTES = 24 bytes: a 20-byte payload of bit fields packed
least-significant bit first, then the CRC-32 of the payload (seeded with
CRC_SEED so no other file's bytes pass for a record), little-endian. The
first 3 bits are the kind. Field widths (bits; "s" = two's complement):

  PUNCTURE (1)      mode 2, alarm 1, warning 1, partial 1, zone 8 (0xFF none),
                    session 16, number 16, t_ms 24 (ms from session start to
                    the puncture's start, modulo 2**24 = 4.66 h: the decoder
                    unwraps it, times only grow within a session), fault 5,
                    depth_set_um 13, depth_um 14s (deepest tip depth reached),
                    dose_set_nl 18, dose_nl 19s (from counted plunger steps),
                    force_mn 16 (peak; FORCE_BAD = 0xFFFF: the load cell was
                    invalid; saturates at 0xFFFE)                  157 bits
  SESSION_START (2) syringe_model 5 (a machine.SYRINGES id, 0 = custom; the
                    bits older logs named syringe_ml), session 16, time_s 32
                    (the device clock: seconds since 1970-01-01 UTC as the
                    host set it; 0 when it has none), syringe_id_um 15,
                    lot 12 x 7-bit ASCII (NUL-padded)               155 bits
  SESSION_END (3)   interrupted 1, session 16, time_s 32, punctures 16,
                    delivered_nl 25, primed_nl 25, alarms 8, partials 8,
                    lost 12 (punctures known lost), lost_max 12 (more that
                    may be lost: see "Lost punctures")              158 bits
  PROTOCOL (4)      example 1, session 16, version 16, zones 4 (zone count),
                    name 17 x 7-bit ASCII (the protocol's first 17 chars of
                    its up to 24, the rest in the PROTOCOL_NAME record
                    after it; NUL-padded)                           156 bits
  ZONE (5)          event 2 (Z_ENTER 0 / Z_SKIP 1 / Z_DONE 2, 3 unused),
                    skipped 1 (the run's skipped flag of the zone when the
                    record was written), mode 2, session 16, index 4,
                    planned 14 (punctures; 0 = "free"), cap_nl 25 (the
                    zone's cap), dose_set_nl 9 (in DOSE_UNIT_NL = 500 nL
                    units: every allowed dose is a multiple), name 12 x
                    7-bit ASCII                                     157 bits
  SYRINGE (6)       syringe_model 5, session 16, time_s 32,
                    syringe_id_um 15, punctures 16 (the core's count
                    when it was confirmed)                           87 bits
  CALIBRATION (7)   session 16, time_s 32, punctures 16 (the core's
                    count when it took effect), line_tau_us 26 (the
                    line's time constant pressure advance plans with),
                    backlash_steps 12, dose_factor_ppm 21           126 bits

Kind 0 names a further kind in the next 5 bits (ext): kind = 8 + ext, so
32 more kinds fit (a decoder older than a kind skips its records as bad):

  DEVICE (8)        ext 5 (0), session 16, device_id 8 x 8 bits (the
                    board's unique id, 16 hex digits; all 0: none),
                    firmware 10 x 7-bit ASCII (the version string,
                    NUL-padded)                                     155 bits
  PROTOCOL_NAME (9) ext 5 (1), session 16, name 7 x 7-bit ASCII (the
                    protocol's name from its character 18 on: with the
                    PROTOCOL record's 17, the whole of its up to 24;
                    written after every PROTOCOL record, empty for a
                    shorter name, so its presence says the name is
                    whole)                                           70 bits

Syringes
--------
Doses are counted with the size of the syringe confirmed on loading
(Core.confirm_syringe, H13). A session's SESSION_START names the size set
when it opened; each syringe confirmed while the session is open adds a
SYRINGE record (a new syringe, whatever its size). So every puncture's
syringe is named by the last SESSION_START or SYRINGE record of its session
before it: nothing fires between a size change and its confirmation.

Device
------
Each SESSION_START is followed by a DEVICE record: which device wrote the
session (the RP2040's unique id) with which firmware. The time of the
session is the SESSION_START's time_s: the device's clock, which the host
tools set whenever they connect (board/clock.py); 0 when the clock was never
set since power-on, and the host then says "time unknown".

Calibration
-----------
What the doses of a session were planned and counted with besides the
settings: each SESSION_START is followed by a CALIBRATION record with the
figures in use, and one more is written whenever an engineer changes them
while the session is open (the backlash screen applies a measured backlash
and line time constant). So every puncture's calibration is the last
CALIBRATION record of its session before it. CALIBRATION takes the last
kind 3 bits can name; the kinds after it are kind 0 and 5 bits more (above).

A protocol run (injcore.protocol.Run) in a session writes, through
ProtocolLog below: one PROTOCOL record when it starts (and again if a new
session opens while it runs), a ZONE Z_ENTER each time a zone becomes the
current one (going back to a zone enters it again), a ZONE Z_SKIP when the
operator skips one, and at the end of the run one ZONE Z_DONE per zone of the
protocol carrying its final skipped flag (so the log names every zone, also
those never reached). Punctures carry the index of their zone (`zone`).

Values beyond a field saturate (never wrap), so a record is never wrong in
a way that looks right. A puncture cut by a fault gets a PUNCTURE record
with alarm=1, the fault code, partial=1 when less than the dose went in,
and the number the core will give its *next* complete puncture (a cut
puncture is not counted by the core): gaps are looked for among complete
punctures only.

The ring
--------
The log is NFILES = 32 files of FILE_RECS = 682 records (16,368 bytes) in
`dir`, named "%08d.tlg" by sequence number; 523,776 bytes of records in all
(512 KB less 16 bytes a file). When the newest is full the next one is
created and, with NFILES already there, the oldest is removed first. So the
log always holds the latest 31 full files plus the one being filled:
at least 31 x 682 = 21,142 records and at most 32 x 682 = 21,824. With four
records a session (start, device, calibration, end), >= 20,000 punctures stay
in the log as long as those 20,000 punctures span no more than 285 sessions
(71 punctures a session on average). littlefs stores each file in whole 4 KB blocks, so on
the flash the ring takes up to 32 x 20 KB = 640 KB.

Writing and power cuts
----------------------
`Log.add(rec)` copies a record into a RAM buffer preallocated at start-up
(BUF_RECS records; no allocation). `Log.flush()` appends the buffered records
to the newest file: call it only with both axes idle (a flash write stops
the CPU). A cut while flushing leaves any prefix of the bytes written: the
decoder keeps the whole records and reports the torn one (bad CRC or
truncated) and skips it; at the next start the Log sees the torn tail and
starts a new file rather than append out of step. So a cut loses the records
still in RAM plus the one being written, nothing already on flash.

Lost punctures
--------------
What was in RAM at a power cut is gone, and nothing that could count it can
be written during motion. `Recorder.service()` flushes whenever the core is
idle (ready, unhomed, fault) and, in continuous mode (nappage), between
punctures once FLUSH_AT records are waiting. So what a cut can lose is
  single mode:      the puncture in flight (no record: it never ended) and
                    at most 1 finished puncture (trigger pressed again
                    before the main loop saw the ready state);
  continuous mode:  the burst since the last flush, at most FLUSH_AT.
A session whose last record is not its SESSION_END was interrupted.
`Recorder.boot()` finds it, writes its SESSION_END with interrupted=1, the
totals of what was logged, and lost_max = that bound (1 or FLUSH_AT, from
the mode of its last puncture), and returns the notice the device shows.
An exact figure needs a count that survives the reset: pass `survivor` =
(session, core punctures) kept in the watchdog scratch registers (they
survive a watchdog or soft reset, not a power cut); then lost is exact and
lost_max 0. Records dropped because the RAM buffer was full (only if the
main loop never saw an idle moment for BUF_RECS punctures) are counted
exactly into the session's `lost`; gaps in the numbering (corrupt records)
are found by the decoder.

Everything here is integer code that runs unchanged on MicroPython.
"""

import struct

from . import codes as C
from . import machine as M
from .compat import const
from .settings import MODE_CONTINUOUS
from .store import crc32  # the one CRC-32 of the firmware (binascii's, or a pure-Python one)

REC_BYTES = const(24)
PAYLOAD_BYTES = const(20)
CRC_SEED = const(0x7106)  # "tlog": a CRC of the same bytes in another file type differs

K_PUNCTURE = const(1)
K_SESSION_START = const(2)
K_SESSION_END = const(3)
K_PROTOCOL = const(4)
K_ZONE = const(5)
K_SYRINGE = const(6)
K_CALIBRATION = const(7)
K_DEVICE = const(8)  # kind 0, ext 0
K_PROTOCOL_NAME = const(9)  # kind 0, ext 1
KIND_NAMES = (
    "",
    "puncture",
    "session_start",
    "session_end",
    "protocol",
    "zone",
    "syringe",
    "calibration",
    "device",
    "protocol_name",
)

Z_ENTER = const(0)  # ZONE events
Z_SKIP = const(1)
Z_DONE = const(2)
ZONE_EVENT_NAMES = ("enter", "skip", "done", "")
PROTOCOL_NAME_CHARS = const(17)  # in the PROTOCOL record
PROTOCOL_TAIL_CHARS = const(7)  # the rest, in the PROTOCOL_NAME record: 24 in all
DEVICE_ID_BYTES = const(8)
FIRMWARE_CHARS = const(10)
ZONE_NAME_CHARS = const(12)
DOSE_UNIT_NL = const(500)

NFILES = const(32)
FILE_RECS = const(682)
BUF_RECS = const(256)
FLUSH_AT = const(32)
ZONE_NONE = const(0xFF)
FORCE_BAD = const(0xFFFF)
LOT_CHARS = const(12)
T_BITS = const(24)
NAME_SUFFIX = ".tlg"

# A field is (name, bits, how): how 0 unsigned, 1 two's complement, _TEXT one
# character of the text values[name] (7-bit ASCII, NUL-padded), _BYTE one byte of
# the hex string values[name]. A text's fields follow each other, in order: one
# tuple, repeated (no heap per character).
_TEXT = const(2)
_BYTE = const(3)


def _many(group, n, bits, how):
    return ((group, bits, how),) * n


_FIELDS = {
    K_PUNCTURE: (
        ("mode", 2, 0),
        ("alarm", 1, 0),
        ("warning", 1, 0),
        ("partial", 1, 0),
        ("zone", 8, 0),
        ("session", 16, 0),
        ("number", 16, 0),
        ("t_ms", 24, 0),
        ("fault", 5, 0),
        ("depth_set_um", 13, 0),
        ("depth_um", 14, 1),
        ("dose_set_nl", 18, 0),
        ("dose_nl", 19, 1),
        ("force_mn", 16, 0),
    ),
    K_SESSION_START: (
        ("syringe_model", 5, 0),
        ("session", 16, 0),
        ("time_s", 32, 0),
        ("syringe_id_um", 15, 0),
    )
    + _many("lot", LOT_CHARS, 7, _TEXT),
    K_SESSION_END: (
        ("interrupted", 1, 0),
        ("session", 16, 0),
        ("time_s", 32, 0),
        ("punctures", 16, 0),
        ("delivered_nl", 25, 0),
        ("primed_nl", 25, 0),
        ("alarms", 8, 0),
        ("partials", 8, 0),
        ("lost", 12, 0),
        ("lost_max", 12, 0),
    ),
    K_PROTOCOL: (("example", 1, 0), ("session", 16, 0), ("version", 16, 0), ("zones", 4, 0))
    + _many("name", PROTOCOL_NAME_CHARS, 7, _TEXT),
    K_ZONE: (
        ("event", 2, 0),
        ("skipped", 1, 0),
        ("mode", 2, 0),
        ("session", 16, 0),
        ("index", 4, 0),
        ("planned", 14, 0),
        ("cap_nl", 25, 0),
        ("dose_set_nl", 9, 0),
    )
    + _many("name", ZONE_NAME_CHARS, 7, _TEXT),
    K_SYRINGE: (
        ("syringe_model", 5, 0),
        ("session", 16, 0),
        ("time_s", 32, 0),
        ("syringe_id_um", 15, 0),
        ("punctures", 16, 0),
    ),
    K_CALIBRATION: (
        ("session", 16, 0),
        ("time_s", 32, 0),
        ("punctures", 16, 0),
        ("line_tau_us", 26, 0),  # up to 67 s
        ("backlash_steps", 12, 0),
        ("dose_factor_ppm", 21, 0),
    ),
    K_DEVICE: (("ext", 5, 0), ("session", 16, 0))
    + _many("device_id", DEVICE_ID_BYTES, 8, _BYTE)
    + _many("firmware", FIRMWARE_CHARS, 7, _TEXT),
    K_PROTOCOL_NAME: (("ext", 5, 0), ("session", 16, 0))
    + _many("name", PROTOCOL_TAIL_CHARS, 7, _TEXT),
}


def _hex_byte(t, i):
    """Byte i of the hex string t (0 where it is short or not hex)."""
    if t is None or 2 * i + 2 > len(t):
        return 0
    try:
        return int(t[2 * i : 2 * i + 2], 16)
    except ValueError:
        return 0


# ---- bit packing -----------------------------------------------------------


def _put(buf, pos, bits, v):
    while bits > 0:
        i = pos >> 3
        o = pos & 7
        n = 8 - o
        if n > bits:
            n = bits
        buf[i] |= (v & ((1 << n) - 1)) << o
        v >>= n
        pos += n
        bits -= n


def _get(buf, pos, bits):
    v = 0
    shift = 0
    while bits > 0:
        i = pos >> 3
        o = pos & 7
        n = 8 - o
        if n > bits:
            n = bits
        v |= ((buf[i] >> o) & ((1 << n) - 1)) << shift
        shift += n
        pos += n
        bits -= n
    return v


def encode(kind, values, buf=None):
    """The 24-byte record of `kind` from a dict of field values (missing ones are 0).

    Out-of-range values saturate. `lot` (a str) fills the lot characters of
    a SESSION_START, `name` the name characters of a PROTOCOL, PROTOCOL_NAME
    or ZONE, `firmware` those of a DEVICE (cut to fit); `device_id` (hex) the
    id bytes of a DEVICE. A ZONE's dose_set_nl is given and returned in nL
    (stored in DOSE_UNIT_NL units). Writes into `buf` (bytearray(24)) if given.
    """
    fields = _FIELDS[kind]
    if buf is None:
        buf = bytearray(REC_BYTES)
    else:
        for i in range(REC_BYTES):
            buf[i] = 0
    _put(buf, 0, 3, kind if kind < 8 else 0)  # kind 8 and up: 0, then its ext field
    pos = 3
    text = None  # the text whose characters come now, t its value, i the character
    t = None
    i = 0
    for name, bits, how in fields:
        if how >= _TEXT:
            if name != text:
                text = name
                t = values.get(name)
                i = 0
            if how == _TEXT:
                v = ord(t[i]) if t is not None and i < len(t) else 0
                if v and (v < 32 or v > 126):
                    v = 63  # '?': the text is printable ASCII
            else:
                v = _hex_byte(t, i)
            i += 1
        elif name == "ext":
            v = kind - 8
        else:
            v = values.get(name, 0)
            if v is True:
                v = 1
            elif v is False or v is None:
                v = 0
            elif kind == K_ZONE and name == "dose_set_nl":
                v = (v + DOSE_UNIT_NL // 2) // DOSE_UNIT_NL
        if how == 1:
            hi = (1 << (bits - 1)) - 1
            lo = -hi - 1
        else:
            hi = (1 << bits) - 1
            lo = 0
        if v > hi:
            v = hi
        elif v < lo:
            v = lo
        _put(buf, pos, bits, v)
        pos += bits
    struct.pack_into("<I", buf, PAYLOAD_BYTES, crc32(memoryview(buf)[:PAYLOAD_BYTES], CRC_SEED))
    return buf


def check(data, off=0):
    """The kind of the record at data[off:off+24] if its CRC and kind are good, else 0."""
    if off + REC_BYTES > len(data):
        return 0
    kind = data[off] & 7
    if kind == 0:
        kind = 8 + (data[off] >> 3)  # the ext field
    if kind not in _FIELDS:
        return 0
    mv = memoryview(data)
    if (
        crc32(mv[off : off + PAYLOAD_BYTES], CRC_SEED)
        != struct.unpack_from("<I", data, off + PAYLOAD_BYTES)[0]
    ):
        return 0
    return kind


def decode(data, off=0):
    """The record at data[off:] as a dict (with "kind"), or None if it is not a good record.

    Its texts come whole (lot, name, firmware: NULs left out), a DEVICE's
    device_id as 16 hex digits ("" when all 0: no id)."""
    kind = check(data, off)
    if not kind:
        return None
    mv = memoryview(data)[off : off + PAYLOAD_BYTES]
    rec = {"kind": kind}
    pos = 3
    for name, bits, how in _FIELDS[kind]:
        v = _get(mv, pos, bits)
        pos += bits
        if how == 1 and v >> (bits - 1):
            v -= 1 << bits
        if how == _TEXT:
            rec[name] = rec.get(name, "") + (chr(v) if v else "")
        elif how == _BYTE:
            rec[name] = rec.get(name, "") + "%02x" % v
        elif name != "ext":
            rec[name] = v
    if kind == K_ZONE:
        rec["dose_set_nl"] *= DOSE_UNIT_NL
    elif kind == K_DEVICE and not rec["device_id"].strip("0"):
        rec["device_id"] = ""
    return rec


def scan(data):
    """Walk a file's bytes: yields ("rec", offset, record) and ("bad", offset, length, reason).

    Good records are found wherever they start (a bad stretch does not
    shift the ones after it); reason is "crc" or "truncated" (a torn tail).
    """
    n = len(data)
    p = 0
    while p < n:
        if check(data, p):
            yield ("rec", p, decode(data, p))
            p += REC_BYTES
            continue
        q = p + 1
        while q + REC_BYTES <= n and not check(data, q):
            q += 1
        if q + REC_BYTES > n:
            q = n
        yield ("bad", p, q - p, "truncated" if q == n and q - p < REC_BYTES else "crc")
        p = q


# ---- the ring of files --------------------------------------------------------


def file_seq(name):
    """The sequence number of a ring file's name, or -1 if it is not one."""
    if not name.endswith(NAME_SUFFIX):
        return -1
    stem = name[: -len(NAME_SUFFIX)]
    if len(stem) != 8 or not stem.isdigit():
        return -1
    return int(stem)


class Log:
    """The ring of log files in `dir` of `fs` (injcore.fsio.DirFS or host_tools.simfs.SimFS)."""

    def __init__(self, fs, dir="log", nfiles=NFILES, file_recs=FILE_RECS, buf_recs=BUF_RECS):
        self.fs = fs
        self.dir = dir
        self.nfiles = nfiles
        self.file_recs = file_recs
        self._buf = bytearray(buf_recs * REC_BYTES)
        self._cap = buf_recs
        self._n = 0
        self.dropped = 0  # records refused because the buffer was full (since boot)
        self.error = None  # the last OSError of a flush (records kept pending)
        try:
            fs.mkdir(dir)
        except OSError:
            pass
        self.seqs = self._scan_names()
        self._cur_n = file_recs  # no file open yet: the first flush starts one
        if self.seqs:
            size = fs.size(self._path(self.seqs[-1]))
            if size % REC_BYTES == 0:
                self._cur_n = size // REC_BYTES  # append to the newest
            # else a torn tail: the next flush starts a new file

    def _scan_names(self):
        try:
            names = self.fs.listdir(self.dir)
        except OSError:
            return []
        seqs = []
        for name in names:
            s = file_seq(name)
            if s >= 0:
                seqs.append(s)
        seqs.sort()
        return seqs

    def _path(self, seq):
        return "%s/%08d%s" % (self.dir, seq, NAME_SUFFIX)

    def pending(self):
        return self._n

    def add(self, rec):
        """Buffer one 24-byte record for the next flush; False (counted) if the buffer is full."""
        n = self._n
        if n >= self._cap:
            self.dropped += 1
            return False
        o = n * REC_BYTES
        buf = self._buf
        for i in range(REC_BYTES):
            buf[o + i] = rec[i]
        self._n = n + 1
        return True

    def flush(self):
        """Write the buffered records (both axes idle only). True when the buffer is empty."""
        done = 0
        mv = memoryview(self._buf)
        try:
            while done < self._n:
                if self._cur_n >= self.file_recs:
                    self._rotate()
                k = self._n - done
                room = self.file_recs - self._cur_n
                if k > room:
                    k = room
                f = self.fs.open(self._path(self.seqs[-1]), "ab")
                try:
                    f.write(mv[done * REC_BYTES : (done + k) * REC_BYTES])
                finally:
                    f.close()
                self._cur_n += k
                done += k
        except OSError as e:
            self.error = e
            self._keep_from(done)
            return False
        self._n = 0
        return True

    def _keep_from(self, done):
        if done:
            buf = self._buf
            n = (self._n - done) * REC_BYTES
            s = done * REC_BYTES
            for i in range(n):
                buf[i] = buf[s + i]
            self._n -= done

    def _rotate(self):
        seq = self.seqs[-1] + 1 if self.seqs else 1
        while len(self.seqs) >= self.nfiles:
            self.fs.remove(self._path(self.seqs[0]))
            self.seqs.pop(0)
        f = self.fs.open(self._path(seq), "wb")
        f.close()
        self.seqs.append(seq)
        self._cur_n = 0

    def read_file(self, seq):
        f = self.fs.open(self._path(seq), "rb")
        try:
            return f.read()
        finally:
            f.close()

    def records(self, newest_first=False):
        """Every good record on flash, in log order (or newest first)."""
        seqs = self.seqs[::-1] if newest_first else self.seqs
        for seq in seqs:
            items = []
            for it in scan(self.read_file(seq)):
                rec = it[2]
                if it[0] == "rec" and isinstance(rec, dict):
                    items.append(rec)
            if newest_first:
                items.reverse()
            for rec in items:
                yield rec

    def last_session(self):
        """What the log says of its newest session: a dict, or None for an empty log.

        session, ended (its SESSION_END is there), started (its SESSION_START
        is still in the ring), punctures (highest complete puncture number),
        delivered_nl, alarms, partials, mode (of its last puncture, -1 none).
        """
        info = None
        for rec in self.records(newest_first=True):
            s = rec["session"]
            if info is None:
                info = {
                    "session": s,
                    "ended": rec["kind"] == K_SESSION_END,
                    "started": False,
                    "punctures": 0,
                    "delivered_nl": 0,
                    "alarms": 0,
                    "partials": 0,
                    "mode": -1,
                }
            elif s != info["session"]:
                break
            k = rec["kind"]
            if k == K_SESSION_START:
                info["started"] = True
                break
            if k == K_PUNCTURE:
                if info["mode"] < 0:
                    info["mode"] = rec["mode"]
                info["delivered_nl"] += rec["dose_nl"]
                if rec["alarm"]:
                    info["alarms"] += 1
                if rec["partial"]:
                    info["partials"] += 1
                if not rec["alarm"] and rec["number"] > info["punctures"]:
                    info["punctures"] = rec["number"]
        return info


# ---- building records from the core -------------------------------------------

_T_MASK = const(0x3FFFFFFF)  # core.ticks wraps here


def needle_steps_to_depth_um(steps):
    """Tip depth below the skin surface of a needle position (microsteps from home)."""
    return (
        steps * 1000 + M.NEEDLE_STEPS_PER_MM // 2
    ) // M.NEEDLE_STEPS_PER_MM - M.NEEDLE_HOME_OFFSET_UM


class Recorder:
    """Turns what the core does into log records; called from the main loop, never the tick.

    Each main-loop pass: `poll()` then `service()`. poll samples the core:
    a changed `core.punctures` means a finished puncture (core.last_puncture),
    a fault while a puncture was under way a cut one. Peak force and the
    deepest needle position of a cut puncture are sampled at main-loop rate
    (a peak between two passes is missed; depth of a finished puncture is
    the core's own). A changed `core.syringe_confirms` means a syringe
    confirmed: a SYRINGE record in an open session (a session opened later
    names it in its start). A session opens with a CALIBRATION record, and a
    changed calibration (line_tau_us, backlash_steps, dose_factor_ppm) in an
    open session writes another. `zone` is the zone / protocol step of the next
    punctures (ZONE_NONE: none). `clock()` gives the device time in seconds
    since 1970 UTC (0 without a clock: the board's clock.time_s). Each session
    opens with SESSION_START, DEVICE (`device_id`, hex, and `firmware`, the
    version: the board's) and CALIBRATION. Punctures outside a session open
    one (lot "").
    """

    def __init__(self, core, log, clock=None, device_id="", firmware=""):
        self.core = core
        self.log = log
        self.clock = clock or (lambda: 0)
        self.device_id = device_id
        self.firmware = firmware
        self.zone = ZONE_NONE
        self.session = 0  # the open session, 0 none
        self._buf = bytearray(REC_BYTES)
        self._t0 = 0
        self._seen = core.punctures
        self._in = False
        self._peak = 0
        self._bad_force = False
        self._d0 = 0
        self._depth_max = 0
        self._start_tick = 0
        self._alarms = 0
        self._partials = 0
        self._dropped0 = log.dropped
        self._confirms = core.syringe_confirms
        # The calibration the open session's last CALIBRATION record names.
        self._tau_us = self._backlash = self._factor = -1
        self.missed = 0  # finished punctures the main loop was too slow to see
        last = log.last_session()
        self._last_session = last["session"] if last else 0

    # ---- sessions --------------------------------------------------------

    def boot(self, survivor=None):
        """At start-up: close a session a reset interrupted. Returns a notice, or None.

        survivor: (session, punctures) that survived the reset (watchdog
        scratch registers), for an exact lost count.
        """
        info = self.log.last_session()
        if info is None or info["ended"]:
            return None
        lost = 0
        lost_max = FLUSH_AT if info["mode"] == MODE_CONTINUOUS else 1
        if survivor is not None and survivor[0] == info["session"]:
            lost = max(0, survivor[1] - info["punctures"])
            lost_max = 0
        self._add(
            K_SESSION_END,
            {
                "interrupted": 1,
                "session": info["session"],
                "time_s": self.clock(),
                "punctures": info["punctures"],
                "delivered_nl": info["delivered_nl"],
                "alarms": info["alarms"],
                "partials": info["partials"],
                "lost": lost,
                "lost_max": lost_max,
            },
        )
        self.log.flush()
        info["lost"] = lost
        info["lost_max"] = lost_max
        if lost_max:
            info["text"] = (
                "session %d was interrupted after puncture %d; up to %d more not logged"
                % (info["session"], info["punctures"], lost_max)
            )
        else:
            info["text"] = "session %d was interrupted after puncture %d; %d not logged" % (
                info["session"],
                info["punctures"] + lost,
                lost,
            )
        return info

    def start_session(self, lot="", reset_core=True):
        """A new session (patient): ends the open one, zeroes the core's counters."""
        if self.session:
            self.end_session()
        if reset_core:
            self.core.new_session()
            self._seen = self.core.punctures
        self._open(lot)
        return self.session

    def _open(self, lot):
        core = self.core
        s = core.settings
        self.session = self._last_session = (self._last_session + 1) & 0xFFFF or 1
        self._t0 = core.ticks
        self._alarms = self._partials = 0
        self._dropped0 = self.log.dropped
        self._confirms = core.syringe_confirms  # the start names the syringe confirmed so far
        self.missed = 0
        self._add(
            K_SESSION_START,
            {
                "session": self.session,
                "time_s": self.clock(),
                "syringe_model": s.syringe_model,
                "syringe_id_um": s.syringe_id_um,
                "lot": lot[:LOT_CHARS],
            },
        )
        self._add(
            K_DEVICE,
            {"session": self.session, "device_id": self.device_id, "firmware": self.firmware},
        )
        self._calibration()

    def end_session(self):
        """Write the open session's totals (call while idle: it flushes)."""
        if not self.session:
            return
        core = self.core
        self._add(
            K_SESSION_END,
            {
                "session": self.session,
                "time_s": self.clock(),
                "punctures": core.punctures,
                "delivered_nl": core.delivered_nl(),
                "primed_nl": core.primed_nl(),
                "alarms": self._alarms,
                "partials": self._partials,
                "lost": self.log.dropped - self._dropped0 + self.missed,
            },
        )
        self.session = 0
        self.log.flush()

    def _add(self, kind, values):
        return self.log.add(encode(kind, values, self._buf))

    # ---- protocols (written through ProtocolLog) ------------------------------

    def protocol(self, name, version, zones, example=False):
        """A PROTOCOL record and its PROTOCOL_NAME (the name's rest) in the open session
        (one is opened, lot "", if none is)."""
        if not self.session:
            self._open("")
        self._add(
            K_PROTOCOL,
            {
                "session": self.session,
                "name": name[:PROTOCOL_NAME_CHARS],
                "version": version,
                "zones": zones,
                "example": example,
            },
        )
        return self._add(
            K_PROTOCOL_NAME, {"session": self.session, "name": name[PROTOCOL_NAME_CHARS:]}
        )

    def zone_event(self, index, event, zone, skipped=None):
        """A ZONE record: `event` Z_ENTER / Z_SKIP / Z_DONE of zone number `index`.

        zone: an injcore.protocol.Zone (name, mode, settings["dose_nl"],
        planned, cap_nl). skipped: the run's flag for the zone (default:
        event == Z_SKIP).
        """
        if not self.session:
            self._open("")
        if skipped is None:
            skipped = event == Z_SKIP
        return self._add(
            K_ZONE,
            {
                "event": event,
                "skipped": skipped,
                "mode": zone.mode,
                "session": self.session,
                "index": index,
                "planned": zone.planned,
                "cap_nl": zone.cap_nl,
                "dose_set_nl": zone.settings.get("dose_nl", 0),
                "name": zone.name[:ZONE_NAME_CHARS],
            },
        )

    # ---- each main-loop pass ------------------------------------------------

    def poll(self):
        core = self.core
        if core.syringe_confirms != self._confirms:
            self._confirms = core.syringe_confirms
            if self.session:
                self._syringe()
        if self.session and (
            core.line_tau_us != self._tau_us
            or core.backlash_steps != self._backlash
            or core.dose_factor_ppm != self._factor
        ):
            self._calibration()
        st = core.state
        n = core.punctures
        if n != self._seen:
            if n > self._seen:
                self.missed += n - self._seen - 1
                self._finished()
            self._seen = n
            self._in = False
        if st in C.PUNCTURING:
            if not self._in:
                self._in = True
                self._peak = 0
                self._bad_force = False
                self._d0 = core.delivered_steps
                self._depth_max = 0
                self._start_tick = core.ticks
                if not self.session:
                    self._open("")
            f = core.force_mn
            if f == C.FORCE_INVALID:
                self._bad_force = True
            elif f > self._peak:
                self._peak = f
            if core.needle_emitted > self._depth_max:
                self._depth_max = core.needle_emitted
        elif self._in:
            if st == C.ST_FAULT or st == C.ST_RELIEF:
                self._cut()
            self._in = False

    def _syringe(self):
        """A syringe confirmed mid-session: the punctures after this record are from it."""
        core = self.core
        s = core.settings
        self._add(
            K_SYRINGE,
            {
                "syringe_model": s.syringe_model,
                "session": self.session,
                "time_s": self.clock(),
                "syringe_id_um": s.syringe_id_um,
                "punctures": core.punctures,
            },
        )

    def _calibration(self):
        """The calibration in use from now on in the open session (and the figures logged)."""
        core = self.core
        self._tau_us = core.line_tau_us
        self._backlash = core.backlash_steps
        self._factor = core.dose_factor_ppm
        self._add(
            K_CALIBRATION,
            {
                "session": self.session,
                "time_s": self.clock(),
                "punctures": core.punctures,
                "line_tau_us": self._tau_us,
                "backlash_steps": self._backlash,
                "dose_factor_ppm": self._factor,
            },
        )

    def _t_ms(self, tick):
        return ((tick - self._t0) & _T_MASK) & ((1 << T_BITS) - 1)

    def _force(self):
        if self._bad_force:
            return FORCE_BAD
        return self._peak if self._peak < FORCE_BAD else FORCE_BAD - 1

    def _finished(self):
        core = self.core
        rec = core.last_puncture
        s = core.settings
        if not self.session:
            self._open("")
        self._add(
            K_PUNCTURE,
            {
                "mode": rec[4],
                "warning": core.warning != 0,
                "zone": self.zone,
                "session": self.session,
                "number": rec[0],
                "t_ms": self._t_ms(core.ticks - rec[3]),
                "depth_set_um": s.depth_um,
                "depth_um": needle_steps_to_depth_um(rec[1]),
                "dose_set_nl": s.dose_nl,
                "dose_nl": core.steps_to_nl(rec[2]),
                "force_mn": self._force(),
            },
        )

    def _cut(self):
        core = self.core
        s = core.settings
        steps = core.delivered_steps - self._d0
        depth = core.depth_reached_steps
        if self._depth_max > depth:
            depth = self._depth_max
        self._alarms += 1
        partial = steps < core.plans().dose_steps
        if partial:
            self._partials += 1
        self._add(
            K_PUNCTURE,
            {
                "mode": s.mode,
                "alarm": 1,
                "partial": partial,
                "warning": core.warning != 0,
                "zone": self.zone,
                "session": self.session,
                "number": core.punctures + 1,
                "t_ms": self._t_ms(self._start_tick),
                "fault": core.fault,
                "depth_set_um": s.depth_um,
                "depth_um": needle_steps_to_depth_um(depth),
                "dose_set_nl": s.dose_nl,
                "dose_nl": core.steps_to_nl(steps),
                "force_mn": self._force(),
            },
        )

    def service(self):
        """Flush when it is safe: both axes idle, and the core idle (or, in a burst, between
        punctures once FLUSH_AT records wait). True if it flushed."""
        log = self.log
        n = log.pending()
        if not n:
            return False
        core = self.core
        if core.at_rest() or (core.state == C.ST_WAIT and n >= FLUSH_AT and core.axes_idle()):
            log.flush()
            return True
        return False


class ProtocolLog:
    """Writes a protocol run's records by watching it; main loop only, never the tick.

    ProtocolLog(recorder, run): `run` is an injcore.protocol.Run (its
    .protocol, .index, .skipped[i], .finished are read, nothing else; the
    Run need not know the log). Call `poll()` on every main-loop pass,
    before `recorder.poll()`, once the recorder's session is open and
    run.start() was called:

      first pass, or the recorder's session changed:  PROTOCOL (and the
                      current zone is entered again in that session)
      run.skipped[i] became true:                     ZONE Z_SKIP of zone i
      run.index changed:                              ZONE Z_ENTER of the new zone
      run.finished became true:                       ZONE Z_DONE of every zone
                      (each with its final skipped flag); then nothing more

    It also keeps recorder.zone = run.index (ZONE_NONE once finished), so the
    punctures carry their zone whether or not the Run sets it. A change is
    seen at the next pass: moving away from a zone and back to it between
    two passes writes no records for it (the operator's button presses are
    always separate passes on the device). The records go to the RAM buffer
    like the punctures; recorder.service() flushes them when idle.
    """

    def __init__(self, recorder, run):
        self.recorder = recorder
        self.run = run
        self._session = 0
        self._index = -1
        self._skipped = [False] * len(run.protocol.zones)
        self.ended = False  # Z_DONE written

    def poll(self):
        if self.ended:
            return
        run = self.run
        rec = self.recorder
        p = run.protocol
        zones = p.zones
        if not self._session or rec.session != self._session:
            rec.protocol(p.name, p.version, len(zones), getattr(p, "example", False))
            self._session = rec.session
            self._index = -1
            for i in range(len(zones)):
                self._skipped[i] = False
        skipped = run.skipped
        for i in range(len(zones)):
            now = bool(skipped[i])
            if now and not self._skipped[i]:
                rec.zone_event(i, Z_SKIP, zones[i], True)
            self._skipped[i] = now
        if run.finished:
            for i in range(len(zones)):
                rec.zone_event(i, Z_DONE, zones[i], self._skipped[i])
            rec.zone = ZONE_NONE
            self.ended = True
            return
        i = run.index
        if i != self._index:
            rec.zone_event(i, Z_ENTER, zones[i], self._skipped[i])
            self._index = i
        rec.zone = i
