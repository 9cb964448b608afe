"""The layers hold: the driver loads neither the emulator nor the demo, the cloud knows no gRPC."""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import pytest

from csi_xloud._proto import csi_pb2, csi_pb2_grpc

PACKAGE = Path(__file__).resolve().parents[2] / "csi_xloud"
# What `pip install csi-xloud` (no extras) must run without, and what the driver must never load.
NOT_FOR_THE_DRIVER = ("csi_xloud.emulator", "csi_xloud.demo", "starlette", "uvicorn")


def imported_modules(source: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{source}: relative import"
            found |= {node.module or "", *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


def modules_of(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (PACKAGE / folder).rglob("*.py"))


def refers_to(modules: set[str], forbidden: tuple[str, ...]) -> set[str]:
    return {m for m in modules if any(m == f or m.startswith(f"{f}.") for f in forbidden)}


def test_no_driver_module_imports_the_emulator_or_the_demo() -> None:
    driver = [
        path
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] not in ("emulator", "demo", "__main__.py")
    ]
    assert len(driver) > 40
    for path in driver:
        assert not refers_to(imported_modules(path), NOT_FOR_THE_DRIVER), path


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        # The cloud speaks HTTP and JSON: no gRPC, no CSI messages, no driver settings.
        ("cloud", ("grpc", "csi_xloud._proto", "csi_xloud.rpc", "csi_xloud.config", "csi_xloud.controller",
                   "csi_xloud.node", "csi_xloud.validation")),
        # The OS layer speaks Linux: no CSI, no cloud.
        ("osutil", ("grpc", "csi_xloud._proto", "csi_xloud.rpc", "csi_xloud.config", "csi_xloud.cloud",
                    "csi_xloud.controller", "csi_xloud.node", "csi_xloud.validation")),
        # The services meet only through the CSI messages: the node never loads the cloud client.
        ("node", ("csi_xloud.cloud", "csi_xloud.controller", "httpx")),
        ("controller", ("csi_xloud.osutil", "csi_xloud.node")),
    ],
)  # fmt: skip
def test_each_layer_imports_only_what_is_below_it(layer: str, forbidden: tuple[str, ...]) -> None:
    for path in modules_of(layer):
        assert not refers_to(imported_modules(path), forbidden), path


def test_the_cli_loads_the_emulator_and_the_demo_only_for_their_commands() -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from csi_xloud.__main__ import build_parser
        build_parser().parse_args(["driver", "--mode", "node", "--endpoint", "unix:///x.sock"])
        print(sorted(m for m in sys.modules if m.startswith({NOT_FOR_THE_DRIVER!r})))
        build_parser().parse_args(["demo"])
        print("csi_xloud.demo.scenario" in sys.modules)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.splitlines() == ["[]", "True"]


def test_emulator_and_demo_say_which_extra_they_need() -> None:
    for command in (["emulator", "--listen", "127.0.0.1:9", "--data-dir", "/nonexistent"], ["demo"]):
        script = textwrap.dedent(
            f"""
            import sys
            sys.modules["starlette"] = None  # as if the emulator extra were not installed
            from csi_xloud.__main__ import main
            sys.exit(main({command!r}))
            """
        )
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip() == (
            f"csi-xloud: error: `csi-xloud {command[0]}` needs the emulator extra (starlette not installed): "
            "pip install 'csi-xloud[emulator]'"
        )


async def test_the_driver_process_never_imports_the_emulator_or_the_demo(short_tmp: Path) -> None:
    """The real command in both modes, serving calls of every service; -X importtime lists each import."""
    socket = short_tmp / "csi.sock"
    clouds = short_tmp / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  c:\n    auth:\n      auth_url: http://127.0.0.1:9/identity/v3\n"
        "      username: u\n      password: p\n      project_name: p\n"
    )
    clouds.chmod(0o600)
    argv = [
        sys.executable, "-X", "importtime", "-m", "csi_xloud", "driver", "--mode", "all",
        "--endpoint", f"unix://{socket}", "--cloud", "c", "--cloud-config", str(clouds),
        "--node-id", "node-1", "--availability-zone", "zone-a", "--kubelet-dir", str(short_tmp),
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            assert process.poll() is None and time.monotonic() < deadline, "the driver did not start"
            time.sleep(0.05)
        async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
            # The socket file can appear a moment before the server listens on it.
            await csi_pb2_grpc.IdentityStub(channel).Probe(csi_pb2.ProbeRequest(), timeout=10, wait_for_ready=True)
            controller = csi_pb2_grpc.ControllerStub(channel)
            await controller.ControllerGetCapabilities(csi_pb2.ControllerGetCapabilitiesRequest())
            node = csi_pb2_grpc.NodeStub(channel)
            await node.NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest())
            info = await node.NodeGetInfo(csi_pb2.NodeGetInfoRequest())
            assert info.node_id == "node-1"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    imported = {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
    assert "csi_xloud.controller.service" in imported and "csi_xloud.node.service" in imported
    assert not refers_to(imported, NOT_FOR_THE_DRIVER)
    assert process.returncode == 0, stderr[-2000:]
    assert os.path.exists(socket) is False


def test_the_architecture_page_names_modules_that_exist() -> None:
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"(?<![\w/.])((?:[a-z_]+/)*[a-z_]+\.py)\b", page))
    assert len(named) > 30
    missing = {
        name
        for name in named
        if not any((folder / name).exists() for folder in (PACKAGE, PACKAGE.parent, *PACKAGE.glob("*/")))
    }
    assert not missing, sorted(missing)
