"""The services API: each service's state, its components and what is wrong with them."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.params import FromPath

from collector.app import CollectorService


def service_routes(service: CollectorService) -> list[Any]:
    """GET routes tagged `read` (behind operator tokens with `operators: {read_api: token}`)."""

    @get(
        "/api/v1/services",
        summary="Services, their states (operational, maintenance, degraded, outage), "
        "components and problems",
        tags=["read"],
    )
    async def get_services() -> list[dict[str, Any]]:
        return service.services()

    @get("/api/v1/services/{name:str}", summary="One service with its state", tags=["read"])
    async def get_service(name: FromPath[str]) -> Response[Any]:
        found = service.services(name)
        if not found:
            return Response(
                {"error": "not_found", "message": f"no service {name!r}"}, status_code=404
            )
        return Response(found[0])

    return [get_services, get_service]
