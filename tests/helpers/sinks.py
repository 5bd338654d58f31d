"""Checks and an outbox worker shared by the help-desk sink tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest

from collector.app import CollectorService
from collector.incidents.outbox import OutboxWorker
from collector.sinks.contract import SinkError
from collector.store.opening import open_store


@contextmanager
def outbox_worker(
    service: CollectorService, sinks: Mapping[str, Any], **options: Any
) -> Iterator[OutboxWorker]:
    """An outbox worker on its own connection to the service's store, as in the service;
    the connection is closed after."""
    store = open_store(service.config)
    try:
        yield OutboxWorker(store, sinks, **options)
    finally:
        store.close()


def assert_refused_for_credentials(calls: Iterable[Callable[[], object]], *secrets: str) -> None:
    """Each call fails for good with 401, and its message carries none of the secrets."""
    for call in calls:
        with pytest.raises(SinkError) as caught:
            call()
        assert (caught.value.retryable, caught.value.status) == (False, 401)
        for secret in secrets:
            assert secret not in str(caught.value)
