"""Small charts for materialization metadata: PNG line charts drawn with numpy, shown as markdown.

No plotting library is needed: series are rasterized onto a small canvas with a left and a bottom
axis (ticks at the quarters) and encoded as a PNG (zlib), then embedded in markdown as a data URI,
which the Dagster UI renders inline. The axes' values (the y range with its unit, the first and
last x label, e.g. dates) are written above the chart, where text is sharp at any size.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Sequence

import numpy as np

PALETTE: tuple[tuple[int, int, int], ...] = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189))
AXIS = (90, 90, 90)


def _png(pixels: np.ndarray) -> bytes:
    """Encode an (h, w, 3) uint8 array as PNG bytes."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def line_chart_png(series: Sequence[Sequence[float]], width: int = 480, height: int = 160) -> bytes:
    """Draw each series (NaN gaps allowed) as a line on a shared y scale; returns PNG bytes."""
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    canvas[:, [0, -1]] = 200  # thin frame
    canvas[[0, -1], :] = 200
    values = [np.asarray(s, dtype=float) for s in series]
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    if finite.size == 0:
        return _png(canvas)
    low, high = float(finite.min()), float(finite.max())
    span = high - low or 1.0
    margin = 6
    # axes: left and bottom, ticks at 0, 1/4, ..., 1 of each
    canvas[margin:height - margin, margin - 2] = AXIS
    canvas[height - margin + 1, margin - 2:width - margin] = AXIS
    for q in (0.0, 0.25, 0.5, 0.75, 1.0):
        canvas[round(margin + q * (height - 1 - 2 * margin)), margin - 5:margin - 2] = AXIS
        canvas[height - margin + 2:height - margin + 5, round(margin + q * (width - 1 - 2 * margin))] = AXIS
    for index, v in enumerate(values):
        if v.size < 2:
            continue
        xs = np.linspace(margin, width - 1 - margin, v.size)
        ys = (height - 1 - margin) - (v - low) / span * (height - 1 - 2 * margin)
        colour = PALETTE[index % len(PALETTE)]
        for i in range(v.size - 1):
            if not (np.isfinite(ys[i]) and np.isfinite(ys[i + 1])):
                continue
            steps = int(max(abs(xs[i + 1] - xs[i]), abs(ys[i + 1] - ys[i]))) + 1
            px = np.rint(np.linspace(xs[i], xs[i + 1], steps)).astype(int)
            py = np.rint(np.linspace(ys[i], ys[i + 1], steps)).astype(int)
            canvas[py, px] = colour
    return _png(canvas)


def markdown_chart(series: Sequence[Sequence[float]], legend: Sequence[str], title: str, *,
                   x_range: tuple[str, str] | None = None, unit: str = "") -> str:
    """Markdown with the chart inline, a legend naming each line's colour and the axes' values.

    ``x_range``: the labels of the first and last x (e.g. dates); ``unit``: the y values' unit.
    """
    encoded = base64.b64encode(line_chart_png(series)).decode()
    names = ["blue", "red", "green", "purple"]
    key = ", ".join(f"{label} ({names[i % len(names)]})" for i, label in enumerate(legend))
    values = np.concatenate([np.asarray(s, dtype=float) for s in series]) if series else np.array([])
    finite = values[np.isfinite(values)]
    axes = []
    if finite.size:
        axes.append(f"y axis: {finite.min():,.4g} to {finite.max():,.4g}{' ' + unit if unit else ''}")
    if x_range is not None:
        axes.append(f"x axis: {x_range[0]} to {x_range[1]}")
    caption = f"\n\n{'; '.join(axes)}" if axes else ""
    return f"**{title}**: {key}{caption}\n\n![{title}](data:image/png;base64,{encoded})"
