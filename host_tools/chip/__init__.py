"""The emulated Pico: the firmware on MicroPython for the RP2040, cycle by cycle.

`Chip` starts `chip.mjs` (rp2040js from npm) with the MicroPython image and the
RP2040 boot ROM from RP2040_DIR, the firmware in the flash as a board has it
(the compiled modules in the ROMFS partition, main.py and any other file on
littlefs), and a model of the machine around the pins (see chip.mjs). Its
methods drive the model and read it back; emulated time only passes in
`run_ms` and the calls that wait for something.

    with Chip.with_firmware(tmp_path) as chip:
        chip.run_ms(500)
        chip.press("ok")

RP2040_DIR defaults to ../shared/rp2040 beside the project. Where it lacks
the image or the boot ROM, `missing()` says so in one line that names the
variable, and the tests of this tier are skipped with it.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from host_tools import flash_images

ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).with_name("chip.mjs")
IMAGE = "micropython-1.28.0-rpi-pico-romfs.uf2"
ELF = "micropython-1.28.0-rpi-pico-romfs.elf"
BOOTROM = "bootrom-b1.bin"
CLK_HZ = 125_000_000

sys.path[:0] = [p for p in (str(ROOT / "firmware"),) if p not in sys.path]


KEEP = object()  # Chip.set: leave this input as it is


class ChipError(RuntimeError):
    """The emulated chip could not do what was asked: the message says what and why."""


def rp2040_dir():
    return Path(os.environ.get("RP2040_DIR") or ROOT.parent / "shared" / "rp2040")


def missing():
    """None if the emulated Pico can run here, else one line saying what is missing."""
    d = rp2040_dir()
    for name in (IMAGE, BOOTROM):
        if not (d / name).is_file():
            return (
                "emulated Pico skipped: no %s in RP2040_DIR=%s (set RP2040_DIR to the folder "
                "with the MicroPython image and the RP2040 boot ROM)" % (name, d)
            )
    if shutil.which("node") is None:
        return "emulated Pico skipped: node is not installed"
    if not (ROOT / "node_modules" / "rp2040js").is_dir():
        return "emulated Pico skipped: rp2040js is not installed (run `make setup`)"
    return None


def _pins():
    from board import pins

    return {k: v for k, v in vars(pins).items() if k.isupper() and isinstance(v, int)}


def machine_model(**changes):
    """The figures of the model around the chip, from the project's machine file."""
    from board import pins
    from injcore import machine as M

    ref_r_pa_s_ml = M.needle_r_pa_s_ml(
        M.REF_NEEDLE_GAUGE, M.REF_NEEDLE_LENGTH_UM, M.REF_VISCOSITY_UPA_S
    )
    model = dict(
        needle_start_steps=M.um_to_needle_steps(500),  # half a millimetre in front of the switch
        plunger_start_steps=M.um_to_plunger_steps(1000),
        plunger_travel_steps=M.um_to_plunger_steps(M.PLUNGER_TRAVEL_UM),
        backlash_steps=M.um_to_plunger_steps(M.PLUNGER_BACKLASH_UM),
        um_per_plunger_step=1000 / M.PLUNGER_STEPS_PER_MM,
        syringe_area_mm2=M.SYRINGES[1][M.SYR_AREA_CMM2] / 100,
        # The line as sim/machine.py's Fluid has it: the reference needle and drug
        # (kPa per uL/s) and the 1 mL syringe's compliance (uL per kPa).
        line_r=ref_r_pa_s_ml / 1e6,
        line_c=M.SYRINGES[1][M.SYR_COMPLIANCE_NL_KPA] / 1000,
        hx711_counts_per_mn=876 / 10,  # board/hx711.py's default scale, inverted
        hx711_period_us=12_500,
        i2c_hz=pins.I2C_HZ,
        oled_addr=pins.OLED_ADDR,
        excursion_steps=M.um_to_needle_steps(M.NEEDLE_HOME_OFFSET_UM),  # the skin plane
        flash_erase_us=45_000,
        flash_page_us=400,  # W25Q16JV, typical
    )
    unknown = set(changes) - set(model)
    if unknown:
        raise ValueError("no such model figure: %s" % ", ".join(sorted(unknown)))
    model.update(changes)
    return model


def _last_line(text):
    """The line that says why: chip.mjs's own, else a stack trace's `...Error: ...` line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "chip.mjs: " in ln:
            return ln[ln.index("chip.mjs: ") :]
    for ln in lines:
        if re.match(r"^(the emulator stopped: )?[A-Za-z_.]*(Error|Exception)\b.*:", ln):
            return ln
    return lines[-1] if lines else text


class Chip:
    """One emulated Pico and the machine around it (a node process)."""

    def __init__(self, flash=(), model=None, uf2=None, timeout=600):
        why = missing()
        if why:
            raise ChipError(why)
        d = rp2040_dir()
        cfg = {
            "uf2": str(uf2 or d / IMAGE),
            "bootrom": str(d / BOOTROM),
            "elf": str(d / ELF),
            "flash": [[off, str(path)] for off, path in flash],
            "pins": _pins(),
            "model": model or machine_model(),
        }
        for what, path in [("MicroPython image", cfg["uf2"]), ("boot ROM", cfg["bootrom"])] + [
            ("flash image", p) for _off, p in cfg["flash"]
        ]:
            if not Path(path).is_file():
                raise ChipError("no %s at %s: no such file" % (what, path))
        self.timeout = timeout
        self._uart_end = 0
        self.proc = subprocess.Popen(
            ["node", str(HARNESS)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._send(cfg)
        # chip.mjs checks the image, the boot ROM and the flash images before it boots, and on
        # a bad one exits with one line on stderr: a status request surfaces that line here
        # rather than at the first call that waits for the chip.
        try:
            self.request("status")
        except ChipError as e:
            self.close()
            raise ChipError("the emulated Pico did not start: %s" % _last_line(str(e))) from None

    @classmethod
    def with_firmware(cls, work_dir, files=None, main=True, romfs=True, **kw):
        """A chip with this project's firmware on it, as `make deploy` puts it on a board.

        The compiled modules (`make mpy`) go into the ROMFS partition (romfs=False:
        onto littlefs instead), firmware/main.py onto littlefs unless main=False,
        and `files` ({board path: bytes}) beside it.
        """
        work_dir = Path(work_dir)
        mpy = work_dir / "mpy"
        r = subprocess.run(
            [
                "make",
                "-s",
                "-o",
                ".venv/.installed",
                "mpy",
                "PY=%s" % sys.executable,
                "MPY_DIR=%s" % mpy,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if r.returncode:
            raise ChipError("make mpy failed:\n" + r.stdout + r.stderr)
        on_fs = dict(files or {})
        flash = []
        if romfs:
            img = work_dir / "romfs.img"
            img.write_bytes(flash_images.romfs_image(mpy))
            flash.append((flash_images.ROMFS_OFFSET, img))
        else:
            for p in mpy.rglob("*.mpy"):
                on_fs[str(p.relative_to(mpy))] = p.read_bytes()
        if main:
            on_fs["main.py"] = (ROOT / "firmware" / "main.py").read_bytes()
        if on_fs:
            lfs = work_dir / "littlefs.img"
            lfs.write_bytes(flash_images.littlefs_image(on_fs))
            flash.append((flash_images.LFS_OFFSET, lfs))
        return cls(flash=flash, **kw)

    # ---- the protocol -------------------------------------------------------

    def _send(self, obj):
        try:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise ChipError("the emulator stopped: %s" % self._stderr()) from None

    def _stderr(self):
        try:
            return self.proc.stderr.read()[-2000:].strip() or "exit %s" % self.proc.poll()
        except (OSError, ValueError):
            return "exit %s" % self.proc.poll()

    def request(self, op, **kw):
        self._send(dict(kw, op=op))
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise ChipError("the emulator stopped: %s" % self._stderr())
        out = json.loads(line)
        if "error" in out and op != "exec":
            raise ChipError("%s: %s" % (op, out["error"]))
        return out

    def close(self):
        if self.proc.poll() is None:
            try:
                self._send({"op": "quit"})
                self.proc.stdout.readline()
                self.proc.wait(10)
            except (ChipError, subprocess.TimeoutExpired, OSError, ValueError):
                self.proc.kill()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- driving it ---------------------------------------------------------

    def run_ms(self, ms):
        """Let `ms` of emulated time pass; returns the model's status."""
        return self.request("run", ms=ms)

    def set(self, blocked=None, force_mn=KEEP, **inputs):
        """Model inputs: syringe, trigger, pedal, estop, up, down, ok, back, *_stall (True = on).

        blocked: the needle occluded (True) or not. force_mn: the load cell's force held at
        this many millinewtons (the HX711 answers with it from its next conversion on), or
        None to give the force back to the syringe-and-line model.
        """
        kw: dict = {"inputs": inputs}
        if blocked is not None:
            kw["blocked"] = blocked
        if force_mn is not KEEP:
            kw["force_mn"] = force_mn
        return self.request("set", **kw)

    def press(self, button, ms=60, then_ms=60):
        """Press a button (or the trigger) for `ms`, release it, let `then_ms` pass."""
        self.set(**{button: True})
        self.run_ms(ms)
        self.set(**{button: False})
        return self.run_ms(then_ms)

    def status(self):
        return self.request("status")

    def uart(self):
        """What the chip printed on its console since the last call."""
        out = self.request("uart", **{"from": self._uart_end})
        self._uart_end = out["end"]
        return out["text"]

    def wait_uart(self, text, max_ms):
        """Run until the console shows `text` (after what uart() returned last); True if it did."""
        out = self.request("wait_uart", text=text, max_ms=max_ms, **{"from": self._uart_end})
        return out["found"]

    def exec(self, code, max_ms=60_000):
        """Break into the REPL (Ctrl-C) and run `code` there; returns its output.

        Raises ChipError with the traceback if the code raised.
        """
        out = self.request("exec", code=code, max_ms=max_ms)
        if out.get("error"):
            raise ChipError("REPL: %s: %s" % (out["error"], out.get("uart", "")[-1500:]))
        if out["err"].strip():
            raise ChipError("REPL: the code raised:\n" + out["err"])
        return out["out"]

    def frames(self, start=0):
        """Frames the display received: [(t_ms, 1024 bytes of SSD1306 RAM)]."""
        import base64

        return [
            (f["t_ms"], base64.b64decode(f["ram"]))
            for f in self.request("frames", **{"from": start})["frames"]
        ]

    def punctures(self, start=0):
        """Needle excursions seen on the pins: deepest position and net face travel, in steps."""
        return self.request("punctures", **{"from": start})["punctures"]

    def reset_stats(self):
        return self.request("reset_stats")

    def find_words(self, pattern):
        """RAM addresses where words fit `pattern` ({byte offset: value})."""
        return self.request("find_words", pattern=[[k, v] for k, v in pattern.items()])["found"]

    def watch_state(self, addr):
        """Count timer interrupts per value of the RAM word at `addr` (status()'s irq.by_state)."""
        return self.request("watch_state", addr=addr)

    def profile(self, on=True, top=25):
        return self.request("profile", on=on, top=top)
