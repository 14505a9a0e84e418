"""The SDK from its source tree (clients/python), against the session's real server.

The SDK's stubs import as `understanding.v1`; here the service's own generated
package (a regular package, so it wins over the SDK's namespace portion)
satisfies them. tests/sdk/test_install.py proves the SDK also installs and
works on its own.
"""

from __future__ import annotations

import pathlib
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

SDK_DIR = pathlib.Path(__file__).resolve().parents[2] / "clients" / "python"
if str(SDK_DIR) not in sys.path:
    sys.path.insert(0, str(SDK_DIR))

from tests.support.server import ServerProcess  # noqa: E402
from understanding_client import AsyncClient, Client  # noqa: E402


@pytest.fixture
def tenant() -> str:
    return f"sdk-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(server: ServerProcess, tenant: str) -> Iterator[Client]:
    with Client(server.target, tenant=tenant, timeout_s=120) as c:
        yield c


@pytest.fixture
async def aclient(server: ServerProcess, tenant: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.target, tenant=tenant, timeout_s=120) as c:
        yield c
