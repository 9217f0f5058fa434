"""CPython simulator of the injector: the real control core on a simulated clock."""

import sys
from pathlib import Path

_FIRMWARE = str(Path(__file__).resolve().parents[1] / "firmware")
if _FIRMWARE not in sys.path:
    sys.path.insert(0, _FIRMWARE)
