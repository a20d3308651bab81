"""What routes get from the app: the shared services, and the API-key check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from ..errors import Unauthorized
from ..services import Services


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]


def require_api_key(request: Request, found: ServicesDep) -> None:
    """When keys are configured, every route but /health needs one: Bearer or X-API-Key."""
    keys = found.settings.api_keys
    if not keys:
        return
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    offered = token.strip() if scheme.lower() == "bearer" else request.headers.get("x-api-key", "")
    if not offered or not any(hmac.compare_digest(offered.encode(), key.encode()) for key in keys):
        raise Unauthorized("a valid API key is required: send `Authorization: Bearer KEY` or `X-API-Key: KEY`")
