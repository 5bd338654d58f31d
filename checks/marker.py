"""Marker check: whether the files a job touches on success exist, and how old they are."""

from __future__ import annotations

import logging
import os
import re

from checks.base import CheckBase, CheckOptions
from checks.files import PathGlob, matching_paths
from checks.schema import RESERVED_LABELS, Measurement
from checks.settings import field_error

_log = logging.getLogger(__name__)

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class MarkerOptions(CheckOptions, tag="marker", frozen=True):
    """A marker file or glob, and the name of the label that carries each marker's path."""

    path: PathGlob
    name_label: str = "marker"

    def __post_init__(self) -> None:
        if not _LABEL_NAME.fullmatch(self.name_label) or self.name_label in RESERVED_LABELS:
            raise field_error(
                "name_label",
                f"must be a label name ([a-zA-Z_][a-zA-Z0-9_]*) other than "
                f"{' or '.join(sorted(RESERVED_LABELS))}, got {self.name_label!r}",
            )


class MarkerCheck(CheckBase[MarkerOptions]):
    """Report presence (1/0) and age of each marker; a glob matching nothing is absent (0)."""

    def collect(self) -> list[Measurement]:
        """Return marker_present and marker_age_seconds for each marker found, else present 0."""
        found: list[tuple[str, float]] = []
        for path in matching_paths(self._options.path):
            try:
                found.append((path, os.stat(path).st_mtime))
            except FileNotFoundError:
                continue  # removed since the glob listed it
            except OSError as exc:
                _log.warning(
                    "marker check: skipping %s: %s; give the agent access to it",
                    path,
                    exc.strerror or exc,
                )
        now = self._clock()
        key = self._options.name_label
        if not found:
            # The series is labelled with the configured path, so "never appeared" has one too.
            return [self._measurement("marker_present", 0.0, now, labels={key: self._options.path})]
        out: list[Measurement] = []
        for path, mtime in found:
            figures = [("marker_present", 1.0, ""), ("marker_age_seconds", now - mtime, "seconds")]
            out += self._measurements(figures, now, {key: path})
        return out
