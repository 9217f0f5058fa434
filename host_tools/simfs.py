"""An in-memory filesystem with power cuts, for testing what the firmware stores (H9).

It has the small interface the firmware uses (the same as injcore.fsio.DirFS,
the adaptor over MicroPython's `os`/`open`):

    fs.open(path, mode)     mode 'rb', 'wb' or 'ab'; a file object with read,
                            write, seek, tell, flush, close and `with`
    fs.rename(src, dst)     replaces dst atomically (littlefs semantics)
    fs.remove(path)
    fs.listdir(dir="")      names (not paths) of the files in dir
    fs.stat(path)           a 10-tuple like os.stat, size at [6]; OSError(ENOENT)
    fs.size(path)           the same size, shorter
    fs.exists(path)

Paths are plain strings, "/"-separated; a leading "/" is ignored and
directories exist implicitly (a file "cfg/x" makes listdir("cfg") == ["x"]).

Power cuts
----------
    fs.cut_after(n_bytes=None, n_renames=None, n_removes=None, rename_happens=False)

arms a cut counted from the moment of the call: the n_bytes-th byte written
(over all files and writes) raises PowerCut and is *not* written; the bytes
before it stay in their file (the worst case of littlefs: a file that was
not closed may keep any prefix of what was written, and a byte-by-byte sweep
covers every prefix). The n_renames-th rename raises PowerCut; it happened
entirely if rename_happens else not at all -- never halfway. n_removes the
same for remove (which never happens halfway either). After a cut every
operation raises PowerCut (the device is off); `fs.after_cut()` returns a new
SimFS with the surviving files, as after a reboot (no open files, no cut armed).

`fs.counters()` -> {"bytes": .., "renames": .., "removes": .., "opens": ..}
since the SimFS was made (or since `reset_counters()`): run an operation once
uncut to learn how many cut points a sweep needs.
"""

ENOENT = 2
EISDIR = 21


class PowerCut(Exception):
    """The power failed here; the SimFS is dead until after_cut()."""


def _norm(path):
    path = str(path)
    while path.startswith("/"):
        path = path[1:]
    while "//" in path:
        path = path.replace("//", "/")
    if path.endswith("/"):
        path = path[:-1]
    return path


class SimFile:
    def __init__(self, fs, path, mode):
        self._fs = fs
        self._path = path
        self._mode = mode
        self._closed = False
        self._pos = len(fs._files[path]) if "a" in mode else 0

    def _data(self):
        if self._closed:
            raise ValueError("I/O operation on closed file")
        self._fs._alive()
        return self._fs._files[self._path]

    def read(self, n=-1):
        if "r" not in self._mode:
            raise OSError(9, "file not open for reading")
        data = self._data()
        end = len(data) if n is None or n < 0 else min(len(data), self._pos + n)
        out = bytes(data[self._pos : end])
        self._pos = max(self._pos, end)
        return out

    def readinto(self, buf):
        chunk = self.read(len(buf))
        buf[: len(chunk)] = chunk
        return len(chunk)

    def write(self, b):
        if "r" in self._mode:
            raise OSError(9, "file not open for writing")
        data = self._data()
        b = bytes(b)
        if "a" in self._mode:
            self._pos = len(data)
        n = self._fs._take_bytes(len(b))  # how many may be written before a cut
        if self._pos > len(data):
            data.extend(bytes(self._pos - len(data)))
        data[self._pos : self._pos + n] = b[:n]
        self._pos += n
        self._fs._count["bytes"] += n
        if n < len(b):
            self._fs._die()
        return n

    def seek(self, offset, whence=0):
        data = self._data()
        if whence == 1:
            offset += self._pos
        elif whence == 2:
            offset += len(data)
        if offset < 0:
            raise OSError(22, "invalid seek")
        self._pos = offset
        return offset

    def tell(self):
        self._data()
        return self._pos

    def flush(self):
        self._data()

    def close(self):
        if not self._closed:
            self._fs._alive()
            self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        # After a cut the file cannot be closed any more; let the PowerCut through.
        if not self._fs._dead:
            self.close()
        return False


class SimFS:
    def __init__(self, files=None):
        self._files = {}
        for path in files or {}:
            self._files[_norm(path)] = bytearray(files[path])
        self._dead = False
        self._cut = None  # {"bytes": n, "renames": n, "removes": n, "rename_happens": bool}
        self.reset_counters()

    # --- power cuts -------------------------------------------------------
    def cut_after(self, n_bytes=None, n_renames=None, n_removes=None, rename_happens=False):
        for n in (n_bytes, n_renames, n_removes):
            if n is not None and n < 1:
                raise ValueError("cut points count from 1")
        self._cut = {
            "bytes": n_bytes,
            "renames": n_renames,
            "removes": n_removes,
            "rename_happens": rename_happens,
        }

    def after_cut(self):
        """The surviving state as after a reboot (works on a live SimFS too)."""
        return SimFS(self._files)

    def clone(self):
        return SimFS(self._files)

    def counters(self):
        return dict(self._count)

    def reset_counters(self):
        self._count = {"bytes": 0, "renames": 0, "removes": 0, "opens": 0}

    @property
    def dead(self):
        return self._dead

    def _alive(self):
        if self._dead:
            raise PowerCut("the power is off")

    def _die(self):
        self._dead = True
        raise PowerCut("power cut")

    def _take_bytes(self, n):
        left = self._cut and self._cut["bytes"]
        if left is None:
            return n
        if left <= n:
            return left - 1
        self._cut["bytes"] = left - n
        return n

    def _event(self, kind):
        """True when this rename/remove is the one the cut was armed for."""
        left = self._cut and self._cut[kind]
        if left is None:
            return False
        if left == 1:
            self._cut[kind] = None
            return True
        self._cut[kind] = left - 1
        return False

    # --- the filesystem interface ------------------------------------------
    def open(self, path, mode="rb"):
        self._alive()
        path = _norm(path)
        mode = mode.replace("t", "")
        if "b" not in mode:
            mode += "b"
        if mode not in ("rb", "wb", "ab"):
            raise ValueError("SimFS supports the modes rb, wb and ab, not %r" % mode)
        if self._isdir(path):
            raise OSError(EISDIR, path)
        if mode == "rb" and path not in self._files:
            raise OSError(ENOENT, path)
        if mode == "wb":
            self._files[path] = bytearray()
        elif mode == "ab" and path not in self._files:
            self._files[path] = bytearray()
        self._count["opens"] += 1
        return SimFile(self, path, mode)

    def rename(self, src, dst):
        self._alive()
        src, dst = _norm(src), _norm(dst)
        if src not in self._files:
            raise OSError(ENOENT, src)
        cut = self._event("renames")
        if cut and not self._cut["rename_happens"]:
            self._die()
        if src != dst:
            self._files[dst] = self._files.pop(src)
        self._count["renames"] += 1
        if cut:
            self._die()

    def remove(self, path):
        self._alive()
        path = _norm(path)
        if path not in self._files:
            raise OSError(ENOENT, path)
        if self._event("removes"):
            self._die()
        del self._files[path]
        self._count["removes"] += 1

    def listdir(self, dir=""):
        self._alive()
        prefix = _norm(dir)
        prefix = prefix + "/" if prefix else ""
        names = set()
        for path in self._files:
            if path.startswith(prefix):
                names.add(path[len(prefix) :].split("/")[0])
        if prefix and not names:
            raise OSError(ENOENT, dir)
        return sorted(names)

    def mkdir(self, path):
        self._alive()  # directories exist implicitly

    def _isdir(self, path):
        prefix = path + "/"
        return any(p.startswith(prefix) for p in self._files)

    def stat(self, path):
        self._alive()
        path = _norm(path)
        if path not in self._files:
            if self._isdir(path):
                return (0o040000, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            raise OSError(ENOENT, path)
        return (0o100000, 0, 0, 1, 0, 0, len(self._files[path]), 0, 0, 0)

    def size(self, path):
        return self.stat(path)[6]

    def exists(self, path):
        try:
            self.stat(path)
            return True
        except OSError:
            return False

    # --- for tests -----------------------------------------------------------
    def read_bytes(self, path):
        return bytes(self._files[_norm(path)])

    def write_bytes(self, path, data):
        """Put a file in place without counting or cutting (test set-up)."""
        self._files[_norm(path)] = bytearray(data)

    def files(self):
        return {p: bytes(d) for p, d in self._files.items()}
