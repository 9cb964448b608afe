"""docs/: every flag, parameter and chart value is documented, and what the docs name exists."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Mapping

import pytest
import yaml
from deploy_support import CHART_DIR, ROOT, Obj

from csi_xloud.__main__ import build_parser
from csi_xloud.rpc.errors import InvalidArgument
from csi_xloud.validation import (
    GROUP_SNAPSHOT_METADATA_KEYS,
    SNAPSHOT_METADATA_KEYS,
    parse_group_snapshot_parameters,
    parse_mutable_parameters,
    parse_snapshot_parameters,
    parse_volume_parameters,
)

DOCS = ROOT / "docs"
CONFIGURATION = (DOCS / "configuration.md").read_text()
PROVISIONER_KEYS = {
    "csi.storage.k8s.io/pvc/name",
    "csi.storage.k8s.io/pvc/namespace",
    "csi.storage.k8s.io/pv/name",
}


def table(text: str, header: str) -> list[list[str]]:
    """Rows of the markdown table whose header row starts with `header`, cells without backticks."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("`") for cell in line.strip("|").split(" | ")])
    return rows


FLAGS_AND_PARAMETERS = table(CONFIGURATION, "| where | name |")
VALUES_TABLE = table(CONFIGURATION, "| value | default |")


def driver_flags() -> set[str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    driver = commands.choices["driver"]
    return {
        option
        for action in driver._actions
        for option in action.option_strings
        if option.startswith("--")
    }


def known_keys(parse: Callable[[Mapping[str, str]], object]) -> set[str]:
    """The keys a parser accepts, as its own error message for an unknown key lists them."""
    with pytest.raises(InvalidArgument) as refused:
        parse({"no-such-key": "x"})
    listed = re.search(r"\(known: ([^)]*)\)", refused.value.message)
    assert listed, refused.value.message
    return set(listed[1].split(", "))


def documented(where: str) -> set[str]:
    return {row[1] for row in FLAGS_AND_PARAMETERS if row[0] == where}


def test_every_driver_flag_is_in_the_table() -> None:
    flags = driver_flags() - {"--help"}
    assert flags <= documented("flag"), sorted(flags - documented("flag"))
    assert documented("flag") <= flags, "the table names a flag the CLI does not have"
    assert documented("env") == {"CSI_ENDPOINT"}


def test_every_class_parameter_is_in_the_table() -> None:
    storage = known_keys(lambda p: parse_volume_parameters(p, {})) - PROVISIONER_KEYS
    snapshot = known_keys(parse_snapshot_parameters) - SNAPSHOT_METADATA_KEYS
    attributes = known_keys(parse_mutable_parameters)
    group = known_keys(parse_group_snapshot_parameters) - GROUP_SNAPSHOT_METADATA_KEYS
    assert documented("VolumeGroupSnapshotClass") == group
    assert documented("StorageClass") == storage
    assert documented("VolumeSnapshotClass") == snapshot
    assert documented("VolumeAttributesClass") == attributes
    assert {"type", "availability", "csi.storage.k8s.io/fstype"} == storage


def value_paths(schema: Obj, path: str = "") -> set[str]:
    """Every value the schema defines, down to (not into) free-form maps and resources."""
    if schema.get("type") == "array" and "properties" in schema.get("items", {}):
        return value_paths(schema["items"], f"{path}[]")
    closed = schema.get("type") == "object" and schema.get("additionalProperties") is False
    if not closed or path.endswith("resources") or path.endswith("parameters"):
        return {path}
    found: set[str] = set()
    for key, sub in schema["properties"].items():
        found |= value_paths(sub, f"{path}.{key}" if path else key)
    return found


def test_every_chart_value_is_in_the_table() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    paths = value_paths(schema)
    rows = [row[0] for row in VALUES_TABLE]
    patterns = [
        re.compile(re.escape(row).replace(re.escape("<sidecar>"), "[A-Za-z]+") + "$")
        for row in rows
    ]
    missing = sorted(p for p in paths if not any(pattern.match(p) for pattern in patterns))
    assert not missing, missing
    unknown = [
        row
        for row, pattern in zip(rows, patterns, strict=True)
        if not any(pattern.match(p) for p in paths)
    ]
    assert not unknown, unknown


def test_upgrade_guide_names_the_pinned_sidecars() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    rows = dict(
        (row[0], row[1].split()[0])
        for row in table((DOCS / "upgrade.md").read_text(), "| sidecar |")
    )
    pinned = {
        sidecar["image"]["repository"].rsplit("/", 1)[1]: sidecar["image"]["tag"]
        for sidecar in values["sidecars"].values()
    }
    assert rows == pinned


def test_docs_name_files_that_exist() -> None:
    named = r"(?<![\w./-])((?:examples|docs|deploy)/[\w./-]+\.(?:md|yaml|py|json|example|txt|conf)|deploy/[\w/-]+/?)"
    for page in [*DOCS.glob("*.md"), *ROOT.glob("examples/*")]:
        for name in re.findall(named, page.read_text()):
            if name.startswith("deploy/") and "." not in name and name.count("/") < 2:
                continue  # `kubectl logs deploy/<name>`: a Deployment, not a folder
            assert (ROOT / name).exists() or (DOCS / name).exists(), f"{page.name}: {name}"


def test_troubleshooting_covers_the_usual_failures() -> None:
    headings = re.findall(r"^## (.+)$", (DOCS / "troubleshooting.md").read_text(), re.M)
    for topic in ("Device not found", "Stuck attachments", "Availability zone mismatch", "Quota"):
        assert topic in headings


def test_deployment_files_name_no_local_paths() -> None:
    pages = [
        *DOCS.glob("*.md"),
        *ROOT.glob("examples/*"),
        *ROOT.glob("deploy/**/*"),
        ROOT / "Dockerfile",
    ]
    for page in pages:
        if page.is_file():
            text = page.read_text()
            assert not re.search(r"/(work|tmp)/", text), page
