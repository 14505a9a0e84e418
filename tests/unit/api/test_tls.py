"""TLS and mutual TLS credentials from PEM files, on an in-process gRPC server."""

from __future__ import annotations

import pathlib
from typing import Any

import grpc
import pytest

from tests.support.certs import Pki, make_pki
from understanding.api.identity import Identity
from understanding.api.server import Observer, build_handler
from understanding.api.tls import server_credentials
from understanding.config import Settings
from understanding.v1 import jobs_pb2, understanding_pb2_grpc
from understanding.v1 import understanding_pb2 as pb


class Echo:
    async def GetJob(self, request: pb.GetJobRequest, call: Any) -> jobs_pb2.Job:
        return jobs_pb2.Job(job_id=request.job_id)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


async def start(settings: Settings) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((build_handler(Echo(), Identity({}), Observer()),))
    credentials = server_credentials(settings)
    assert credentials is not None
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, f"127.0.0.1:{port}"


async def get_job(channel: grpc.aio.Channel) -> str:
    stub = understanding_pb2_grpc.UnderstandingStub(channel)
    try:
        # A refused handshake fails at once (UNAVAILABLE); the deadline only bounds a hang, and
        # must not turn a slow handshake on a busy machine into DEADLINE_EXCEEDED.
        return (await stub.GetJob(pb.GetJobRequest(job_id="j"), timeout=60)).job_id
    finally:
        await channel.close()


def client_credentials(
    pki: Pki, cert: pathlib.Path | None = None, key: pathlib.Path | None = None
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca_cert.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )


async def test_tls_without_client_certificates(pki: Pki) -> None:
    server, target = await start(Settings(tls_cert_file=str(pki.server_cert), tls_key_file=str(pki.server_key)))
    try:
        assert await get_job(grpc.aio.secure_channel(target, client_credentials(pki))) == "j"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await get_job(grpc.aio.insecure_channel(target))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)


async def test_mutual_tls_requires_a_certificate_from_the_client_ca(pki: Pki) -> None:
    settings = Settings(
        tls_cert_file=str(pki.server_cert), tls_key_file=str(pki.server_key), tls_client_ca_file=str(pki.ca_cert)
    )
    server, target = await start(settings)
    try:
        good = client_credentials(pki, pki.client_cert, pki.client_key)
        assert await get_job(grpc.aio.secure_channel(target, good)) == "j"
        for refused in (client_credentials(pki), client_credentials(pki, pki.other_client_cert, pki.other_client_key)):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await get_job(grpc.aio.secure_channel(target, refused))
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)


def test_incomplete_or_unreadable_tls_settings_fail_clearly(pki: Pki, tmp_path: pathlib.Path) -> None:
    assert server_credentials(Settings()) is None
    with pytest.raises(ValueError, match="both UNDERSTANDING_TLS_CERT_FILE and UNDERSTANDING_TLS_KEY_FILE"):
        server_credentials(Settings(tls_cert_file=str(pki.server_cert)))
    with pytest.raises(ValueError, match="UNDERSTANDING_TLS_CLIENT_CA_FILE needs"):
        server_credentials(Settings(tls_client_ca_file=str(pki.ca_cert)))
    with pytest.raises(ValueError, match="cannot read the TLS key"):
        server_credentials(Settings(tls_cert_file=str(pki.server_cert), tls_key_file=str(tmp_path / "nope.key")))
