"""Mutual TLS on a real server: only clients with a certificate from the configured CA get in."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.certs import Pki, make_pki
from tests.support.server import ServerProcess
from understanding.v1 import understanding_pb2 as pb
from understanding.v1 import understanding_pb2_grpc

MD = [("x-tenant-id", "e2e-tls")]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def credentials(pki: Pki, *, with_cert: bool = True, rogue: bool = False) -> grpc.ChannelCredentials:
    cert, key = (pki.other_client_cert, pki.other_client_key) if rogue else (pki.client_cert, pki.client_key)
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca_cert.read_bytes(),
        private_key=key.read_bytes() if with_cert else None,
        certificate_chain=cert.read_bytes() if with_cert else None,
    )


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("tls-server"),
        env={
            "UNDERSTANDING_TLS_CERT_FILE": str(pki.server_cert),
            "UNDERSTANDING_TLS_KEY_FILE": str(pki.server_key),
            "UNDERSTANDING_TLS_CLIENT_CA_FILE": str(pki.ca_cert),
            "UNDERSTANDING_WHISPER_WORKERS": "1",
        },
        credentials=credentials(pki),
    ).start()
    try:
        proc.wait_serving()
        yield proc
    finally:
        assert proc.stop() == 0, proc.log()


def analyze(channel: grpc.Channel) -> pb.AnalyzeTextResponse:
    stub = understanding_pb2_grpc.UnderstandingStub(channel)
    request = pb.AnalyzeTextRequest(items=[pb.TextItem(text="Over TLS.")], options=pb.TextOptions(dry_run=True))
    # A refused handshake fails at once (UNAVAILABLE); the deadline only bounds a hang, and must
    # not turn a slow handshake on a busy machine into DEADLINE_EXCEEDED.
    return stub.AnalyzeText(request, metadata=MD, timeout=60)


def test_client_with_certificate_is_served(tls_server: ServerProcess) -> None:
    assert len(analyze(tls_server.channel).results) == 1
    stub = health_pb2_grpc.HealthStub(tls_server.channel)
    assert stub.Check(health_pb2.HealthCheckRequest(), timeout=60).status == health_pb2.HealthCheckResponse.SERVING
    assert '"mtls": true' in tls_server.log_path.read_text()


@pytest.mark.parametrize("kind", ["no-client-cert", "untrusted-client-cert", "plaintext"])
def test_other_clients_are_refused_at_the_handshake(tls_server: ServerProcess, pki: Pki, kind: str) -> None:
    if kind == "plaintext":
        channel = grpc.insecure_channel(tls_server.target)
    else:
        channel = grpc.secure_channel(
            tls_server.target, credentials(pki, with_cert=False, rogue=kind == "untrusted-client-cert")
        )
    with channel:
        with pytest.raises(grpc.RpcError) as err:
            analyze(channel)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # Health is behind the same handshake: nothing answers without a trusted certificate.
        with pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=60)
