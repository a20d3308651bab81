"""What routes get from the app: the shared services, and the API-key check."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request

from ..errors import Unauthorized
from ..services import Services


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]


def _offered_key(request: Request) -> str:
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else request.headers.get("x-api-key", "")


def owner(request: Request, found: ServicesDep) -> str:
    """Whose sessions a request sees: those made with its API key (a digest of it, so the key
    itself is kept nowhere); everyone's alike when no keys are configured."""
    if not found.settings.api_keys:
        return ""
    return hashlib.sha256(_offered_key(request).encode()).hexdigest()


OwnerDep = Annotated[str, Depends(owner)]


def require_api_key(request: Request, found: ServicesDep) -> None:
    """When keys are configured, every route but /health needs one: Bearer or X-API-Key."""
    keys = found.settings.api_keys
    if not keys:
        return
    offered = _offered_key(request)
    if not offered or not any(hmac.compare_digest(offered.encode(), key.encode()) for key in keys):
        raise Unauthorized("a valid API key is required: send `Authorization: Bearer KEY` or `X-API-Key: KEY`")
