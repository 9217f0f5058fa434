"""Display frames (128x64 MONO_VLSB, the SSD1306's layout) to and from PNG.

A PNG holds the frame one image pixel per display pixel (mode "1": lit pixels
white), so a test can decode it back to the exact frame; `scale` enlarges it
for people (read_png then undoes the scale).
"""

from pathlib import Path

from PIL import Image

WIDTH = 128
HEIGHT = 64


def lit(frame, x, y):
    """Is display pixel (x, y) on in a MONO_VLSB frame?"""
    return (frame[(y >> 3) * WIDTH + x] >> (y & 7)) & 1


def to_image(frame, scale=1):
    img = Image.new("1", (WIDTH, HEIGHT))
    img.putdata([255 if lit(frame, x, y) else 0 for y in range(HEIGHT) for x in range(WIDTH)])
    if scale != 1:
        img = img.resize((WIDTH * scale, HEIGHT * scale), Image.NEAREST)
    return img


def write_png(frame, path, scale=1):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_image(frame, scale).save(path)
    return path


def read_png(path):
    """The frame a PNG written by write_png holds (any integer scale)."""
    img = Image.open(path).convert("1")
    scale = img.width // WIDTH
    if img.size != (WIDTH * scale, HEIGHT * scale) or scale < 1:
        raise ValueError(
            "%s is %dx%d, not a %dx%d display frame" % (path, img.width, img.height, WIDTH, HEIGHT)
        )
    px = img.load()
    frame = bytearray(WIDTH * HEIGHT // 8)
    for y in range(HEIGHT):
        for x in range(WIDTH):
            if px[x * scale, y * scale]:
                frame[(y >> 3) * WIDTH + x] |= 1 << (y & 7)
    return frame
