"""The Dockerfile, read as Docker reads it: stages, context, labels, tools, the lock file (test_image builds it)."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from deploy_support import CHART_DIR, ROOT

from csi_xloud import __version__

BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|cc|clang|make|build-essential|[a-z0-9.+-]+-dev|rustc|cargo|cmake)\b")
NODE_TOOLS = {"e2fsprogs", "xfsprogs", "util-linux", "mount", "udev"}
OCI_LABELS = {"title", "description", "version", "revision", "created", "licenses", "vendor"}


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    rest: str


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[str]:
        return [i.rest for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> tuple[list[Instruction], list[Stage]]:
    """Instructions before the first FROM, and the stages; continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    preamble: list[Instruction] = []
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        instruction = Instruction(keyword.upper(), rest.strip())
        if instruction.keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", instruction.rest, re.I)
            assert match, instruction.rest
            stages.append(Stage(match[1], match[2] or str(len(stages)), []))
        elif stages:
            stages[-1].instructions.append(instruction)
        else:
            preamble.append(instruction)
    return preamble, stages


PREAMBLE, STAGES = parse((ROOT / "Dockerfile").read_text())
BY_NAME = {stage.name: stage for stage in STAGES}
# The driver image: the stage "runtime", which the last stage (the default target) names alone.
FINAL = BY_NAME["runtime"]


def arg_defaults(instructions: list[Instruction]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for rest in (i.rest for i in instructions if i.keyword == "ARG"):
        name, sep, default = rest.partition("=")
        found[name] = default if sep else None
    return found


def labels(stage: Stage) -> dict[str, str]:
    found: dict[str, str] = {}
    for rest in stage.all("LABEL"):
        for name, value in re.findall(r'([\w.-]+)="([^"]*)"', rest):
            found[name] = value
    return found


def test_multi_stage_on_a_slim_python_313_trixie_base() -> None:
    assert len(STAGES) >= 2
    base = arg_defaults(PREAMBLE)["PYTHON_IMAGE"]
    assert base == "docker.io/library/python:3.13-slim-trixie", base
    assert [(stage.name, stage.base) for stage in STAGES] == [
        ("build", "${PYTHON_IMAGE}"), ("runtime", "${PYTHON_IMAGE}"),
        ("emulator-build", "build"), ("emulator", "runtime"), ("driver", "runtime"),
    ]
    # `docker build .` without a target builds the driver image, the stage "runtime" unchanged.
    assert STAGES[-1].instructions == []
    script = (ROOT / "scripts" / "build-image").read_text()
    assert f"python_image=${{PYTHON_IMAGE:-{base}}}" in script
    # The lock is made for the base's Python; the script's own base is the same Debian release.
    assert "--python-version 3.13" in (ROOT / "scripts" / "lock-image").read_text()
    assert "suite=${DEBIAN_SUITE:-trixie}" in script


def test_every_variable_a_stage_uses_is_declared_in_it() -> None:
    """An ARG before FROM is visible only to FROM lines unless the stage declares it again."""
    for stage in STAGES:
        declared = set(arg_defaults(stage.instructions))
        for rest in stage.all("ENV"):
            declared |= set(re.findall(r"(\w+)=", rest))
        for instruction in stage.instructions:
            used = set(re.findall(r"\$\{?(\w+)", instruction.rest)) - {"PATH"}
            if instruction.keyword == "RUN":  # the shell's own variables, set in the same RUN
                used -= set(re.findall(r"(?:^|[;&|]\s*)(\w+)=", instruction.rest))
            assert used <= declared, f"{stage.name}: {instruction.keyword} uses {used - declared}"


def test_final_stage_has_no_build_tools_and_copies_only_the_venv() -> None:
    for rest in FINAL.all("RUN"):
        assert not BUILD_TOOLS.search(rest), rest
        assert "pip install" not in rest
    assert FINAL.all("COPY") == ["--from=build /opt/venv /opt/venv"]
    build_runs = " ".join(" ".join(STAGES[0].all("RUN")).split())
    # pip runs from outside the virtualenv (which never holds pip), dependencies by hash first.
    assert "python3 -m venv --without-pip /opt/venv" in build_runs
    install = "python3 -m pip --python /opt/venv/bin/python install"
    assert f'{install} "$@" --require-hashes --only-binary=:all: --no-deps -r requirements.txt' in build_runs
    assert f'{install} "$@" --no-deps .' in build_runs
    assert "python3 -m pip uninstall" in " ".join(FINAL.all("RUN"))


def test_no_secret_reaches_a_layer() -> None:
    """Index settings and CA bundles come in as build secrets or a mounted wheelhouse, never copied."""
    for stage in STAGES:
        for rest in stage.all("COPY") + stage.all("ADD"):
            assert not re.search(r"pip\.conf|\.pem|\.crt|secret|netrc", rest), rest
        for rest in stage.all("ENV") + stage.all("ARG"):
            assert not re.search(r"PIP_(CERT|INDEX|EXTRA_INDEX|CONFIG)|TOKEN|PASSWORD", rest), rest
    installs = [rest for rest in STAGES[0].all("RUN") if "pip --python" in rest]
    assert len(installs) == 2
    for rest in installs:
        assert "--mount=type=secret,id=pip-conf" in rest and "--mount=type=secret,id=pip-ca" in rest
        assert "--no-index --find-links /wheels" in rest


def test_final_stage_installs_the_node_tools_lean() -> None:
    runs = FINAL.all("RUN")
    installs = [rest for rest in runs if "apt-get install" in rest]
    assert len(installs) == 1
    packages = set(installs[0].split("--no-install-recommends", 1)[1].split("&&")[0].split())
    assert packages >= NODE_TOOLS, packages
    assert "rm -rf /var/lib/apt/lists/*" in installs[0]


def test_entrypoint_is_the_console_script() -> None:
    assert FINAL.all("ENTRYPOINT") == ['["csi-xloud"]']
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["csi-xloud"] == "csi_xloud.__main__:main"
    assert any(rest.startswith("PATH=/opt/venv/bin:") for rest in FINAL.all("ENV"))


def test_oci_labels_name_the_version_and_license() -> None:
    found = labels(FINAL)
    assert {f"org.opencontainers.image.{name}" for name in OCI_LABELS} <= set(found)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert found["org.opencontainers.image.licenses"] == pyproject["project"]["license"]["text"]
    assert found["org.opencontainers.image.version"] == "${VERSION}"
    assert arg_defaults(FINAL.instructions)["VERSION"] == __version__


def test_emulator_stage_adds_the_extra_and_its_packages_to_the_driver_image() -> None:
    """One layer on the driver image: what the extra's install and the two packages add to its virtualenv."""
    build, emulator = BY_NAME["emulator-build"], BY_NAME["emulator"]
    assert build.all("COPY") == [
        "deploy/image/requirements-emulator.txt ./requirements-emulator.txt",
        "--from=emulator-src emulator ./extra/emulator",
        "--from=emulator-src demo ./extra/demo",
    ]
    (install,) = build.all("RUN")
    install = " ".join(install.split())
    assert "--mount=type=secret,id=pip-conf" in install and "--no-index --find-links /wheels" in install
    assert (
        'python3 -m pip --python /opt/venv/bin/python install "$@" '
        "--require-hashes --only-binary=:all: --no-deps -r requirements-emulator.txt"
    ) in install
    assert "csi-xloud emulator --help" in install
    assert emulator.all("COPY") == ["--from=emulator-build /opt/added/ /"]
    assert not emulator.all("RUN") and not emulator.all("ENTRYPOINT")
    assert emulator.all("CMD") == ['["emulator", "--help"]']
    assert labels(emulator)["org.opencontainers.image.title"] == "csi-xloud-emulator"
    script = (ROOT / "scripts" / "build-image").read_text()
    assert '--build-context "emulator-src=$emulator_src"' in script
    assert '--target "$stage"' in script


def test_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__


# --- the build context ------------------------------------------------------------------------


def ignore_rules() -> list[tuple[bool, str]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.lstrip("!").rstrip("/")))
    return rules


def in_context(path: str, rules: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for negated, pattern in rules:
        regex = fnmatch.translate(pattern).replace(".*", "[^/]*") if "**" not in pattern else None
        for candidate in candidates:
            if regex is not None:
                hit = re.fullmatch(regex, candidate) is not None
            else:
                hit = fnmatch.fnmatch(candidate, pattern.replace("**/", "*"))
            if hit:
                included = negated
    return included


def context_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split()
    rules = ignore_rules()
    return [path for path in listed if (ROOT / path).exists() and in_context(path, rules)]


def test_context_holds_what_the_build_copies_and_nothing_else() -> None:
    files = context_files()
    sources = [word for rest in STAGES[0].all("COPY") for word in rest.split()[:-1]]
    for source in sources:
        assert any(f == source or f.startswith(source.rstrip("/") + "/") for f in files), source
    allowed = {"pyproject.toml", "README.md", "deploy/image/requirements.txt", "deploy/image/requirements-emulator.txt"}
    assert all(f in allowed or f.startswith("csi_xloud/") for f in files), files
    assert "deploy/image/requirements.txt" in files and "deploy/image/requirements-emulator.txt" in files
    assert not any(f.startswith(("csi_xloud/emulator/", "csi_xloud/demo/")) for f in files)
    assert "csi_xloud/__main__.py" in files and "csi_xloud/_proto/csi_pb2.py" in files


def test_package_builds_from_the_context_alone(tmp_path: Path) -> None:
    """What `pip install .` does in the build stage, on exactly the files the context sends."""
    if shutil.which("git") is None:
        pytest.fail("git is needed to list the repository's files")
    source = tmp_path / "src"
    for path in context_files():
        target = source / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, target)
    out = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), "."],
        cwd=source, check=True, capture_output=True, timeout=120,
    )
    (wheel,) = out.glob("csi_xloud-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "csi-xloud = csi_xloud.__main__:main" in archive.read(entry_points).decode()
    assert {"csi_xloud/__main__.py", "csi_xloud/_proto/csi_pb2.py", "csi_xloud/py.typed"} <= names


# What the node plugin runs (the node's own list joins in when the node service is present).
NODE_COMMANDS = {
    "blkid", "mount", "umount", "losetup", "findmnt", "wipefs",
    "mkfs.ext4", "resize2fs", "e2fsck", "mkfs.xfs", "xfs_growfs", "udevadm",
}


def node_commands() -> set[str]:
    import importlib.util

    commands = set(NODE_COMMANDS)
    if importlib.util.find_spec("csi_xloud.node.service") is not None:
        from csi_xloud.node import service as node

        commands |= set(getattr(node, "REQUIRED_TOOLS", ()))
    return commands


def debian_package_of(command: str) -> str | None:
    """The Debian package shipping a command, as dpkg knows it (usr-merged paths tried too)."""
    for folder in ("/sbin", "/bin", "/usr/sbin", "/usr/bin"):
        found = subprocess.run(["dpkg", "-S", f"{folder}/{command}"], capture_output=True, text=True)
        if found.returncode == 0:
            return found.stdout.split(":", 1)[0]
    return None


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs a Debian system to map commands to packages")
def test_final_stage_packages_ship_every_node_command() -> None:
    """The base image is Debian too: each command the node runs comes from a package we install."""
    install = next(rest for rest in FINAL.all("RUN") if "apt-get install" in rest)
    packages = set(install.split("--no-install-recommends", 1)[1].split("&&")[0].split())
    for command in sorted(node_commands()):
        package = debian_package_of(command)
        assert package is not None, f"{command} is not installed here to check"
        assert package in packages, f"{command} comes from {package}, which the image does not install"
