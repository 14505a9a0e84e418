from __future__ import annotations

import hashlib

import pytest

from understanding.api.identity import Identity, parse_api_keys
from understanding.domain import InvalidInput, Unauthenticated


def test_open_mode_uses_tenant_header() -> None:
    ident = Identity({})
    assert ident.resolve({}).tenant == "default"
    assert ident.resolve({"x-tenant-id": "acme"}).tenant == "acme"
    with pytest.raises(InvalidInput):
        ident.resolve({"x-tenant-id": "a b"})


def test_api_keys_decide_the_tenant() -> None:
    digest = hashlib.sha256(b"s3cret").hexdigest()
    ident = Identity(parse_api_keys(f"acme:{digest}"))
    caller = ident.resolve({"x-api-key": "s3cret", "x-tenant-id": "other"})
    assert caller.tenant == "acme" and caller.authenticated
    with pytest.raises(Unauthenticated):
        ident.resolve({"x-api-key": "wrong"})
    with pytest.raises(Unauthenticated):
        ident.resolve({})


def test_bad_key_spec() -> None:
    with pytest.raises(ValueError):
        parse_api_keys("acme:plaintext-not-a-hash")
