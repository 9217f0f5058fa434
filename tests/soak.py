"""How hard the random tests push: 1 in `make test`, more in `make soak` (INJECTOR_SOAK=N)."""

import os

SCALE = max(1, int(os.environ.get("INJECTOR_SOAK", "1")))


def examples(n):
    return n * SCALE
