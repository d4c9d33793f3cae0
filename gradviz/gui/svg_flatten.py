"""Bake scaling transforms into the coordinates of an exported SVG, so every renderer draws thin lines.

Qt's SVG generator writes each curve in data coordinates inside a group whose `transform` maps data
to pixels (a y scale of -375 for a fraction axis), and keeps the line one pixel wide with
`vector-effect="non-scaling-stroke"`. Renderers without that attribute (ImageMagick, some slide and
drawing programs) scale the stroke with the group and paint 375-pixel-wide bands over the chart.
Here each such group's paths and polylines get their points mapped to pixels and the group an
identity transform, which draws the same in every renderer. A group holding anything else (text,
images, relative or curved commands other than absolute cubic Béziers) is left as it is.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

SVG_NS = "http://www.w3.org/2000/svg"
_MATRIX = re.compile(r"^\s*matrix\(\s*([^)]*)\)\s*$")
_TOKEN = re.compile(r"[A-Za-z]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_PAIRED = {"M", "L", "C"}  # absolute commands whose numbers are all (x, y) pairs; Z has none


def _matrix(text: str | None) -> tuple[float, ...] | None:
    m = _MATRIX.match(text or "")
    if not m:
        return None
    try:
        values = tuple(float(v) for v in re.split(r"[\s,]+", m.group(1).strip()))
    except ValueError:
        return None
    return values if len(values) == 6 else None


def _scales(mt: tuple[float, ...]) -> bool:
    """True when the transform stretches strokes (not a translation, rotation or reflection)."""
    a, b, c, d, _e, _f = mt
    return not (abs(a * a + b * b - 1) < 1e-9 and abs(c * c + d * d - 1) < 1e-9 and abs(a * c + b * d) < 1e-9)


def _num(v: float) -> str:
    return f"{v:.4f}".rstrip("0").rstrip(".") or "0"


def _map_pairs(numbers: list[float], mt: tuple[float, ...]) -> list[str] | None:
    if len(numbers) % 2:
        return None
    a, b, c, d, e, f = mt
    out = []
    for x, y in zip(numbers[::2], numbers[1::2], strict=True):
        out.append(f"{_num(a * x + c * y + e)},{_num(b * x + d * y + f)}")
    return out


def _map_path(d: str, mt: tuple[float, ...]) -> str | None:
    """The path data with its points mapped, or None when it has commands this does not handle."""
    parts: list[str] = []
    command, numbers = None, []

    def flush() -> bool:
        if command is None:
            return not numbers
        if command in ("Z", "z"):
            parts.append("Z")
            return not numbers
        mapped = _map_pairs(numbers, mt)
        if mapped is None:
            return False
        parts.append(command + " ".join(mapped))
        return True

    for tok in _TOKEN.findall(d):
        if tok.isalpha():
            if not flush():
                return None
            if tok not in _PAIRED and tok not in ("Z", "z"):
                return None
            command, numbers = tok, []
        else:
            numbers.append(float(tok))
    if not flush():
        return None
    return " ".join(parts)


def _flatten_group(g: ET.Element, mt: tuple[float, ...]) -> bool:
    children = list(g)
    if not children or any(ch.tag not in (f"{{{SVG_NS}}}path", f"{{{SVG_NS}}}polyline") for ch in children):
        return False
    # a stroke scaled on purpose (a pen wide in data units) would change width: only hairlines
    # (`non-scaling-stroke`) and unstroked fills are mapped
    unstroked = g.get("stroke") in (None, "none")
    if not all(unstroked or ch.get("vector-effect") == "non-scaling-stroke" for ch in children):
        return False
    new = []
    for ch in children:
        if ch.tag.endswith("path"):
            mapped = _map_path(ch.get("d", ""), mt)
        else:
            pts = [float(t) for t in _TOKEN.findall(ch.get("points", ""))]
            pairs = _map_pairs(pts, mt)
            mapped = " ".join(pairs) if pairs is not None else None
        if mapped is None:
            return False
        new.append(mapped)
    for ch, mapped in zip(children, new, strict=True):
        ch.set("d" if ch.tag.endswith("path") else "points", mapped)
    g.set("transform", "matrix(1,0,0,1,0,0)")
    return True


def flatten_svg(path: str | Path) -> int:
    """Rewrite the SVG file at `path` in place; returns how many groups were flattened."""
    ET.register_namespace("", SVG_NS)
    ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")
    tree = ET.parse(path)
    done = 0
    for g in tree.getroot().iter(f"{{{SVG_NS}}}g"):
        mt = _matrix(g.get("transform"))
        if mt is not None and _scales(mt) and _flatten_group(g, mt):
            done += 1
    if done:
        tree.write(path, encoding="UTF-8", xml_declaration=True)
    return done
