"""Connection settings shared by every client: target, identity, TLS, and the one place reading the environment."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from understanding_client.retry import RetryPolicy
from understanding_client.upload import DEFAULT_CHUNK_SIZE, MediaSource, UploadSource

PemSource = bytes | str | os.PathLike[str]

#: Reconnect quickly after a server restart: gRPC's own default backs off to
#: 120 s, which would outlast every retry of a call waiting for the server.
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)

#: "Use the client's timeout_s" in a method's `timeout=` (None means no deadline).
_DEFAULT: Any = object()


def _pem(value: PemSource | None) -> bytes | None:
    """PEM bytes as given, or read from a path."""
    if value is None or isinstance(value, bytes):
        return value
    text = os.fspath(value)
    if text.lstrip().startswith("-----BEGIN"):
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
    def from_env(cls, *, admin: bool = False, **overrides: Any) -> ConnectionConfig:
        """Defaults from UNDERSTANDING_SERVER / UNDERSTANDING_API_KEY / UNDERSTANDING_TENANT.

        With `admin=True` (the Admin service) the key is UNDERSTANDING_ADMIN_API_KEY,
        else UNDERSTANDING_API_KEY, and no tenant is read: admin calls act on every tenant.
        """
        api_key = os.environ.get("UNDERSTANDING_API_KEY", "")
        if admin:
            api_key = os.environ.get("UNDERSTANDING_ADMIN_API_KEY") or api_key
        values: dict[str, Any] = {
            "target": cls.target_from_env() or cls.target,
            "api_key": api_key,
            "tenant": "" if admin else os.environ.get("UNDERSTANDING_TENANT", ""),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @staticmethod
    def target_from_env() -> str | None:
        """The server UNDERSTANDING_SERVER names; None when it is unset or empty."""
        return os.environ.get("UNDERSTANDING_SERVER") or None

    @property
    def secure(self) -> bool:
        return self.tls or any(
            x is not None for x in (self.root_certificates, self.certificate_chain, self.private_key)
        )

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


class _Base:
    """What every client, sync or async, does the same: settings, identity, deadlines, upload sources."""

    #: Admin clients read the admin key from the environment and send no tenant.
    _admin = False

    def __init__(
        self,
        target: str | None = None,
        *,
        api_key: str | None = None,
        tenant: str | None = None,
        tls: bool = False,
        root_certificates: PemSource | None = None,
        certificate_chain: PemSource | None = None,
        private_key: PemSource | None = None,
        server_name: str | None = None,
        timeout_s: float | None = 60.0,
        retry: RetryPolicy | None = None,
        chunk_size: int | None = None,
        metadata: Mapping[str, str] | None = None,
        channel_options: Sequence[tuple[str, Any]] | None = None,
    ) -> None:
        self.config = ConnectionConfig.from_env(
            admin=self._admin,
            target=target,
            api_key=api_key,
            tenant=tenant,
            tls=tls,
            root_certificates=root_certificates,
            certificate_chain=certificate_chain,
            private_key=private_key,
            server_name=server_name,
            timeout_s=timeout_s,
            retry=retry,
            chunk_size=chunk_size,
            metadata=metadata,
            channel_options=channel_options,
        )
        if timeout_s is None:  # None is meaningful here (no deadline), not "the default"
            self.config = dataclasses.replace(self.config, timeout_s=None)
        self._metadata = self.config.call_metadata()

    @property
    def target(self) -> str:
        return self.config.target

    @property
    def retry(self) -> RetryPolicy:
        return self.config.retry

    def _timeout(self, timeout: float | None) -> float | None:
        return self.config.timeout_s if timeout is _DEFAULT else timeout

    def _source(self, source: MediaSource) -> UploadSource:
        return UploadSource(source, chunk_size=self.config.chunk_size)
