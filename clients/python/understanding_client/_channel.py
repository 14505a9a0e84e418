"""Connection settings shared by Client and AsyncClient: target, identity, TLS."""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

import grpc

from understanding_client.retry import RetryPolicy
from understanding_client.upload import DEFAULT_CHUNK_SIZE

PemSource = Union[bytes, str, os.PathLike]

#: Reconnect quickly after a server restart: gRPC's own default backs off to
#: 120 s, which would outlast every retry of a call waiting for the server.
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


def _pem(value: PemSource | None) -> bytes | None:
    """PEM bytes as given, or read from a path."""
    if value is None or isinstance(value, bytes):
        return value
    text = os.fspath(value)
    if isinstance(text, str) and text.lstrip().startswith("-----BEGIN"):
        return text.encode()
    return pathlib.Path(text).read_bytes()


@dataclass(frozen=True)
class ConnectionConfig:
    target: str = "127.0.0.1:50051"
    api_key: str = ""
    tenant: str = ""
    tls: bool = False
    root_certificates: PemSource | None = None
    certificate_chain: PemSource | None = None
    private_key: PemSource | None = None
    #: Expected server name in the certificate when it differs from the target host.
    server_name: str = ""
    timeout_s: float | None = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    chunk_size: int = DEFAULT_CHUNK_SIZE
    metadata: Mapping[str, str] = field(default_factory=dict)
    channel_options: Sequence[tuple[str, Any]] = ()

    @classmethod
    def from_env(cls, **overrides: Any) -> ConnectionConfig:
        """Defaults from UNDERSTANDING_SERVER / UNDERSTANDING_API_KEY / UNDERSTANDING_TENANT."""
        values: dict[str, Any] = {
            "target": os.environ.get("UNDERSTANDING_SERVER", cls.target),
            "api_key": os.environ.get("UNDERSTANDING_API_KEY", ""),
            "tenant": os.environ.get("UNDERSTANDING_TENANT", ""),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def secure(self) -> bool:
        return self.tls or any(x is not None for x in (self.root_certificates, self.certificate_chain, self.private_key))

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("client TLS needs both certificate_chain and private_key")
        return grpc.ssl_channel_credentials(
            root_certificates=_pem(self.root_certificates),
            private_key=_pem(self.private_key),
            certificate_chain=_pem(self.certificate_chain),
        )

    def options(self) -> list[tuple[str, Any]]:
        merged = dict(DEFAULT_CHANNEL_OPTIONS)
        merged.update(dict(self.channel_options))
        if self.server_name:
            merged["grpc.ssl_target_name_override"] = self.server_name
            merged["grpc.default_authority"] = self.server_name
        return list(merged.items())

    def call_metadata(self) -> tuple[tuple[str, str], ...]:
        md = [(k.lower(), v) for k, v in self.metadata.items()]
        if self.api_key:
            md.append(("x-api-key", self.api_key))
        if self.tenant:
            md.append(("x-tenant-id", self.tenant))
        return tuple(md)
