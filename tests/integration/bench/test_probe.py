"""The empty-RPC probe: served as a Kairos service is, answered by the bench's load driver."""

from __future__ import annotations

import gc
import weakref

from grpc_health.v1 import health_pb2, health_pb2_grpc

from kairos_bench.load import close_clients, drive, open_clients
from kairos_bench.probe import SERVICE, ProbeService, empty_call
from kairos_common.settings import ServerSettings


async def test_the_probe_answers_many_clients_and_reports_serving() -> None:
    probe = ProbeService(ServerSettings(addr="127.0.0.1:0"))
    await probe.start()
    assert probe.grpc is not None
    target = f"127.0.0.1:{probe.grpc.port}"
    clients = open_clients(target, 4)
    try:
        health = health_pb2_grpc.HealthStub(clients[0].channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        call = empty_call((("authorization", "Bearer x"),))
        result = await drive(clients, call, total=200)
        # The same call with fresh clients, as the bench measures 16 and then 64.
        await close_clients(clients)
        clients = open_clients(target, 8)
        again = await drive(clients, call, total=200)
    finally:
        await close_clients(clients)
        await probe.stop()
    assert (result.calls, result.errors) == (200, {})
    assert (again.calls, again.errors) == (200, {})


async def test_the_call_follows_a_clients_new_channel_and_lets_old_ones_go() -> None:
    probe = ProbeService(ServerSettings(addr="127.0.0.1:0"))
    await probe.start()
    assert probe.grpc is not None
    target = f"127.0.0.1:{probe.grpc.port}"
    call = empty_call(())
    [client] = open_clients(target, 1)
    try:
        await call(client, 0)
        old = weakref.ref(client.channel)
        await close_clients([client])
        [fresh] = open_clients(target, 1)
        # The same Client object on a new channel.
        client.channel, client.posts, client.accounts = fresh.channel, fresh.posts, fresh.accounts
        del fresh
        await call(client, 1)  # not on the closed channel
        gc.collect()
        assert old() is None  # the call keeps no closed channel alive
        current = weakref.ref(client.channel)
        await close_clients([client])
        del client
        gc.collect()
        assert current() is None  # nor a client's channel once the client is gone
    finally:
        await probe.stop()
