"""The device's stored protocols as the interface uses them (main loop only).

    protocols = Protocols(core, fs, recorder)          # or Protocols(core, store=...)
    ui = Ui(core, ..., protocols=protocols)

names() lists what is stored; remove(name) deletes one (the service menu);
check(name) loads one (checked against the engineer's limits as they are now)
and has the core judge every zone with the syringe in use (injcore.feasible):
ZoneRefused names the first zone it would refuse. start(name, lot) checks the
same, and only then opens a new session in the treatment log with the product
lot and starts an injcore.protocol.Run on its first zone; hold(refused)
instead gives the refused protocol's Run stopped at that zone, no session
opened: the trigger fires nothing until it ends. poll() runs every main-loop
pass: the Run counts the zone's punctures, the ProtocolLog writes its
protocol and zone records.

injcore.protocol keeps about 20 KB of heap once imported: it is imported the
first time the operator opens the protocol list, not at boot.
"""

from injcore.codes import IDLE
from injcore.settings import SettingsError
from injcore.tlog import ProtocolLog


class ZoneRefused(ValueError):
    """A protocol the core cannot run: its zone `index` and the core's `refusal` of it."""

    def __init__(self, protocol, index, refusal):
        super().__init__("%s: %s" % (protocol.zones[index].name, SettingsError([refusal])))
        self.protocol = protocol
        self.index = index
        self.refusal = refusal


class Protocols:
    def __init__(self, core, fs=None, recorder=None, store=None, flash=None):
        self.core = core
        self.fs = fs
        self._store = store
        self.recorder = recorder
        self._log = None
        # flash(fn, *args): the board runs a flash write with its timer paused
        # (board/app.py App._flash_write); None: call it directly.
        self.flash = flash

    @property
    def store(self):
        if self._store is None:
            from injcore.protocol import ProtocolStore

            self._store = ProtocolStore(self.fs, self.core.limits)
        return self._store

    def names(self):
        return self.store.names()

    def check(self, name):
        """The protocol `name` if the core would run every zone of it now; ZoneRefused
        for the first zone it refuses, ValueError if the store refuses the protocol."""
        from injcore.feasible import zone_refusals

        store = self.store
        store.limits = self.core.limits  # the limits in force now, not at boot
        protocol = store.load(name)
        zones = protocol.zones
        verdicts = zone_refusals(self.core, [z.settings for z in zones])
        for i in range(len(zones)):
            if verdicts[i]:
                raise ZoneRefused(protocol, i, verdicts[i][0])
        return protocol

    def hold(self, refused):
        """The Run of a ZoneRefused's protocol, stopped at the zone refused before any
        session: counters and log as they were, the trigger firing nothing until it ends."""
        from injcore.protocol import Run

        run = Run(self.core, refused.protocol)
        run.stop(refused.index, refused.refusal)
        self._log = None  # no session, nothing to log
        return run

    def start(self, name, lot=""):
        """A Run of the protocol `name`; ValueError (with the reasons) if refused.

        Refused before anything changes: the counters, the log's session and the
        settings stay as they were. A Run whose first zone the core refuses after
        all (busy in between) is stopped (Run.refused): the trigger fires nothing.
        """
        from injcore.protocol import Run

        protocol = self.check(name)
        core = self.core
        if core.state not in IDLE:
            raise ZoneRefused(
                protocol, 0, SettingsError.refusal("settings", SettingsError.NOT_IDLE)
            )
        if self.recorder is not None:
            self.recorder.start_session(lot)
        else:
            core.new_session()
        run = Run(core, protocol, self.recorder)
        run.start()
        self._log = ProtocolLog(self.recorder, run) if self.recorder is not None else None
        return run

    def remove(self, name):
        """Delete the stored protocol `name` (the service menu); ValueError why not:
        the machine not at rest (a flash write stops the CPU), no such protocol."""
        if not self.core.at_rest():
            raise ValueError("busy: wait until ready")
        if self.flash is not None:
            self.flash(self.store.remove, name)
        else:
            self.store.remove(name)

    def poll(self, run):
        run.poll()
        if self._log is not None:
            self._log.poll()
