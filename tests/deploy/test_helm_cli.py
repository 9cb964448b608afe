"""The chart under the real helm v4.1.4 binary: lint, template, package, and the new values' effects."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import CHART_DIR, FULL_VALUES, Obj, container, find, one, pod_spec, validate_object
from helm_cli import HELM_VERSION, run_helm

KUBE_VERSION = "1.34.0"


def write_values(tmp_path: Path, values: Obj) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def template(helm: Path, tmp_path: Path, values: Obj | None = None, *args: str,
             release: str = "csi-xloud", namespace: str = "kube-system") -> list[Obj]:
    extra = ["-f", str(write_values(tmp_path, values))] if values else []
    out = run_helm(helm, "template", release, str(CHART_DIR), "-n", namespace,
                   "--kube-version", KUBE_VERSION, *extra, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def key(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def test_the_binary_is_helm_4_1_4(helm: Path) -> None:
    version = run_helm(helm, "version", "--template", "{{.Version}}").stdout
    assert version == HELM_VERSION


@pytest.mark.parametrize("values", [None, FULL_VALUES], ids=["default", "full"])
def test_helm_lint_strict_is_clean(helm: Path, tmp_path: Path, values: Obj | None) -> None:
    extra = ["-f", str(write_values(tmp_path, values))] if values else []
    result = run_helm(helm, "lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART_DIR), *extra)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_helm_template_matches_the_sdk_rendering(helm: Path, tmp_path: Path,
                                                 default_objects: list[Obj], full_objects: list[Obj]) -> None:
    """The binary and the SDK the other tests use render the same objects (the binary adds the hooks)."""
    by_cli = template(helm, tmp_path, None, "--skip-tests")
    assert sorted(by_cli, key=key) == sorted(default_objects, key=key)
    by_cli = template(helm, tmp_path, FULL_VALUES, "--skip-tests", release="storage", namespace="xloud-system")
    assert sorted(by_cli, key=key) == sorted(full_objects, key=key)


def test_helm_test_hooks_write_and_read_a_claim(helm: Path, tmp_path: Path) -> None:
    hooks = [o for o in template(helm, tmp_path) if "helm.sh/hook" in o["metadata"].get("annotations", {})]
    claim, pod = one(hooks, "PersistentVolumeClaim"), one(hooks, "Pod")
    assert claim["spec"]["storageClassName"] == "xloud-block"
    assert {o["metadata"]["annotations"]["helm.sh/hook"] for o in hooks} == {"test"}
    assert int(claim["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0  # the claim first
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert pod["spec"]["containers"][0]["image"].startswith("ghcr.io/xloud/csi-xloud:")
    for obj in hooks:
        validate_object(obj, KUBE_VERSION)
    picked = template(helm, tmp_path, {"helmTest": {"storageClassName": "fast", "size": "2Gi"}})
    assert one(picked, "PersistentVolumeClaim")["spec"]["storageClassName"] == "fast"
    assert find(template(helm, tmp_path, {"helmTest": {"enabled": False}}), "Pod") == []
    refused = run_helm(helm, "template", "x", str(CHART_DIR), "--set", "storageClasses=null", check=False)
    assert refused.returncode != 0 and "helmTest needs helmTest.storageClassName" in refused.stderr


def test_name_overrides(helm: Path, tmp_path: Path) -> None:
    objects = template(helm, tmp_path, {"nameOverride": "xblock"}, "--skip-tests", release="prod")
    names = {obj["metadata"]["name"] for obj in objects}
    assert {"prod-xblock-controller", "prod-xblock-node"} <= names
    assert {obj["metadata"]["labels"]["app.kubernetes.io/name"] for obj in objects} == {"xblock"}
    objects = template(helm, tmp_path, {"fullnameOverride": "storage"}, "--skip-tests", release="prod")
    names = {obj["metadata"]["name"] for obj in objects}
    assert {"storage-controller", "storage-node"} <= names
    deployment = one(objects, "Deployment")
    assert pod_spec(deployment)["serviceAccountName"] == "storage-controller"


def env_of(ctr: Obj) -> dict[str, Any]:
    return {item["name"]: item.get("value") for item in ctr.get("env", [])}


def test_proxy_and_extra_env_reach_both_driver_containers(full_objects: list[Obj]) -> None:
    for workload, extra in ((one(full_objects, "Deployment"), "OS_CACERT"), (one(full_objects, "DaemonSet"), "TZ")):
        env = env_of(container(workload, "csi-xloud"))
        proxy = FULL_VALUES["proxy"]
        assert env["HTTPS_PROXY"] == env["https_proxy"] == proxy["httpsProxy"]
        assert env["HTTP_PROXY"] == env["http_proxy"] == proxy["httpProxy"]
        assert env["NO_PROXY"] == env["no_proxy"] == proxy["noProxy"]
        assert extra in env
        for sidecar in pod_spec(workload)["containers"]:
            if sidecar["name"] != "csi-xloud":
                assert "HTTPS_PROXY" not in env_of(sidecar), sidecar["name"]


def test_extra_volumes_are_mounted(full_objects: list[Obj]) -> None:
    for workload, component in ((one(full_objects, "Deployment"), "controller"),
                                (one(full_objects, "DaemonSet"), "node")):
        values = FULL_VALUES[component]
        volumes = {v["name"] for v in pod_spec(workload)["volumes"]}
        mounts = {m["name"] for m in container(workload, "csi-xloud")["volumeMounts"]}
        for volume in values["extraVolumes"]:
            assert volume["name"] in volumes and volume["name"] in mounts


def test_topology_spread_selects_the_controller_pods(full_objects: list[Obj], default_objects: list[Obj]) -> None:
    deployment = one(full_objects, "Deployment")
    (constraint,) = pod_spec(deployment)["topologySpreadConstraints"]
    assert constraint["topologyKey"] == "topology.kubernetes.io/zone"
    selector = constraint["labelSelector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert selector["app.kubernetes.io/component"] == "controller"
    assert "topologySpreadConstraints" not in pod_spec(one(default_objects, "Deployment"))


def test_topology_spread_keeps_a_selector_of_its_own(helm: Path, tmp_path: Path) -> None:
    own = {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
           "labelSelector": {"matchLabels": {"team": "storage"}}}
    deployment = one(template(helm, tmp_path, {"controller": {"topologySpreadConstraints": [own]}}), "Deployment")
    assert pod_spec(deployment)["topologySpreadConstraints"] == [own]


def test_helm_package_holds_the_chart(helm: Path, tmp_path: Path) -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    run_helm(helm, "package", str(CHART_DIR), "-d", str(tmp_path))
    (archive,) = tmp_path.glob("*.tgz")
    assert archive.name == f"csi-xloud-{chart['version']}.tgz"
    with tarfile.open(archive) as packed:
        names = set(packed.getnames())
        schema = json.loads(packed.extractfile("csi-xloud/values.schema.json").read())  # type: ignore[union-attr]
    assert {"csi-xloud/Chart.yaml", "csi-xloud/templates/tests/volume.yaml"} <= names
    assert "helmTest" in schema["properties"]
