"""deploy/kubernetes is exactly what the chart renders with its default values."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from deploy_support import BASE_DIR, Obj, chart_kube_versions, load_documents, validate_object


def key(obj: Obj) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def chart_objects(generator: ModuleType) -> dict[tuple[str, str, str], Obj]:
    rendered = generator.render()
    objects = [generator.without_helm_labels(doc) for docs in rendered.values() for doc in docs]
    return {key(obj): obj for obj in objects}


def test_base_is_the_current_rendering(generator: ModuleType) -> None:
    problems = generator.differences(BASE_DIR)
    assert problems == [], "run: python deploy/generate_manifests.py"


def test_generator_notices_a_hand_edit(generator: ModuleType, tmp_path: Path) -> None:
    generator.write(tmp_path)
    assert generator.differences(tmp_path) == []
    node = tmp_path / "node.yaml"
    node.write_text(node.read_text().replace("Bidirectional", "HostToContainer"))
    (tmp_path / "leftover.yaml").write_text("kind: ConfigMap\n")
    assert generator.differences(tmp_path) == [
        "extra file leftover.yaml",
        "node.yaml differs from the chart's rendering",
    ]


def test_kustomization_builds_the_charts_objects(generator: ModuleType) -> None:
    """Read the base as kustomize would (its resources, nothing transformed) and compare objects."""
    kustomization = yaml.safe_load((BASE_DIR / "kustomization.yaml").read_text())
    assert set(kustomization) == {"apiVersion", "kind", "resources"}
    objects = [doc for name in kustomization["resources"] for doc in load_documents(BASE_DIR / name)]
    built = {key(obj): obj for obj in objects}
    assert len(built) == len(objects)
    assert built == chart_objects(generator)


def test_no_helm_bookkeeping_in_the_base() -> None:
    text = "".join(path.read_text() for path in BASE_DIR.glob("*.yaml"))
    assert "helm.sh/chart" not in text and "managed-by" not in text and "{{" not in text


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_builds_the_charts_objects(generator: ModuleType) -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(BASE_DIR)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    objects = [doc for doc in yaml.safe_load_all(built) if doc]
    assert {key(obj): obj for obj in objects} == chart_objects(generator)


@pytest.mark.parametrize("version", chart_kube_versions())
def test_base_objects_are_valid(version: str) -> None:
    for path in sorted(BASE_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for obj in load_documents(path):
            validate_object(obj, version)
