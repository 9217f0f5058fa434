"""The filesystem the firmware stores to: MicroPython's `os` and `open` (H9).

DirFS(root) has the same small interface as host_tools.simfs.SimFS (the
in-memory one with power cuts the tests use): open(path, mode) with 'rb',
'wb', 'ab'; rename(src, dst) (replaces dst: atomic on littlefs and POSIX);
remove; listdir(dir=""); stat(path) (size at [6]); size(path); exists(path).
Paths are relative to `root` ("" is the current directory, "/" on the device).
Runs on CPython too (point root at a directory).
"""

import os


class DirFS:
    def __init__(self, root=""):
        while len(root) > 1 and root.endswith("/"):
            root = root[:-1]
        self.root = root

    def path(self, path):
        while path.startswith("/"):
            path = path[1:]
        if not self.root:
            return path or "."
        if self.root == "/":
            return "/" + path
        return self.root + "/" + path if path else self.root

    def open(self, path, mode="rb"):
        return open(self.path(path), mode)

    def rename(self, src, dst):
        replace = getattr(os, "replace", None)  # CPython on Windows will not rename over a file
        (replace or os.rename)(self.path(src), self.path(dst))

    def remove(self, path):
        os.remove(self.path(path))

    def listdir(self, dir=""):
        return sorted(os.listdir(self.path(dir)))

    def mkdir(self, path):
        try:
            os.mkdir(self.path(path))
        except OSError:
            if not self.exists(path):
                raise

    def stat(self, path):
        return os.stat(self.path(path))

    def size(self, path):
        return self.stat(path)[6]

    def exists(self, path):
        try:
            os.stat(self.path(path))
            return True
        except OSError:
            return False
