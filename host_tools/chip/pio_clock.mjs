// PIO clocked from the emulated system clock, event by event.
//
// rp2040js runs its PIO untimed, in batches from setTimeout, ignoring clock dividers and `[delay]`.
// On the chip a state machine runs one instruction per tick of its clock divider, each instruction
// holding it 1 + delay ticks. Stepping every machine on every cycle is exact but slow: a stepper's
// step generator spends nearly all of its time counting Y down in a one-instruction loop, and the
// step counters wait on a pin. Here each machine instead sleeps until the tick of its next
// instruction that does something:
// - after an instruction, until its delay has passed (1 + delay ticks of its divider);
// - in a `jmp y--` to itself whose side-set is already applied: for all Y turns at once (they only
//   count Y down; Y is brought up to date if the CPU touches the machine meanwhile);
// - while it waits (on a pin, an empty TX FIFO, a full RX FIFO), until the event that can end the
//   wait: a GPIO input that changes, a word written or read by the CPU.
// Instructions run through rp2040js's own StateMachine.step, so their semantics are rp2040js's;
// only the time between them is ours.
import { RPPIO } from 'rp2040js';

const WAIT_IRQ = 4; // rp2040js WaitType.IRQ: polled every tick (no event tells us it may end)
const CTRL = 0x000;
const TXF0 = 0x010;
const RXF0 = 0x020;
const RXF3 = 0x02c;
const SM0_CLKDIV = 0x0c8;
const SM_STRIDE = 0x18;
const SM3_PINCTRL = 0x124;

RPPIO.prototype.run = function () {}; // no untimed batches: PioClock steps the machines

function div256(sm) { return (sm.clockDivInt || 65536) * 256 + sm.clockDivFrac; }

export class PioClock {
  constructor(mcu) {
    this.mcu = mcu;
    this.now = 0; // cycles of clk_sys since boot: the PIO's timeline
    this.next = Infinity; // the earliest cycle at which some machine runs an instruction
    this.machines = [];
    for (const pio of mcu.pio) {
      for (const sm of pio.machines) {
        sm.t0 = 0; // cycle of its divider's tick 0
        sm.k = 0; // index of the divider tick of its next instruction
        sm.wake = Infinity;
        sm.spin = null;
        this.machines.push(sm);
      }
      this.hookRegisters(pio);
    }
    for (const pin of mcu.gpio) this.hookPin(pin);
  }

  tickAt(sm, k) { return sm.t0 + Math.ceil(k * div256(sm) / 256); }

  // The index of the first divider tick after cycle c.
  tickAfter(sm, c) { return Math.max(0, Math.floor((c - sm.t0) * 256 / div256(sm)) + 1); }

  schedule(sm) {
    sm.wake = sm.enabled ? this.tickAt(sm, sm.k) : Infinity;
    if (sm.wake < this.next) this.next = sm.wake;
  }

  refreshNext() {
    let n = Infinity;
    for (const sm of this.machines) if (sm.wake < n) n = sm.wake;
    this.next = n;
  }

  // A machine asleep on an event runs again at its next tick (and sleeps again if the wait holds).
  wake(sm) {
    if (sm.enabled && sm.wake === Infinity) { sm.k = this.tickAfter(sm, this.now); this.schedule(sm); }
  }

  // Bring Y of a machine in a skipped countdown up to date, and let it loop on normally from now.
  settle(sm) {
    const s = sm.spin;
    if (!s) return;
    sm.spin = null;
    const done = Math.min(s.n, Math.max(0, Math.ceil((this.tickAfter(sm, this.now) - s.k0) / s.per)));
    sm.y = (s.n - done) >>> 0;
    sm.cycles -= (s.n - done) * s.per;
    sm.k = s.k0 + done * s.per;
    this.schedule(sm);
  }

  hookRegisters(pio) {
    const write = pio.writeUint32.bind(pio), read = pio.readUint32.bind(pio);
    pio.writeUint32 = (offset, value) => {
      if (offset === CTRL) {
        const was = pio.machines.map((sm) => sm.enabled);
        for (const sm of pio.machines) this.settle(sm);
        write(offset, value);
        pio.machines.forEach((sm, i) => {
          const restart = value & (1 << (4 + i)) || value & (1 << (8 + i));
          if (sm.enabled && (!was[i] || restart)) { sm.t0 = this.now + 1; sm.k = 0; sm.spin = null; }
          else if (sm.enabled) sm.k = Math.max(sm.k, this.tickAfter(sm, this.now));
          this.schedule(sm);
        });
        this.refreshNext();
        return;
      }
      if (offset >= SM0_CLKDIV && offset <= SM3_PINCTRL) {
        const sm = pio.machines[Math.floor((offset - SM0_CLKDIV) / SM_STRIDE)];
        this.settle(sm);
        write(offset, value);
        if ((offset - SM0_CLKDIV) % SM_STRIDE === 0) sm.t0 = this.now + 1; // a new divider
        sm.spin = null;
        sm.k = this.tickAfter(sm, this.now);
        this.schedule(sm);
        this.refreshNext();
        return;
      }
      write(offset, value);
      if (offset >= TXF0 && offset < RXF0) this.wake(pio.machines[(offset - TXF0) >> 2]);
    };
    pio.readUint32 = (offset) => {
      const v = read(offset);
      if (offset >= RXF0 && offset <= RXF3) this.wake(pio.machines[(offset - RXF0) >> 2]);
      return v;
    };
  }

  // rp2040js ends a pin wait right inside setInputValue: wake every machine that was waiting.
  hookPin(pin) {
    const set = pin.setInputValue.bind(pin);
    const waiting = [];
    pin.setInputValue = (value) => {
      const before = pin.inputValue;
      for (const sm of this.machines) if (sm.waiting) waiting.push(sm);
      set(value);
      if (pin.inputValue !== before) for (const sm of waiting) this.wake(sm);
      waiting.length = 0;
    };
  }

  // One instruction of each machine due at cycle c, in the chip's order; then the pins they drive.
  runDue(c) {
    for (const pio of this.mcu.pio) {
      let ran = false;
      for (const sm of pio.machines) {
        if (sm.wake !== c) continue;
        ran = true;
        const pc = sm.pc, cycles = sm.cycles;
        sm.step();
        const used = sm.cycles - cycles;
        if (sm.waiting) {
          sm.k = used ? sm.k + used : sm.k + 1;
          sm.wake = sm.waitType === WAIT_IRQ ? this.tickAt(sm, sm.k) : Infinity;
          continue;
        }
        sm.k += used;
        // Still on the same `jmp y--` to itself, its side-set applied: skip the Y turns left.
        const op = pio.instructions[sm.pc];
        if (sm.pc === pc && op >>> 13 === 0 && ((op >> 5) & 7) === 4 && (op & 31) === pc && sm.y >>> 0 > 1) {
          const n = sm.y >>> 0, per = used;
          sm.spin = { k0: sm.k, n, per };
          sm.y = 0;
          sm.cycles += n * per;
          sm.k += n * per;
        } else {
          sm.spin = null;
        }
        sm.wake = this.tickAt(sm, sm.k);
      }
      if (ran) pio.checkChangedPins();
    }
    this.refreshNext();
  }

  // Run the machines through the cycles up to `until` (inclusive), with the clock: alarms fire at
  // their time in between, and what they do to the pins wakes the machines in order.
  advance(until, clock, cycleNanos) {
    for (;;) {
      let t = this.next;
      const alarm = clock.nextAlarm ? this.now + Math.max(1, Math.ceil((clock.nextAlarm.nanos - clock.nanos) / cycleNanos)) : Infinity;
      if (alarm < t) t = alarm;
      if (t > until) break;
      const dt = t - this.now;
      this.now = t; // first: what an alarm wakes is scheduled after it
      clock.tick(dt * cycleNanos);
      if (this.next === t) this.runDue(t);
    }
    if (until > this.now) {
      const dt = until - this.now;
      this.now = until;
      clock.tick(dt * cycleNanos);
    }
  }
}
