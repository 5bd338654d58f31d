"""Checks shared by the help-desk sink tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from collector.sinks.contract import SinkError


def assert_refused_for_credentials(calls: Iterable[Callable[[], object]], *secrets: str) -> None:
    """Each call fails for good with 401, and its message carries none of the secrets."""
    for call in calls:
        with pytest.raises(SinkError) as caught:
            call()
        assert (caught.value.retryable, caught.value.status) == (False, 401)
        for secret in secrets:
            assert secret not in str(caught.value)
