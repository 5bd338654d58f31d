"""Typed configuration: parse YAML once, validate it, and name the key path of any mistake."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import msgspec
import yaml

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration mistake, with the key path that holds it (list items count from 1)."""

    def __init__(self, path: str, message: str, *, source: str | None = None) -> None:
        self.path = path
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        at = f"{path}: " if path else ""
        super().__init__(f"{where}{at}{message}")


class Duration(float):
    """A length of time in seconds, written as `90`, `30s`, `5m`, `4h`, `1d` or `1h30m`."""

    _PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
    _SCALE: ClassVar[dict[str, float]] = {
        "ms": 0.001,
        "s": 1,
        "m": 60,
        "h": 3600,
        "d": 86400,
        "w": 604800,
    }

    @classmethod
    def parse(cls, raw: object) -> Duration:
        """Parse a duration from a number of seconds or a string such as `1h30m`."""
        if isinstance(raw, bool):
            raise ValueError(f"expected a duration such as 30s, 5m or 4h, got {raw!r}")
        if isinstance(raw, int | float):
            if raw < 0:
                raise ValueError(f"a duration cannot be negative, got {raw!r}")
            return cls(raw)
        if isinstance(raw, str):
            text = raw.strip().replace(" ", "")
            pos, total = 0, 0.0
            for match in cls._PART.finditer(text):
                if match.start() != pos:
                    break
                total += float(match.group(1)) * cls._SCALE[match.group(2)]
                pos = match.end()
            if text and pos == len(text):
                return cls(total)
        raise ValueError(f"expected a duration such as 30s, 5m or 4h, got {raw!r}")

    def __str__(self) -> str:
        return format_duration(float(self))


def format_duration(seconds: float) -> str:
    """Render seconds as `2d 3h`, `5m 10s` or `0.25s`: short enough for a call summary."""
    if seconds < 60:
        return f"{seconds:.3g}s"
    out = []
    remaining = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            out.append(f"{count}{unit}")
        if len(out) == 2:
            break
    return " ".join(out)


def field_error(field: str, message: str) -> ValueError:
    """An error from a struct's `__post_init__` that belongs to one of its keys.

    msgspec reports such errors at the struct; the mark lets the key path name the key too.
    """
    return ValueError(f"[{field}] {message}")


_FIELD = re.compile(r"^\[(?P<field>[A-Za-z_][A-Za-z0-9_]*)\] (?P<message>.*)$", re.S)


def _dec_hook(typ: type, obj: Any) -> Any:
    if typ is Duration:
        return Duration.parse(obj)
    if typ is Path:
        if isinstance(obj, str) and obj:
            return Path(obj)
        raise ValueError(f"expected a path, got {obj!r}")
    raise NotImplementedError(typ)


_AT = re.compile(r"^(?P<message>.*) - at `\$(?P<path>[^`]*)`$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]*)`$")


def key_path(raw: str) -> str:
    """Turn msgspec's `.rules[2].warning` into `rules -> 3 -> warning`, counting items from 1."""
    parts: list[str] = []
    for token in re.finditer(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]", raw):
        if token.group(1) is not None:
            parts.append(token.group(1))
        elif token.group(2) is not None:
            parts.append(str(int(token.group(2)) + 1))
        else:
            parts.append("…")
    return " -> ".join(parts)


def _config_error(exc: msgspec.ValidationError, source: str | None) -> ConfigError:
    text = str(exc)
    match = _AT.match(text)
    message, path = (match.group("message"), key_path(match.group("path"))) if match else (text, "")

    def join(parent: str, child: str) -> str:
        return f"{parent} -> {child}" if parent else child

    if field := _FIELD.match(message):
        path, message = join(path, field.group("field")), field.group("message")
    if unknown := _UNKNOWN.match(message):
        return ConfigError(join(path, unknown.group("field")), "unknown key", source=source)
    if missing := _MISSING.match(message):
        return ConfigError(
            join(path, missing.group("field")), "required key is missing", source=source
        )
    return ConfigError(path, message, source=source)


def convert(data: Any, typ: type[T], *, source: str | None = None, prefix: str = "") -> T:
    """Validate plain data (as parsed from YAML) into a typed, frozen config object.

    `prefix` is the key path of `data` itself, when it is a part of a larger file.
    """
    try:
        return msgspec.convert(data, typ, dec_hook=_dec_hook, strict=False)
    except msgspec.ValidationError as exc:
        error = _config_error(exc, source)
        if prefix:
            path = f"{prefix} -> {error.path}" if error.path else prefix
            raise ConfigError(path, error.message, source=source) from None
        raise error from None


def resolve_paths(base: Path, section: Any, *keys: str) -> None:
    """Make the named path values of a config section (raw data) absolute, relative to `base`."""
    if not isinstance(section, dict):
        return
    for key in keys:
        value = section.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            section[key] = str(base / value)


def load_yaml(
    path: Path,
    typ: type[T],
    *,
    defaults: Callable[[dict[str, Any]], None] | None = None,
    prevalidate: Callable[[dict[str, Any], str | None], None] | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> T:
    """Read a YAML file and validate it into `typ`. Raises ConfigError naming the key path.

    `edit` changes the parsed data first (checks/mistakes.py leaves out what it has reported).
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read the file: {exc.strerror}", source=source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"not UTF-8 text (byte {exc.start})", source=source) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError("", f"not valid YAML{where}: {problem}", source=source) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("", "the top level must be a mapping of keys", source=source)
    if edit is not None:
        edit(data)
    if defaults is not None:
        defaults(data)
    if prevalidate is not None:
        prevalidate(data, source)
    return convert(data, typ, source=source)
