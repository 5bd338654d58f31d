"""Slow probes never delay fast checks, and `runwatch check --json` shows backup freshness."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import yaml

from agent.config import agent_config_from_dict
from agent.service import build_runner
from tests.helpers import RUNWATCH
from tests.helpers.runner import run_checks_for
from tests.test_backup_calls import borg_repo, days_ago, restic_repo


def test_hung_restic_does_not_move_the_cadence_of_cpu_or_filesystem(tmp_path: Path) -> None:
    hanging = tmp_path / "restic"
    hanging.write_text("#!/bin/sh\nexec sleep 600\n")  # a repository on a dead NFS mount
    hanging.chmod(0o755)
    (tmp_path / "pass").write_text("x\n")
    config = agent_config_from_dict(
        {
            "collector": {"url": "http://127.0.0.1:9"},
            "state_dir": str(tmp_path / "state"),
            "checks": [
                {
                    "type": "restic",
                    "repository": "/srv/restic",
                    "password_file": str(tmp_path / "pass"),
                    "restic": str(hanging),
                    "interval": "1s",
                    "timeout": "1.5s",
                },
                {"type": "cpu", "interval": "1s"},
                {"type": "filesystem", "interval": "1s"},
            ],
        }
    )
    runner = build_runner(config)
    harvest = run_checks_for(runner, 4.5)

    def runs(check: str) -> list[float]:
        return [r.started_at for r in harvest.runs if r.check == check and r.error is None]

    for fast in ("cpu", "filesystem"):
        starts = runs(fast)
        assert len(starts) >= 4, f"{fast} ran {len(starts)} times in 4.5 s"
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert max(gaps) < 1.6, f"{fast} was held back: gaps {gaps}"
    restic = [r for r in harvest.runs if r.check == "restic"]
    assert restic, "the hung probe is reported, not silent"
    assert restic[0].error is not None
    assert "did not finish" in restic[0].error.message or restic[0].error.kind == "timeout"


def test_check_json_shows_backup_freshness_for_restic_and_borg(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x")
    r_repo, r_pass, r_env = restic_repo(tmp_path)
    stamp, snapshot_at = days_ago(3)
    subprocess.run(
        ["restic", "backup", "--time", stamp, str(data)], env=r_env, check=True, capture_output=True
    )
    b_repo, b_pass, b_env = borg_repo(tmp_path)
    subprocess.run(
        ["borg", "create", f"{b_repo}::one", str(data)], env=b_env, check=True, capture_output=True
    )
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "collector": {"url": "http://127.0.0.1:9"},
                "state_dir": str(tmp_path / "state"),
                "checks": [
                    {"type": "restic", "repository": str(r_repo), "password_file": str(r_pass)},
                    {"type": "borg", "repository": str(b_repo), "passphrase_file": str(b_pass)},
                ],
            }
        )
    )
    result = subprocess.run(
        [RUNWATCH, "check", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    by = {(m["check"], m["name"]): m for m in out["measurements"]}
    for check in ("restic", "borg"):
        for name in ("backup_last_snapshot_timestamp_seconds", "backup_last_snapshot_age_seconds"):
            assert (check, name) in by, f"{check} {name} missing"
            assert by[(check, name)]["labels"]["tool"] == check
    restic_age = by[("restic", "backup_last_snapshot_age_seconds")]
    assert abs(restic_age["value"] - (restic_age["timestamp"] - snapshot_at)) < 2
    assert by[("borg", "backup_last_snapshot_age_seconds")]["value"] < 300
