# Runs ON THE BOARD (MicroPython), in `make deploy`'s mpremote session: after
# the ROMFS partition is written (if the board has one), before anything is
# copied onto littlefs.
#
# host_tools/deploy.py writes build/mpy.deploy_prep.py (beside MPY_DIR): two
# lines, then this file, and runs it with `mpremote run`. The two lines are
#   KEEP = (...)    the path of every compiled module being deployed, relative
#                   to the board's root, e.g. 'injcore/core.mpy'
#   ROMFS = bool    True if the modules went into the ROMFS partition (/rom)
#                   rather than onto littlefs
#
# Modules on littlefs (ROMFS = False):
#   - creates the directories the files go into;
#   - inside each deployed package directory, removes every .py (a stale
#     source copy is imported in preference to the .mpy next to it) and every
#     .mpy that is not in KEEP (a module that no longer exists);
#   - at the top level, removes X.py for each deployed X.mpy.
# Modules in ROMFS (ROMFS = True): littlefs' root comes before /rom on
# sys.path ('', '.frozen', '/rom', '/rom/lib', '/lib'), so every copy of the
# firmware left there would be imported instead. This removes every .py/.mpy
# in the deployed package directories and the directories themselves (an
# empty one still hides /rom's: it imports as a namespace package), X.py/X.mpy
# for each package X and each top-level module. If a package directory holds
# anything else, it removes nothing and raises (the board then keeps running
# its littlefs copies).
# Files outside the deployed packages (boot.py, main.py, data, settings, logs)
# are left alone.
import os

KEEP = globals().get("KEEP", ())  # noqa: F821  (prepended by host_tools/deploy.py)
ROMFS = globals().get("ROMFS", False)  # noqa: F821  (likewise)


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


def _walk(directory, found):
    """(path, is_dir) of everything under directory, each folder after its contents."""
    for entry in list(os.ilistdir(directory)):
        name, kind = entry[0], entry[1]
        path = directory + "/" + name
        if kind & 0x4000:
            _walk(path, found)
            found.append((path, True))
        else:
            found.append((path, False))
    return found


def _is_module(path):
    return path.endswith(".py") or path.endswith(".mpy")


def _remove(path):
    os.remove(path)
    print("deploy: removed stale :" + path)


def _packages(keep):
    return sorted(set(path.split("/", 1)[0] for path in keep if "/" in path))


def prepare(keep):
    keep = set(keep)
    removed = 0
    for path in keep:
        if "/" in path:
            _makedirs(path.rsplit("/", 1)[0])
        elif _exists(path[:-4] + ".py"):
            _remove(path[:-4] + ".py")
            removed += 1
    for package in _packages(keep):
        for path, is_dir in _walk(package, []):
            if is_dir:
                continue
            if path.endswith(".py") or (path.endswith(".mpy") and path not in keep):
                _remove(path)
                removed += 1
    print(
        "deploy: board ready for %d modules on littlefs (%d stale files removed)"
        % (len(keep), removed)
    )


def prepare_romfs(keep):
    files, folders, foreign = [], [], []
    for package in _packages(keep):
        for name in (package + ".py", package + ".mpy"):
            if _exists(name) and not _is_dir(name):
                files.append(name)
        if _is_dir(package):
            for path, is_dir in _walk(package, []):
                if is_dir:
                    folders.append(path)
                elif _is_module(path):
                    files.append(path)
                else:
                    foreign.append(path)
            folders.append(package)
    for path in keep:
        if "/" not in path:
            for name in (path, path[:-4] + ".py"):
                if _exists(name) and not _is_dir(name):
                    files.append(name)
    if foreign:
        print(
            "deploy: FAILED: :%s is not firmware, and its folder on littlefs would hide the "
            "modules in /rom: move it off the board and deploy again (nothing removed; the "
            "board still runs its littlefs copies)" % ", :".join(foreign)
        )
        raise OSError("deploy: not firmware: :" + ", :".join(foreign))
    for path in files:
        _remove(path)
    for path in folders:
        os.rmdir(path)
        print("deploy: removed stale :" + path + "/")
    print(
        "deploy: board ready for %d modules in /rom (%d stale copies removed from littlefs)"
        % (len(keep), len(files))
    )


if ROMFS:
    prepare_romfs(KEEP)
else:
    prepare(KEEP)
