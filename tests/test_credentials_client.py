"""Every credential check names the peer's address: without it the per-address throttle of
unknown tokens could be bypassed, so `client=` has no default."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from collector.app import CollectorService


def test_a_credential_check_without_the_peer_address_is_refused_by_python(
    make_service: Callable[..., CollectorService],
) -> None:
    service = make_service()
    with pytest.raises(TypeError, match="client"):
        service.authenticate("Bearer nothing")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="client"):
        service.authenticate_operator("Bearer nothing")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="client"):
        service.credentials.agent("Bearer nothing")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="client"):
        service.credentials.operator("Bearer nothing")  # type: ignore[call-arg]
