from __future__ import annotations

import pytest

from understanding.config import Settings


def test_env_parsing_and_overrides() -> None:
    s = Settings.from_env({"UNDERSTANDING_GRPC_PORT": "6000", "UNDERSTANDING_LOG_JSON": "false"}, grpc_host="0.0.0.0")
    assert s.grpc_port == 6000 and s.log_json is False and s.grpc_host == "0.0.0.0"
    assert Settings.from_env({}).qdrant_url == ""


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ValueError, match="UNDERSTANDING_GRPC_PORT"):
        Settings.from_env({"UNDERSTANDING_GRPC_PORT": "lots"})


def test_describe_masks_secrets() -> None:
    rows = dict((v, val) for v, val, _ in Settings.from_env({"UNDERSTANDING_QDRANT_API_KEY": "x"}).describe())
    assert rows["UNDERSTANDING_QDRANT_API_KEY"] == "***"
