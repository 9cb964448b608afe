"""The chart's parts agree with each other, with the sidecars' needs and with the driver's CLI."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import pytest
from deploy_support import (
    CUSTOM_KUBELET_DIR,
    Obj,
    container,
    expanded_args,
    find,
    flag,
    one,
    pod_spec,
    resolve_path,
    volume,
)

from csi_xloud import DRIVER_NAME
from csi_xloud.__main__ import build_parser, driver_config
from csi_xloud.config import Endpoint, Mode
from csi_xloud.validation import (
    parse_group_snapshot_parameters,
    parse_mutable_parameters,
    parse_snapshot_parameters,
    parse_volume_parameters,
)

CONTROLLER_SIDECARS = ("csi-provisioner", "csi-attacher", "csi-snapshotter", "csi-resizer")

# The released sidecar versions the chart pins.
PINNED_SIDECARS = {
    "csi-provisioner": "registry.k8s.io/sig-storage/csi-provisioner:v6.3.0",
    "csi-attacher": "registry.k8s.io/sig-storage/csi-attacher:v4.12.0",
    "csi-snapshotter": "registry.k8s.io/sig-storage/csi-snapshotter:v8.6.0",
    "csi-resizer": "registry.k8s.io/sig-storage/csi-resizer:v2.2.1",
    "liveness-probe": "registry.k8s.io/sig-storage/livenessprobe:v2.19.0",
    "node-driver-registrar": "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.17.0",
}

Rule = tuple[str, str, frozenset[str]]  # (apiGroup, resource, verbs)
ALL_WRITE = frozenset({"get", "list", "watch", "create", "update", "patch", "delete"})
READ = frozenset({"get", "list", "watch"})
EVENTS = ("", "events", frozenset({"list", "watch", "create", "update", "patch"}))
LEASES = ("coordination.k8s.io", "leases", frozenset({"get", "watch", "list", "delete", "update", "create"}))

# What each sidecar reads and writes, at the pinned version with the flags the chart passes
# (from each sidecar's deploy/kubernetes RBAC and the API calls in its source).
CLUSTER_NEEDS: dict[str, set[Rule]] = {
    "provisioner": {
        ("", "persistentvolumes", frozenset({"get", "list", "watch", "create", "patch", "delete"})),
        ("", "persistentvolumeclaims", frozenset({"get", "list", "watch", "update"})),
        EVENTS,
        ("", "nodes", READ),
        ("storage.k8s.io", "storageclasses", READ),
        ("storage.k8s.io", "csinodes", READ),
        ("storage.k8s.io", "volumeattachments", READ),  # PUBLISH_UNPUBLISH_VOLUME: safe-to-delete check
        ("storage.k8s.io", "volumeattributesclasses", frozenset({"get"})),  # CreateVolume mutable_parameters
        ("snapshot.storage.k8s.io", "volumesnapshots", frozenset({"get", "list", "watch", "update"})),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", frozenset({"get", "list"})),
    },
    "attacher": {
        ("", "persistentvolumes", frozenset({"get", "list", "watch", "patch"})),
        ("storage.k8s.io", "csinodes", READ),
        ("storage.k8s.io", "volumeattachments", frozenset({"get", "list", "watch", "patch"})),
        ("storage.k8s.io", "volumeattachments/status", frozenset({"patch"})),
    },
    "snapshotter": {
        EVENTS,
        ("snapshot.storage.k8s.io", "volumesnapshotclasses", READ),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", READ | {"update", "patch"}),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents/status", frozenset({"update", "patch"})),
        # With --feature-gates=CSIVolumeGroupSnapshot=true (csi-snapshotter v8.6.0's own RBAC).
        ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotclasses", READ),
        ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotcontents", READ | {"update", "patch"}),
        ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotcontents/status", frozenset({"update", "patch"})),
    },
    "resizer": {
        ("", "persistentvolumes", frozenset({"get", "list", "watch", "patch"})),
        ("", "persistentvolumeclaims", READ),
        ("", "persistentvolumeclaims/status", frozenset({"patch"})),
        EVENTS,
        ("storage.k8s.io", "volumeattributesclasses", READ),
    },
}
CAPACITY_NEEDS: set[Rule] = {
    ("storage.k8s.io", "csistoragecapacities", ALL_WRITE),
    ("", "pods", frozenset({"get"})),
    ("apps", "replicasets", frozenset({"get"})),
}


def release_of(objects: list[Obj]) -> tuple[str, str]:
    """(name prefix, namespace) of the rendering."""
    deployment = controller(objects)
    return deployment["metadata"]["name"].removesuffix("-controller"), deployment["metadata"]["namespace"]


def controller(objects: list[Obj]) -> Obj:
    """The controller's Deployment (the evaluation install also has the emulator's)."""
    (deployment,) = [d for d in find(objects, "Deployment") if d["metadata"]["name"].endswith("-controller")]
    return deployment


def node(objects: list[Obj]) -> Obj:
    return one(objects, "DaemonSet")


def emulator(objects: list[Obj]) -> Obj | None:
    """The in-cluster emulator's Deployment of the evaluation install, else None."""
    found = [d for d in find(objects, "Deployment") if d["metadata"]["name"].endswith("-emulator")]
    return found[0] if found else None


def kubelet_dir(objects: list[Obj]) -> str:
    full = controller(objects)["metadata"]["namespace"] != "kube-system"
    return CUSTOM_KUBELET_DIR if full else "/var/lib/kubelet"


# --- the socket -------------------------------------------------------------------------------


def driver_socket(workload: Obj) -> tuple[str, PurePosixPath]:
    driver = container(workload, "csi-xloud")
    endpoint = Endpoint.parse(flag(driver, "endpoint") or "")
    assert endpoint.scheme == "unix"
    return resolve_path(workload, driver, endpoint.address)


@pytest.mark.parametrize("which", ["controller", "node"])
def test_every_sidecar_dials_the_socket_the_driver_listens_on(objects: list[Obj], which: str) -> None:
    workload = controller(objects) if which == "controller" else node(objects)
    socket = driver_socket(workload)
    sidecars = [c for c in pod_spec(workload)["containers"] if c["name"] != "csi-xloud"]
    assert sidecars
    for sidecar in sidecars:
        address = flag(sidecar, "csi-address")
        assert address, f"{sidecar['name']} has no --csi-address"
        assert resolve_path(workload, sidecar, address) == socket, sidecar["name"]
    socket_volume = volume(workload, socket[0])
    if which == "controller":
        assert socket_volume.get("emptyDir") == {}
    else:
        assert "hostPath" in socket_volume


# --- kubelet paths ----------------------------------------------------------------------------


def test_node_paths_agree_with_kubelet(objects: list[Obj]) -> None:
    daemonset = node(objects)
    kubelet = kubelet_dir(objects)
    driver = container(daemonset, "csi-xloud")
    registrar = container(daemonset, "node-driver-registrar")

    assert flag(driver, "kubelet-dir") == kubelet
    socket_volume, socket_in_volume = driver_socket(daemonset)
    plugin_dir = volume(daemonset, socket_volume)["hostPath"]["path"]
    assert plugin_dir == f"{kubelet}/plugins/{DRIVER_NAME}"
    # kubelet dials the socket at this host path after registration.
    assert flag(registrar, "kubelet-registration-path") == str(PurePosixPath(plugin_dir) / socket_in_volume)

    registration_volume, inside = resolve_path(daemonset, registrar, "/registration")
    assert inside == PurePosixPath(".")
    assert volume(daemonset, registration_volume)["hostPath"]["path"] == f"{kubelet}/plugins_registry"

    mounts = {m["name"]: m for m in driver["volumeMounts"]}
    kubelet_volume, _ = resolve_path(daemonset, driver, f"{kubelet}/pods")
    assert volume(daemonset, kubelet_volume)["hostPath"]["path"] == kubelet
    assert mounts[kubelet_volume]["mountPath"] == kubelet
    assert mounts[kubelet_volume]["mountPropagation"] == "Bidirectional"
    assert driver["securityContext"]["privileged"] is True  # Bidirectional needs it
    device_dir = flag(driver, "device-dir") or ""
    device_volume, inside = resolve_path(daemonset, driver, device_dir)
    emulated = emulator(objects)
    if emulated is None:
        assert volume(daemonset, device_volume)["hostPath"]["path"] == "/dev"
        return
    # The emulator makes its server's disks under its data dir: the same host folder, at the same path.
    emulated_driver = container(emulated, "emulator")
    data_dir = flag(emulated_driver, "data-dir") or ""
    data_volume, _ = resolve_path(emulated, emulated_driver, data_dir)
    host_data_dir = volume(emulated, data_volume)["hostPath"]["path"]
    assert volume(daemonset, device_volume)["hostPath"]["path"] == host_data_dir == data_dir
    assert inside == PurePosixPath("servers/<NODE_NAME>/by-id")
    assert flag(emulated_driver, "servers") == "<NODE_NAME>@nova"
    # Its by-id links name loop devices: both see the host's /dev.
    for workload, ctr in ((daemonset, driver), (emulated, emulated_driver)):
        dev_volume, _ = resolve_path(workload, ctr, "/dev/loop0")
        assert volume(workload, dev_volume)["hostPath"]["path"] == "/dev"


def test_only_the_node_driver_propagates_mounts(objects: list[Obj]) -> None:
    for workload in (controller(objects), node(objects)):
        for ctr in pod_spec(workload)["containers"]:
            for mount in ctr.get("volumeMounts", []):
                if mount.get("mountPropagation") == "Bidirectional":
                    assert (workload["kind"], ctr["name"]) == ("DaemonSet", "csi-xloud")


# --- the driver name --------------------------------------------------------------------------


def test_driver_name_is_the_same_everywhere(objects: list[Obj]) -> None:
    assert one(objects, "CSIDriver")["metadata"]["name"] == DRIVER_NAME
    for storage_class in find(objects, "StorageClass"):
        assert storage_class["provisioner"] == DRIVER_NAME
    for snapshot_class in find(objects, "VolumeSnapshotClass"):
        assert snapshot_class["driver"] == DRIVER_NAME
    for attributes_class in find(objects, "VolumeAttributesClass"):
        assert attributes_class["driverName"] == DRIVER_NAME
    for group_class in find(objects, "VolumeGroupSnapshotClass"):
        assert group_class["driver"] == DRIVER_NAME
        parse_group_snapshot_parameters(group_class.get("parameters", {}))
    registration = flag(container(node(objects), "node-driver-registrar"), "kubelet-registration-path")
    assert registration is not None and f"/plugins/{DRIVER_NAME}/" in registration


def test_csidriver_matches_the_drivers_capabilities(objects: list[Obj]) -> None:
    spec = one(objects, "CSIDriver")["spec"]
    assert spec["attachRequired"] is True  # ControllerPublishVolume attaches through Compute
    assert spec["fsGroupPolicy"] == "File"
    assert spec["volumeLifecycleModes"] == ["Persistent"]
    assert spec["seLinuxMount"] is True  # the node plugin takes kubelet's context="..." option
    assert spec["podInfoOnMount"] is False


# --- RBAC -------------------------------------------------------------------------------------


def grants(objects: list[Obj], account: str, namespace: str) -> dict[str, set[Rule]]:
    """Rules bound to the service account, by the name of the role that grants them."""
    all_roles = find(objects, "ClusterRole") + find(objects, "Role")
    roles = {(obj["kind"], obj["metadata"]["name"]): obj for obj in all_roles}
    granted: dict[str, set[Rule]] = {}
    for binding in find(objects, "ClusterRoleBinding") + find(objects, "RoleBinding"):
        subjects = binding["subjects"]
        if not any(s["kind"] == "ServiceAccount" and s["name"] == account and s["namespace"] == namespace
                   for s in subjects):
            continue
        ref = binding["roleRef"]
        role = roles[(ref["kind"], ref["name"])]
        if binding["kind"] == "RoleBinding":
            assert role["kind"] == "Role" and role["metadata"]["namespace"] == namespace
        rules: set[Rule] = set()
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    rules.add((group, resource, frozenset(rule["verbs"])))
        granted[f"{ref['kind']}/{ref['name']}"] = rules
    return granted


def covers(rules: set[Rule], need: Rule) -> bool:
    verbs = set().union(*[v for g, r, v in rules if (g, r) == need[:2]] or [set()])
    return need[2] <= verbs


def capacity_enabled(objects: list[Obj]) -> bool:
    return flag(container(controller(objects), "csi-provisioner"), "enable-capacity") is not None


def test_each_sidecar_gets_what_it_uses(objects: list[Obj]) -> None:
    prefix, namespace = release_of(objects)
    granted = grants(objects, f"{prefix}-controller", namespace)
    all_rules = set().union(*granted.values())
    namespaced = set().union(*[rules for name, rules in granted.items() if name.startswith("Role/")])
    for sidecar, needs in CLUSTER_NEEDS.items():
        missing = [need for need in needs if not covers(granted[f"ClusterRole/{prefix}-{sidecar}"], need)]
        assert not missing, f"{sidecar} lacks {missing}"
        assert covers(namespaced, LEASES), f"{sidecar} cannot elect a leader"
    if capacity_enabled(objects):
        assert all(covers(namespaced, need) for need in CAPACITY_NEEDS)
    for rule in all_rules:
        assert "*" not in rule[0] + rule[1] and "*" not in rule[2], rule


def test_no_role_grants_more_than_its_sidecar_uses(objects: list[Obj]) -> None:
    prefix, namespace = release_of(objects)
    granted = grants(objects, f"{prefix}-controller", namespace)
    for sidecar, needs in CLUSTER_NEEDS.items():
        rules = granted[f"ClusterRole/{prefix}-{sidecar}"]
        for group, resource, verbs in rules:
            wanted = set().union(*[v for g, r, v in needs if (g, r) == (group, resource)] or [set()])
            assert verbs <= wanted, f"{sidecar} gets {sorted(verbs - wanted)} on {group}/{resource}"
    extra_namespaced = {LEASES} | (CAPACITY_NEEDS if capacity_enabled(objects) else set())
    for name, rules in granted.items():
        if name.startswith("Role/"):
            assert rules <= extra_namespaced, name
    assert len(granted) == len(CLUSTER_NEEDS) + 1 + capacity_enabled(objects)
    assert not any(resource == "secrets" for rules in granted.values() for _, resource, _ in rules)


def test_node_account_has_no_permissions(objects: list[Obj]) -> None:
    prefix, namespace = release_of(objects)
    assert grants(objects, f"{prefix}-node", namespace) == {}


def test_resizer_flags_match_what_its_role_and_the_driver_allow(objects: list[Obj]) -> None:
    resizer = container(controller(objects), "csi-resizer")
    # Online expansion: no pod watch, so no "pods" permission.
    assert flag(resizer, "handle-volume-inuse-error") == "false"
    # The driver refuses unknown mutable_parameters keys, so no pv/pvc names may be added to them.
    assert flag(resizer, "extra-modify-metadata") is None


# --- leader election, flags, probes -----------------------------------------------------------


def test_every_controller_sidecar_elects_a_leader(objects: list[Obj]) -> None:
    deployment = controller(objects)
    assert deployment["spec"]["replicas"] >= (1 if emulator(objects) else 2)
    for name in CONTROLLER_SIDECARS:
        sidecar = container(deployment, name)
        assert flag(sidecar, "leader-election") == ""
        assert flag(sidecar, "leader-election-namespace") == "<NAMESPACE>"
        env = {item["name"]: item for item in sidecar["env"]}
        assert env["NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_provisioner_and_snapshotter_flags(objects: list[Obj]) -> None:
    deployment = controller(objects)
    provisioner = container(deployment, "csi-provisioner")
    assert flag(provisioner, "extra-create-metadata") == ""
    assert flag(provisioner, "default-fstype") == "ext4"
    assert "Topology=true" in (flag(provisioner, "feature-gates") or "")
    snapshotter = container(deployment, "csi-snapshotter")
    assert flag(snapshotter, "extra-create-metadata") == ""
    # csi-snapshotter v8.6.0 serves VolumeGroupSnapshotContents (groupsnapshot.storage.k8s.io/v1) behind this gate.
    assert flag(snapshotter, "feature-gates") == "CSIVolumeGroupSnapshot=true"
    assert all(o["apiVersion"] == "groupsnapshot.storage.k8s.io/v1" for o in find(objects, "VolumeGroupSnapshotClass"))
    capacity = capacity_enabled(objects)
    assert one(objects, "CSIDriver")["spec"]["storageCapacity"] is capacity
    if capacity:
        assert flag(provisioner, "capacity-ownerref-level") == "2"  # pod -> ReplicaSet -> Deployment
        env = {item["name"]: item for item in provisioner["env"]}
        assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


@pytest.mark.parametrize("which", ["controller", "node"])
def test_driver_flags_are_ones_the_cli_accepts(objects: list[Obj], which: str) -> None:
    workload = controller(objects) if which == "controller" else node(objects)
    driver = container(workload, "csi-xloud")
    args = expanded_args(driver)
    try:
        parsed = build_parser().parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"csi-xloud rejects {args}") from exc
    config = driver_config(parsed, {})
    assert config.mode is (Mode.CONTROLLER if which == "controller" else Mode.NODE)


def test_controller_reads_the_cloud_secret_the_chart_names(objects: list[Obj]) -> None:
    deployment = controller(objects)
    driver = container(deployment, "csi-xloud")
    secret_volume, inside = resolve_path(deployment, driver, flag(driver, "cloud-config") or "")
    emulated = emulator(objects)
    if emulated is not None:
        # The clouds.yaml the emulator writes into its data dir, naming its cloud xloud-emulator.
        emulated_driver = container(emulated, "emulator")
        host_file = volume(deployment, secret_volume)["hostPath"]
        assert host_file == {"path": f"{flag(emulated_driver, 'data-dir')}/clouds.yaml", "type": "File"}
        assert inside == PurePosixPath(".")
        assert flag(driver, "cloud") == "xloud-emulator"
        assert not find(objects, "Secret")
        return
    secret = volume(deployment, secret_volume)["secret"]
    assert "items" not in secret  # every key of the Secret is a file, the CA bundle too
    expected_name = "xloud-credentials" if find(objects, "Secret") else "csi-xloud-cloud-config"
    assert secret["secretName"] == expected_name
    for created in find(objects, "Secret"):
        assert created["metadata"]["name"] == secret["secretName"]
        assert list(created["stringData"]) == [str(inside)]
        assert f"{flag(driver, 'cloud')}:" in created["stringData"][str(inside)]
    for ctr in pod_spec(deployment)["containers"]:
        if ctr["name"] != "csi-xloud":
            assert secret_volume not in {m["name"] for m in ctr.get("volumeMounts", [])}, ctr["name"]


def test_node_plugin_gets_no_cloud_credentials(objects: list[Obj]) -> None:
    daemonset = node(objects)
    spec = pod_spec(daemonset)
    assert spec["automountServiceAccountToken"] is False
    for vol in spec["volumes"]:
        assert not {"secret", "projected", "csi"} & set(vol), vol["name"]
    for ctr in spec["containers"]:
        assert "envFrom" not in ctr, ctr["name"]
        for item in ctr.get("env", []):
            assert "secretKeyRef" not in item.get("valueFrom", {}), ctr["name"]
            assert not item["name"].startswith("OS_"), ctr["name"]
    driver = container(daemonset, "csi-xloud")
    assert flag(driver, "cloud") is None and flag(driver, "cloud-config") is None


def test_images_are_pinned(objects: list[Obj]) -> None:
    for workload in (controller(objects), node(objects)):
        for ctr in pod_spec(workload)["containers"]:
            image = ctr["image"]
            if ctr["name"] == "csi-xloud":
                assert re.search(r"(:\d+\.\d+\.\d+|@sha256:[0-9a-f]{64})$", image), image
            else:
                assert image == PINNED_SIDECARS[ctr["name"]]
            assert not image.endswith(":latest")


@pytest.mark.parametrize("which", ["controller", "node"])
def test_probes_and_ports_line_up(objects: list[Obj], which: str) -> None:
    workload = controller(objects) if which == "controller" else node(objects)
    containers = pod_spec(workload)["containers"]
    all_ports = [p["containerPort"] for c in containers for p in c.get("ports", [])]
    assert len(all_ports) == len(set(all_ports)), "two containers claim one port"
    served: dict[int, str] = {}
    for ctr in containers:
        endpoint = flag(ctr, "http-endpoint")
        if endpoint is not None:
            served[int(endpoint.rsplit(":", 1)[1])] = ctr["name"]
        named = {p["name"]: p["containerPort"] for p in ctr.get("ports", [])}
        probe = ctr.get("livenessProbe")
        if probe:
            assert probe["httpGet"]["port"] in named, ctr["name"]
    for ctr in containers:
        probe = ctr.get("livenessProbe")
        if not probe:
            continue
        port = {p["name"]: p["containerPort"] for p in ctr["ports"]}[probe["httpGet"]["port"]]
        server = served.get(port)
        assert server is not None, f"nothing serves {ctr['name']}'s probe port {port}"
        if ctr["name"] == "csi-xloud":
            assert server == "liveness-probe" and probe["httpGet"]["path"] == "/healthz"
        elif ctr["name"] in CONTROLLER_SIDECARS:
            assert server == ctr["name"] and probe["httpGet"]["path"] == "/healthz/leader-election"
        else:
            assert server == ctr["name"]
    assert "liveness-probe" in served.values()


def test_every_container_has_requests_and_a_memory_limit(objects: list[Obj]) -> None:
    for workload in (controller(objects), node(objects)):
        assert pod_spec(workload)["priorityClassName"] in ("system-cluster-critical", "system-node-critical")
        for ctr in pod_spec(workload)["containers"]:
            assert {"cpu", "memory"} <= set(ctr["resources"]["requests"]), ctr["name"]
            assert "memory" in ctr["resources"]["limits"], ctr["name"]


def test_node_plugin_runs_on_every_node(objects: list[Obj]) -> None:
    tolerations = pod_spec(node(objects))["tolerations"]
    assert {"operator": "Exists"} in tolerations


def test_selectors_match_their_pods(objects: list[Obj]) -> None:
    deployment, daemonset = controller(objects), node(objects)
    for workload in (deployment, daemonset):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["selector"] != daemonset["spec"]["selector"]
    controller_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for pdb in find(objects, "PodDisruptionBudget"):
        assert pdb["spec"]["selector"]["matchLabels"].items() <= controller_labels.items()
        assert pdb["spec"]["maxUnavailable"] < deployment["spec"]["replicas"]


@pytest.mark.parametrize("component", ["controller", "node"])
def test_metrics_service_reaches_what_the_pods_serve(full_objects: list[Obj], component: str) -> None:
    workload = one(full_objects, "Deployment" if component == "controller" else "DaemonSet")
    service = one(full_objects, "Service", f"storage-csi-xloud-{component}-metrics")
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["publishNotReadyAddresses"] is True  # an unready pod's alerts still fire
    containers = pod_spec(workload)["containers"]
    named = {p["name"]: p["containerPort"] for c in containers for p in c.get("ports", [])}
    for port in service["spec"]["ports"]:
        assert named[port["targetPort"]] == port["port"], port
    driver = container(workload, "csi-xloud")
    assert int((flag(driver, "metrics-address") or "").rsplit(":", 1)[1]) == named["metrics"]
    monitor = one(full_objects, "ServiceMonitor", f"storage-csi-xloud-{component}")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    others = [s for s in find(full_objects, "Service") if s is not service]
    assert not any(monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
                   for s in others)
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {p["name"] for p in service["spec"]["ports"]}


def test_metrics_are_off_by_default(default_objects: list[Obj]) -> None:
    assert find(default_objects, "Service") == [] and find(default_objects, "ServiceMonitor") == []
    assert find(default_objects, "PrometheusRule") == [] and find(default_objects, "ConfigMap") == []
    for workload in (controller(default_objects), one(default_objects, "DaemonSet")):
        assert flag(container(workload, "csi-xloud"), "metrics-address") is None


# --- classes ----------------------------------------------------------------------------------


def test_class_parameters_are_ones_the_driver_accepts(objects: list[Obj]) -> None:
    for storage_class in find(objects, "StorageClass"):
        parse_volume_parameters(storage_class.get("parameters", {}), {})
        assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"  # topology-aware
    kinds = set()
    for snapshot_class in find(objects, "VolumeSnapshotClass"):
        kinds.add(parse_snapshot_parameters(snapshot_class.get("parameters", {})).kind.value)
    assert kinds == {"snapshot", "backup"}
    for attributes_class in find(objects, "VolumeAttributesClass"):
        parse_mutable_parameters(attributes_class["parameters"])
