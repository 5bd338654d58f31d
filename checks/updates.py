"""Updates check: pending package updates (Debian/Ubuntu apt) and whether a reboot is due."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import ClassVar, NamedTuple

from checks.base import CheckFailed, CheckOptions, ProbeBase
from checks.command import run_command
from checks.schema import Measurement

_log = logging.getLogger(__name__)

# `Inst pkg [old] (new Origin:version/suite[, Origin:version/suite] [arch])`; [old] is absent
# for a package that is new to the host.
_INST = re.compile(r"^Inst \S+(?: \[[^\]]*\])? \((?P<origins>[^)]*)\)")


class UpdatesOptions(CheckOptions, tag="updates", frozen=True):
    """Where apt and the reboot flag are."""

    apt_get: str = "apt-get"
    reboot_required_file: str = "/var/run/reboot-required"  # its `.pkgs` sibling lists packages

    # apt's simulation reads every package list (2 s here, longer on a slow disk); the answer
    # changes only when the lists are updated, so hourly is plenty.
    default_interval: ClassVar[float | None] = 3600.0
    default_timeout: ClassVar[float] = 300.0


class PendingUpdates(NamedTuple):
    """Counts from an apt-get simulation."""

    total: int
    security: int


def count_pending(simulation: str) -> PendingUpdates:
    """Count the `Inst` lines of `apt-get -s dist-upgrade`, and those from a -security suite."""
    total = security = 0
    for line in simulation.splitlines():
        if not line.startswith("Inst "):
            continue
        total += 1
        match = _INST.match(line)
        # Debian: Debian-Security:12/stable-security; Ubuntu: Ubuntu:22.04/jammy-security.
        if match and "-security" in match.group("origins").lower():
            security += 1
    return PendingUpdates(total, security)


class UpdatesCheck(ProbeBase[UpdatesOptions]):
    """Report pending and security updates from a simulated dist-upgrade, and reboot-required.

    The check never runs `apt-get update`: the counts are as fresh as the package lists that
    apt's own timer (or unattended-upgrades) keeps. The simulation needs no root and no lock.
    """

    def collect(self) -> list[Measurement]:
        """Return pending update counts (where apt exists) and the reboot-required flags."""
        reboot = self._reboot_figures()
        import shutil  # only for the updates check

        if shutil.which(self._options.apt_get) is None:
            _log.info(
                "updates check: %s not found; reporting reboot-required only",
                self._options.apt_get,
            )
            return self._measurements(reboot, self._clock())
        # The runner's budget, whole: apt-get is killed when the runner gives up on it.
        result = run_command(
            [self._options.apt_get, "-s", "-o", "Debug::NoLocking=1", "dist-upgrade"],
            timeout=self._timeout,
        )
        if result.returncode != 0:
            error = next(
                (line for line in result.stderr.splitlines() if line.strip()), "no message"
            )
            raise CheckFailed(
                f"apt-get dist-upgrade simulation exited {result.returncode}: {error}; run "
                "`apt-get -s dist-upgrade` on the host to see why",
                measurements=self._measurements(reboot, self._clock()),
            )
        pending = count_pending(result.stdout)
        figures = [
            ("updates_pending", pending.total, ""),
            ("updates_security_pending", pending.security, ""),
            *reboot,
        ]
        return self._measurements(figures, self._clock())

    def _reboot_figures(self) -> list[tuple[str, float, str]]:
        flag = Path(self._options.reboot_required_file)
        figures: list[tuple[str, float, str]] = [("reboot_required", flag.exists(), "")]
        packages = flag.with_name(flag.name + ".pkgs")
        try:
            # Packages append their names on each upgrade, so a name may appear twice.
            names = {line.strip() for line in packages.read_text().splitlines() if line.strip()}
        except FileNotFoundError:
            return figures
        except OSError as exc:
            _log.warning("updates check: cannot read %s: %s", packages, exc.strerror or exc)
            return figures
        figures.append(("reboot_required_packages", len(names), ""))
        return figures
