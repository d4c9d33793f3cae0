"""Baking an exported SVG's data-to-pixel transforms into its points (`gui/svg_flatten.py`)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gradviz.gui.svg_flatten import flatten_svg

NS = "{http://www.w3.org/2000/svg}"


def write(tmp_path, body: str):
    path = tmp_path / "x.svg"
    path.write_text(f'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">{body}</svg>')
    return path


def groups(path):
    return list(ET.parse(path).getroot().iter(f"{NS}g"))


def test_hairlines_and_fills_are_mapped_the_rest_left_alone(tmp_path):
    path = write(tmp_path, (
        # a hairline curve under a stretching transform: mapped
        '<g stroke="#000" transform="matrix(10,0,0,-50,5,90)"><path vector-effect="non-scaling-stroke" d="M0,0 L1,1 C2,0 3,1 4,0.5"/>'
        '<polyline vector-effect="non-scaling-stroke" points="0,0 2,1"/></g>'
        # an unstroked fill: mapped
        '<g stroke="none" fill="#f00" transform="matrix(2,0,0,2,0,0)"><path d="M1,1 L2,1 L2,2 Z"/></g>'
        # a pen wide in data units (no non-scaling-stroke): its width would change, so left
        '<g stroke="#000" transform="matrix(3,0,0,3,0,0)"><path d="M0,0 L1,1"/></g>'
        # relative commands this does not map: left
        '<g stroke="#000" transform="matrix(3,0,0,3,0,0)"><path vector-effect="non-scaling-stroke" d="M0,0 l1,1"/></g>'
        # text under a rotation: no stretch, left
        '<g transform="matrix(0,-1,1,0,5,50)"><text x="0" y="0">axis</text></g>'
    ))
    assert flatten_svg(path) == 2
    g = groups(path)
    assert [x.get("transform") for x in g] == ["matrix(1,0,0,1,0,0)", "matrix(1,0,0,1,0,0)", "matrix(3,0,0,3,0,0)", "matrix(3,0,0,3,0,0)", "matrix(0,-1,1,0,5,50)"]
    curve, line = list(g[0])
    assert curve.get("d") == "M5,90 L15,40 C25,90 35,40 45,65"
    assert line.get("points") == "5,90 25,40"
    assert list(g[1])[0].get("d") == "M2,2 L4,2 L4,4 Z"
    assert list(g[2])[0].get("d") == "M0,0 L1,1" and list(g[3])[0].get("d") == "M0,0 l1,1"
    assert "".join(g[4].itertext()) == "axis"


def test_a_file_with_nothing_to_map_is_not_rewritten(tmp_path):
    path = write(tmp_path, '<g transform="matrix(1,0,0,1,3,4)"><path d="M0,0 L1,1"/></g>')
    before = path.read_bytes()
    assert flatten_svg(path) == 0
    assert path.read_bytes() == before


def test_hairlines_are_cut_to_their_plot(tmp_path):
    """SVG Tiny has no clip paths: a curve below a fixed axis ran out of the plot. A mapped hairline
    is cut where it leaves the plot holding most of its points, and starts again where it comes back."""
    path = write(tmp_path, (
        '<g fill="none" stroke="#000" transform="matrix(10,0,0,10,0,0)">'
        '<path vector-effect="non-scaling-stroke" d="M1,1 L3,1 L3,5 L5,1 M6,1 L8,1"/></g>'
        '<g fill="none" stroke="#000" transform="matrix(10,0,0,10,0,0)">'
        '<polyline vector-effect="non-scaling-stroke" points="1,1 2,2"/></g>'
    ))
    assert flatten_svg(path, clips=[(0.0, 0.0, 100.0, 30.0), (0.0, 200.0, 100.0, 300.0)]) == 2
    cut, whole = groups(path)
    # down from (30,10) to (30,50) leaves at y = 30, back in on the way to (50,10) at x = 40
    assert list(cut)[0].get("d") == "M10,10 L30,10 L30,30 M40,30 L50,10 M60,10 L80,10"
    assert list(whole)[0].get("points") == "10,10 20,20"  # inside: left a polyline
