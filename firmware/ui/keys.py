"""Button and event codes shared by the board's debouncer and the interface.

A button number is its index in the panel (board.buttons.OPERATOR_PINS); an
event is what the debouncer saw it do.
"""

from injcore.compat import const

UP = const(0)
DOWN = const(1)
OK = const(2)
BACK = const(3)
BUTTON_NAMES = ("UP", "DOWN", "OK", "BACK")

PRESS = const(1)
RELEASE = const(2)
LONG = const(3)  # once per press, when held LONG_MS
REPEAT = const(4)  # while held (auto-repeat)
EVENT_NAMES = ("", "PRESS", "RELEASE", "LONG", "REPEAT")

# Sounds the interface asks the board for (board/buzzer.py has the patterns).
SND_NONE = const(0)
SND_CLICK = const(1)  # a key did something
SND_REFUSE = const(2)  # a key was refused: a limit, a wrong code, busy
