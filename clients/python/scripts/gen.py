"""Generate the protobuf/gRPC stubs the SDK ships, from the repository's protos.

Output: `understanding/v1/*_pb2.py`, `*_pb2.pyi`, `*_pb2_grpc.py` beside this
SDK's `understanding_client/`, with NO `understanding/__init__.py`: in an
environment with only the SDK, `understanding` is a namespace package; where
the service is installed too, its regular `understanding` package wins and its
own identical `understanding.v1` is used.

Run by the SDK's build (setup.py) and usable by hand:
    python clients/python/scripts/gen.py [--protos DIR] [--out DIR]
Needs grpcio-tools (a build-time requirement only).
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys

SDK = pathlib.Path(__file__).resolve().parent.parent


def default_protos() -> pathlib.Path:
    """`protos/` copied into an sdist, else the repository's `../../protos`."""
    for candidate in (SDK / "protos", SDK.parent.parent / "protos"):
        if (candidate / "understanding" / "v1").is_dir():
            return candidate
    raise SystemExit(f"cannot find the .proto files: looked in {SDK / 'protos'} and {SDK.parent.parent / 'protos'}")


def generate(protos: pathlib.Path | None = None, out: pathlib.Path = SDK) -> list[pathlib.Path]:
    import grpc_tools
    from grpc_tools import protoc

    protos = (protos or default_protos()).resolve()
    target = out / "understanding" / "v1"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    sources = sorted(str(p.relative_to(protos)) for p in (protos / "understanding" / "v1").glob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{protos}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (target / "__init__.py").write_text('"""Generated protobuf and gRPC stubs (clients/python/scripts/gen.py)."""\n')
    stray = out / "understanding" / "__init__.py"
    if stray.exists():  # must stay a namespace package
        stray.unlink()
    return sorted(target.iterdir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protos", type=pathlib.Path, help="directory holding understanding/v1/*.proto")
    parser.add_argument("--out", type=pathlib.Path, default=SDK, help="directory to write understanding/v1 into")
    args = parser.parse_args(argv)
    files = generate(args.protos, args.out)
    print(f"generated {len(files)} files in {args.out / 'understanding' / 'v1'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
