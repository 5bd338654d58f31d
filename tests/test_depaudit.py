"""The dependency audit's verdict on pip-audit's answers: fail on a vulnerability, skip when
the service is out of reach, never pass silently on packages it could not check."""

from __future__ import annotations

import json

import pytest

from tests.depaudit import LOCK, verdict

CLEAN = {"dependencies": [{"name": "h11", "version": "0.16.0", "vulns": []}]}
VULNERABLE = {
    "dependencies": [
        {
            "name": "h11",
            "version": "0.14.0",
            "vulns": [{"id": "GHSA-vqfr-h8mv-ghfj", "fix_versions": ["0.16.0"], "aliases": []}],
        }
    ]
}
UNANSWERED = {
    "dependencies": [
        {"name": "h11", "version": "0.16.0", "vulns": []},
        {"name": "anyio", "skip_reason": "Dependency not found on PyPI and could not be audited"},
    ]
}


@pytest.mark.parametrize(
    ("code", "stdout", "stderr", "status", "words"),
    [
        pytest.param(0, json.dumps(CLEAN), "", 0, "no known vulnerability in 1", id="clean"),
        pytest.param(
            1,
            json.dumps(VULNERABLE),
            "",
            1,
            "GHSA-vqfr-h8mv-ghfj (fixed in 0.16.0)",
            id="a known vulnerability fails",
        ),
        pytest.param(
            0,
            json.dumps(UNANSWERED),
            "",
            0,
            "SKIPPED for 1 of 2 packages",
            id="a package the service did not answer for: skipped, said so",
        ),
        pytest.param(
            1,
            "",
            "requests.exceptions.ConnectionError: Max retries exceeded",
            0,
            "SKIPPED: the vulnerability service cannot be reached",
            id="service out of reach: skipped",
        ),
        pytest.param(
            2,
            "",
            "usage: pip-audit: error: unrecognized arguments",
            2,
            "pip-audit failed",
            id="any other failure fails",
        ),
    ],
)
def test_verdict(code: int, stdout: str, stderr: str, status: int, words: str) -> None:
    got, message = verdict(code, stdout, stderr)
    assert got == status
    assert words in message


def test_the_lock_pins_every_runtime_dependency() -> None:
    pins = {
        line.split("==")[0].lower()
        for line in LOCK.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert {"litestar", "uvicorn", "httpx", "msgspec", "psycopg", "h11"} <= pins
    assert all(
        "==" in line for line in LOCK.read_text().splitlines() if line and not line.startswith("#")
    )
