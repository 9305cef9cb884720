"""The metadata chart helper writes a valid PNG that shows the lines it was given."""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

from wealth_pipeline.defs.charts import PALETTE, line_chart_png, markdown_chart


def _decode(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    chunks, offset = {}, 8
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset:offset + 4])
        kind = png[offset + 4:offset + 8]
        data = png[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length:offset + 12 + length])
        assert crc == zlib.crc32(kind + data) & 0xFFFFFFFF
        chunks[kind] = data
        offset += 12 + length
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(height, width, 3)


def test_png_has_the_size_asked_and_draws_each_series_in_its_colour() -> None:
    rising = np.linspace(0, 10, 50)
    pixels = _decode(line_chart_png([rising, 10 - rising], width=200, height=80))
    assert pixels.shape == (80, 200, 3)
    for colour in PALETTE[:2]:
        assert (pixels == colour).all(axis=2).sum() > 100
    blue = np.argwhere((pixels == PALETTE[0]).all(axis=2))
    left, right = blue[blue[:, 1] < 20], blue[blue[:, 1] > 180]
    assert left[:, 0].mean() > right[:, 0].mean(), "a rising series ends higher (smaller row index)"


def test_nan_gaps_and_empty_input_do_not_break_the_chart() -> None:
    assert _decode(line_chart_png([[np.nan, np.nan]])).shape == (160, 480, 3)
    assert _decode(line_chart_png([[1.0, np.nan, 2.0, 3.0]])).shape == (160, 480, 3)


def test_markdown_embeds_the_png_as_a_data_uri() -> None:
    md = markdown_chart([[1, 2, 3]], ["close"], "AAPL")
    encoded = md.split("base64,")[1].rstrip(")")
    assert _decode(base64.b64decode(encoded)).shape == (160, 480, 3)
    assert "close (blue)" in md


def test_the_chart_has_axes_and_says_their_values_and_unit() -> None:
    pixels = _decode(line_chart_png([[1.0, 2.0, 3.0]], width=200, height=80))
    axis = (pixels == (90, 90, 90)).all(axis=2)
    assert axis[:, 4].sum() >= 60 and axis[75, :].sum() >= 180  # left and bottom axis lines
    md = markdown_chart([[101.5, 99.0, 120.25]], ["close"], "AAPL", x_range=("2024-01-02", "2024-06-28"), unit="USD")
    assert "y axis: 99 to 120.2 USD; x axis: 2024-01-02 to 2024-06-28" in md
