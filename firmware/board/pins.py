"""The one place that names the Pico's pins and peripheral units.

Only the board layer imports this; the core never sees a pin number. GPIO
numbers are the RP2040's (GPn), not the Pico's header pin numbers. A builder
who wires the board differently edits this file and nothing else.

Polarity: every switch and button closes to GND and uses the internal pull-up,
so a closed contact reads 0. The emergency stop is normally closed: pressed
or a broken wire reads 1, and it also cuts driver EN in hardware.
"""

from injcore.compat import const

# Needle axis (depth), TMC2209
NEEDLE_STEP = const(2)
NEEDLE_DIR = const(3)
NEEDLE_EN = const(4)  # active low
NEEDLE_DIAG = const(5)  # stall flag, active high

# Plunger axis (dose), TMC2209
PLUNGER_STEP = const(6)
PLUNGER_DIR = const(7)
PLUNGER_EN = const(8)  # active low
PLUNGER_DIAG = const(9)  # stall flag, active high

# Switches (closed = 0)
NEEDLE_HOME = const(10)
PLUNGER_REAR = const(11)
PLUNGER_FRONT = const(12)
SYRINGE = const(13)
TRIGGER = const(14)
PEDAL = const(15)
ESTOP = const(16)  # normally closed: 1 = pressed or wire broken

# Operator buttons (closed = 0)
BTN_UP = const(17)
BTN_DOWN = const(18)
BTN_OK = const(19)
BTN_BACK = const(20)

# HX711 load-cell amplifier
HX711_DOUT = const(21)
HX711_SCK = const(22)

# SSD1306 128x64 OLED on I2C1 (GP26/GP27 are I2C1 SDA/SCL)
I2C_ID = const(1)
I2C_SDA = const(26)
I2C_SCL = const(27)
I2C_HZ = 400_000
OLED_ADDR = const(0x3C)

BUZZER = const(28)  # PWM slice 6 A
LED = const(25)  # the Pico's on-board LED

# PIO state machines: PIO0 runs both axes (one copy of each program),
# PIO1 the HX711 reader.
SM_NEEDLE_GEN = const(0)
SM_NEEDLE_COUNT = const(1)
SM_PLUNGER_GEN = const(2)
SM_PLUNGER_COUNT = const(3)
SM_HX711 = const(4)
