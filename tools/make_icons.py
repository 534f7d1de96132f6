#!/usr/bin/env python3
"""Draw kapjournal's app icons with the standard library only (reproducible).

Motif: a soft sand sun rising behind an open cream book, on a muted teal ground.
Anti-aliasing by supersampling (SS x SS samples per pixel). Run from anywhere:

    python3 tools/make_icons.py

It rewrites static/icons/{icon-192,icon-512,maskable-512,apple-touch-icon}.png and icon.svg.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

ICONS = Path(__file__).resolve().parent.parent / "static" / "icons"
SS = 4  # samples per pixel along each axis

TEAL = (0x2F, 0x6F, 0x6B)
SAND = (0xEE, 0xD5, 0xA6)
PAGE = (0xFB, 0xF7, 0xEF)

# Motif geometry in unit coordinates: origin at the centre, y downwards, all of it
# inside the unit circle so that it can be scaled into a maskable safe zone.
SUN_C, SUN_R = (0.0, -0.14), 0.40
PAGE_X0, PAGE_X1 = 0.045, 0.82  # |x| range of each page (gap = spine)
PAGE_H = 0.50


def page_top(ax: float) -> float:
    """Top edge of a page at |x| = ax: lower at the spine, gently curved."""
    t = (ax - PAGE_X0) / (PAGE_X1 - PAGE_X0)
    return 0.06 - 0.12 * t - 0.07 * math.sin(math.pi * t)


def in_page(x: float, y: float) -> bool:
    ax = abs(x)
    if ax < PAGE_X0 or ax > PAGE_X1:
        return False
    top = page_top(ax)
    return top <= y <= top + PAGE_H


def in_sun(x: float, y: float) -> bool:
    return (x - SUN_C[0]) ** 2 + (y - SUN_C[1]) ** 2 <= SUN_R * SUN_R


def in_round_rect(px: float, py: float, size: float, radius: float) -> bool:
    r = radius
    cx = min(max(px, r), size - r)
    cy = min(max(py, r), size - r)
    return (px - cx) ** 2 + (py - cy) ** 2 <= r * r


def render(size: int, motif_radius: float, corner: float | None) -> bytes:
    """RGBA rows for a size x size icon. corner=None means full bleed (opaque)."""
    half = size / 2.0
    step = 1.0 / SS
    offs = [(i + 0.5) * step for i in range(SS)]
    n = SS * SS
    rows = []
    for j in range(size):
        row = bytearray()
        for i in range(size):
            acc = [0.0, 0.0, 0.0, 0.0]
            for oy in offs:
                py = j + oy
                y = (py - half) / motif_radius
                for ox in offs:
                    px = i + ox
                    if corner is not None and not in_round_rect(px, py, size, corner):
                        continue
                    x = (px - half) / motif_radius
                    if in_page(x, y):
                        c = PAGE
                    elif in_sun(x, y):
                        c = SAND
                    else:
                        c = TEAL
                    acc[0] += c[0]
                    acc[1] += c[1]
                    acc[2] += c[2]
                    acc[3] += 1
            a = acc[3]
            if a:
                row += bytes(
                    (round(acc[0] / a), round(acc[1] / a), round(acc[2] / a), round(255 * a / n))
                )
            else:
                row += b"\0\0\0\0"
        rows.append(bytes(row))
    return b"".join(b"\0" + r for r in rows)


def png(size: int, raw: bytes) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def svg() -> str:
    def hexc(c: tuple[int, int, int]) -> str:
        return "#" + "".join(f"{v:02x}" for v in c)

    s = 32.0  # 64x64 viewBox, motif radius 32 * 0.78
    mr = s * 0.78

    def pt(x: float, y: float) -> str:
        return f"{s + x * mr:.1f} {s + y * mr:.1f}"

    def page_path(sign: int) -> str:
        steps = 12
        xs = [PAGE_X0 + (PAGE_X1 - PAGE_X0) * k / steps for k in range(steps + 1)]
        top = [pt(sign * x, page_top(x)) for x in xs]
        bottom = [pt(sign * x, page_top(x) + PAGE_H) for x in reversed(xs)]
        return "M" + " L".join(top + bottom) + "Z"

    sx, sy = s + SUN_C[0] * mr, s + SUN_C[1] * mr
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
        f'<rect width="64" height="64" rx="14" fill="{hexc(TEAL)}"/>'
        f'<circle cx="{sx:.1f}" cy="{sy:.1f}" r="{SUN_R * mr:.1f}" fill="{hexc(SAND)}"/>'
        f'<path fill="{hexc(PAGE)}" d="{page_path(-1)} {page_path(1)}"/>'
        "</svg>\n"
    )


def main() -> None:
    ICONS.mkdir(parents=True, exist_ok=True)
    jobs = {
        # name: (size, motif radius as a share of size, corner radius share or None)
        "icon-192.png": (192, 0.36, 0.22),
        "icon-512.png": (512, 0.36, 0.22),
        # maskable: full bleed, motif inside the central safe circle (radius 40%).
        "maskable-512.png": (512, 0.30, None),
        # iOS rounds the corners itself and shows transparency as black: full bleed.
        "apple-touch-icon.png": (180, 0.36, None),
    }
    for name, (size, mr, corner) in jobs.items():
        raw = render(size, mr * size, None if corner is None else corner * size)
        (ICONS / name).write_bytes(png(size, raw))
        print(f"wrote {ICONS / name}")
    (ICONS / "icon.svg").write_text(svg(), encoding="utf-8")
    print(f"wrote {ICONS / 'icon.svg'}")


if __name__ == "__main__":
    main()
