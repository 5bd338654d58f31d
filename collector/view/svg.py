"""Inline SVG, element by element: what the console's graphs and the monthly report draw with.

Text is escaped and numbers rounded here, once. Attributes are SVG presentation attributes
(`stroke`, `fill`, `font-size`) or a `class` for the console's stylesheet, never `style`: the
console's Content-Security-Policy blocks inline styles, not presentation attributes. Keyword
names take `_` for `-` (`stroke_width`), and `class_` for `class`.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

Number = float | int


def _attrs(attrs: dict[str, object]) -> str:
    parts = []
    for name, value in attrs.items():
        if value is None:
            continue
        key = "class" if name == "class_" else name.replace("_", "-")
        if isinstance(value, float):
            parts.append(f' {key}="{value:.1f}"')
        else:
            parts.append(f' {key}="{escape(str(value))}"')
    return "".join(parts)


def _title(title: str | None) -> str:
    return f"<title>{escape(title)}</title>" if title else ""


class Svg:
    """One drawing: `width` x `height` user units, scaled by its container (viewBox)."""

    def __init__(
        self, width: Number, height: Number, *, label: str, sized: bool = True, **attrs: object
    ) -> None:
        size: dict[str, object] = {"width": width, "height": height} if sized else {}
        self._parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg"'
            f'{_attrs(attrs)} viewBox="0 0 {width} {height}"{_attrs(size)} '
            f'role="img" aria-label="{escape(label)}">'
        ]

    def add(self, element: str, title: str | None = None, /, **attrs: object) -> None:
        """Any element with attributes, and a tooltip with `title`."""
        inner = _title(title)
        tail = f">{inner}</{element}>" if inner else "/>"
        self._parts.append(f"<{element}{_attrs(attrs)}{tail}")

    def line(self, x1: Number, y1: Number, x2: Number, y2: Number, **attrs: object) -> None:
        self.add("line", x1=float(x1), y1=float(y1), x2=float(x2), y2=float(y2), **attrs)

    def rect(self, x: Number, y: Number, width: Number, height: Number, **attrs: object) -> None:
        self.add("rect", x=float(x), y=float(y), width=float(width), height=float(height), **attrs)

    def polyline(self, points: Iterable[tuple[float, float]], **attrs: object) -> None:
        self.add("polyline", points=_points(points), **attrs)

    def polygon(self, points: Iterable[tuple[float, float]], **attrs: object) -> None:
        self.add("polygon", points=_points(points), **attrs)

    def circle(self, x: Number, y: Number, r: Number, **attrs: object) -> None:
        self.add("circle", cx=float(x), cy=float(y), r=float(r), **attrs)

    def text(self, x: Number, y: Number, text: str, **attrs: object) -> None:
        self._parts.append(
            f"<text{_attrs({'x': float(x), 'y': float(y), **attrs})}>{escape(text)}</text>"
        )

    def markup(self) -> str:
        return "".join(self._parts) + "</svg>"


def _points(points: Iterable[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
