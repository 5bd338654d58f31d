"""Textfile check: read node_exporter textfile-collector `.prom` files, as node_exporter does.

Every sample becomes a measurement with the sample's name and labels plus `file` (the file's
base name). Three renames make Prometheus data fit the wire schema:

- A name ending in `_total` (a counter) ends in `_cumulative` instead: measurements are gauges
  and may not end in `_total`. `backup_files_total` arrives as `backup_files_cumulative`.
- The labels `host`, `check` and `file` become `exported_host`, `exported_check` and
  `exported_file` (as Prometheus renames labels that clash with its own).
- Characters other than `[a-zA-Z0-9_]` in names (`:` in recording-rule names, UTF-8 names)
  become `_`.

NaN and infinite values are left out (the wire format carries finite numbers only), and sample
timestamps are ignored: `textfile_age_seconds` says how old the file is.

Per file the check also reports `textfile_mtime_seconds`, `textfile_age_seconds` and
`textfile_scrape_error` (1 when the file cannot be read or parsed; then none of its samples).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import msgspec

from checks.base import CheckBase, CheckFailed, CheckOptions, Glob, OnceWarnings
from checks.schema import MAX_LABELS_BYTES, RESERVED_LABELS, Measurement, labels_bytes

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

_log = logging.getLogger(__name__)

_NOT_NAME_CHAR = re.compile(r"[^a-zA-Z0-9_]")
_MAX_NAME = 200
_MAX_LABEL_NAME = 100
_MAX_LABEL_VALUE = 1024
_CLASHING_LABELS = RESERVED_LABELS | {"file"}


class TextfileOptions(CheckOptions, tag="textfile", frozen=True):
    """The directory of `.prom` files, and a glob of the file names to read in it."""

    directory: Annotated[str, msgspec.Meta(min_length=1)]
    pattern: Glob = "*.prom"


def _name(raw: str) -> str:
    name = _NOT_NAME_CHAR.sub("_", raw)
    if name[:1].isdigit():
        name = "_" + name
    if name.endswith("_total"):
        name = name.removesuffix("_total") + "_cumulative"
    return name


def _labels(raw: dict[str, str], file: str) -> dict[str, str]:
    renamed: dict[str, str] = {}
    for key, value in raw.items():
        name = _NOT_NAME_CHAR.sub("_", key)
        renamed["_" + name if name[:1].isdigit() else name] = value
    # As Prometheus does: a label that clashes with ours gets `exported_` prefixed until it is
    # unique, so an `exported_host` the file already has keeps its name.
    labels = {k: v for k, v in renamed.items() if k not in _CLASHING_LABELS}
    for key in sorted(_CLASHING_LABELS.intersection(renamed)):
        name = "exported_" + key
        while name in labels:
            name = "exported_" + name
        labels[name] = renamed[key]
    labels["file"] = file
    return labels


class TextfileCheck(CheckBase[TextfileOptions]):
    """Report every sample of every matching `.prom` file, and each file's age and health."""

    def _prepare(self) -> None:
        self._warnings = OnceWarnings(_log)  # keyed (file, problem)

    def collect(self) -> list[Measurement]:
        """Return the samples and per-file figures of every file matching the pattern."""
        directory = Path(self._options.directory)
        if not directory.is_dir():
            raise CheckFailed(
                f"textfile directory {directory} does not exist or is not a directory; set "
                "`directory` to where the jobs write their .prom files"
            )
        if not os.access(directory, os.R_OK | os.X_OK):
            raise CheckFailed(
                f"cannot read textfile directory {directory}; give the agent read access to it"
            )
        try:
            paths = sorted(p for p in directory.glob(self._options.pattern) if p.is_file())
        except OSError as exc:
            raise CheckFailed(
                f"cannot list textfile directory {directory}: {exc.strerror or exc}; give the "
                "agent read access to it"
            ) from exc
        if not paths:
            raise CheckFailed(
                f"no file in {directory} matches {self._options.pattern!r}; check `directory` "
                "and `pattern`, or run the job that writes the file"
            )
        now = self._clock()
        out: list[Measurement] = []
        seen: set[Hashable] = set()
        for path in paths:
            out += self._read(path, now, seen)
        self._warnings.forget_except(seen)
        return out

    def _read(self, path: Path, now: float, seen: set[Hashable]) -> list[Measurement]:
        file = path.name
        try:
            st = path.stat()
        except FileNotFoundError:
            return []  # replaced or removed since the listing
        except OSError as exc:
            self._warnings.warn(
                seen,
                (file, "stat"),
                "textfile check: cannot stat %s: %s; give the agent access to it",
                path,
                exc.strerror or exc,
            )
            return []
        samples: list[Measurement] = []
        error = 0.0
        try:
            text = path.read_text(encoding="utf-8")
            # The parser is lazy: consume it here, so a bad line anywhere fails the whole file.
            # Imported here: an agent without a textfile check never loads prometheus_client.
            from prometheus_client.parser import text_string_to_metric_families

            families = list(text_string_to_metric_families(text))
        except OSError as exc:
            error = 1.0
            self._warnings.warn(
                seen,
                (file, "read"),
                "textfile check: cannot read %s: %s; give the agent read access to it",
                path,
                exc.strerror or exc,
            )
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            # UnicodeDecodeError is a ValueError. The parser raises the others on some garbage.
            error = 1.0
            self._warnings.warn(
                seen,
                (file, "parse"),
                "textfile check: %s is not in the Prometheus text format (%s); fix the job "
                "that writes it (write a temporary file and rename it into place)",
                path,
                exc,
            )
        else:
            samples = self._samples(path, families, now, seen)
        figures = [
            ("textfile_mtime_seconds", st.st_mtime, "seconds"),
            ("textfile_age_seconds", now - st.st_mtime, "seconds"),
            ("textfile_scrape_error", error, ""),
        ]
        return [*samples, *self._measurements(figures, now, {"file": file})]

    def _samples(
        self, path: Path, families: list[Metric], now: float, seen: set[Hashable]
    ) -> list[Measurement]:
        out: list[Measurement] = []
        dropped: dict[str, str] = {}  # sample name -> why it was left out
        for family in families:
            for sample in family.samples:
                name = _name(sample.name)
                labels = _labels(sample.labels, path.name)
                value = float(sample.value)
                if not math.isfinite(value):
                    dropped.setdefault(sample.name, f"value {value}")
                elif len(name) > _MAX_NAME:
                    dropped.setdefault(sample.name, f"name longer than {_MAX_NAME}")
                elif any(len(k) > _MAX_LABEL_NAME for k in labels) or any(
                    len(v) > _MAX_LABEL_VALUE for v in labels.values()
                ):
                    dropped.setdefault(sample.name, "label too long")
                elif labels_bytes(labels) > MAX_LABELS_BYTES:
                    dropped.setdefault(sample.name, f"labels over {MAX_LABELS_BYTES} bytes")
                else:
                    out.append(self._measurement(name, value, now, labels=labels))
        if dropped:
            self._warnings.warn(
                seen,
                (path.name, "dropped"),
                "textfile check: left out %d sample names of %s that the wire format cannot "
                "carry (%s); change the job that writes it",
                len(dropped),
                path,
                ", ".join(f"{name}: {why}" for name, why in sorted(dropped.items())[:5]),
            )
        return out
