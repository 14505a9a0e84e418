"""TLS for the gRPC port, from PEM files named in the settings.

Server certificate and key turn TLS on; a client CA bundle also requires every
client to present a certificate it signed (mutual TLS), which grpc checks
during the handshake, before any RPC or API key is looked at.
"""

from __future__ import annotations

import pathlib

import grpc

from understanding.config import Settings


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from the configured PEM files, or None for plaintext.

    A client CA turns on mutual TLS: clients must present a certificate it signed.
    """
    if not (settings.tls_cert_file or settings.tls_key_file):
        if settings.tls_client_ca_file:
            raise ValueError("UNDERSTANDING_TLS_CLIENT_CA_FILE needs UNDERSTANDING_TLS_CERT_FILE and _KEY_FILE")
        return None
    if not (settings.tls_cert_file and settings.tls_key_file):
        raise ValueError("TLS needs both UNDERSTANDING_TLS_CERT_FILE and UNDERSTANDING_TLS_KEY_FILE")

    def read(path: str, what: str) -> bytes:
        try:
            return pathlib.Path(path).read_bytes()
        except OSError as error:
            raise ValueError(f"cannot read the TLS {what} {path!r}: {error.strerror}") from None

    cert, key = read(settings.tls_cert_file, "certificate"), read(settings.tls_key_file, "key")
    client_ca = read(settings.tls_client_ca_file, "client CA") if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
