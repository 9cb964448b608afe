"""Render the Helm chart with its default values into the plain kustomize base.

Usage: python deploy/generate_manifests.py [--check] [OUT_DIR]

The chart (deploy/helm/csi-xloud) is the one source of the manifests; deploy/kubernetes holds
what it renders for release "csi-xloud" in namespace kube-system, one file per template, without
the two labels that only make sense under Helm. --check compares instead of writing and exits 1
on any difference (tests/deploy runs the same comparison).

Rendering uses Helm's own engine through the helm-python-sdk package (a test dependency).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from copy import deepcopy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = ROOT / "deploy" / "helm" / "csi-xloud"
BASE_DIR = ROOT / "deploy" / "kubernetes"
RELEASE = "csi-xloud"
NAMESPACE = "kube-system"
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
HEADER = (
    "# Generated from deploy/helm/csi-xloud (default values) by deploy/generate_manifests.py.\n"
    "# Do not edit: change the chart and run the script again.\n"
)


def render(values: Mapping[str, Any] | None = None, release: str = RELEASE,
           namespace: str = NAMESPACE) -> dict[str, list[dict[str, Any]]]:
    """Render the chart; return the objects of each template file, by file name, in file order."""
    import helm_python  # imported late: only rendering needs the native Helm library

    with helm_python.Chart.load(CHART_DIR) as chart:
        rendered = chart.render(dict(values) if values else None, name=release, namespace=namespace)
    objects: dict[str, list[dict[str, Any]]] = {}
    for template, text in sorted(rendered.items()):
        if not template.endswith(".yaml") or "/templates/tests/" in template:
            continue  # NOTES.txt, and the `helm test` hooks: not part of an installation
        docs = [doc for doc in yaml.safe_load_all(text) if doc]
        if docs:
            objects[Path(template).name] = docs
    return objects


def without_helm_labels(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of obj without the Helm bookkeeping labels (metadata and pod template)."""
    copy = deepcopy(obj)
    holders = [copy.get("metadata", {}), copy.get("spec", {}).get("template", {}).get("metadata", {})]
    for metadata in holders:
        labels = metadata.get("labels") or {}
        for label in HELM_ONLY_LABELS:
            labels.pop(label, None)
    return copy


def dump(docs: list[dict[str, Any]]) -> str:
    return "---\n".join(yaml.safe_dump(doc, sort_keys=False, width=1000) for doc in docs)


def plain_files() -> dict[str, str]:
    """The kustomize base: file name -> content."""
    files = {
        name: HEADER + dump([without_helm_labels(doc) for doc in docs])
        for name, docs in render().items()
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
    }
    # No `namespace:` here: kustomize would also stamp it on the VolumeSnapshotClasses, which it
    # does not know to be cluster-scoped. Every namespaced object already names kube-system.
    files["kustomization.yaml"] = HEADER + yaml.safe_dump(kustomization, sort_keys=False)
    return files


def differences(out_dir: Path) -> list[str]:
    """Files that are missing, stale or extra in out_dir."""
    wanted = plain_files()
    present = {path.name for path in out_dir.glob("*.yaml")}
    problems = [f"extra file {name}" for name in sorted(present - set(wanted))]
    for name, text in wanted.items():
        path = out_dir / name
        if not path.exists():
            problems.append(f"missing file {name}")
        elif path.read_text() != text:
            problems.append(f"{name} differs from the chart's rendering")
    return problems


def write(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = plain_files()
    for stale in out_dir.glob("*.yaml"):
        if stale.name not in wanted:
            stale.unlink()
    written = []
    for name, text in wanted.items():
        path = out_dir / name
        path.write_text(text)
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    check = "--check" in argv
    args = [arg for arg in argv if arg != "--check"]
    out_dir = Path(args[0]) if args else BASE_DIR
    if check:
        problems = differences(out_dir)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    for path in write(out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
