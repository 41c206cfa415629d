"""A PNG reader for screenshots (8-bit RGB/RGBA, not interlaced): pixels as tuples.

Enough to check which colours a browser painted, without an imaging library.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}  # colour type: RGB, RGBA


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows), each row ``width * channels`` bytes, RGB(A) order."""
    data = path.read_bytes()
    if not data.startswith(_SIGNATURE):
        raise ValueError(f"{path} is not a PNG file")
    offset = len(_SIGNATURE)
    chunks: list[bytes] = []
    width = height = channels = 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or colour not in _CHANNELS or interlace:
                raise ValueError(f"{path}: only 8-bit RGB(A), non-interlaced PNGs are read")
            channels = _CHANNELS[colour]
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    position = 0
    for _ in range(height):
        kind = raw[position]
        line = bytearray(raw[position + 1 : position + 1 + stride])
        position += 1 + stride
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                line[i] = (line[i] + _paeth(left, up, corner)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, [_rgb(row, channels) for row in rows]


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _rgb(row: bytes, channels: int) -> bytes:
    if channels == 3:
        return row
    return bytes(b for i, b in enumerate(row) if i % 4 != 3)


class Screenshot:
    """A decoded screenshot: which colours it has, and where they form solid runs."""

    def __init__(self, path: Path) -> None:
        self.width, self.height, self.rows = read_png(path)

    def count(self, colour: tuple[int, int, int]) -> int:
        """How many pixels have exactly this colour."""
        wanted = bytes(colour)
        return sum(1 for row in self.rows for at in _starts(row, wanted) if at % 3 == 0)

    def rows_with_run(self, colour: tuple[int, int, int], width: int) -> int:
        """How many pixel rows hold ``width`` or more pixels of ``colour`` side by side:
        a filled bar shows as such rows, a glyph or a line of that colour does not."""
        run = bytes(colour) * width
        return sum(1 for row in self.rows if any(at % 3 == 0 for at in _starts(row, run)))


def _starts(row: bytes, run: bytes) -> list[int]:
    # Every place the run begins (byte offsets), so one at a pixel boundary is found.
    found = []
    at = row.find(run)
    while at != -1:
        found.append(at)
        at = row.find(run, at + 1)
    return found
