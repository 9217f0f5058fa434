"""The firmware's version, written here and nowhere else.

board/app.py shows it (boot line, the info screen); pyproject.toml reads it as
the package's version (setuptools' dynamic version, a static read of this
file), so `injector --version` and the board say the same for one checkout.
`injector --version --port PORT` imports this module on the board to ask it.
Keep it a plain string literal: setuptools reads it without running Python.
"""

FIRMWARE_VERSION = "0.4.0"
