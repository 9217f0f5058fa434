"""python -m host_tools.mpy portable SRC OUT: SRC with the native-code decorators blanked.

For a MicroPython without the native emitter (the virtual board): the Makefile
compiles that copy when MPY_NATIVE=0. See host_tools/mpy/__init__.py.
"""

import sys
from pathlib import Path

from host_tools.mpy import portable_source

if len(sys.argv) != 4 or sys.argv[1] != "portable":
    sys.exit("usage: python -m host_tools.mpy portable SRC OUT")
Path(sys.argv[3]).write_text(portable_source(Path(sys.argv[2]).read_text()))
