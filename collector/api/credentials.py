"""Bearer tokens, parsed in one place: agents' and operators' credentials checked, with the
failures counted against the peer's address (see RequestLimits)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal, TypeVar

from collector.api.limits import RequestLimits
from collector.auth import ROLE_OPERATOR, TokenVerifier
from collector.errors import Rejection

log = logging.getLogger(__name__)

T = TypeVar("T")

# kind -> what a 401 says: no bearer token, and one this collector does not know
_REFUSALS = {
    "agent": ("missing bearer token", "unknown or revoked token"),
    "operator": ("missing bearer token (an operator token)", "unknown or revoked operator token"),
}


def bearer_token(authorization: str | None) -> str | None:
    """The token of a `Bearer <token>` Authorization header; None for anything else."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class Credentials:
    """Who a request's bearer token names: an agent's host, or an operator."""

    def __init__(
        self, tokens: TokenVerifier, operators: TokenVerifier, limits: RequestLimits
    ) -> None:
        self.tokens = tokens
        self.operators = operators
        self._limits = limits

    def agent(self, authorization: str | None, *, client: str | None) -> str:
        """Return the host the bearer token belongs to, or raise a 401 Rejection.

        `client`: the peer's address (None only where the server knows none). One that
        presented too many unknown tokens is refused (Throttled) for a while, whatever it
        sends; see RequestLimits.check_address."""
        host = self._known(authorization, client, "agent", self.tokens.host_for)
        self._limits.check("agent", host)
        return host

    def operator(
        self, authorization: str | None, *, change: bool = True, client: str | None
    ) -> str:
        """Return the operator the bearer token belongs to, or raise a 401 Rejection.

        `change`: the request changes something, which a read-only token may not (403).
        `client`: the peer's address, as for agent()."""
        operator, role = self._known(authorization, client, "operator", self.operators.identify)
        self._limits.check("operator", operator)
        if change and role != ROLE_OPERATOR:
            log.warning("read-only operator %s refused a change", operator)
            raise Rejection(
                403,
                "forbidden",
                f"{operator} has a read-only token: it may look but not change anything",
            )
        return operator

    def _known(
        self,
        authorization: str | None,
        client: str | None,
        kind: Literal["agent", "operator"],
        lookup: Callable[[str], T | None],
    ) -> T:
        """What `lookup` finds for the bearer token; an unknown one counts against `client`."""
        if client is not None:
            self._limits.check_address(client)
        token = bearer_token(authorization)
        missing, unknown = _REFUSALS[kind]
        if token is None:
            raise Rejection(401, "unauthorized", missing)
        found = lookup(token)
        if found is None:
            if client is not None:
                self._limits.failed(client, kind)
            raise Rejection(401, "unauthorized", unknown)
        return found

    def holds_token(self, authorization: str | None) -> bool:
        """Whether the header carries a token this collector knows (an agent's or an
        operator's), without counting anything against anyone."""
        token = bearer_token(authorization)
        return token is not None and (
            self.tokens.host_for(token) is not None or self.operators.identify(token) is not None
        )
