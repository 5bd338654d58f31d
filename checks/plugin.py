"""Plugin check: run a Nagios/monitoring-plugins command and report its status and perfdata.

The plugin contract: exit code 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; output
`TEXT | 'label'=value[UOM];warn;crit;min;max ...`, with more perfdata allowed after a `|` on a
later line (https://www.monitoring-plugins.org/doc/guidelines.html#AEN200).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from typing import NamedTuple

from checks.base import CheckFailed, CheckOptions, ProbeBase
from checks.command import run_command
from checks.schema import Measurement
from checks.settings import field_error

_log = logging.getLogger(__name__)

# Where Debian and RHEL install the plugins; a bare plugin name not on PATH is looked up here.
PLUGIN_DIRS = ("/usr/lib/nagios/plugins", "/usr/lib64/nagios/plugins")
UNKNOWN = 3

# UOM -> (factor to the base unit, the base unit's name). Byte multiples are 1024-based: the
# guidelines only say "kilobytes", and check_disk and check_swap compute MB as 1024 * 1024.
_KIB = 1024.0
UNITS: dict[str, tuple[float, str]] = {
    "": (1.0, ""),
    "s": (1.0, "seconds"),
    "ms": (1e-3, "seconds"),
    "us": (1e-6, "seconds"),
    "%": (0.01, "ratio"),
    "B": (1.0, "bytes"),
    "KB": (_KIB, "bytes"),
    "MB": (_KIB**2, "bytes"),
    "GB": (_KIB**3, "bytes"),
    "TB": (_KIB**4, "bytes"),
    "KiB": (_KIB, "bytes"),
    "MiB": (_KIB**2, "bytes"),
    "GiB": (_KIB**3, "bytes"),
    "TiB": (_KIB**4, "bytes"),
    "c": (1.0, "count"),
}


def base_unit(uom: str) -> tuple[float, str] | None:
    """Return (factor, unit) that turn a value in `uom` into base units, or None if unknown."""
    if uom in UNITS:
        return UNITS[uom]
    if len(uom) == 2 and uom[1] == "B":  # kB (SI spelling); a lower-case b would be bits
        return UNITS.get(uom.upper())
    return None


_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_VALUE = re.compile(rf"(?P<number>{_NUMBER})(?P<uom>[A-Za-z%]*)")
_PLAIN_NUMBER = re.compile(_NUMBER)
_SPACE = re.compile(r"\s")
# A label is quoted ('' inside stands for one quote) or runs to the `=`; the rest has no spaces.
_ITEM = re.compile(r"\s*(?:'(?P<quoted>(?:[^']|'')*)'|(?P<bare>[^'=\s]+))=(?P<data>\S*)")


class PluginOptions(CheckOptions, tag="plugin", frozen=True):
    """The plugin to run, as an argv list or one shell-quoted string (run without a shell)."""

    command: list[str] | str
    service: str | None = None  # label; defaults to the instance name

    def __post_init__(self) -> None:
        try:
            argv = self.argv
        except ValueError as exc:
            raise field_error("command", f"cannot split into arguments: {exc}") from None
        if not argv or not argv[0]:
            raise field_error("command", "must name the plugin to run")

    @property
    def argv(self) -> list[str]:
        """The command as an argv list."""
        if isinstance(self.command, str):
            return shlex.split(self.command)
        return list(self.command)


class PerfValue(NamedTuple):
    """One perfdata item in base units; thresholds are None unless they are a plain number."""

    label: str
    value: float
    unit: str
    warning: float | None
    critical: float | None


class PluginOutput(NamedTuple):
    """What a plugin printed: its text (summary line, then any long text) and its perfdata."""

    text: str
    perfdata: list[PerfValue]


def parse_output(stdout: str) -> PluginOutput:
    """Split plugin output into text and parsed perfdata (unparseable items are skipped)."""
    lines = stdout.splitlines()
    if not lines:
        return PluginOutput("", [])
    summary, _, perf = lines[0].partition("|")
    text_lines, perf_parts = [summary.strip()], [perf]
    # After the first `|` in the long text, everything is perfdata, to the end of the output.
    for index, line in enumerate(lines[1:], start=1):
        before, bar, after = line.partition("|")
        if bar:
            text_lines.append(before.rstrip())
            perf_parts.append(after)
            perf_parts.extend(lines[index + 1 :])
            break
        text_lines.append(line.rstrip())
    text = "\n".join(text_lines).strip()
    return PluginOutput(text, parse_perfdata(" ".join(perf_parts)))


def parse_perfdata(perfdata: str) -> list[PerfValue]:
    """Parse `'label'=value[UOM];warn;crit;min;max` items; skip the ones that do not parse."""
    out: list[PerfValue] = []
    pos = 0
    while pos < len(perfdata):
        if perfdata[pos].isspace():
            pos += 1
            continue
        match = _ITEM.match(perfdata, pos)
        if match is None:
            end = _next_space(perfdata, pos)
            _log.debug("plugin perfdata: skipping unparseable %r", perfdata[pos:end])
            pos = end
            continue
        pos = match.end()
        label = match.group("bare") or (match.group("quoted") or "").replace("''", "'")
        item = _perf_value(label, match.group("data"))
        if item is not None:
            out.append(item)
    return out


def _next_space(text: str, pos: int) -> int:
    space = _SPACE.search(text, pos)
    return space.start() if space else len(text)


def _perf_value(label: str, data: str) -> PerfValue | None:
    fields = data.split(";")
    value = _VALUE.fullmatch(fields[0])
    if value is None:
        # `U` is the guidelines' "value could not be determined".
        _log.debug("plugin perfdata: skipping %r: value %r is not a number", label, fields[0])
        return None
    uom = value.group("uom")
    known = base_unit(uom)
    if known is None:
        _log.debug("plugin perfdata: %r has an unknown unit %r; reported as is", label, uom)
    factor, unit = known or (1.0, uom[:32])

    def threshold(index: int) -> float | None:
        # A plain number only: ranges (`10:20`, `~:5`, `@5`) have no single value to report.
        if index >= len(fields) or not _PLAIN_NUMBER.fullmatch(fields[index]):
            return None
        return float(fields[index]) * factor

    return PerfValue(label, float(value.group("number")) * factor, unit, threshold(1), threshold(2))


def resolve_plugin(program: str) -> str:
    """Return `program`, or its path in a plugin directory when it is a bare name not on PATH."""
    import shutil  # only for plugin checks

    if "/" in program or shutil.which(program):
        return program
    for directory in PLUGIN_DIRS:
        candidate = os.path.join(directory, program)
        if os.access(candidate, os.X_OK):
            return candidate
    return program


class PluginCheck(ProbeBase[PluginOptions]):
    """Run one plugin and report its exit status, its duration and its perfdata.

    A WARNING or CRITICAL plugin is a measurement (`plugin_status` 1 or 2), not a failed check;
    only a plugin that cannot run or hangs raises. The plugin's text output is kept in
    `last_output` after each run, for the runner to pass on with the check run.
    """

    def _prepare(self) -> None:
        self._labels = {"service": self._options.service or self._options.instance}
        self.last_output: str | None = None

    def collect(self) -> list[Measurement]:
        """Run the plugin once and return its status, duration and perfdata."""
        self.last_output = None
        argv = self._options.argv
        argv[0] = resolve_plugin(argv[0])
        # The runner's budget, whole: the plugin is killed when the runner gives up on it.
        result = run_command(argv, timeout=self._timeout)  # raises if missing or hung
        now = self._clock()
        status = result.returncode
        if not 0 <= status <= UNKNOWN:
            how = f"was killed by signal {-status}" if status < 0 else f"exited {status}"
            _log.warning(
                "plugin %s %s, outside the plugin exit codes 0-3; reported as UNKNOWN",
                self._labels["service"],
                how,
            )
            status = UNKNOWN
        output = parse_output(result.stdout)
        self.last_output = output.text or result.stderr.strip() or None
        out = [
            self._measurement("plugin_status", status, now),
            self._measurement("plugin_duration_seconds", result.duration_seconds, now, "seconds"),
        ]
        seen: set[str] = set()
        for perf in output.perfdata:
            if perf.label in seen:
                _log.debug(
                    "plugin %s: perfdata label %r repeats; keeping the first",
                    self._labels["service"],
                    perf.label,
                )
                continue
            seen.add(perf.label)
            labels = {**self._labels, "label": perf.label}
            out.append(self._measurement("plugin_perf", perf.value, now, perf.unit, labels))
            if perf.warning is not None:
                out.append(
                    self._measurement("plugin_perf_warning", perf.warning, now, perf.unit, labels)
                )
            if perf.critical is not None:
                out.append(
                    self._measurement("plugin_perf_critical", perf.critical, now, perf.unit, labels)
                )
        if status == UNKNOWN:
            # UNKNOWN is "could not check", not "worse than CRITICAL": report it as a failed
            # check (the collector shows UNKNOWN, in the plugin's own words), with the figures.
            raise CheckFailed(f"plugin reports UNKNOWN: {self.last_output or 'no output'}", out)
        return out
