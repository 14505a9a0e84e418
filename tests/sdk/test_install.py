"""The SDK installs and works on its own: a wheel into a fresh venv without the service.

A copy of clients/python + protos is pip-installed (isolated build: its hook
runs protoc) with --no-deps into a throwaway venv whose only other packages are
this environment's grpcio and protobuf (one .pth line), and used from outside
the repository against the server.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sysconfig
import textwrap
import venv

import pytest

from tests.support.server import ServerProcess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def alone() -> dict[str, str]:
    """This environment without PYTHONPATH: the installed SDK must not see the checkout (tests/conftest.py adds it)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


SCRIPT = textwrap.dedent(
    """
    import sys, understanding, understanding.v1, understanding_client
    from understanding_client import Client, NotFound
    from understanding_client.events import decode_event
    assert not hasattr(understanding, "__file__") or understanding.__file__ is None, "must be a namespace package"
    assert all(p.startswith(sys.prefix) for p in understanding.__path__), list(understanding.__path__)
    assert understanding.v1.__file__.startswith(sys.prefix), understanding.v1.__file__
    with Client(sys.argv[1], tenant="sdk-install") as c:
        [a] = c.analyze_text("Installed on its own, the client still works", media_id="installed-1")
        print(a.media_id, a.modality.value, c.get_media("installed-1").version == a.version)
        try:
            c.get_job("job-nope")
        except NotFound as e:
            print("NotFound", e.code)
    """
)


@pytest.fixture(scope="module")
def sdk_venv(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    tmp = tmp_path_factory.mktemp("sdk-install")
    repo = tmp / "repo"
    shutil.copytree(
        ROOT / "clients" / "python",
        repo / "clients" / "python",
        ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "understanding", "__pycache__"),
    )
    shutil.copytree(ROOT / "protos" / "understanding", repo / "protos" / "understanding")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # `pip install ./clients/python` as a user runs it: an isolated build whose
    # hook runs protoc (setuptools and grpcio-tools come from pip's cache or
    # PyPI), --no-deps because grpcio and protobuf come from the line below.
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", str(repo / "clients" / "python")],
        capture_output=True,
        text=True,
        timeout=600,
        env=alone(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # grpcio and protobuf from this environment (a plain path entry: its own
    # .pth files, such as the service's editable install, are not processed).
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    pathlib.Path(site, "zz_host_grpc.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_wheel_ships_the_stubs_without_understanding_init(sdk_venv: pathlib.Path) -> None:
    site = pathlib.Path(
        subprocess.run(
            [str(sdk_venv), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    stubs = {p.name for p in (site / "understanding" / "v1").iterdir()}
    assert {"understanding_pb2.py", "understanding_pb2_grpc.py", "events_pb2.py", "events_pb2.pyi"} <= stubs
    assert not (site / "understanding" / "__init__.py").exists()
    assert (site / "understanding_client" / "py.typed").exists()


def test_installed_sdk_talks_to_the_server(
    sdk_venv: pathlib.Path, server: ServerProcess, tmp_path: pathlib.Path
) -> None:
    done = subprocess.run(
        [str(sdk_venv), "-c", SCRIPT, server.target],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=alone(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["installed-1", "text", "True", "NotFound", "NOT_FOUND"]
