"""`python -m kairos_common.healthcheck HOST:PORT [SERVICE]`: exit 0 when the service is SERVING.

Used as the container health check, where no grpc_health_probe binary is installed.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(target: str, service: str = "", timeout: float = 2.0) -> bool:
    """Whether `target` reports `service` (or the whole server) SERVING."""
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as error:
            print(f"{target}: {error.code().name}", file=sys.stderr)
            return False
    serving: bool = reply.status == health_pb2.HealthCheckResponse.SERVING
    if not serving:
        print(f"{target}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}")
    return serving


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: python -m kairos_common.healthcheck HOST:PORT [SERVICE]", file=sys.stderr)
        return 2
    return 0 if check(argv[0], argv[1] if len(argv) == 2 else "") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
