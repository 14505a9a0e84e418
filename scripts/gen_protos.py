"""Generate the Python protobuf/gRPC stubs from protos/ into understanding/v1/ (the
contract) and understanding/internal/v1/ (records of the internal Kafka topics).

The stubs are build output (git-ignored) and never edited by hand; run
`make protos` (or this script) after changing a .proto file.
"""

from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
OUT_DIR = ROOT


def main() -> int:
    import grpc_tools
    from grpc_tools import protoc

    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={OUT_DIR}",
        f"--pyi_out={OUT_DIR}",
        f"--grpc_python_out={OUT_DIR}",
        *protos,
    ]
    rc = protoc.main(args)
    if rc != 0:
        print(f"protoc failed with exit code {rc}", file=sys.stderr)
        return rc
    packages = sorted({(OUT_DIR / p).parent for p in protos})
    for package in packages:
        for directory in (package, *package.parents):
            if directory == OUT_DIR / "understanding" or OUT_DIR not in directory.parents:
                break
            init = directory / "__init__.py"
            if not init.exists():
                init.write_text('"""Generated protobuf and gRPC stubs (see scripts/gen_protos.py)."""\n')
    print(f"generated stubs for {len(protos)} protos in {', '.join(str(p.relative_to(OUT_DIR)) for p in packages)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
