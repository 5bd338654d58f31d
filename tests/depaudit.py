"""Audit the locked dependencies (requirements.lock) for known vulnerabilities with pip-audit.

    python tests/depaudit.py PIP_AUDIT      # audit; tests/run does this
    python tests/depaudit.py --refresh      # rewrite requirements.lock from a clean install

pip-audit asks PyPI's JSON API for each pinned version's advisories. No current vulnerability
database ships in a package for an offline check, so when that service cannot be reached, or
does not answer for a package, the audit is skipped with a message that says so.

Exit status: 0 no known vulnerability (or skipped), 1 a known vulnerability, 2 pip-audit failed.
"""

from __future__ import annotations

import json
import subprocess  # nosec B404 - runs pip-audit and pip, named by the caller or found here
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
HEADER = """\
# The resolved runtime dependencies of runwatch (with the postgresql extra), audited by
# tests/run with pip-audit. Refresh after changing the dependencies in pyproject.toml:
#   python tests/depaudit.py --refresh
"""
# What pip-audit (or its HTTP client) says when the service is out of reach.
_UNREACHABLE = (
    "ConnectionError",
    "NameResolutionError",
    "Max retries exceeded",
    "timed out",
    "Temporary failure in name resolution",
    "ServiceError",
)


def verdict(returncode: int, stdout: str, stderr: str) -> tuple[int, str]:
    """The audit's exit status and what to print, from a `pip-audit --format json` run."""
    try:
        report = json.loads(stdout)
    except ValueError:
        if any(word in stderr for word in _UNREACHABLE):
            last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
            return 0, (
                "dependency audit SKIPPED: the vulnerability service cannot be reached "
                f"({last[:200]})"
            )
        return 2, f"pip-audit failed (exit {returncode}):\n{stderr[-2000:]}"
    found = [
        (dep["name"], dep["version"], vuln)
        for dep in report.get("dependencies", [])
        for vuln in dep.get("vulns", [])
    ]
    skipped = [dep for dep in report.get("dependencies", []) if dep.get("skip_reason")]
    if found:
        lines = [
            f"  {name} {version}: {vuln['id']} (fixed in "
            f"{', '.join(vuln.get('fix_versions') or ['no release yet'])})"
            for name, version, vuln in found
        ]
        return 1, "known vulnerabilities in requirements.lock:\n" + "\n".join(lines)
    total = len(report.get("dependencies", []))
    if skipped:
        return 0, (
            f"dependency audit SKIPPED for {len(skipped)} of {total} packages: the "
            f"vulnerability service did not answer for them (first: "
            f"{skipped[0]['skip_reason'][:200]})"
        )
    return 0, f"dependency audit: no known vulnerability in {total} packages"


def audit(pip_audit: str) -> int:
    try:
        run = subprocess.run(  # nosec B603 - a fixed argument list, no shell
            [
                pip_audit,
                "--requirement",
                str(LOCK),
                "--no-deps",
                "--disable-pip",
                "--vulnerability-service",
                "pypi",
                "--timeout",
                "15",
                "--progress-spinner",
                "off",
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except subprocess.TimeoutExpired:
        print("dependency audit SKIPPED: the vulnerability service did not answer in 10 minutes")
        return 0
    status, message = verdict(run.returncode, run.stdout, run.stderr)
    print(message)
    return status


def refresh() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        python = Path(tmp) / "bin" / "python"
        subprocess.run([sys.executable, "-m", "venv", tmp], check=True)  # nosec B603
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"{ROOT}[postgresql]"],  # nosec B603
            check=True,
        )
        frozen = subprocess.run(  # nosec B603
            [str(python), "-m", "pip", "freeze", "--exclude-editable"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    pins = [line for line in frozen.splitlines() if line and not line.startswith("runwatch")]
    LOCK.write_text(HEADER + "\n".join(pins) + "\n", encoding="utf-8")
    print(f"wrote {len(pins)} pins to {LOCK.name}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--refresh"]:
        sys.exit(refresh())
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(audit(sys.argv[1]))
