"""The collector's data dir: created private, and a warning for what another user could read."""

from __future__ import annotations

import logging
from pathlib import Path

from checks.filemodes import make_private_dir, warn_if_exposed
from collector.config import CollectorConfig

log = logging.getLogger("runwatch")


def prepare_data_dir(config: CollectorConfig, *extra: Path) -> None:
    """Create the data dir 0700; warn about it and each file in it that others may read."""
    make_private_dir(config.data_dir)
    store = config.data_dir / "runwatch.db"
    files = [
        store,
        store.with_name("runwatch.db-wal"),
        store.with_name("runwatch.db-shm"),
        config.data_dir / "console.secret",
        *extra,
    ]
    for tokens in (config.tokens_file, config.operator_tokens_file, config.users_file):
        files += [tokens, tokens.with_name(tokens.name + ".lock")]
    warn_if_exposed([config.data_dir, *files], log)
