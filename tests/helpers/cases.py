"""Parametrize tables written one case a line: `{id: arguments}`."""

from __future__ import annotations

from typing import Any

import pytest


def cases(table: dict[str, Any]) -> list[Any]:
    """One pytest.param per entry, with the key as its id; a tuple value is the arguments."""
    return [
        pytest.param(*(value if isinstance(value, tuple) else (value,)), id=case)
        for case, value in table.items()
    ]
