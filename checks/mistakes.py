"""Every mistake in a config file, each with its key path and line, not only the first.

The loaders stop at the first mistake (msgspec does, and so do the checks between keys). To find
the others, the file is loaded again with what was reported left out: first the key that holds
the mistake, and if the same key is still wrong (a required key, a reference to a group that is
not there), the whole list item that holds it (`rules -> 3`). A list item left out keeps the
numbers of the items after it: paths are translated back, so each mistake is named as it is in
the file. A mistake outside any list item that leaving out its key does not cure ends the search,
and so does one in another file (a rule file): what follows could only echo it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from checks.settings import ConfigError

# A file with more mistakes than this is not worth reading further.
MOST = 50

Parts = tuple[str, ...]


@dataclass(frozen=True)
class Mistake:
    """One mistake: the loader's error, and the line of the file that holds it (from 1)."""

    error: ConfigError
    line: int | None

    def __str__(self) -> str:
        return f"{self.error} (line {self.line})" if self.line else str(self.error)


def split(path: str) -> Parts:
    return tuple(path.split(" -> ")) if path else ()


def line_marks(text: str) -> dict[Parts, int]:
    """The line (from 1) of each key and list item of a YAML text, by key path."""
    marks: dict[Parts, int] = {}

    def walk(node: yaml.Node, parts: Parts) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    marks.setdefault((*parts, key.value), key.start_mark.line + 1)
                    walk(value, (*parts, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value, start=1):
                marks[(*parts, str(index))] = item.start_mark.line + 1
                walk(item, (*parts, str(index)))

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return marks
    if root is not None:
        walk(root, ())
    return marks


def line_of(marks: dict[Parts, int], parts: Parts) -> int | None:
    """The line of a key path, or of the nearest key above it that the file has."""
    for end in range(len(parts), 0, -1):
        if parts[:end] in marks:
            return marks[parts[:end]]
    return None


@dataclass
class _Omissions:
    """What is left out of the data, by key paths as the file numbers them."""

    keys: list[Parts] = field(default_factory=list)
    items: list[Parts] = field(default_factory=list)

    def apply(self, data: dict[str, Any]) -> None:
        for parts in self.keys:
            parent = _find(data, parts[:-1])
            if isinstance(parent, dict):
                parent.pop(parts[-1], None)
        # Last first, so the numbers of the items still to leave out hold.
        for parts in sorted(self.items, key=lambda p: (p[:-1], -int(p[-1]))):
            parent = _find(data, parts[:-1])
            if isinstance(parent, list) and int(parts[-1]) <= len(parent):
                del parent[int(parts[-1]) - 1]

    def in_file(self, parts: Parts) -> Parts:
        """A key path the loader gave for the data without the left-out items, as in the file."""
        translated: list[str] = []
        for part in parts:
            if not part.isdigit():
                translated.append(part)
                continue
            number = int(part)
            gone = sorted(int(p[-1]) for p in self.items if p[:-1] == tuple(translated))
            for index in gone:  # each left-out item at or before it moves it one on
                if index <= number:
                    number += 1
            translated.append(str(number))
        return tuple(translated)


def _find(data: Any, parts: Parts) -> Any:
    """The value at a key path of the file (list items from 1), or None."""
    for part in parts:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and 1 <= int(part) <= len(data):
            data = data[int(part) - 1]
        else:
            return None
    return data


def _item_of(parts: Parts) -> Parts | None:
    """The innermost list item a key path is in (`rules -> 3` for `rules -> 3 -> for`)."""
    for end in range(len(parts), 0, -1):
        if parts[end - 1].isdigit():
            return parts[:end]
    return None


def every_mistake(
    path: Path, load: Callable[[Callable[[dict[str, Any]], None]], object]
) -> list[Mistake]:
    """Every mistake `load` finds in the file at `path`, by line; [] if it is valid.

    `load(edit)` loads the file, calling `edit` on the parsed data before validating it.
    """
    try:
        marks = line_marks(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        marks = {}  # the loader says what is wrong with the file
    left_out = _Omissions()
    mistakes: list[Mistake] = []
    while len(mistakes) < MOST:
        try:
            load(left_out.apply)
        except ConfigError as error:
            parts = left_out.in_file(split(error.path))
            if error.source != str(path) or not parts:
                mistakes.append(Mistake(error, None))
                break
            # The same key again (leaving it out did not cure it), or the item above a key left
            # out (`a rule needs a threshold` once `warn` is gone): its list item goes.
            if any(key[: len(parts)] == parts for key in left_out.keys):
                item = _item_of(parts)
                if item is None or item in left_out.items:
                    break
                left_out.items.append(item)
                continue
            error = ConfigError(" -> ".join(parts), error.message, source=error.source)
            mistakes.append(Mistake(error, line_of(marks, parts)))
            left_out.keys.append(parts)
        else:
            break
    # As a person reads the file; a mistake without a line (another file's) last.
    return sorted(mistakes, key=lambda m: (m.line is None, m.line or 0))
