"""What routes get from the app: the shared services, and the API-key check."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
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


def owner(request: Request) -> str:
    """Whose work this is, for per-key rate limits and caps: a digest of the API key (the key
    itself is never stored), or ``anonymous`` on a server without keys."""
    offered = _offered_key(request)
    return hashlib.sha256(offered.encode()).hexdigest()[:32] if offered else "anonymous"


OwnerDep = Annotated[str, Depends(owner)]


def key_matches(offered: str, keys: Sequence[str]) -> bool:
    """Whether ``offered`` is one of ``keys``, in time that does not depend on which key matched
    or how much of one did: every key is compared (``any`` would stop at the first match), and both
    sides are hashed to the same length first, since ``compare_digest`` returns early on a length
    mismatch and would tell a prober how long the keys are."""
    digest = hashlib.sha256(offered.encode()).digest()
    found = False
    for key in keys:
        found |= hmac.compare_digest(digest, hashlib.sha256(key.encode()).digest())
    return found


def require_api_key(request: Request, found: ServicesDep) -> None:
    """When keys are configured, every route but /health needs one: Bearer or X-API-Key."""
    keys = found.settings.api_keys
    if not keys:
        return
    offered = _offered_key(request)
    if not offered or not key_matches(offered, keys):
        raise Unauthorized("a valid API key is required: send `Authorization: Bearer KEY` or `X-API-Key: KEY`")
