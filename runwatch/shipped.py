"""Find the files runwatch ships: configs, rules, the deploy template, units and dashboards.

They live in the source tree's config/ folder. The wheel carries them inside this package, as
runwatch/_shipped/, so that an install claims no top-level `config` (docs/packaging.md). An
editable install and a source checkout on PYTHONPATH import this module from the tree itself,
where config/ sits next to runwatch/.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_WHEEL = _PACKAGE / "_shipped"  # the wheel's copy: pyproject.toml's force-include
_SOURCE = _PACKAGE.parent / "config"


def shipped_file(name: str) -> Path:
    """Path of a shipped file or folder by its path in config/ ("rules/backup.yaml", "rules")."""
    return (_WHEEL if _WHEEL.is_dir() else _SOURCE) / name
