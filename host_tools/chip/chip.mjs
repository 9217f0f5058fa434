// The emulated Pico: MicroPython for the RP2040 running in rp2040js, cycle by cycle, inside a
// model of the injector that drives its pins.
//
// Started and spoken to by host_tools/chip/__init__.py (class Chip): one JSON request per line on
// stdin, one JSON answer per line on stdout. The first line is the configuration (image, boot ROM,
// flash images, the pin map of firmware/board/pins.py, the machine's figures). Emulated time is
// deterministic: the same run gives the same microseconds on any machine.
//
// What the model does around the chip:
// - counts STEP pulses with DIR into needle and plunger positions (and feeds both pins back into
//   the chip's inputs, which rp2040js does not do, so the PIO step counters see them);
// - closes the needle home, plunger rear and front switches from those positions; drives syringe,
//   trigger, pedal, E-stop (normally closed), the four buttons and the drivers' DIAG lines;
// - a syringe and line: a compliant volume drained through the needle, seen as force by an HX711
//   that answers on DOUT/SCK like the chip (80 samples/s, 24 bits MSB first, gain 128); a `set`
//   request with force_mn holds the force at that figure instead (null gives it back);
// - an SSD1306 on I2C1 that takes the controller's command and data stream, one byte every 9 bit
//   times, and keeps every frame written;
// - the RP2040 watchdog as the chip has it (rp2040js 1.4.1 never resets): the counter, reloaded
//   by each feed, and on expiry a restart from boot that keeps the flash and the scratch registers;
// - flash writes: the boot ROM's erase and program routines are done here on the emulated flash
//   (rp2040js does not emulate the flash chip's commands), taking the flash chip's typical time
//   with interrupts off while the PIO runs on, as on the board.
// And it measures: every interrupt from thread mode back to thread mode, in cycles (the timer's
// are those that run the alarm interrupt where a hard machine.Timer's callback runs), the
// time the CPU sleeps, optionally cycles per function of the image (its ELF symbols).
import fs from 'node:fs';
import readline from 'node:readline';
import { Simulator, StateMachine } from 'rp2040js';
import { PioClock } from './pio_clock.mjs';

// A machine.Timer callback runs in the pico-sdk's default alarm pool, on hardware alarm 3: in the
// TIMER_IRQ_3 handler (IRQ 3, exception 16 + 3).
const TIMER_EXCEPTION = 16 + 3;
const WDT_REASON_TIMER = 1;
const WDT_REASON_FORCE = 2;
const WDT_CTRL_ENABLE = 1 << 30;
const WDT_CTRL_TRIGGER = 1 << 31;
const FLASH_SECTOR = 4096;
const FLASH_PAGE = 256;

// ---------------------------------------------------------------- rp2040js, made to fit the chip
// Each patch below states what rp2040js 1.4.1 does differently from the RP2040.

// FIFO join (SHIFTCTRL FJOIN_TX / FJOIN_RX): rp2040js keeps every FIFO at 4 words; the step
// generators join theirs to 8 (4 ticks of motion).
{
  const SHIFTCTRL = 0x0d0 - 0x0c8; // offset from SMn_CLKDIV
  const write = StateMachine.prototype.writeUint32;
  StateMachine.prototype.writeUint32 = function (offset, value) {
    write.call(this, offset, value);
    if (offset !== SHIFTCTRL) return;
    const joinTx = (value >>> 30) & 1, joinRx = (value >>> 31) & 1;
    const tx = joinTx ? 8 : joinRx ? 1 : 4, rx = joinRx ? 8 : joinTx ? 1 : 4;
    if (this.txFIFO.size !== tx || this.rxFIFO.size !== rx) {
      const Fifo = this.txFIFO.constructor;
      this.txFIFO = new Fifo(tx);
      this.rxFIFO = new Fifo(rx);
    }
  };
}

// ------------------------------------------------------------------------------ the configuration
const rl = readline.createInterface({ input: process.stdin, terminal: false });
const lines = rl[Symbol.asyncIterator]();
const first = await lines.next();
const cfg = JSON.parse(first.value);
const P = cfg.pins; // GPIO numbers, from firmware/board/pins.py
const MODEL = cfg.model;

function answer(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

// ------------------------------------------------------------------------------------ the machine
// The mechanics outlive a reset of the chip: positions, syringe, fluid.
const world = {
  needle: { pos: MODEL.needle_start_steps, fwd: 0, bwd: 0, max: MODEL.needle_start_steps,
    disabledSteps: 0, enPin: P.NEEDLE_EN },
  plunger: { pos: MODEL.plunger_start_steps, fwd: 0, bwd: 0, max: MODEL.plunger_start_steps,
    disabledSteps: 0, enPin: P.PLUNGER_EN },
  face: MODEL.plunger_start_steps, // pusher face, lags the nut by up to the backlash (steps)
  inputs: { syringe: false, trigger: false, pedal: false, estop: false, up: false, down: false,
    ok: false, back: false, needle_stall: false, plunger_stall: false },
  excessUl: 0, // volume squeezed into the line's compliance
  outUl: 0, // out of the needle, net
  blocked: false,
  forceMn: 0,
  forceHeld: null, // a force set from outside (mN) stands in for the fluid model's while not null
  faceLast: MODEL.plunger_start_steps,
  punctures: [], // per needle excursion: deepest step, net face steps
  excursion: null,
};

let chip = null; // the current RP2040 (a new one after every reset)
let resets = 0;
let scratch = new Uint32Array(8);
let wdtReason = 0;

const stats = {
  irqs: 0, irqCycles: 0, irqMax: 0, timerIrqs: 0, timerCycles: 0, timerMax: 0, timerOver500: 0,
  sleepCycles: 0, startCycles: 0, byState: {}, byException: {}, feeds: 0, feedGapMaxUs: 0, lastFeedNanos: -1,
  wdtExpired: 0, flashErases: 0, flashPrograms: 0,
};
let stateAddr = 0; // RAM address of the core's state word, if a script told us
let profile = null;

// ------------------------------------------------------------------------------- building a chip
function bootChip() {
  const sim = new Simulator();
  const mcu = sim.rp2040;
  mcu.loadBootrom(bootrom);
  mcu.logger = { debug() {}, info() {}, warn() {}, error(tag, msg) { uartText += `\n[rp2040js ${tag}] ${msg}\n`; } };
  mcu.flash.set(flashImage.subarray(0, flashImage.length));
  mcu.core.PC = 0x10000000;
  const c = { sim, mcu, clock: sim.clock, core: mcu.core, pio: new PioClock(mcu),
    get cycleNanos() { return 1e9 / mcu.clkSys; } }; // clk_sys changes while the chip boots
  fixUart(mcu);
  watchdogModel(c);
  wirePins(c);
  ssd1306(c);
  hx711(c);
  fluidTimer(c);
  return c;
}

// UART0 is the REPL. rp2040js 1.4.1 keeps the TX interrupt raised forever, which livelocks
// MicroPython's UART IRQ: raise it once per byte written instead, cleared by the firmware.
function fixUart(mcu) {
  const uart = mcu.uart[0];
  uart.checkInterrupts = function () {
    this.rp2040.setInterrupt(this.irq, !!(this.interruptStatus & this.interruptMask));
  };
  const write = uart.writeUint32.bind(uart);
  uart.writeUint32 = (offset, value) => {
    write(offset, value);
    if (offset === 0) { uart.interruptStatus |= 1 << 5; uart.checkInterrupts(); }
  };
  uart.onByte = (b) => { uartText += String.fromCharCode(b); };
}

function watchdogModel(c) {
  const wd = c.mcu.peripherals[0x40058];
  wd.scratchData.set(scratch);
  wd.reason = wdtReason;
  let load = 0, enabled = false, deadline = 0;
  const alarm = c.clock.createAlarm(() => expire(c, WDT_REASON_TIMER));
  const write = wd.writeUint32.bind(wd);
  wd.writeUint32 = (offset, value) => {
    if (offset === 0x00 && value & WDT_CTRL_TRIGGER) { expire(c, WDT_REASON_FORCE); return; }
    write(offset, value & ~WDT_CTRL_TRIGGER);
    wd.timer.enable = false; // the counting is ours (rp2040js's alarm re-fires forever at expiry)
    wd.alarm.enable = false;
    if (offset === 0x04) { // LOAD: a feed. The counter drops 2 per microsecond (erratum RP2040-E1).
      load = value & 0xffffff;
      const now = c.clock.nanos;
      if (enabled) {
        stats.feeds++;
        if (stats.lastFeedNanos >= 0) stats.feedGapMaxUs = Math.max(stats.feedGapMaxUs, (now - stats.lastFeedNanos) / 1000);
        stats.lastFeedNanos = now;
      }
    } else if (offset === 0x00) {
      enabled = !!(value & WDT_CTRL_ENABLE);
    }
    if (offset === 0x00 || offset === 0x04) {
      alarm.cancel();
      if (enabled) { deadline = load * 500; alarm.schedule(deadline); }
    }
  };
}

function expire(c, reason) {
  if (reason === WDT_REASON_TIMER) stats.wdtExpired++;
  pendingReset = reason;
}
let pendingReset = 0;

function doReset() {
  scratch = new Uint32Array(chip.mcu.peripherals[0x40058].scratchData);
  flashImage = chip.mcu.flash.slice(0, FLASH_BYTES);
  wdtReason = pendingReset;
  pendingReset = 0;
  resets++;
  const nanos = chip.clock.nanos, cycles = chip.pio.now;
  chip = bootChip();
  chip.clock.tick(nanos); // emulated time goes on
  chip.pio.now = cycles;
  uartText += `\n[chip] reset by the watchdog (${wdtReason === WDT_REASON_TIMER ? 'expired' : 'forced'})\n`;
}

// ------------------------------------------------------------------------------------------- pins
function level(c, pin, value) { c.mcu.gpio[pin].setInputValue(!!value); }

function switchLevels(c) {
  const sw = world.inputs;
  // Contacts close to GND: a closed contact reads 0. The E-stop is normally closed: pressed reads 1.
  level(c, P.NEEDLE_HOME, !(world.needle.pos <= 0));
  level(c, P.PLUNGER_REAR, !(world.plunger.pos <= 0));
  level(c, P.PLUNGER_FRONT, !(world.plunger.pos >= MODEL.plunger_travel_steps));
  level(c, P.SYRINGE, !sw.syringe);
  level(c, P.TRIGGER, !sw.trigger);
  level(c, P.PEDAL, !sw.pedal);
  level(c, P.ESTOP, sw.estop);
  level(c, P.BTN_UP, !sw.up);
  level(c, P.BTN_DOWN, !sw.down);
  level(c, P.BTN_OK, !sw.ok);
  level(c, P.BTN_BACK, !sw.back);
  level(c, P.NEEDLE_DIAG, sw.needle_stall);
  level(c, P.PLUNGER_DIAG, sw.plunger_stall);
}

function outputHigh(c, pin) {
  const g = c.mcu.gpio[pin];
  return g.value === 1; // GPIOPinState.High
}

function wirePins(c) {
  const g = c.mcu.gpio;
  // STEP and DIR are read back by the step counters: feed the driven level into the input.
  for (const pin of [P.NEEDLE_STEP, P.NEEDLE_DIR, P.PLUNGER_STEP, P.PLUNGER_DIR]) {
    g[pin].addListener((state) => { if (state === 0 || state === 1) g[pin].setInputValue(state === 1); });
  }
  const stepper = (axis, stepPin, dirPin, isPlunger) => {
    g[stepPin].addListener((state, old) => {
      if (state !== 1 || old === 1) return; // rising edges only
      const fwd = outputHigh(c, dirPin);
      if (outputHigh(c, axis.enPin)) { axis.disabledSteps++; return; } // EN high: the driver is off
      if (fwd) { axis.pos++; axis.fwd++; } else { axis.pos--; axis.bwd++; }
      if (axis.pos > axis.max) axis.max = axis.pos;
      if (isPlunger) {
        if (axis.pos > world.face) world.face = axis.pos;
        else if (axis.pos < world.face - MODEL.backlash_steps) world.face = axis.pos + MODEL.backlash_steps;
        if (axis.pos === 0 || axis.pos === 1 || axis.pos === MODEL.plunger_travel_steps
            || axis.pos === MODEL.plunger_travel_steps - 1) switchLevels(c);
      } else {
        excursion(axis.pos);
        if (axis.pos === 0 || axis.pos === 1) switchLevels(c);
      }
    });
  };
  stepper(world.needle, P.NEEDLE_STEP, P.NEEDLE_DIR, false);
  stepper(world.plunger, P.PLUNGER_STEP, P.PLUNGER_DIR, true);
  switchLevels(c);
}

// A puncture as the pins see it: the tip passes the skin plane and comes back out
// (between nappage shots the needle waits at its hover point, not at home).
function excursion(pos) {
  const e = world.excursion;
  if (!e && pos > MODEL.excursion_steps) {
    world.excursion = { deepest: pos, face0: world.face, t0: chip ? chip.clock.nanos : 0 };
  } else if (e) {
    if (pos > e.deepest) e.deepest = pos;
    if (pos <= MODEL.excursion_steps) {
      world.punctures.push({ deepest: e.deepest, dose_steps: world.face - e.face0,
        ms: (chip.clock.nanos - e.t0) / 1e6 });
      world.excursion = null;
    }
  }
}

// ----------------------------------------------------------------------- syringe, line, load cell
function fluidTimer(c) {
  const dtS = 0.001;
  const alarm = c.clock.createAlarm(() => {
    const moved = world.face - world.faceLast;
    world.faceLast = world.face;
    if (world.forceHeld !== null) {
      world.forceMn = world.forceHeld;
    } else if (world.inputs.syringe) {
      world.excessUl += moved * MODEL.um_per_plunger_step * MODEL.syringe_area_mm2 / 1000;
      const out = world.blocked ? 0 : world.excessUl * (1 - Math.exp(-dtS / (MODEL.line_r * MODEL.line_c)));
      world.excessUl -= out;
      world.outUl += out;
      const kpa = world.excessUl / MODEL.line_c;
      world.forceMn = Math.round(kpa * MODEL.syringe_area_mm2);
    } else {
      world.excessUl = 0;
      world.forceMn = 0;
    }
    alarm.schedule(1e6);
  });
  alarm.schedule(1e6);
}

// HX711: DOUT low when a conversion is ready; each SCK rising edge shifts the next bit out, MSB
// first; the 25th pulse sets channel A gain 128 and DOUT goes high until the next conversion.
// SCK held high over 60 us powers it down; low again restarts the conversions.
function hx711(c) {
  const dout = P.HX711_DOUT, sck = P.HX711_SCK;
  const hx = { word: 0, bit: -1, ready: false, sckHighAt: -1, down: false };
  level(c, dout, 1);
  const convert = c.clock.createAlarm(() => {
    if (!hx.down) {
      const raw = Math.max(-0x800000, Math.min(0x7fffff, Math.round(world.forceMn * MODEL.hx711_counts_per_mn)));
      hx.word = raw & 0xffffff;
      hx.bit = 0;
      hx.ready = true;
      level(c, dout, 0);
      stats.hxSamples = (stats.hxSamples || 0) + 1;
    }
    convert.schedule(MODEL.hx711_period_us * 1000);
  });
  convert.schedule(MODEL.hx711_period_us * 1000);
  c.mcu.gpio[sck].addListener((state, old) => {
    stats.sckEdges = (stats.sckEdges || 0) + 1;
    if (state === 1 && old !== 1) {
      hx.sckHighAt = c.clock.nanos;
      if (!hx.ready) return;
      if (hx.bit < 24) {
        level(c, dout, (hx.word >> (23 - hx.bit)) & 1);
        hx.bit++;
      } else { // the 25th pulse
        hx.ready = false;
        level(c, dout, 1);
      }
    } else if (state === 0 && old === 1) {
      if (hx.sckHighAt >= 0 && c.clock.nanos - hx.sckHighAt > 60000) {
        hx.down = false; // power-down ended: conversions start over
        hx.ready = false;
        level(c, dout, 1);
        convert.cancel();
        convert.schedule(MODEL.hx711_period_us * 1000);
      }
      hx.sckHighAt = -1;
    }
  });
}

// ---------------------------------------------------------------------------------------- SSD1306
const display = { ram: new Uint8Array(1024), frames: [], col0: 0, col1: 127, page0: 0, page1: 7,
  col: 0, page: 0, on: false, bytes: 0 };

function ssd1306(c) {
  const i2c = c.mcu.i2c[P.I2C_ID];
  const byteNanos = 9 * 1e9 / MODEL.i2c_hz; // 8 bits and the acknowledge
  let first = false, data = false, wrote = false, cmd = [];
  const later = (fn) => { const a = c.clock.createAlarm(fn); a.schedule(byteNanos); };
  i2c.onStart = () => { first = true; wrote = false; i2c.completeStart(); };
  i2c.onConnect = (addr, mode) => { later(() => i2c.completeConnect(addr === MODEL.oled_addr && mode === 0)); };
  i2c.onWriteByte = (v) => {
    if (first) { first = false; data = (v & 0x40) !== 0; }
    else if (data) { putData(v); wrote = true; }
    else { cmd.push(v); runCommands(cmd); }
    later(() => i2c.completeWrite(true));
  };
  i2c.onReadByte = () => { later(() => i2c.completeRead(0xff)); };
  i2c.onStop = () => {
    if (wrote) display.frames.push({ t_ms: c.clock.nanos / 1e6, ram: Buffer.from(display.ram).toString('base64') });
    i2c.completeStop();
  };
}

function putData(v) {
  const d = display;
  d.ram[d.page * 128 + d.col] = v;
  d.bytes++;
  if (++d.col > d.col1) { d.col = d.col0; if (++d.page > d.page1) d.page = d.page0; }
}

// Commands with arguments wait until all their bytes are in.
const ARGS = { 0x20: 1, 0x21: 2, 0x22: 2, 0x81: 1, 0x8d: 1, 0xa8: 1, 0xd3: 1, 0xd5: 1, 0xd9: 1, 0xda: 1, 0xdb: 1 };
function runCommands(cmd) {
  const op = cmd[0];
  const n = ARGS[op] || 0;
  if (cmd.length < n + 1) return;
  const d = display;
  if (op === 0x21) { d.col0 = cmd[1] & 127; d.col1 = cmd[2] & 127; d.col = d.col0; }
  else if (op === 0x22) { d.page0 = cmd[1] & 7; d.page1 = cmd[2] & 7; d.page = d.page0; }
  else if (op === 0xae) d.on = false;
  else if (op === 0xaf) d.on = true;
  cmd.length = 0;
}

// ------------------------------------------------------------------------------------ flash writes
// The boot ROM's flash_range_erase ('RE') and flash_range_program ('RP'), found through its
// function table, are done here. The SDK calls them with interrupts off; the time a W25Q16JV
// takes (sector erase 45 ms, page program 0.4 ms, typical) passes with the CPU held and the PIO on.
function romFunction(code) {
  const rom = Buffer.from(bootrom.buffer);
  const table = rom.readUInt16LE(0x14);
  for (let a = table; ; a += 4) {
    const k = rom.readUInt16LE(a);
    if (!k) throw new Error('boot ROM has no function ' + code);
    if (k === (code.charCodeAt(0) | code.charCodeAt(1) << 8)) return rom.readUInt16LE(a + 2) & ~1;
  }
}

function flashOp(c, pc) {
  const r = c.core.registers;
  let busyNanos;
  if (pc === ROM_ERASE) {
    const off = r[0] >>> 0, count = r[1] >>> 0;
    c.mcu.flash.fill(0xff, off, off + count);
    stats.flashErases++;
    busyNanos = Math.ceil(count / FLASH_SECTOR) * MODEL.flash_erase_us * 1000;
  } else {
    const off = r[0] >>> 0, src = r[1] >>> 0, count = r[2] >>> 0;
    for (let i = 0; i < count; i++) c.mcu.flash[off + i] &= c.mcu.readUint8(src + i); // program clears bits
    stats.flashPrograms++;
    busyNanos = Math.ceil(count / FLASH_PAGE) * MODEL.flash_page_us * 1000;
  }
  c.core.PC = c.core.LR & ~1; // return to the caller
  idle(c, busyNanos);
}

// ------------------------------------------------------------------------------------ the CPU loop
let ROM_ERASE = 0, ROM_PROGRAM = 0;
let epStart = -1, epTimer = false;

// Time passes with the CPU held by a flash operation: interrupts off, PIO and alarms running.
function idle(c, nanos) {
  c.pio.advance(c.pio.now + Math.ceil(nanos / c.cycleNanos), c.clock, c.cycleNanos);
}

// Where the current run() stops (emulated nanoseconds): a sleeping CPU does not sleep past it.
let runEnd = Infinity;

function step(c) {
  const core = c.core, pio = c.pio;
  if (core.waiting) { // asleep (WFI/WFE): on to the next alarm or PIO instruction, or the run's end
    const alarm = c.clock.nextAlarm ? Math.max(1, Math.ceil((c.clock.nextAlarm.nanos - c.clock.nanos) / c.cycleNanos)) : 1000;
    let until = Math.min(pio.now + alarm, Math.max(pio.next, pio.now + 1));
    const toEnd = Math.ceil((runEnd - c.clock.nanos) / c.cycleNanos);
    if (toEnd >= 1 && pio.now + toEnd < until) until = pio.now + toEnd;
    stats.sleepCycles += until - pio.now;
    pio.advance(until, c.clock, c.cycleNanos);
    return;
  }
  const pc = core.PC;
  if (pc === ROM_ERASE || pc === ROM_PROGRAM) { flashOp(c, pc); return; }
  const n = core.executeInstruction();
  if (profile) profile[pc] = (profile[pc] || 0) + n;
  const t0 = pio.now;
  pio.advance(t0 + n, c.clock, c.cycleNanos);
  // Interrupts: from leaving thread mode to coming back, tail-chained handlers included.
  const ipsr = core.IPSR;
  if (ipsr) {
    stats.byException[ipsr] = (stats.byException[ipsr] || 0) + n;
    if (epStart < 0) { epStart = t0; epTimer = false; }
    if (ipsr === TIMER_EXCEPTION) epTimer = true;
  } else if (epStart >= 0) {
    const cycles = pio.now - epStart;
    stats.irqs++;
    stats.irqCycles += cycles;
    if (cycles > stats.irqMax) stats.irqMax = cycles;
    if (epTimer) {
      const over = cycles > 500 * c.mcu.clkSys / 1e6;
      stats.timerIrqs++;
      stats.timerCycles += cycles;
      if (cycles > stats.timerMax) { stats.timerMax = cycles; stats.timerMaxAtMs = c.clock.nanos / 1e6; }
      if (over) stats.timerOver500++;
      if (stateAddr) {
        const key = String(c.mcu.readUint32(stateAddr));
        const b = stats.byState[key] || (stats.byState[key] = { n: 0, cycles: 0, max: 0, over500: 0 });
        b.n++; b.cycles += cycles; if (cycles > b.max) b.max = cycles;
        if (over) b.over500++;
      }
    }
    epStart = -1;
  }
}

let uartText = '';
let uartRead = 0;
const rxQueue = [];

function pumpUart(c) {
  const uart = c.mcu.uart[0];
  if (rxQueue.length && uart.flags & 0x10 /* RXFE */) uart.feedByte(rxQueue.shift());
}

// Run until `nanos` of emulated time have passed or until(c) says stop (checked every batch).
// A batch of steps ends early at `end`, at a watchdog expiry (the chip resets there, not up to
// 500 steps later) and, when waiting for text, at new console output. Asleep, one step can pass
// a whole alarm period (a millisecond of the model's own timers), so 500 of them would
// overshoot by half a second.
function run(nanos, until) {
  const end = chip.clock.nanos + nanos;
  runEnd = end;
  try {
    for (;;) {
      const c = chip;
      const mark = until ? uartText.length : -1;
      for (let i = 0; i < 500 && c.clock.nanos < end && !pendingReset; i++) {
        step(c);
        if (mark >= 0 && uartText.length !== mark) break;
      }
      pumpUart(c);
      if (pendingReset) doReset();
      if (until && until()) return true;
      if (chip.clock.nanos >= end) return false;
    }
  } finally {
    runEnd = Infinity;
  }
}

// ---------------------------------------------------------------------------------- the REPL
function sendText(s) { for (const ch of Buffer.from(s, 'latin1')) rxQueue.push(ch); }

function waitText(text, nanos) {
  return run(nanos, () => uartText.indexOf(text, uartRead) >= 0);
}

// Break into the REPL (Ctrl-C twice), run `code` in the raw REPL, come back to the friendly REPL.
function replExec(code, maxNanos) {
  const mark = uartText.length;
  sendText('\r\x03\x03');
  uartRead = mark;
  if (!waitText('>>> ', 5e9)) return { error: 'no REPL prompt', uart: uartText.slice(mark) };
  uartRead = uartText.length;
  sendText('\x01');
  if (!waitText('raw REPL; CTRL-B to exit\r\n>', 5e9)) return { error: 'no raw REPL', uart: uartText.slice(mark) };
  uartRead = uartText.length;
  sendText(code + '\x04');
  const start = uartText.length;
  const done = run(maxNanos, () => (uartText.slice(start).match(/\x04/g) || []).length >= 2);
  const body = uartText.slice(start);
  sendText('\x02');
  uartRead = uartText.length;
  if (!done) return { error: 'timeout', uart: body };
  const [out, err] = body.replace(/^OK/, '').split('\x04');
  return { out, err };
}

// ------------------------------------------------------------------------------------------ ELF
function elfSymbols(file) {
  const b = fs.readFileSync(file);
  const shoff = b.readUInt32LE(0x20), shentsize = b.readUInt16LE(0x2e), shnum = b.readUInt16LE(0x30);
  const sec = (i) => { const o = shoff + i * shentsize; return { type: b.readUInt32LE(o + 4), off: b.readUInt32LE(o + 16),
    size: b.readUInt32LE(o + 20), link: b.readUInt32LE(o + 24), entsize: b.readUInt32LE(o + 36) }; };
  const syms = [];
  for (let i = 0; i < shnum; i++) {
    const s = sec(i);
    if (s.type !== 2) continue; // SHT_SYMTAB
    const str = sec(s.link);
    for (let o = s.off; o < s.off + s.size; o += s.entsize) {
      const info = b[o + 12];
      if ((info & 15) !== 2) continue; // STT_FUNC
      const nameOff = b.readUInt32LE(o);
      let e = str.off + nameOff;
      while (b[e]) e++;
      syms.push({ a: b.readUInt32LE(o + 4) & ~1, n: b.readUInt32LE(o + 8), name: b.toString('latin1', str.off + nameOff, e) });
    }
  }
  return syms.sort((x, y) => x.a - y.a);
}

function profileReport(top) {
  const syms = elfSymbols(cfg.elf);
  const byFn = {};
  let total = 0;
  for (const [k, v] of Object.entries(profile || {})) {
    const pc = Number(k);
    total += v;
    let lo = 0, hi = syms.length - 1, best = null;
    while (lo <= hi) { const m = (lo + hi) >> 1; if (syms[m].a <= pc) { best = syms[m]; lo = m + 1; } else hi = m - 1; }
    const name = best && pc < best.a + Math.max(best.n, 2) ? best.name
      : pc >= 0x20000000 ? '(RAM: native code)' : '?' + pc.toString(16);
    byFn[name] = (byFn[name] || 0) + v;
  }
  const rows = Object.entries(byFn).sort((a, b) => b[1] - a[1]).slice(0, top);
  return { total, rows };
}

// --------------------------------------------------------------------------------------- startup
// A configuration the chip cannot start from (a missing file, a file that is not what it should
// be) ends the process with one line on stderr, which Chip reports; it never boots a blank flash.
function startupError(msg) {
  process.stderr.write('chip.mjs: ' + msg + '\n');
  process.exit(2);
}

function readInput(file, what) {
  try { return fs.readFileSync(file); } catch (e) {
    startupError(`cannot read ${what} ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
  }
}

const UF2_FAMILY_RP2040 = 0xe48bff56;
const FLASH_BYTES = 2 * 1024 * 1024;
const bootrom = (() => {
  const b = readInput(cfg.bootrom, 'the boot ROM');
  if (b.length !== 16384) startupError(`the boot ROM ${cfg.bootrom} is ${b.length} bytes, not the RP2040's 16384`);
  return new Uint32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
})();
let flashImage = new Uint8Array(FLASH_BYTES).fill(0xff);
{
  const uf2 = readInput(cfg.uf2, 'the MicroPython image');
  let blocks = 0;
  for (let off = 0; off + 512 <= uf2.length; off += 512) {
    if (uf2.readUInt32LE(off) !== 0x0a324655 || uf2.readUInt32LE(off + 4) !== 0x9e5d5157) continue;
    const flags = uf2.readUInt32LE(off + 8), addr = uf2.readUInt32LE(off + 12), size = uf2.readUInt32LE(off + 16);
    if (flags & 1) continue; // not for the main flash
    if (flags & 0x2000 && uf2.readUInt32LE(off + 28) !== UF2_FAMILY_RP2040) {
      startupError(`the MicroPython image ${cfg.uf2} is a UF2 for family 0x${uf2.readUInt32LE(off + 28).toString(16)}, not the RP2040 (0x${UF2_FAMILY_RP2040.toString(16)})`);
    }
    if (addr < 0x10000000 || addr + size > 0x10000000 + FLASH_BYTES || size > 476) {
      startupError(`the MicroPython image ${cfg.uf2} has a block at 0x${addr.toString(16)} outside the 2 MB flash`);
    }
    flashImage.set(uf2.subarray(off + 32, off + 32 + size), addr - 0x10000000);
    blocks++;
  }
  if (!blocks) startupError(`the MicroPython image ${cfg.uf2} is not a UF2 file (no UF2 blocks in its ${uf2.length} bytes)`);
  for (const [off, file] of cfg.flash || []) {
    const img = readInput(file, 'the flash image');
    if (off < 0 || off + img.length > FLASH_BYTES) {
      startupError(`the flash image ${file} (${img.length} bytes at 0x${off.toString(16)}) does not fit the 2 MB flash`);
    }
    flashImage.set(img, off);
  }
}
try {
  ROM_ERASE = romFunction('RE');
  ROM_PROGRAM = romFunction('RP');
} catch (e) {
  startupError(`the boot ROM ${cfg.bootrom} is not the RP2040's: ${e.message}`);
}
chip = bootChip();

// ------------------------------------------------------------------------------------- requests
function status() {
  const c = chip;
  const nowNanos = c.clock.nanos;
  const span = c.pio.now - stats.startCycles;
  return {
    t_ms: nowNanos / 1e6,
    needle: { ...world.needle }, plunger: { ...world.plunger }, face: world.face,
    force_mn: world.forceMn, out_ul: world.outUl, excess_ul: world.excessUl,
    drivers: { needle: !outputHigh(c, P.NEEDLE_EN), plunger: !outputHigh(c, P.PLUNGER_EN) },
    punctures: world.punctures.length, resets,
    frames: display.frames.length, display_on: display.on,
    irq: { n: stats.irqs, cycles: stats.irqCycles, max: stats.irqMax, timer_n: stats.timerIrqs,
      timer_cycles: stats.timerCycles, timer_max: stats.timerMax, timer_max_at_ms: stats.timerMaxAtMs, timer_over_500us: stats.timerOver500,
      sleep_cycles: Math.round(stats.sleepCycles), span_cycles: Math.round(span), by_state: stats.byState, by_exception: stats.byException },
    clk_hz: c.mcu.clkSys,
    watchdog: { feeds: stats.feeds, gap_max_us: stats.feedGapMaxUs, expired: stats.wdtExpired },
    flash: { erases: stats.flashErases, programs: stats.flashPrograms },
    hx711_samples: stats.hxSamples || 0, sck_edges: stats.sckEdges || 0, pio_now: c.pio.now, pio_next: c.pio.next,
  };
}

function resetStats() {
  for (const k of ['irqs', 'irqCycles', 'irqMax', 'timerIrqs', 'timerCycles', 'timerMax', 'timerOver500', 'sleepCycles']) stats[k] = 0;
  stats.byState = {};
  stats.byException = {};
  stats.startCycles = chip.pio.now;
}

const handlers = {
  run(req) { run(req.ms * 1e6); return status(); },
  set(req) {
    for (const [k, v] of Object.entries(req.inputs || {})) {
      if (!(k in world.inputs)) throw new Error('no such input: ' + k);
      world.inputs[k] = !!v;
    }
    if ('blocked' in req) world.blocked = !!req.blocked;
    if ('force_mn' in req) { // a number holds the load cell's force there; null gives it back to the fluid model
      const f = req.force_mn;
      if (f !== null && !Number.isFinite(f)) throw new Error('force_mn is not a number: ' + f);
      world.forceHeld = f === null ? null : Math.round(f);
      if (f !== null) world.forceMn = world.forceHeld;
    }
    switchLevels(chip);
    return status();
  },
  status() { return status(); },
  debug_pio() {
    return chip.mcu.pio.map((pio) => pio.machines.map((sm) => ({ en: sm.enabled, pc: sm.pc, waiting: sm.waiting,
      waitType: sm.waitType, waitIndex: sm.waitIndex, div: sm.clockDivInt, wake: sm.wake, k: sm.k, t0: sm.t0,
      x: sm.x, y: sm.y, tx: sm.txFIFO.itemCount, rx: sm.rxFIFO.itemCount, inBase: sm.inBase })));
  },
  uart(req) { const t = uartText.slice(req.from || 0); return { text: t, end: uartText.length }; },
  wait_uart(req) {
    uartRead = req.from || 0;
    const ok = waitText(req.text, (req.max_ms || 1000) * 1e6);
    return { found: ok, end: uartText.length, t_ms: chip.clock.nanos / 1e6 };
  },
  send(req) { sendText(req.text); return {}; },
  exec(req) { return replExec(req.code, (req.max_ms || 60000) * 1e6); },
  frames(req) { return { frames: display.frames.slice(req.from || 0), end: display.frames.length }; },
  punctures(req) { return { punctures: world.punctures.slice(req.from || 0) }; },
  reset_stats() { resetStats(); return status(); },
  watch_state(req) { stateAddr = req.addr >>> 0; return {}; },
  // RAM words that fit a pattern [[byte offset, value], ...]: where an array of the firmware's is.
  find_words(req) {
    const found = [];
    const pat = req.pattern;
    for (let a = 0x20000000; a < 0x20042000; a += 4) {
      let ok = true;
      for (const [off, v] of pat) {
        if (a + off >= 0x20042000 || (chip.mcu.readUint32(a + off) | 0) !== (v | 0)) { ok = false; break; }
      }
      if (ok) found.push(a);
    }
    return { found };
  },
  profile(req) {
    if (req.on) { profile = Object.create(null); return {}; }
    const rep = profileReport(req.top || 25);
    profile = null;
    return rep;
  },
};

for (;;) {
  const next = await lines.next();
  if (next.done) break;
  const line = next.value.trim();
  if (!line) continue;
  let req;
  try { req = JSON.parse(line); } catch (e) { answer({ error: 'bad request: ' + e.message }); continue; }
  if (req.op === 'quit') { answer({}); break; }
  const h = handlers[req.op];
  if (!h) { answer({ error: 'no such request: ' + req.op }); continue; }
  try { answer(h(req)); } catch (e) { answer({ error: String(e && e.stack || e) }); }
}
process.exit(0);
