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


def has_client_certificate(context: grpc.aio.ServicerContext[Any, Any]) -> bool:
    """Whether the caller presented a client certificate over TLS.

    Only the mutual-TLS listener asks for one, and it takes only certificates that its client CA
    signed; the other listener never asks, so no call through it has one.
    """
    auth = context.auth_context()
    return auth.get("transport_security_type") == [b"ssl"] and bool(auth.get("x509_pem_cert"))


class Authenticator:
    """Checks the credential of each call."""

    def __init__(
        self, keys: KeyResolver, service_token: str, *, require_client_certificate: bool = False
    ) -> None:
        self.keys = keys
        self._service_token = service_token.encode()
        #: Mutual TLS is on (KAIROS_TLS_CLIENT_CA_FILE): the service token alone is not enough.
        self._require_client_certificate = require_client_certificate

    async def tenant(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        """The calling tenant, from its API key."""
        return await self.keys.tenant_of(bearer_token(context))

    def require_service(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Only the scheduler and publisher, with the service token (and, with mutual TLS on,
        a client certificate), may pass."""
        if self._require_client_certificate and not has_client_certificate(context):
            raise errors.Unauthenticated(
                "a client certificate is required: call DispatchService on the mutual-TLS "
                "listener (KAIROS_API_MTLS_ADDR) with KAIROS_API_CLIENT_CERT_FILE and "
                "KAIROS_API_CLIENT_KEY_FILE"
            )
        token = bearer_token(context).encode()
        if not self._service_token or not hmac.compare_digest(token, self._service_token):
            raise errors.PermissionDenied("DispatchService needs the service credential")
