"""Virtual board: the real MicroPython (WebAssembly build) behind a pseudo-terminal.

`mpremote connect PORT ...` works against it like against a Pico on USB:
exec/run/eval, fs cp/ls/mkdir/rm/cat, soft-reset and reset.  The flash is a
host directory (default build/vboard/flash), so files copied to the board are
still there after a soft reset and after a restart of the virtual board.

    python -m host_tools.vboard [--flash DIR] [--link PATH]

prints the pty path and runs until SIGTERM/SIGINT.  From Python::

    with VirtualBoard(flash_dir) as port:
        subprocess.run(["mpremote", "connect", port, "exec", "print(1)"], timeout=30)

The board's `machine` and `rp2` are the project's recording fakes
(host_tools/fakes/machine.py and rp2.py, read when the board starts), so a
deployed main.py can import them; machine.reset() restarts the board.

The bridge reports what boot.py and main.py did ("main.py: running",
"main.py: ended", "main.py: interrupted (KeyboardInterrupt)", or
"main.py raised ValueError: ..." followed by the traceback as "  | ..."
lines), and each write-back of the flash to the host folder ("flash saved:
NAME ..."), as status lines; they go to `log` and are kept in
`VirtualBoard.messages` (see wait_for_message).

The byte-level bridge is vboard.mjs (Node); this module only owns the pty
and copies bytes between it and the Node process.
"""

import errno
import os
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("vboard.mjs")
DEFAULT_FLASH = REPO_ROOT / "build" / "vboard" / "flash"
DEFAULT_FAKES = REPO_ROOT / "host_tools" / "fakes"
NODE_PACKAGE = REPO_ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"

READY_LINE = b"vboard: ready"
_CONNECT_POLL = 0.02  # s between checks for a client while none has the pty open
_MAX_BACKLOG = 16 * 1024 * 1024  # bytes of board output kept for a slow client
_MAX_MESSAGES = 2000  # status lines kept in VirtualBoard.messages


class VirtualBoardError(RuntimeError):
    pass


def available():
    """True if Node and the MicroPython npm package are installed."""
    return shutil.which("node") is not None and NODE_PACKAGE.is_dir()


class VirtualBoard:
    """A virtual MicroPython board on a pty; use as a context manager (gives the pty path).

    flash_dir: host directory used as the board's flash (created if missing).
    link: optional path of a symlink to the pty, e.g. build/vboard/tty.
    run_main: run main.py at power-on / hard reset (like a real board).
    ctrl_c_timeout: seconds a running program may ignore Ctrl-C before the
        interpreter is restarted (see vboard.mjs).
    log: file for the bridge's status lines (default: sys.stderr).
    fakes: directory holding the machine.py / rp2.py fakes (default host_tools/fakes).
    """

    def __init__(
        self,
        flash_dir=DEFAULT_FLASH,
        link=None,
        *,
        heap=None,
        run_main=True,
        ctrl_c_timeout=None,
        node=None,
        log=None,
        fakes=None,
    ):
        self.flash_dir = Path(flash_dir).resolve()
        self.link = Path(link).absolute() if link else None
        self.heap = heap
        self.run_main = run_main
        self.ctrl_c_timeout = ctrl_c_timeout
        self.node = node or shutil.which("node")
        self.log = log
        self.fakes = Path(fakes).resolve() if fakes else None
        self.messages = []  # the bridge's status lines, without the "vboard: " prefix
        self._messages_changed = threading.Condition()
        self.port = None
        self._proc = None
        self._master = None
        self._thread = None
        self._wake_r = self._wake_w = None
        self._stopping = False
        self._ready = threading.Event()
        self._stderr_tail = []

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout=30.0):
        """Start the board, wait until it answers, and return the pty path."""
        if self._proc is not None:
            raise VirtualBoardError("already started")
        if not self.node:
            raise VirtualBoardError("node not found on PATH")
        self.flash_dir.mkdir(parents=True, exist_ok=True)

        master, slave = os.openpty()
        tty.setraw(slave)  # no echo/line editing until a client sets its own mode
        self.port = os.ttyname(slave)
        os.close(slave)  # with no client holding the slave, reads on the master fail (EIO)
        os.set_blocking(master, False)
        self._master = master

        cmd = [self.node, str(SCRIPT), "--flash", str(self.flash_dir)]
        if self.heap:
            cmd += ["--heap", str(int(self.heap))]
        if not self.run_main:
            cmd.append("--no-main")
        if self.ctrl_c_timeout is not None:
            cmd += ["--ctrl-c-timeout", str(int(self.ctrl_c_timeout * 1000))]
        if self.fakes is not None:
            cmd += ["--fakes", str(self.fakes)]
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            cwd=str(REPO_ROOT),
            start_new_session=True,
        )
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(
            target=self._pump,
            args=(self._proc, master, self._wake_r),
            name="vboard-pump",
            daemon=True,
        )
        self._thread.start()

        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        if self.link:  # created once the board answers, so its existence means "ready"
            self.link.parent.mkdir(parents=True, exist_ok=True)
            if self.link.is_symlink() or self.link.exists():
                self.link.unlink()
            self.link.symlink_to(self.port)
        return self.port

    def wait_ready(self, timeout=30.0):
        proc = self._proc
        if proc is None:
            raise VirtualBoardError("not started")
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if proc.poll() is not None:
                raise VirtualBoardError(
                    "virtual board exited (%s): %s"
                    % (proc.returncode, b"".join(self._stderr_tail).decode(errors="replace"))
                )
            if time.monotonic() > deadline:
                raise VirtualBoardError("virtual board not ready after %.0f s" % timeout)

    def wait_for_message(self, predicate, timeout=10.0, start=0):
        """Wait until a status line (from index `start` of `messages`) satisfies
        predicate(line), or a string predicate occurs in it; returns the line,
        or None after `timeout` seconds."""
        if isinstance(predicate, str):
            needle = predicate
            predicate = lambda line: needle in line  # noqa: E731
        deadline = time.monotonic() + timeout
        with self._messages_changed:
            while True:
                for line in self.messages[start:]:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._messages_changed.wait(min(left, 0.5))

    def running(self):
        return self._proc is not None and self._proc.poll() is None

    def wait(self, timeout=None):
        """Wait for the bridge process to end; returns its exit code."""
        if self._proc is None:
            return None
        return self._proc.wait(timeout)

    def stop(self, timeout=10.0):
        """Stop the board; the flash is saved first (SIGTERM to the bridge)."""
        proc = self._proc
        if proc is None:
            return
        self._stopping = True
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._thread is not None:
            if self._wake_w is not None:
                os.write(self._wake_w, b"x")
            self._thread.join(5)
        for fd in (self._master, self._wake_r, self._wake_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        for f in (proc.stdin, proc.stdout, proc.stderr):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        if self.link and self.link.is_symlink():
            try:
                if os.readlink(self.link) == self.port:
                    self.link.unlink()
            except OSError:
                pass
        self._master = self._wake_r = self._wake_w = None
        self._thread = None
        self._proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- byte pump (thread) ------------------------------------------------

    def _emit_log(self, line):
        text = line.decode(errors="replace")
        with self._messages_changed:
            self.messages.append(text[len("vboard: ") :] if text.startswith("vboard: ") else text)
            if len(self.messages) > _MAX_MESSAGES:
                del self.messages[: len(self.messages) - _MAX_MESSAGES]
            self._messages_changed.notify_all()
        out = self.log if self.log is not None else sys.stderr
        try:
            out.write(line.decode(errors="replace") + "\n")
            out.flush()
        except (OSError, ValueError):
            pass

    def _pump(self, proc, master, wake_r):  # noqa: C901  (one select loop over the pty and node's pipes)
        node_in = proc.stdin.fileno()
        node_out = proc.stdout.fileno()
        node_err = proc.stderr.fileno()
        os.set_blocking(node_in, False)
        to_node = bytearray()  # host -> board
        to_host = bytearray()  # board -> host
        err_line = bytearray()
        connected = False  # a client has the pty open
        node_open = True

        sel = selectors.DefaultSelector()
        sel.register(wake_r, selectors.EVENT_READ, "wake")
        sel.register(node_out, selectors.EVENT_READ, "out")
        sel.register(node_err, selectors.EVENT_READ, "err")

        def read_master():
            nonlocal connected
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                connected = True
                return
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                connected = False  # nobody has the pty open
                to_host.clear()
                return
            connected = True
            to_node.extend(data)

        while not self._stopping:
            want_master = 0
            if connected:
                want_master = selectors.EVENT_READ | (selectors.EVENT_WRITE if to_host else 0)
            self._set(sel, master, want_master, "master")
            self._set(sel, node_in, selectors.EVENT_WRITE if to_node and node_open else 0, "in")
            events = sel.select(None if connected else _CONNECT_POLL)
            if not connected:
                read_master()
            for key, mask in events:
                tag = key.data
                if tag == "wake":
                    os.read(wake_r, 64)
                elif tag == "master":
                    if mask & selectors.EVENT_READ:
                        read_master()
                    if mask & selectors.EVENT_WRITE and connected and to_host:
                        try:
                            n = os.write(master, to_host)
                            del to_host[:n]
                        except BlockingIOError:
                            pass
                        except OSError:
                            connected = False
                            to_host.clear()
                elif tag == "in":
                    try:
                        n = os.write(node_in, to_node)
                        del to_node[:n]
                    except BlockingIOError:
                        pass
                    except OSError:
                        node_open = False
                        to_node.clear()
                elif tag == "out":
                    data = os.read(node_out, 65536)
                    if not data:
                        sel.unregister(node_out)
                        continue
                    if connected:
                        to_host.extend(data)
                        if len(to_host) > _MAX_BACKLOG:
                            del to_host[: len(to_host) - _MAX_BACKLOG]
                elif tag == "err":
                    data = os.read(node_err, 65536)
                    if not data:
                        sel.unregister(node_err)
                        if err_line:
                            self._emit_log(bytes(err_line))
                        continue
                    err_line.extend(data)
                    while b"\n" in err_line:
                        line, _, rest = bytes(err_line).partition(b"\n")
                        err_line[:] = rest
                        self._stderr_tail = (self._stderr_tail + [line + b"\n"])[-20:]
                        if line.strip() == READY_LINE:
                            self._ready.set()
                        else:
                            self._emit_log(line)
            if proc.poll() is not None and not sel.get_map().get(node_out):
                break
        sel.close()

    @staticmethod
    def _set(sel, fd, events, tag):
        key = sel.get_map().get(fd)
        if events:
            if key is None:
                sel.register(fd, events, tag)
            elif key.events != events:
                sel.modify(fd, events, tag)
        elif key is not None:
            sel.unregister(fd)


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m host_tools.vboard",
        description="Run a virtual MicroPython board on a pty (for mpremote).",
    )
    ap.add_argument(
        "--flash",
        default=str(DEFAULT_FLASH),
        help="host directory used as the board's flash (default: %(default)s)",
    )
    ap.add_argument("--link", help="create a symlink to the pty here, e.g. build/vboard/tty")
    ap.add_argument("--heap", type=int, help="MicroPython heap size in bytes")
    ap.add_argument(
        "--no-main", action="store_true", help="do not run main.py at power-on / hard reset"
    )
    ap.add_argument(
        "--ctrl-c-timeout",
        type=float,
        default=None,
        help="seconds before a program that ignores Ctrl-C is killed (default 3)",
    )
    ap.add_argument(
        "--fakes",
        default=None,
        help="directory of the machine.py/rp2.py fakes (default: host_tools/fakes)",
    )
    args = ap.parse_args(argv)

    board = VirtualBoard(
        args.flash,
        args.link,
        heap=args.heap,
        run_main=not args.no_main,
        ctrl_c_timeout=args.ctrl_c_timeout,
        fakes=args.fakes,
    )
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        port = board.start()
    except VirtualBoardError as e:
        print("vboard: %s" % e, file=sys.stderr)
        return 1
    print(port, flush=True)
    if args.link:
        print(
            "vboard: %s -> %s (flash: %s)" % (args.link, port, board.flash_dir),
            file=sys.stderr,
            flush=True,
        )
    code = 0
    while not stop.wait(0.5):
        if not board.running():
            print("vboard: bridge exited (%s)" % board.wait(), file=sys.stderr)
            code = 1
            break
    board.stop()
    return code
