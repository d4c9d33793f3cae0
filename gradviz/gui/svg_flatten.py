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


Rect = tuple[float, float, float, float]  # x0, y0, x1, y1 in the SVG's pixels


def _clip_segment(p: tuple[float, float], q: tuple[float, float], r: Rect):
    """Liang-Barsky: the part of segment p-q inside `r`, or None."""
    (x0, y0), (x1, y1) = p, q
    dx, dy = x1 - x0, y1 - y0
    t0, t1 = 0.0, 1.0
    for den, num in ((-dx, x0 - r[0]), (dx, r[2] - x0), (-dy, y0 - r[1]), (dy, r[3] - y0)):
        if den == 0:
            if num < 0:
                return None
            continue
        t = num / den
        if den < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    return (x0 + t0 * dx, y0 + t0 * dy), (x0 + t1 * dx, y0 + t1 * dy)


def _clip_polyline(points: list[tuple[float, float]], r: Rect) -> str:
    """Path data for the parts of a polyline inside `r` (a new "M" wherever it comes back in)."""
    out: list[str] = []
    pen = None  # where the last drawn piece ended
    for p, q in zip(points, points[1:]):
        seg = _clip_segment(p, q, r)
        if seg is None:
            pen = None
            continue
        a, b = seg
        if pen is None or abs(pen[0] - a[0]) > 1e-6 or abs(pen[1] - a[1]) > 1e-6:
            out.append(f"M{_num(a[0])},{_num(a[1])}")
        out.append(f"L{_num(b[0])},{_num(b[1])}")
        pen = b
    if len(points) == 1 and r[0] <= points[0][0] <= r[2] and r[1] <= points[0][1] <= r[3]:
        out.append(f"M{_num(points[0][0])},{_num(points[0][1])}")
    return " ".join(out)


def _lines_only(d: str) -> list[list[tuple[float, float]]] | None:
    """The sub-paths (point lists) of a path made of M and L commands only, else None."""
    toks = _TOKEN.findall(d)
    if not toks or toks[0] != "M":
        return None
    subs: list[list[float]] = []
    for t in toks:
        if t == "M":
            subs.append([])
        elif t.isalpha():
            if t != "L":
                return None
        else:
            subs[-1].append(float(t))
    if any(len(nums) % 2 for nums in subs):
        return None
    return [list(zip(nums[::2], nums[1::2])) for nums in subs]


def _inside(pt: tuple[float, float], r: Rect) -> bool:
    return r[0] - 0.5 <= pt[0] <= r[2] + 0.5 and r[1] - 0.5 <= pt[1] <= r[3] + 0.5


def _clip_group(g: ET.Element, clips: list[Rect]) -> None:
    """Cut a mapped group's hairlines to the plot they belong to: the clip rectangle holding most of
    their points. SVG Tiny has no clip paths, and a curve below a fixed axis ran out of the plot."""
    lines = []
    for ch in g:
        if ch.tag.endswith("path"):
            subs = _lines_only(ch.get("d", ""))
        else:
            pts = _pairs(ch.get("points", ""))
            subs = [pts] if pts is not None else None
        if subs is None:
            return
        lines.append((ch, subs))
    every = [pt for _ch, subs in lines for pts in subs for pt in pts]
    if not every:
        return
    best = max(clips, key=lambda r: (sum(_inside(pt, r) for pt in every), -(r[2] - r[0]) * (r[3] - r[1])))
    if not any(_inside(pt, best) for pt in every) or all(_inside(pt, best) for pt in every):
        return
    for ch, subs in lines:
        d = " ".join(filter(None, (_clip_polyline(pts, best) for pts in subs)))
        if ch.tag.endswith("polyline"):
            ch.tag = f"{{{SVG_NS}}}path"
            del ch.attrib["points"]
        ch.set("d", d or "M0,0")
        if not d:
            ch.set("visibility", "hidden")


def _numbers(text: str) -> list[float]:
    return [float(t) for t in _TOKEN.findall(text)]


def _pairs(text: str) -> list[tuple[float, float]] | None:
    nums = _numbers(text)
    return list(zip(nums[::2], nums[1::2])) if len(nums) % 2 == 0 else None


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
            pairs = _map_pairs(_numbers(ch.get("points", "")), mt)
            mapped = " ".join(pairs) if pairs is not None else None
        if mapped is None:
            return False
        new.append(mapped)
    for ch, mapped in zip(children, new, strict=True):
        ch.set("d" if ch.tag.endswith("path") else "points", mapped)
    g.set("transform", "matrix(1,0,0,1,0,0)")
    return True


def flatten_svg(path: str | Path, clips: list[Rect] | None = None) -> int:
    """Rewrite the SVG file at `path` in place; returns how many groups were flattened. `clips`:
    the plots' rectangles (pixels); a flattened hairline is cut to the one it belongs to."""
    ET.register_namespace("", SVG_NS)
    ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")
    tree = ET.parse(path)
    done = 0
    for g in tree.getroot().iter(f"{{{SVG_NS}}}g"):
        mt = _matrix(g.get("transform"))
        if mt is not None and _scales(mt) and _flatten_group(g, mt):
            done += 1
            if clips and g.get("fill") == "none":
                _clip_group(g, clips)
    if done:
        tree.write(path, encoding="UTF-8", xml_declaration=True)
    return done
