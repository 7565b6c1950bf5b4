"""Small copies of the walk-through's screenshots for the README: ``python3 shrink.py RAW_DIR OUT_DIR``.

Each PNG of RAW_DIR is written to OUT_DIR with at most 256 colours (Pillow's median cut, no dithering), scaled
down only when that is still 200 kB or more. Run outside QGIS (``./build.sh walkthrough`` does, after QGIS quit).
"""
import os
import sys

from PIL import Image

LIMIT = 200_000
#: (colours, scale) tried in order until the file is below LIMIT
STEPS = ((256, 1.0), (128, 1.0), (128, 0.85), (96, 0.75), (64, 0.7))


def shrink(src: str, dst: str) -> int:
    """Write ``src`` to ``dst`` small; returns the size in bytes."""
    img = Image.open(src).convert("RGB")
    for colours, scale in STEPS:
        small = img if scale == 1.0 else img.resize((round(img.width * scale), round(img.height * scale)),
                                                    Image.LANCZOS)
        small.quantize(colours, method=Image.MEDIANCUT, dither=Image.NONE).save(dst, optimize=True)
        if os.path.getsize(dst) < LIMIT:
            break
    return os.path.getsize(dst)


def main(raw: str, out: str) -> int:
    for name in sorted(os.listdir(raw)):
        if name.endswith(".png"):
            size = shrink(os.path.join(raw, name), os.path.join(out, name))
            print(f"{os.path.join(out, name)}: {size // 1000} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
