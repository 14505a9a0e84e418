"""Where the CLI meets the SDK: the connection flags every client command shares, and the clients they make.

Target, key and tenant fall back to the SDK's own environment defaults
(UNDERSTANDING_SERVER, UNDERSTANDING_API_KEY, UNDERSTANDING_TENANT; the admin
key UNDERSTANDING_ADMIN_API_KEY), so the CLI reads no environment itself.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from understanding_client import AdminClient, Client


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", help="HOST:PORT of the service (default UNDERSTANDING_SERVER or 127.0.0.1:50051)")
    parser.add_argument("--api-key", help="API key (default UNDERSTANDING_API_KEY)")
    parser.add_argument("--tenant", help="tenant when the server runs without API keys")
    parser.add_argument("--timeout", type=float, default=120.0, help="deadline in seconds")
    parser.add_argument("--json", action="store_true", help="print the response as JSON")


def client(args: argparse.Namespace) -> Client:
    """A Client from the command's flags. It does not retry: a person at a terminal decides that."""
    from understanding_client import NO_RETRY, Client

    return Client(
        args.server or None,
        api_key=args.api_key or None,
        tenant=args.tenant or None,
        timeout_s=args.timeout,
        retry=NO_RETRY,
    )


def admin_client(args: argparse.Namespace) -> AdminClient:
    """An AdminClient from `reindex`'s flags (no retries either; the deadline is per call)."""
    from understanding_client import NO_RETRY, AdminClient

    return AdminClient(args.server or None, api_key=args.api_key or None, timeout_s=None, retry=NO_RETRY)


def server_given(args: argparse.Namespace) -> bool:
    """Whether the user named a server (flag or environment) rather than relying on the default one."""
    from understanding_client import ConnectionConfig

    return bool(args.server or ConnectionConfig.target_from_env())
