"""What the final model gets wrong: the mistakes measure.py found, each shown digit drawn as a PNG written by
hand (no imaging library), and the confusion matrix shaded."""
from __future__ import annotations

import base64
import struct
import zlib

MAX_MISTAKES_SHOWN = 60


def png_gray(pixels: bytes, width: int, height: int) -> bytes:
    """An 8-bit greyscale PNG, written by hand (zlib + struct): no imaging library needed."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + pixels[y * width:(y + 1) * width] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def mistakes_view(measured: dict | None) -> dict:
    """measure.py's account of the final model's mistakes, with each shown image drawn as a PNG."""
    if not measured:
        return {"missing": "not computed for this folder (python -m ablation measure --runs DIR)"}
    if "missing" in measured:
        return measured
    shown = [{**m, "src": data_uri(png_gray(bytes(255 - p for p in bytes.fromhex(m["pixels"])), 28, 28))}
             for m in measured["shown"][:MAX_MISTAKES_SHOWN]]
    return {**measured, "shown": shown}


def confusion_view(confusion: list[list[int]]) -> list[list[dict]]:
    """Cells with a shade: diagonal green by its share of the row, off-diagonal red by its share of the worst."""
    worst = max([confusion[i][j] for i in range(10) for j in range(10) if i != j] + [1])
    rows = []
    for i, row in enumerate(confusion):
        cells = []
        for j, v in enumerate(row):
            if i == j:
                style = "background:#e6f4ea"
            elif v:
                style = f"background:rgba(217,48,37,{0.12 + 0.6 * v / worst:.2f})"
            else:
                style = ""
            cells.append({"v": v, "style": style, "diag": i == j})
        rows.append(cells)
    return rows
