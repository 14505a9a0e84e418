"""Who is calling: API keys (stored as SHA-256 hashes) mapped to tenants.

With no keys configured (the embedded default) the service trusts the
`x-tenant-id` metadata; with keys configured the key alone decides the tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from understanding.domain import InvalidInput, PermissionDenied, Unauthenticated

DEFAULT_TENANT = "default"
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: str
    authenticated: bool


def parse_api_keys(spec: str) -> dict[str, str]:
    """`tenant:sha256hex,...` -> {sha256hex: tenant}."""
    keys: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        tenant, _, digest = entry.partition(":")
        digest = digest.strip().lower()
        if not _TENANT_RE.match(tenant) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError("UNDERSTANDING_API_KEYS entries must look like tenant:<sha256 hex of the key>")
        keys[digest] = tenant
    return keys


def parse_admin_keys(spec: str) -> dict[str, str]:
    """`name:sha256hex,...` (UNDERSTANDING_ADMIN_API_KEYS) -> {sha256hex: name}."""
    try:
        return parse_api_keys(spec)
    except ValueError:
        raise ValueError("UNDERSTANDING_ADMIN_API_KEYS entries must look like name:<sha256 hex of the key>") from None


class Identity:
    def __init__(self, hashed_keys: Mapping[str, str]) -> None:
        self._keys = dict(hashed_keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def resolve(self, metadata: Mapping[str, str]) -> Caller:
        if self._keys:
            key = metadata.get("x-api-key", "")
            if not key:
                raise Unauthenticated("missing x-api-key metadata")
            digest = hashlib.sha256(key.encode()).hexdigest()
            for known, tenant in self._keys.items():
                if hmac.compare_digest(known, digest):
                    return Caller(tenant=tenant, authenticated=True)
            raise Unauthenticated("unknown API key")
        tenant = metadata.get("x-tenant-id", "") or DEFAULT_TENANT
        if not _TENANT_RE.match(tenant):
            raise InvalidInput("must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}", field="x-tenant-id")
        return Caller(tenant=tenant, authenticated=False)


class AdminIdentity(Identity):
    """Who may call the Admin service (it reads and rewrites every tenant's points).

    Admin keys (`admin_api_keys`, same `name:sha256hex` form as `api_keys`) are
    separate from tenant keys: a tenant key is PERMISSION_DENIED. Without admin
    keys the service is open only in development mode (no tenant keys either).
    """

    def __init__(self, hashed_keys: Mapping[str, str], *, tenant_auth: bool) -> None:
        super().__init__(hashed_keys)
        self._tenant_auth = tenant_auth

    def resolve(self, metadata: Mapping[str, str]) -> Caller:
        if not self._keys:
            if self._tenant_auth:
                raise PermissionDenied(
                    "admin RPCs are disabled: API keys are configured but UNDERSTANDING_ADMIN_API_KEYS is empty"
                )
            return Caller(tenant="admin", authenticated=False)
        key = metadata.get("x-api-key", "")
        if not key:
            raise Unauthenticated("missing x-api-key metadata (an admin API key)")
        digest = hashlib.sha256(key.encode()).hexdigest()
        for known, name in self._keys.items():
            if hmac.compare_digest(known, digest):
                return Caller(tenant=name, authenticated=True)
        raise PermissionDenied("not an admin API key")
