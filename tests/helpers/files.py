"""Files tests write for the programs they run."""

from __future__ import annotations

from pathlib import Path


def private_file(path: Path, text: str) -> Path:
    """Write `text` to `path`, readable by its owner only (as password files must be)."""
    path.write_text(text)
    path.chmod(0o600)
    return path
