"""The device's stored protocols as the interface uses them (main loop only).

    protocols = Protocols(core, fs, recorder)          # or Protocols(core, store=...)
    ui = Ui(core, ..., protocols=protocols)

names() lists what is stored; start(name, lot) loads one (checked against
the engineer's limits as they are now), opens a new session in the treatment
log with the product lot, and starts an injcore.protocol.Run on its first
zone; poll() runs every main-loop pass: the Run counts the zone's punctures,
the ProtocolLog writes its protocol and zone records.

injcore.protocol keeps about 20 KB of heap once imported: it is imported the
first time the operator opens the protocol list, not at boot.
"""

from injcore.tlog import ProtocolLog


class Protocols:
    def __init__(self, core, fs=None, recorder=None, store=None):
        self.core = core
        self.fs = fs
        self._store = store
        self.recorder = recorder
        self._log = None

    @property
    def store(self):
        if self._store is None:
            from injcore.protocol import ProtocolStore

            self._store = ProtocolStore(self.fs, self.core.limits)
        return self._store

    def names(self):
        return self.store.names()

    def start(self, name, lot=""):
        """A running Run of the protocol `name`; ValueError (with the reasons) if refused."""
        from injcore.protocol import Run

        store = self.store
        store.limits = self.core.limits  # the limits in force now, not at boot
        protocol = store.load(name)
        if self.recorder is not None:
            self.recorder.start_session(lot)
        else:
            self.core.new_session()
        run = Run(self.core, protocol, self.recorder)
        if not run.start():
            raise ValueError(run.message or "the first zone was refused")
        self._log = ProtocolLog(self.recorder, run) if self.recorder is not None else None
        return run

    def poll(self, run):
        run.poll()
        if self._log is not None:
            self._log.poll()
