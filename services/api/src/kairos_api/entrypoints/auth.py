"""Who is calling: tenants present an API key, the scheduler and publisher the service token."""

from __future__ import annotations

import hmac
from typing import Any

import grpc

from kairos_api.service_layer.keys import KeyResolver
from kairos_common import errors


def bearer_token(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The token of an `authorization: Bearer <token>` header, or Unauthenticated."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            raise errors.Unauthenticated("authorization must be 'Bearer <api key>'")
    raise errors.Unauthenticated("missing authorization metadata: send 'Bearer <api key>'")


class Authenticator:
    """Checks the credential of each call."""

    def __init__(self, keys: KeyResolver, service_token: str) -> None:
        self.keys = keys
        self._service_token = service_token.encode()

    async def tenant(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        """The calling tenant, from its API key."""
        return await self.keys.tenant_of(bearer_token(context))

    def require_service(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Only the scheduler and publisher, with the service token, may pass."""
        token = bearer_token(context).encode()
        if not self._service_token or not hmac.compare_digest(token, self._service_token):
            raise errors.PermissionDenied("DispatchService needs the service credential")
