// Virtual board: the real MicroPython interpreter (npm WebAssembly build)
// behind a serial-like byte stream, so that `mpremote` can drive it.
//
//   node vboard.mjs --flash DIR [--heap BYTES] [--no-main] [--ctrl-c-timeout MS]
//                   [--fakes DIR]
//
// Bytes written to stdin are what a host would send over USB-CDC; the board's
// replies come out on stdout (raw bytes, nothing else).  Status lines go to
// stderr ("vboard: ready" once the board answers).  The Python launcher
// (python -m host_tools.vboard) puts this behind a pseudo-terminal.
//
// Board model
//   * DIR is the flash.  It is copied into the interpreter's in-memory FS at
//     every (re)start and mounted as the Python root "/", and everything the
//     board writes is copied back to DIR whenever the board goes idle (waits
//     for input), before a reset and on shutdown.
//   * Power-on / machine.reset() / Ctrl-D in the friendly REPL: boot.py then
//     main.py run, then the friendly REPL.  Soft reset from the raw REPL
//     (what mpremote does on connect, Ctrl-D or sys.exit()): boot.py only,
//     and the board stays in the raw REPL -- the same as a real rp2 board.
//   * Peripherals: the project's recording fakes.  machine.py and rp2.py are
//     read from --fakes DIR (default host_tools/fakes) once, at start-up, and
//     imported as the modules `machine` and `rp2` in every fresh interpreter
//     (a real board has them built in, so a deployed main.py can import them).
//     machine.reset()/soft_reset()/bootloader() are the board's own: they
//     restart the interpreter.  Without machine.py a minimal `machine` (those
//     three, reset_cause, freq, unique_id, idle) stands in.  A machine/rp2
//     module on the flash takes precedence over the fake.  The fake's RTC
//     lives here (_vboard_js.rtc_get/rtc_set): a soft reset keeps it, a hard
//     reset or power-on clears it, as on the RP2040.
//   * The outcome of boot.py and main.py (ended, interrupted, or the
//     exception with its traceback) is reported on stderr as status lines,
//     since nobody may be listening on the console when a reset runs them.
//   * Ctrl-C interrupts running code when that code calls into time
//     (time.sleep*, ticks_*); a pure compute loop cannot be interrupted inside
//     the WebAssembly VM, so if Ctrl-C is not taken within --ctrl-c-timeout
//     the interpreter is killed and the board restarts without main.py.
//
// Internals: the interpreter runs in a worker thread (it blocks while Python
// runs).  The main thread owns stdin/stdout and passes input bytes through a
// SharedArrayBuffer ring, which the worker also polls while Python runs so it
// can see Ctrl-C.
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const RING_SIZE = 1 << 20; // input ring, bytes (power of two)
// Int32 slots of the control array
const W = 0; // total bytes written by the main thread (wrapping int32)
const R = 1; // total bytes taken by the worker (wrapping int32)
const BUSY = 2; // 1 while the interpreter is executing
const STOP = 3; // 1: shut down
const CTRL_SLOTS = 8;

const CTRL_C = 0x03;

function parseArgs(argv) {
  const opts = { flash: null, heap: 2 * 1024 * 1024, runMain: true, ctrlCTimeout: 3000,
    fakes: path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "fakes") };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--flash") opts.flash = argv[++i];
    else if (a === "--heap") opts.heap = parseInt(argv[++i], 10);
    else if (a === "--no-main") opts.runMain = false;
    else if (a === "--ctrl-c-timeout") opts.ctrlCTimeout = parseInt(argv[++i], 10);
    else if (a === "--fakes") opts.fakes = path.resolve(argv[++i]);
    else if (a === "-h" || a === "--help") {
      process.stderr.write(
        "usage: vboard.mjs --flash DIR [--heap BYTES] [--no-main] [--ctrl-c-timeout MS]" +
        " [--fakes DIR]\n");
      process.exit(0);
    } else {
      process.stderr.write(`vboard: unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  if (!opts.flash) {
    process.stderr.write("vboard: --flash DIR is required\n");
    process.exit(2);
  }
  opts.flash = path.resolve(opts.flash);
  // The peripheral fakes, read once: the same modules after every reset.
  opts.fakeSources = {};
  for (const name of ["machine", "rp2"]) {
    const file = path.join(opts.fakes, name + ".py");
    try {
      opts.fakeSources[name] = fs.readFileSync(file, "utf8");
    } catch (e) {
      if (e.code !== "ENOENT") throw e;
    }
  }
  return opts;
}

// ---------------------------------------------------------------------------
// Main thread: byte pump, supervisor
// ---------------------------------------------------------------------------

function mainThread() {
  const opts = parseArgs(process.argv.slice(2));
  fs.mkdirSync(opts.flash, { recursive: true });

  const sab = new SharedArrayBuffer(CTRL_SLOTS * 4 + RING_SIZE);
  const ctrl = new Int32Array(sab, 0, CTRL_SLOTS);
  const ring = new Uint8Array(sab, CTRL_SLOTS * 4, RING_SIZE);

  const log = (msg) => process.stderr.write(`vboard: ${msg}\n`);
  let worker = null;
  let stopping = false;
  let ctrlCs = []; // {pos, t}: ring positions just after a Ctrl-C not yet taken
  let queued = []; // input chunks waiting for room in the ring
  let announcedReady = false;
  let crashes = []; // times of unexpected worker exits

  function pump() {
    while (queued.length) {
      const chunk = queued[0];
      const w = Atomics.load(ctrl, W);
      const free = RING_SIZE - ((w - Atomics.load(ctrl, R)) | 0);
      if (free <= 0) break;
      const n = Math.min(free, chunk.length);
      for (let i = 0; i < n; i++) {
        const b = chunk[i];
        ring[(w + i) & (RING_SIZE - 1)] = b;
        if (b === CTRL_C) ctrlCs.push({ pos: (w + i + 1) | 0, t: Date.now() });
      }
      Atomics.store(ctrl, W, (w + n) | 0);
      queued[0] = chunk.subarray(n);
      if (queued[0].length === 0) queued.shift();
    }
    Atomics.notify(ctrl, W);
    if (queued.length) setTimeout(pump, 2);
  }

  function startWorker(powerOn) {
    const w = new Worker(new URL(import.meta.url), {
      workerData: { sab, opts, safeMode: !powerOn.runMain },
      stdout: false,
      stderr: false,
    });
    w.on("message", (m) => {
      if (m.t === "out") process.stdout.write(m.data);
      else if (m.t === "log") log(m.msg);
      else if (m.t === "ready") {
        if (!announcedReady) process.stderr.write("vboard: ready\n");
        announcedReady = true;
      } else if (m.t === "bye") finish(0);
    });
    w.on("error", (e) => {
      const what = e && e.stack ? e.stack.split("\n").slice(0, 4).join(" | ") : e;
      log(`interpreter thread failed: ${what}`);
    });
    w.on("exit", () => {
      if (worker !== w) return; // replaced on purpose
      worker = null;
      if (stopping) return finish(0);
      if (!announcedReady) {
        log("the board failed to start");
        return finish(1);
      }
      const now = Date.now();
      crashes = crashes.filter((t) => now - t < 10000);
      crashes.push(now);
      if (crashes.length > 3) {
        log("the board keeps failing; giving up");
        return finish(1);
      }
      log("interpreter thread exited; restarting the board");
      Atomics.store(ctrl, BUSY, 0);
      worker = startWorker({ runMain: false });
    });
    return w;
  }

  // Watchdog: Ctrl-C that the running program never takes -> hard restart.
  const watchdog = setInterval(() => {
    if (!ctrlCs.length || !worker) return;
    const r = Atomics.load(ctrl, R);
    ctrlCs = ctrlCs.filter((c) => ((r - c.pos) | 0) < 0);
    if (!ctrlCs.length) return;
    const c = ctrlCs[0];
    if (Atomics.load(ctrl, BUSY) !== 1) {
      c.t = Date.now();
      return;
    }
    if (Date.now() - c.t < opts.ctrlCTimeout) return;
    log("program ignored Ctrl-C; restarting the interpreter (main.py skipped)");
    const old = worker;
    worker = null;
    ctrlCs = ctrlCs.slice(1);
    old.terminate().then(() => {
      Atomics.store(ctrl, R, c.pos); // drop input up to and including that Ctrl-C
      Atomics.store(ctrl, BUSY, 0);
      if (!stopping) worker = startWorker({ runMain: false });
    });
  }, 100);
  watchdog.unref();

  let finished = false;
  function finish(code) {
    if (finished) return;
    finished = true;
    clearInterval(watchdog);
    const done = () => process.exit(code);
    if (process.stdout.writableLength) process.stdout.once("drain", done);
    else done();
    setTimeout(done, 500).unref();
  }

  function shutdown() {
    if (stopping) return;
    stopping = true;
    Atomics.store(ctrl, STOP, 1);
    Atomics.notify(ctrl, W);
    if (!worker) return finish(0);
    // The worker saves the flash and says bye when idle; a running program
    // that never idles is cut off.
    setTimeout(() => {
      if (worker) worker.terminate().finally(() => finish(0));
      else finish(0);
    }, 1500).unref();
  }

  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
  process.on("SIGHUP", shutdown);
  process.stdout.on("error", () => shutdown());

  if (process.stdin.isTTY) {
    // Handy for a quick look by hand: `node vboard.mjs --flash DIR` in a
    // terminal; Ctrl-] quits.
    process.stdin.setRawMode(true);
    process.stderr.write("vboard: interactive; Ctrl-] quits\n");
  }
  process.stdin.on("data", (data) => {
    if (process.stdin.isTTY && data.includes(0x1d)) return shutdown();
    queued.push(new Uint8Array(data));
    pump();
  });
  process.stdin.on("end", shutdown);

  worker = startWorker({ runMain: opts.runMain });
}

// ---------------------------------------------------------------------------
// Worker thread: the board
// ---------------------------------------------------------------------------

// Python run in every fresh interpreter before boot.py.  Compiled with the
// file name "<vboard>"; traceback lines from it are removed from the output.
const INIT_PY = String.raw`
import sys, os, micropython

# Emscripten errno values -> the (Linux/MicroPython) values a real board uses.
_ERRNO = {63: 1, 44: 2, 71: 3, 27: 4, 29: 5, 60: 6, 1: 7, 45: 8, 8: 9, 12: 10,
          6: 11, 48: 12, 2: 13, 21: 14, 10: 16, 20: 17, 75: 18, 43: 19, 54: 20,
          31: 21, 28: 22, 41: 23, 33: 24, 59: 25, 74: 26, 22: 27, 51: 28, 70: 29,
          69: 30, 34: 31, 64: 32, 18: 33, 68: 34, 37: 36, 55: 39, 32: 40,
          138: 95, 73: 110}


def _err(e):
    n = e.args[0] if e.args else 0
    return OSError(_ERRNO.get(n, n)) if isinstance(n, int) else e


class FlashVfs:
    # The flash: MEMFS /flash seen as the root filesystem, with real-board errno.
    def __init__(self, base):
        self._v = os.VfsPosix()
        self._base = base
        self._cwd = '/'

    def _abs(self, p):
        if not p.startswith('/'):
            p = self._cwd + '/' + p
        parts = []
        for s in p.split('/'):
            if s == '..':
                if parts:
                    parts.pop()
            elif s and s != '.':
                parts.append(s)
        return '/' + '/'.join(parts)

    def _p(self, p):
        a = self._abs(p)
        return self._base if a == '/' else self._base + a

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def open(self, p, mode):
        try:
            return self._v.open(self._p(p), mode)
        except OSError as e:
            raise _err(e)

    def stat(self, p):
        try:
            return self._v.stat(self._p(p))
        except OSError as e:
            raise _err(e)

    def ilistdir(self, p):
        hp = self._p(p)
        try:
            ents = list(self._v.ilistdir(hp))
        except OSError as e:
            raise _err(e)
        out = []
        for ent in ents:
            name, typ = ent[0], ent[1]
            size = 0
            if not typ & 0x4000:
                try:
                    size = self._v.stat(hp + '/' + name)[6]
                except OSError:
                    pass
            out.append((name, typ, 0, size))
        return iter(out)

    def mkdir(self, p):
        try:
            self._v.mkdir(self._p(p))
        except OSError as e:
            raise _err(e)

    def rmdir(self, p):
        try:
            self._v.rmdir(self._p(p))
        except OSError as e:
            raise _err(e)

    def remove(self, p):
        try:
            self._v.remove(self._p(p))
        except OSError as e:
            raise _err(e)

    def rename(self, a, b):
        try:
            self._v.rename(self._p(a), self._p(b))
        except OSError as e:
            raise _err(e)

    def chdir(self, p):
        a = self._abs(p)
        try:
            st = self._v.stat(self._p(a))
        except OSError as e:
            raise _err(e)
        if not st[0] & 0x4000:
            raise OSError(20)
        self._cwd = a

    def getcwd(self):
        return self._cwd

    def statvfs(self, p):
        # Sized like a Pico's 1.4 MB filesystem; used space is what the flash holds.
        bs, blocks = 4096, 352
        try:
            used = self._used(self._base) + 2
        except OSError as e:
            raise _err(e)
        free = max(0, blocks - used)
        return (bs, bs, blocks, free, free, 0, 0, 0, 0, 255)

    def _used(self, hp):
        n = 0
        for ent in self._v.ilistdir(hp):
            q = hp + '/' + ent[0]
            if ent[1] & 0x4000:
                n += 1 + self._used(q)
            else:
                n += 1 + (self._v.stat(q)[6] + 4095) // 4096
        return n

    def __str__(self):
        return '<FlashVfs>'


import _vboard_js as _js


def _reset(*a):
    _js.request_reset()
    raise SystemExit


def _soft_reset():
    raise SystemExit


class _Machine:
    # Stand-in 'machine' when host_tools/fakes/machine.py is not there.
    PWRON_RESET = 1
    WDT_RESET = 3
    reset = staticmethod(_reset)
    soft_reset = staticmethod(_soft_reset)
    bootloader = staticmethod(_reset)

    def reset_cause(self):
        return self.PWRON_RESET

    def freq(self, *a):
        return 125000000

    def unique_id(self):
        return b'vboard\x00\x01'

    def idle(self):
        pass


def _on_flash(name):
    # A module of that name on the flash ('' and /lib of sys.path) wins.
    for base in ('/flash/', '/flash/lib/'):
        for suffix in ('.py', '.mpy', ''):
            try:
                os.stat(base + name + suffix)
                return True
            except OSError:
                pass
    return False


def _load_fakes():
    # The JS side wrote host_tools/fakes/{machine,rp2}.py to /vboard_fakes
    # (MEMFS, outside the flash); import them while / is still MEMFS.
    sys.path.insert(0, '/vboard_fakes')
    try:
        for name in ('rp2', 'machine'):
            if _on_flash(name):
                _js.log('%s: using the module on the flash' % name)
                continue
            try:
                os.stat('/vboard_fakes/%s.py' % name)
            except OSError:
                if name == 'machine':
                    sys.modules['machine'] = _Machine()
                continue
            try:
                mod = __import__(name)
            except BaseException as e:
                _js.log('cannot load the %s fake: %s: %s' % (name, type(e).__name__, e))
                if name == 'machine':
                    sys.modules['machine'] = _Machine()
                continue
            if name == 'machine':
                mod.reset = _reset
                mod.soft_reset = _soft_reset
                mod.bootloader = _reset
    finally:
        sys.path.pop(0)


_load_fakes()

os.umount('/')
os.mount(FlashVfs('/flash'), '/')
os.chdir('/')


def _input(prompt=''):
    # The WebAssembly build's own input() spins in C without ever reading
    # stdin; this one reads sys.stdin (the host's bytes) and echoes, like a board.
    if prompt:
        sys.stdout.write(str(prompt))
    buf = []
    while True:
        c = sys.stdin.read(1)
        if not c:
            raise EOFError
        if c == '\r' or c == '\n':
            sys.stdout.write('\r\n')
            return ''.join(buf)
        if c == '\x08' or c == '\x7f':
            if buf:
                buf.pop()
                sys.stdout.write('\x08 \x08')
        elif c == '\x04' and not buf:
            raise EOFError
        elif c >= ' ':
            buf.append(c)
            sys.stdout.write(c)


import builtins
builtins.input = _input


def _report(name, e):
    # The traceback as status lines (without the board's own "<vboard>" frames).
    import io
    buf = io.StringIO()
    sys.print_exception(e, buf)
    _js.log('%s raised %s: %s' % (name, type(e).__name__, e))
    for line in buf.getvalue().split('\n'):
        if line and '"<vboard>"' not in line:
            _js.log('  | ' + line)


class _VBoard:
    @staticmethod
    def run_file(name):
        import __main__
        try:
            os.stat(name)
        except OSError:
            return
        say = name == 'main.py'  # boot.py runs at every soft reset: only its failures
        if say:
            _js.log('%s: running' % name)
        try:
            with open(name) as f:
                src = f.read()
            code = compile(src, name, 'exec')
            del src
            micropython.kbd_intr(3)  # as pyexec does while a script runs
            exec(code, __main__.__dict__)
        except SystemExit:
            if say:
                _js.log('%s: ended (SystemExit)' % name)
        except KeyboardInterrupt as e:
            sys.print_exception(e)
            if say:
                _js.log('%s: interrupted (KeyboardInterrupt)' % name)
        except BaseException as e:
            sys.print_exception(e)
            _report(name, e)
        else:
            if say:
                _js.log('%s: ended' % name)
        finally:
            micropython.kbd_intr(-1)


sys.modules['_vboard'] = _VBoard()
`;

const MARK = new TextEncoder().encode('  File "<vboard>"');

async function workerThread() {
  const { sab, opts } = workerData;
  let safeMode = workerData.safeMode;
  const ctrl = new Int32Array(sab, 0, CTRL_SLOTS);
  const ring = new Uint8Array(sab, CTRL_SLOTS * 4, RING_SIZE);
  const log = (msg) => parentPort.postMessage({ t: "log", msg });

  const here = path.dirname(fileURLToPath(import.meta.url));
  const { loadMicroPython } = await importMicroPython(here);

  // ---- output: batching + removal of "<vboard>" traceback lines ----
  let outBuf = new Uint8Array(8192);
  let outLen = 0;
  let lastFlush = 0;
  let muted = false;
  let lineStart = true;
  let held = 0; // bytes of MARK matched at the start of the current line
  let dropping = false;

  function flushOut() {
    if (outLen === 0) return;
    parentPort.postMessage({ t: "out", data: outBuf.slice(0, outLen) });
    outLen = 0;
    lastFlush = realNow();
  }
  function put(b) {
    if (outLen === outBuf.length) flushOut();
    outBuf[outLen++] = b;
  }
  function outByte(b) {
    if (muted) return;
    if (dropping) {
      if (b === 10) {
        dropping = false;
        lineStart = true;
      }
      return;
    }
    if (lineStart || held) {
      if (held < MARK.length && b === MARK[held]) {
        held++;
        lineStart = false;
        if (held === MARK.length) {
          held = 0;
          dropping = true;
        }
        return;
      }
      releaseHeld();
    }
    lineStart = b === 10;
    put(b);
    if (lineStart && executing) flushOut(); // a program's lines go out as they are printed
  }
  function releaseHeld() {
    for (let i = 0; i < held; i++) put(MARK[i]);
    held = 0;
  }
  function emit(str) {
    for (const b of Buffer.from(str, "latin1")) outByte(b);
  }
  let captured = null; // when set, a copy of the REPL's raw output
  const stdoutCb = (bytes) => {
    if (captured && captured.length < 256) captured.push(...bytes);
    for (let i = 0; i < bytes.length; i++) outByte(bytes[i]);
  };

  // ---- input ----
  const pending = []; // bytes taken from the ring but not yet handled
  let pendingHead = 0;
  let executing = false;
  let mp = null;
  let resetRequested = false;

  function interruptChar() {
    try {
      return mp._module._mp_hal_get_interrupt_char();
    } catch (e) {
      return CTRL_C;
    }
  }

  let skewOnce = false;
  function takeFromRing() {
    const w = Atomics.load(ctrl, W);
    let r = Atomics.load(ctrl, R);
    if (w === r) return;
    let ic = executing ? interruptChar() : -1;
    while (r !== w) {
      const b = ring[r & (RING_SIZE - 1)];
      r = (r + 1) | 0;
      if (executing && b === ic && b === CTRL_C) {
        mp._module._mp_sched_keyboard_interrupt();
        skewOnce = true; // lets a time.sleep() busy-wait end now
      } else {
        pending.push(b);
      }
    }
    Atomics.store(ctrl, R, r);
  }
  function havePending() {
    return pendingHead < pending.length;
  }
  function shiftPending() {
    const b = pending[pendingHead++];
    if (pendingHead > 4096 && pendingHead * 2 > pending.length) {
      pending.splice(0, pendingHead);
      pendingHead = 0;
    }
    return b;
  }

  // Date.now is what the interpreter's ticks_ms/time calls reach, so it is the
  // hook for noticing Ctrl-C (and for flushing output) while Python runs.
  // time.sleep() is a busy-wait on it; pause a little inside long waits.
  const realNow = Date.now.bind(Date);
  let sameMs = 0;
  let sameCount = 0;
  Date.now = function () {
    let t = realNow();
    if (executing) {
      takeFromRing();
      if (outLen && t - lastFlush >= 20) flushOut();
      if (t === sameMs) {
        if (++sameCount > 2000 && !skewOnce) {
          Atomics.wait(ctrl, W, Atomics.load(ctrl, W), 0.5);
          takeFromRing();
          sameCount = 0;
        }
      } else {
        sameMs = t;
        sameCount = 0;
      }
    }
    if (skewOnce) {
      skewOnce = false;
      t += 0x7fffffff;
    }
    return t;
  };

  // sys.stdin for programs (input(), sys.stdin.read()): blocking.
  function stdinCb() {
    for (;;) {
      if (!havePending()) takeFromRing();
      if (havePending()) {
        const b = shiftPending();
        if (b === CTRL_C && interruptChar() === CTRL_C) {
          mp._module._mp_sched_keyboard_interrupt();
          return 10;
        }
        return b;
      }
      if (Atomics.load(ctrl, STOP)) return null;
      flushOut();
      Atomics.wait(ctrl, W, Atomics.load(ctrl, W), 200);
    }
  }

  // ---- flash: host dir <-> MEMFS /flash ----
  const FLASH = "/flash";
  let synced = new Map(); // relative path -> bytes, as last written to / read from host
  let syncedDirs = new Set();

  function loadFlash() {
    synced = new Map();
    syncedDirs = new Set();
    mp.FS.mkdir(FLASH);
    const walk = (hostDir, rel) => {
      for (const name of fs.readdirSync(hostDir)) {
        if (name.endsWith(".vboard-tmp")) continue;
        const h = path.join(hostDir, name);
        const r = rel ? rel + "/" + name : name;
        let st;
        try {
          st = fs.statSync(h);
        } catch (e) {
          continue;
        }
        if (st.isDirectory()) {
          mp.FS.mkdir(FLASH + "/" + r);
          syncedDirs.add(r);
          walk(h, r);
        } else if (st.isFile()) {
          const data = fs.readFileSync(h);
          mp.FS.writeFile(FLASH + "/" + r, data);
          synced.set(r, new Uint8Array(data));
        }
      }
    };
    fs.mkdirSync(opts.flash, { recursive: true });
    walk(opts.flash, "");
  }

  function syncFlash() {
    if (!mp) return;
    const files = new Map();
    const dirs = [];
    const walk = (rel) => {
      const dir = rel ? FLASH + "/" + rel : FLASH;
      for (const name of mp.FS.readdir(dir)) {
        if (name === "." || name === "..") continue;
        const r = rel ? rel + "/" + name : name;
        const st = mp.FS.stat(FLASH + "/" + r);
        if (mp.FS.isDir(st.mode)) {
          dirs.push(r);
          walk(r);
        } else if (mp.FS.isFile(st.mode)) {
          files.set(r, r);
        }
      }
    };
    try {
      walk("");
    } catch (e) {
      log(`cannot read the flash: ${e}`);
      return;
    }
    const dirSet = new Set(dirs);
    for (const d of dirs) {
      if (!syncedDirs.has(d)) {
        fs.mkdirSync(path.join(opts.flash, d), { recursive: true });
        syncedDirs.add(d);
      }
    }
    const written = [];
    for (const r of files.keys()) {
      const data = mp.FS.readFile(FLASH + "/" + r);
      const old = synced.get(r);
      if (old && Buffer.compare(old, data) === 0) continue;
      const h = path.join(opts.flash, r);
      const tmp = h + ".vboard-tmp";
      fs.writeFileSync(tmp, data);
      fs.renameSync(tmp, h);
      synced.set(r, data);
      written.push(r);
    }
    // A status line a host can wait on instead of polling the folder.
    if (written.length) log(`flash saved: ${written.join(" ")}`);
    for (const r of [...synced.keys()]) {
      if (files.has(r)) continue;
      try {
        fs.rmSync(path.join(opts.flash, r), { force: true });
      } catch (e) {
        log(`cannot remove ${r}: ${e}`);
      }
      synced.delete(r);
    }
    const gone = [...syncedDirs].filter((d) => !dirSet.has(d));
    gone.sort((a, b) => b.length - a.length);
    for (const d of gone) {
      try {
        fs.rmdirSync(path.join(opts.flash, d));
      } catch (e) {
        if (e.code !== "ENOENT") log(`cannot remove directory ${d}: ${e.code || e}`);
      }
      syncedDirs.delete(d);
    }
  }

  // ---- interpreter ----
  function enterInterp() {
    executing = true;
    Atomics.store(ctrl, BUSY, 1);
  }
  function leaveInterp() {
    executing = false;
    skewOnce = false;
    Atomics.store(ctrl, BUSY, 0);
    releaseHeld();
  }

  // Returns the REPL's result (non-zero: the REPL asks for a soft reset) or
  // "crash" if the interpreter itself failed.
  function replChar(b) {
    enterInterp();
    try {
      return mp.replProcessChar(b);
    } catch (e) {
      log(`interpreter failure: ${String(e && e.message ? e.message : e).slice(0, 200)}`);
      return "crash";
    } finally {
      leaveInterp();
    }
  }

  function runPy(src) {
    enterInterp();
    try {
      mp.runPython(src);
      return true;
    } catch (e) {
      if (e && e.name === "PythonError") {
        emit(String(e.message).replace(/\r?\n/g, "\r\n"));
        return true;
      }
      log(`interpreter failure: ${String(e && e.message ? e.message : e).slice(0, 200)}`);
      return false;
    } finally {
      leaveInterp();
    }
  }

  let mode = "friendly"; // REPL mode as the host sees it: "friendly" | "raw"
  let rtc = ""; // the fake machine.RTC's datetime, "y,m,d,wd,h,mi,s,sub" ("" unset): a soft reset keeps it
  let rawLineLen = 0; // bytes in the raw REPL's line buffer
  let rawPaste = 0; // bytes of the raw-paste request "\x05A\x01" seen
  let dirty = false; // flash may have changed since the last sync
  let readySent = false;
  let skipScripts = false; // boot.py/main.py broke the interpreter: leave them out

  // Start a fresh interpreter; kind: "power" | "hard" | "soft".
  async function boot(kind) {
    if (mp) {
      syncFlash();
      mp = null;
    }
    if (kind === "soft") emit("MPY: soft reboot\r\n");
    if (kind !== "soft") {
      mode = "friendly";
      rtc = ""; // a hard reset or power-on restarts the RP2040's RTC
    }
    for (let attempt = 0; ; attempt++) {
      resetRequested = false;
      flushOut();
      mp = await loadMicroPython({
        heapsize: opts.heap,
        linebuffer: false,
        stdout: stdoutCb,
        stderr: stdoutCb,
        stdin: stdinCb,
      });
      mp.registerJsModule("_vboard_js", {
        request_reset: () => {
          resetRequested = true;
        },
        log: (msg) => log(String(msg)),
        rtc_get: () => rtc,
        rtc_set: (v) => {
          rtc = String(v);
        },
      });
      loadFlash();
      mp.FS.mkdir("/vboard_fakes");
      for (const [name, src] of Object.entries(opts.fakeSources || {})) {
        mp.FS.writeFile(`/vboard_fakes/${name}.py`, src);
      }
      mp.globals.set("_vb_src", INIT_PY);
      muted = true;
      const ok = runPy(
        "exec(compile(_vb_src, '<vboard>', 'exec'), {'__name__': '_vboard_init'})\ndel _vb_src");
      muted = false;
      if (!ok) throw new Error("board initialisation failed");
      if (!readySent) {
        readySent = true; // input is taken from here on (Ctrl-C reaches boot.py/main.py)
        parentPort.postMessage({ t: "ready" });
      }
      dirty = true;
      let ok2 = skipScripts || runPy("import _vboard\n_vboard.run_file('boot.py')");
      if (ok2 && !skipScripts && !resetRequested && mode === "friendly" && opts.runMain &&
          !safeMode) {
        ok2 = runPy("import _vboard\n_vboard.run_file('main.py')");
      }
      if (!ok2 && attempt < 5) {
        log("the interpreter broke in boot.py/main.py; restarting without them");
        skipScripts = true;
        mode = "friendly";
        continue;
      }
      if (resetRequested && attempt < 20) {
        syncFlash();
        mode = "friendly";
        rtc = "";
        continue; // machine.reset() from boot.py/main.py
      }
      break;
    }
    resetRequested = false;
    skipScripts = false;
    safeMode = false;
    rawLineLen = 0;
    rawPaste = 0;
    if (mode === "raw") {
      muted = true;
      mp.replInit();
      replChar(0x01);
      muted = false;
      emit("raw REPL; CTRL-B to exit\r\n>");
    } else {
      mp.replInit();
    }
    flushOut();
  }

  // One byte from the host, in order.
  async function handle(b) {
    if (mode === "raw") {
      // Raw-paste request: answer "not supported" (the REPL would block).
      const seq = [0x05, 0x41, 0x01];
      if (rawLineLen === 0 && b === seq[rawPaste]) {
        if (++rawPaste === seq.length) {
          rawPaste = 0;
          emit("R\x00");
          flushOut();
        }
        return;
      }
      if (rawPaste) {
        const held = seq.slice(0, rawPaste);
        rawPaste = 0;
        for (const h of held) await feed(h);
      }
    }
    await feed(b);
  }

  async function feed(b) {
    if (mode === "raw") {
      if (b === 0x01 || b === 0x03 || b === 0x04) rawLineLen = 0;
      else if (b === 0x02) mode = "friendly";
      else rawLineLen++;
    } else if (b === 0x01) {
      captured = []; // Ctrl-A switches to raw only on an empty line
    }
    if (b === 0x04 || b === 0x0d || b === 0x0a) dirty = true;
    const ret = replChar(b);
    if (captured) {
      if (Buffer.from(captured).toString("latin1").includes("raw REPL; CTRL-B to exit")) {
        mode = "raw";
        rawLineLen = 0;
      }
      captured = null;
    }
    if (ret === "crash") {
      emit("\r\n");
      await boot("hard");
    } else if (ret) {
      await boot(resetRequested ? "hard" : "soft");
    }
  }

  // ---- main loop ----
  if (safeMode) log("starting without main.py");
  await boot(safeMode ? "hard" : "power");
  for (;;) {
    if (!havePending()) takeFromRing();
    if (havePending()) {
      await handle(shiftPending());
      continue;
    }
    // Idle: save the flash, flush output, wait for input.
    if (dirty) {
      dirty = false;
      syncFlash();
    }
    flushOut();
    if (Atomics.load(ctrl, STOP)) break;
    Atomics.wait(ctrl, W, Atomics.load(ctrl, R));
    if (Atomics.load(ctrl, STOP) && Atomics.load(ctrl, W) === Atomics.load(ctrl, R)) break;
  }
  syncFlash();
  flushOut();
  parentPort.postMessage({ t: "bye" });
}

async function importMicroPython(here) {
  // node_modules sits at the repository root (two levels above this file);
  // VBOARD_MICROPYTHON may point at another micropython.mjs.
  const candidates = [];
  if (process.env.VBOARD_MICROPYTHON) candidates.push(path.resolve(process.env.VBOARD_MICROPYTHON));
  candidates.push(path.resolve(here, "..", "..", "node_modules", "@micropython",
    "micropython-webassembly-pyscript", "micropython.mjs"));
  for (const c of candidates) {
    if (fs.existsSync(c)) return import(pathToFileURL(c).href);
  }
  return import("@micropython/micropython-webassembly-pyscript");
}

if (isMainThread) mainThread();
else workerThread().catch((e) => {
  parentPort.postMessage({ t: "log", msg: `board failed: ${e && e.stack ? e.stack : e}` });
  process.exit(1);
});
