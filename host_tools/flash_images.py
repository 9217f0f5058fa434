"""Images of the Pico's two flash filesystems, made on the host.

- ROMFS (`romfs_image`): the compiled firmware (`make mpy`, build/mpy) packed by
  mpremote's own ROMFS writer, as `mpremote romfs deploy` writes it to a board.
  MicroPython mounts it at /rom and runs the bytecode in place from flash.
- littlefs (`littlefs_image`): the board's filesystem with files in it
  (main.py, settings), built with littlefs-python in the geometry MicroPython's
  rp2 port mounts (`vfs.VfsLfs2(rp2.Flash(), progsize=256)`).

The partitions are those of the project's board (boards/INJECTOR_PICO) and of
the emulated Pico's image: firmware below 0x60000, ROMFS 256 KB, littlefs to
the end of the 2 MB flash.

    python -m host_tools.flash_images romfs build/mpy -o build/romfs.img
"""

import argparse
import contextlib
import io
import sys
from pathlib import Path

ROMFS_OFFSET = 0x060000
ROMFS_BYTES = 256 * 1024
LFS_OFFSET = 0x0A0000
LFS_BLOCK = 4096
LFS_BLOCKS = 352  # 1408 KB
# extmod/vfs_lfsx.c: read 32, lookahead 32, cache 4 x max(read, prog); progsize=256 in _boot.py
LFS_GEOMETRY = dict(
    block_size=LFS_BLOCK,
    block_count=LFS_BLOCKS,
    read_size=32,
    prog_size=256,
    lookahead_size=32,
    cache_size=1024,
    name_max=255,
    block_cycles=100,
    disk_version=0x00020000,
)


class ImageError(ValueError):
    """An image that cannot be made or would not fit: the message says why."""


def romfs_image(compiled_dir, partition_bytes=ROMFS_BYTES):
    """The ROMFS image of a folder of compiled modules; ImageError if it does not fit."""
    from mpremote.romfs import make_romfs

    compiled_dir = Path(compiled_dir)
    if not compiled_dir.is_dir():
        raise ImageError("%s: no such folder (run `make mpy`)" % compiled_dir)
    if not any(compiled_dir.rglob("*.mpy")):
        raise ImageError("%s: no compiled modules in it (run `make mpy`)" % compiled_dir)
    with contextlib.redirect_stdout(io.StringIO()):  # make_romfs prints the tree
        image = make_romfs(str(compiled_dir), mpy_cross=False)
    if len(image) > partition_bytes:
        raise ImageError(
            "the firmware is %d bytes, the ROMFS partition holds %d: nothing written"
            % (len(image), partition_bytes)
        )
    return image


def littlefs_image(files):
    """A littlefs image holding `files` ({path on the board: bytes})."""
    import littlefs

    fs = littlefs.LittleFS(**LFS_GEOMETRY)
    for path, data in sorted(files.items()):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            try:
                fs.mkdir(d)
            except FileExistsError:
                pass
        with fs.open("/".join(parts), "wb") as f:
            f.write(data)
    return bytes(fs.context.buffer)


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m host_tools.flash_images", description=__doc__.split("\n\n")[0]
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("romfs", help="pack a folder of compiled modules into a ROMFS image")
    r.add_argument("compiled_dir")
    r.add_argument("-o", "--out", required=True)
    r.add_argument("--partition-bytes", type=int, default=ROMFS_BYTES)
    args = ap.parse_args(argv)
    try:
        image = romfs_image(args.compiled_dir, args.partition_bytes)
    except ImageError as e:
        print("romfs: %s" % e, file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(image)
    tmp.replace(out)
    print(
        "romfs: %s, %d of %d bytes (%.0f %%)"
        % (out, len(image), args.partition_bytes, 100 * len(image) / args.partition_bytes)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
