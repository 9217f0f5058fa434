# Runs ON THE BOARD (MicroPython), first step of `make deploy`.
#
# `make deploy` writes build/mpy/deploy_prep.py: a line `KEEP = (...)` with
# the path of every compiled module it is about to copy (relative to the
# board's root, e.g. 'injcore/core.mpy'), followed by this file, and runs it
# with `mpremote run`. It
#   - creates the directories those files go into;
#   - inside each deployed package directory, removes every .py (a stale
#     source copy is imported in preference to the .mpy next to it) and every
#     .mpy that is not in KEEP (a module that no longer exists);
#   - at the top level, removes X.py for each deployed X.mpy.
# Files outside the deployed packages (boot.py, data, settings) are left alone.
import os

KEEP = globals().get("KEEP", ())  # noqa: F821  (prepended by make)


def _is_dir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _makedirs(path):
    done = ""
    for part in path.split("/"):
        done = done + "/" + part if done else part
        if not _is_dir(done):
            os.mkdir(done)


def _clean(directory, keep):
    removed = 0
    for entry in list(os.ilistdir(directory)):
        name, kind = entry[0], entry[1]
        path = directory + "/" + name
        if kind & 0x4000:
            removed += _clean(path, keep)
        elif name.endswith(".py") or (name.endswith(".mpy") and path not in keep):
            os.remove(path)
            print("deploy: removed stale :" + path)
            removed += 1
    return removed


def prepare(keep):
    keep = set(keep)
    packages = set()
    for path in keep:
        if "/" in path:
            directory = path.rsplit("/", 1)[0]
            _makedirs(directory)
            packages.add(path.split("/", 1)[0])
        else:
            stale = path[:-4] + ".py"
            if _exists(stale):
                os.remove(stale)
                print("deploy: removed stale :" + stale)
    for package in sorted(packages):
        _clean(package, keep)
    print("deploy: board ready for %d modules" % len(keep))


prepare(KEEP)
