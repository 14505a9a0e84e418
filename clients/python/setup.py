"""Build hook: generate the stubs from the protos and ship them in the wheel.

Everything else about the package is in pyproject.toml. The stubs are build
output (git-ignored, see scripts/gen.py), so a wheel built from a clean
checkout still carries `understanding/v1/*_pb2.py`. The generated package is
added here rather than in pyproject.toml because it does not exist until the
build has run protoc.
"""

from __future__ import annotations

import pathlib
import shutil
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = pathlib.Path(__file__).resolve().parent
STUBS = "understanding.v1"


def _generate() -> pathlib.Path:
    sys.path.insert(0, str(HERE / "scripts"))
    try:
        import gen
    finally:
        sys.path.pop(0)
    gen.generate(out=HERE)
    return HERE / "understanding" / "v1"


class BuildPyWithStubs(build_py):  # type: ignore[misc, unused-ignore]  # setuptools may come without types
    def run(self) -> None:
        stubs = _generate()
        packages: list[str] = list(getattr(self, "packages", None) or [])  # set by setuptools
        if STUBS not in packages:
            self.packages = [*packages, STUBS]
        super().run()
        if not self.editable_mode:
            target = pathlib.Path(self.build_lib, "understanding", "v1")
            for pyi in stubs.glob("*.pyi"):
                shutil.copy2(pyi, target / pyi.name)


class SdistWithProtos(sdist):  # type: ignore[misc, unused-ignore]
    """Put the .proto files into the sdist so it builds away from the repository."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        source = HERE.parent.parent / "protos" / "understanding"
        if source.is_dir():
            shutil.copytree(source, pathlib.Path(base_dir) / "protos" / "understanding", dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithStubs, "sdist": SdistWithProtos})
