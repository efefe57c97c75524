#!/usr/bin/env python3
"""Writes the image fixtures for Tests/VZQuantTests/ImageTests.swift into Tests/VZQuantTests/Fixtures/images/.

Needs Pillow, numpy and transformers (with the PIL-backend image processors); CI has none of them, so the outputs
are committed. For every image file:
    <name>.rgb      PIL's decoded pixels, Image.open(f).convert("RGB"), raw HWC bytes
and for the preprocessing cases:
    <case>.f32      the transformers processor's pixel_values (CHW float32, little-endian)
manifest.json lists files, sizes and processor settings.

PNGs that PIL cannot write (16-bit RGB, Adam7-interlaced, 2-bit gray, 16-bit gray+alpha) come from the small
encoder below.
"""
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "VZQuantTests", "Fixtures", "images")
rng = np.random.default_rng(20240611)


def photo(w, h, seed):
    """A photo-like RGB image: smooth gradients, a disc, and noise."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    red = 255 * x / max(w - 1, 1)
    green = 255 * y / max(h - 1, 1)
    blue = 128 + 100 * np.sin(x / 3.0) * np.cos(y / 4.0)
    disc = ((x - w * 0.6) ** 2 + (y - h * 0.4) ** 2) < (min(w, h) * 0.3) ** 2
    img = np.stack([red, green, blue], -1)
    img[disc] = [230, 40, 90]
    img += r.normal(0, 12, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# ---- minimal PNG encoder (any colour type / depth, optional Adam7) ----

def png_chunk(tag, data):
    c = tag + data
    return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)


def pack_rows(samples, depth):
    """samples: (h, w*channels) integer array -> list of row bytes."""
    rows = []
    for row in samples:
        if depth == 8:
            rows.append(row.astype(np.uint8).tobytes())
        elif depth == 16:
            rows.append(row.astype(">u2").tobytes())
        else:
            per = 8 // depth
            b = bytearray()
            for i in range(0, len(row), per):
                v = 0
                for j in range(per):
                    s = int(row[i + j]) if i + j < len(row) else 0
                    v |= s << (8 - depth * (j + 1))
                b.append(v)
            rows.append(bytes(b))
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, arr, color_type, depth, interlace=False, palette=None, trns=None):
    """arr: (h, w, channels) samples in the PNG's own depth."""
    h, w, ch = arr.shape
    raw = bytearray()
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for x0, y0, dx, dy in passes:
        sub = arr[y0::dy, x0::dx, :]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        for i, row in enumerate(pack_rows(sub.reshape(sub.shape[0], -1), depth)):
            raw += b"\x00" + row  # filter type 0
    data = b"\x89PNG\r\n\x1a\n"
    data += png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0))
    if palette is not None:
        data += png_chunk(b"PLTE", bytes(palette))
    if trns is not None:
        data += png_chunk(b"tRNS", bytes(trns))
    data += png_chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    data += png_chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    manifest = {"decode": [], "preprocess": []}

    small = photo(37, 23, 1)
    big = photo(64, 48, 2)
    tall = photo(23, 37, 3)

    def add_decode(name, kind, reference=None, note=None):
        path = os.path.join(OUT, name)
        im = Image.open(path)
        rgb = np.asarray(im.convert("RGB")) if reference is None else reference
        base = os.path.splitext(name)[0]
        rgb.astype(np.uint8).tofile(os.path.join(OUT, base + ".rgb"))
        entry = {"file": name, "kind": kind, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
                 "rgb": base + ".rgb", "pil_mode": im.mode}
        if note:
            entry["note"] = note
        manifest["decode"].append(entry)

    # JPEG
    Image.fromarray(small).save(os.path.join(OUT, "photo37x23.jpg"), quality=90)
    add_decode("photo37x23.jpg", "jpeg")
    Image.fromarray(big).save(os.path.join(OUT, "photo64x48_progressive.jpg"), quality=90, progressive=True)
    add_decode("photo64x48_progressive.jpg", "jpeg")
    Image.fromarray(big).save(os.path.join(OUT, "photo64x48_444.jpg"), quality=90, subsampling=0)
    add_decode("photo64x48_444.jpg", "jpeg")
    Image.fromarray(small).convert("L").save(os.path.join(OUT, "gray37x23.jpg"), quality=90)
    add_decode("gray37x23.jpg", "jpeg")
    Image.fromarray(small).convert("CMYK").save(os.path.join(OUT, "cmyk37x23.jpg"), quality=90)
    add_decode("cmyk37x23.jpg", "jpeg")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(tall).save(os.path.join(OUT, "exif6_23x37.jpg"), quality=90, exif=exif.tobytes())
    add_decode("exif6_23x37.jpg", "jpeg")
    from PIL import ImageOps
    rotated = np.asarray(ImageOps.exif_transpose(Image.open(os.path.join(OUT, "exif6_23x37.jpg"))).convert("RGB"))
    rotated.tofile(os.path.join(OUT, "exif6_23x37.oriented.rgb"))
    manifest["exif_oriented"] = {"file": "exif6_23x37.jpg", "rgb": "exif6_23x37.oriented.rgb",
                                 "width": int(rotated.shape[1]), "height": int(rotated.shape[0])}

    # PNG via PIL
    Image.fromarray(small).save(os.path.join(OUT, "rgb37x23.png"))
    add_decode("rgb37x23.png", "png")
    alpha = np.clip(np.arange(37)[None, :] * 7 + np.arange(23)[:, None] * 3, 0, 255).astype(np.uint8)
    rgba = np.concatenate([small, np.broadcast_to(alpha[..., None], (23, 37, 1))], -1)
    Image.fromarray(rgba, "RGBA").save(os.path.join(OUT, "rgba37x23.png"))
    add_decode("rgba37x23.png", "png")
    Image.fromarray(big).convert("L").save(os.path.join(OUT, "gray64x48.png"))
    add_decode("gray64x48.png", "png")
    Image.fromarray(np.stack([np.asarray(Image.fromarray(small).convert("L")), alpha], -1), "LA").save(
        os.path.join(OUT, "graya37x23.png"))
    add_decode("graya37x23.png", "png")
    Image.fromarray(big).quantize(colors=32).save(os.path.join(OUT, "palette64x48.png"))
    add_decode("palette64x48.png", "png")
    pal = Image.fromarray(small).quantize(colors=16)
    pal.info["transparency"] = 3
    pal.save(os.path.join(OUT, "palette_trns37x23.png"), transparency=3)
    add_decode("palette_trns37x23.png", "png")

    # alpha composited as transformers 5.x does (over white) and over black, both with PIL's alpha_composite
    for colour, suffix in (((255, 255, 255, 255), "over_white"), ((0, 0, 0, 255), "over_black")):
        for name in ("rgba37x23.png", "graya37x23.png", "palette_trns37x23.png"):
            im = Image.open(os.path.join(OUT, name)).convert("RGBA")
            comp = Image.alpha_composite(Image.new("RGBA", im.size, colour), im).convert("RGB")
            np.asarray(comp).tofile(os.path.join(OUT, os.path.splitext(name)[0] + "." + suffix + ".rgb"))

    # PNG via the encoder above
    big16 = (big.astype(np.uint16) * 257 + rng.integers(0, 257, big.shape)).astype(np.uint16)
    write_png(os.path.join(OUT, "rgb16_64x48.png"), big16, 2, 16)
    add_decode("rgb16_64x48.png", "png")
    write_png(os.path.join(OUT, "rgb_interlaced37x23.png"), small, 2, 8, interlace=True)
    add_decode("rgb_interlaced37x23.png", "png")
    write_png(os.path.join(OUT, "rgba_interlaced37x23.png"), rgba, 6, 8, interlace=True)
    add_decode("rgba_interlaced37x23.png", "png")
    gray2 = (np.asarray(Image.fromarray(small).convert("L")) >> 6)[..., None]
    write_png(os.path.join(OUT, "gray2bit37x23.png"), gray2, 0, 2)
    add_decode("gray2bit37x23.png", "png")
    # 16-bit gray: PIL opens it as mode I;16 and convert("RGB") clips values above 255 instead of scaling, so the
    # reference here is the high byte (libpng's png_set_strip_16), the same rule PIL uses for 16-bit RGB.
    g16 = (np.asarray(Image.fromarray(big).convert("L")).astype(np.uint16) * 257)[..., None]
    write_png(os.path.join(OUT, "gray16_64x48.png"), g16, 0, 16)
    hi = (g16[..., 0] >> 8).astype(np.uint8)
    add_decode("gray16_64x48.png", "png", reference=np.stack([hi, hi, hi], -1),
               note="reference is the high byte; PIL's I;16 -> RGB clips instead")

    # ---- preprocessing references ----
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    clip_mean = [0.48145466, 0.4578275, 0.40821073]
    clip_std = [0.26862954, 0.26130258, 0.27577711]
    configs = {
        "clip32": ("clip", CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                   {"shortest_edge": 32, "crop_height": 32, "crop_width": 32, "pad_to_square": False,
                    "mean": clip_mean, "std": clip_std}),
        # 336/336 scaled down, non-square crop of an upscaled image
        "clip_up48_crop40x36": ("clip", CLIPImageProcessorPil(size={"shortest_edge": 48},
                                                              crop_size={"height": 36, "width": 40}),
                                {"shortest_edge": 48, "crop_height": 36, "crop_width": 40, "pad_to_square": False,
                                 "mean": clip_mean, "std": clip_std}),
        "llava_pad32": ("llava", LlavaImageProcessorPil(do_pad=True, size={"shortest_edge": 32},
                                                       crop_size={"height": 32, "width": 32}),
                        {"shortest_edge": 32, "crop_height": 32, "crop_width": 32, "pad_to_square": True,
                         "mean": clip_mean, "std": clip_std}),
        "siglip32": ("siglip", SiglipImageProcessorPil(size={"height": 32, "width": 32}),
                     {"height": 32, "width": 32, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}),
    }
    cases = {"clip32": ["photo37x23.jpg", "rgba37x23.png", "palette64x48.png", "gray64x48.png"],
             "clip_up48_crop40x36": ["rgb37x23.png"],
             "llava_pad32": ["rgb37x23.png", "photo64x48_progressive.jpg", "exif6_23x37.jpg"],
             "siglip32": ["rgb37x23.png", "photo64x48_444.jpg"]}
    for cname, files in cases.items():
        kind, proc, settings = configs[cname]
        for fname in files:
            out = proc(Image.open(os.path.join(OUT, fname)), return_tensors="np")["pixel_values"][0]
            out = np.ascontiguousarray(out, dtype="<f4")
            base = f"{cname}__{os.path.splitext(fname)[0]}.f32"
            out.tofile(os.path.join(OUT, base))
            manifest["preprocess"].append({"processor": kind, "config": cname, "file": fname, "values": base,
                                           "shape": list(out.shape), **settings})

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {os.path.normpath(OUT)}")
    import PIL
    import transformers
    print(f"Pillow {PIL.__version__}, transformers {transformers.__version__}")


if __name__ == "__main__":
    sys.exit(main())
