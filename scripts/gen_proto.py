"""Generate the Python stubs for proto/csi.proto into csi_xloud/_proto/.

Usage: python scripts/gen_proto.py [OUT_DIR]

The generated modules import each other by their package-qualified name
(``csi_xloud._proto.csi_pb2``) so they work wherever the package is installed.
tests/unit/test_proto_stubs.py runs this into a temporary folder and compares.
"""

from __future__ import annotations

import re
import shutil
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
DEFAULT_OUT = ROOT / "csi_xloud" / "_proto"
PACKAGE = "csi_xloud._proto"
HEADER = "# Generated from proto/csi.proto by scripts/gen_proto.py. DO NOT EDIT.\n"


def _plugin(name: str) -> str:
    """Locate a protoc plugin installed beside this interpreter."""
    scripts = Path(sysconfig.get_path("scripts"))
    found = shutil.which(name, path=str(scripts)) or shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found; install the test extras (mypy-protobuf)")
    return found


def generate(out_dir: Path) -> list[Path]:
    """Run protoc with the python, grpc and mypy plugins; return the files written."""
    from grpc_tools import protoc  # imported late: only the generator needs it

    out_dir.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        str(PROTO_DIR / "csi.proto"),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = sorted(p for p in out_dir.iterdir() if p.name.startswith("csi_pb2"))
    for path in written:
        text = re.sub(
            r"^import csi_pb2 as", f"from {PACKAGE} import csi_pb2 as", path.read_text(), flags=re.M
        )
        path.write_text(HEADER + text)
    init = out_dir / "__init__.py"
    init.write_text(HEADER.replace("by scripts", "package marker; stubs made by scripts"))
    return [*written, init]


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    for written_path in generate(target):
        print(written_path.relative_to(target.parent) if target == DEFAULT_OUT else written_path)
