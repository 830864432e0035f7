"""Seeds for tests/fuzz_image.c, made at run time: small JPEG (baseline, progressive, grayscale,
CMYK), PNG (RGB, RGBA, grayscale, palette, 16-bit, interlaced) and BMP images, plus one real
photo from $TERN_DATA cut down to a thumbnail.  /usr/bin/python3 tests/fuzz_image_seeds.py OUT"""
import io, os, sys
import numpy as np
from PIL import Image

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(3)
rgb = Image.fromarray(rng.integers(0, 256, (23, 37, 3), dtype=np.uint8), "RGB")

def save(name, img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    open(os.path.join(out, name), "wb").write(b.getvalue())

save("base.jpg", rgb, "JPEG", quality=80)
save("prog.jpg", rgb, "JPEG", quality=60, progressive=True)
save("gray.jpg", rgb.convert("L"), "JPEG")
save("cmyk.jpg", rgb.convert("CMYK"), "JPEG")
save("sub.jpg", rgb.resize((9, 5)), "JPEG", subsampling=2)
save("rgb.png", rgb, "PNG")
save("rgba.png", rgb.convert("RGBA"), "PNG")
save("gray.png", rgb.convert("L"), "PNG")
save("pal.png", rgb.convert("P"), "PNG")
save("i16.png", Image.fromarray((np.arange(35 * 3, dtype=np.uint16).reshape(35, 3) * 600), "I;16"), "PNG")
save("rgb.bmp", rgb, "BMP")
save("gray.bmp", rgb.convert("L"), "BMP")
data = os.environ.get("TERN_DATA", "../shared/data")
p = os.path.join(data, "imagenet_sample/n01440764_tench.JPEG")
if os.path.exists(p):
    im = Image.open(p).convert("RGB")
    im.thumbnail((64, 64))
    save("tench_small.jpg", im, "JPEG", quality=90)
print(f"fuzz_image_seeds: {len(os.listdir(out))} seeds in {out}")
