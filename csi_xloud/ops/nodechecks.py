"""The node plugin's side of `csi-xloud doctor`: tools, kernel, instance identity, folders and limits."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from csi_xloud.config import DEFAULT_MAX_VOLUMES_PER_NODE
from csi_xloud.node.service import REQUIRED_TOOLS
from csi_xloud.ops.checks import Finding, fail, ok, warn
from csi_xloud.osutil.errors import OsUtilError
from csi_xloud.osutil.metadata import InstanceMetadata, MetadataReader
from csi_xloud.osutil.mounts import Mounter
from csi_xloud.osutil.runner import Runner

# Filesystems the kernel must mount: a missing ext4 breaks the default, a missing xfs only xfs classes.
KERNEL_FILESYSTEMS = (("ext4", True), ("xfs", False))
# Xloud's disks are virtio-blk disks; without the driver no volume ever shows up.
DISK_DRIVER = "virtio_blk"
# Tools the node uses when present (device rescans), and without which it still works.
OPTIONAL_TOOLS = ("udevadm",)
_VERSION_TIMEOUT_SECONDS = 10.0
_NEAR_LIMIT_SHARE = 0.8
_VERSION = re.compile(r"^.*?\d+\.\d+(?:\.\d+)?")


@dataclass(frozen=True, slots=True)
class NodeTarget:
    """The node plugin's flags, as `csi-xloud driver --mode node` takes them."""

    device_dir: Path
    kubelet_dir: Path
    metadata_url: str
    max_volumes_per_node: int = DEFAULT_MAX_VOLUMES_PER_NODE
    node_id: str | None = None
    availability_zone: str | None = None


class NodeDoctor:
    """Runs the node's checks with the node plugin's own OS layer."""

    def __init__(
        self, target: NodeTarget, *, runner: Runner, mounter: Mounter, metadata: MetadataReader,
        proc: Path = Path("/proc"), sys_module: Path = Path("/sys/module"),
    ) -> None:
        self._target = target
        self._runner = runner
        self._mounter = mounter
        self._metadata = metadata
        self._proc = proc
        self._sys_module = sys_module

    async def run(self) -> list[Finding]:
        """Every node check's finding, in order."""
        findings = [await self._tool(tool, required=True) for tool in REQUIRED_TOOLS]
        findings += [await self._tool(tool, required=False) for tool in OPTIONAL_TOOLS]
        findings += [await self._kernel_filesystem(name, required) for name, required in KERNEL_FILESYSTEMS]
        findings.append(self._disk_driver())
        findings.append(await self._instance())
        findings.append(self._device_dir())
        findings.append(await self._kubelet_dir())
        findings.append(self._volume_limit())
        return findings

    # -- tools and kernel ---------------------------------------------------------------------------

    async def _tool(self, tool: str, *, required: bool) -> Finding:
        check = f"tool {tool}"
        path = self._runner.which(tool)
        if path is None:
            if not required:
                return warn(check, "not installed: new disks are found by polling only",
                            "install udev in the image (the project's image has it)")
            return fail(check, "not installed: the node cannot format, mount or grow volumes",
                        "run the project's image, or install e2fsprogs, xfsprogs and util-linux")
        try:
            result = await self._runner.run([path, "-V"], timeout_seconds=_VERSION_TIMEOUT_SECONDS,
                                            ok_codes=range(256))
        except OsUtilError as exc:
            return fail(check, f"{path} does not run: {exc}", "reinstall the package that ships it")
        return ok(check, f"{path} ({_version(result.stdout + result.stderr) or 'version unknown'})")

    async def _kernel_filesystem(self, name: str, required: bool) -> Finding:
        check = f"kernel {name}"
        try:
            known = (self._proc / "filesystems").read_text().split()
        except OSError as exc:
            return warn(check, f"cannot read /proc/filesystems: {exc.strerror}", "run the doctor on the node")
        if name in known:
            return ok(check, "the kernel mounts it")
        modinfo = self._runner.which("modinfo")
        if modinfo is not None:
            try:
                found = await self._runner.run([modinfo, "-F", "filename", name],
                                               timeout_seconds=_VERSION_TIMEOUT_SECONDS)
                return ok(check, f"module {found.stdout.strip() or name} loads at the first mount")
            except OsUtilError:
                pass
        text = f"the kernel has no {name} and no {name} module was found"
        fix = f"install the kernel's {name} module (modprobe {name}) on the node"
        return fail(check, text, fix) if required else warn(check, f"{text}: {name} classes fail", fix)

    def _disk_driver(self) -> Finding:
        check = f"kernel {DISK_DRIVER}"
        if (self._sys_module / DISK_DRIVER).exists():
            return ok(check, "loaded: attached volumes appear as virtio disks")
        return warn(check, "not loaded: attached volumes cannot appear (fine on a machine that is not an "
                    "Xloud instance)", f"modprobe {DISK_DRIVER}")

    # -- identity -----------------------------------------------------------------------------------

    async def _instance(self) -> Finding:
        target = self._target
        if target.node_id and target.availability_zone:
            zone = target.availability_zone
            return ok("instance", f"node id {target.node_id}, zone {zone} (from the flags)")
        try:
            found = await self._metadata.from_config_drive()
            source = "config drive"
        except (OsUtilError, OSError, ValueError) as exc:
            found, source = None, f"config drive unreadable ({exc})"
        if found is None:
            try:
                found = await self._metadata.from_metadata_service()
                source = f"metadata service {target.metadata_url}"
            except OsUtilError as exc:
                return fail("instance", f"no config drive, and {exc}",
                            "let the pod reach the metadata service (hostNetwork), attach a config drive, "
                            "or pass --node-id and --availability-zone")
        return self._identity_finding(found, source)

    def _identity_finding(self, found: InstanceMetadata, source: str) -> Finding:
        node_id = self._target.node_id or found.instance_id
        zone = self._target.availability_zone or found.availability_zone
        if zone is None:
            return warn("instance", f"node id {node_id} from the {source}, but no availability zone: "
                        "volumes get no topology", "pass --availability-zone")
        return ok("instance", f"node id {node_id}, zone {zone} (from the {source})")

    # -- folders and limits -------------------------------------------------------------------------

    def _device_dir(self) -> Finding:
        folder = self._target.device_dir
        if not folder.is_dir():
            return fail("device dir", f"{folder} does not exist: no attached volume can be found",
                        "mount the host's /dev into the node plugin (hostPath /dev), or fix --device-dir")
        disks = self._virtio_disks()
        return ok("device dir", f"{folder} ({len(disks)} virtio disks)")

    async def _kubelet_dir(self) -> Finding:
        folder = self._target.kubelet_dir
        if not folder.is_dir():
            return fail("kubelet dir", f"{folder} does not exist", "set --kubelet-dir (chart value "
                        "kubeletDir) to where kubelet keeps its state on this distribution")
        if not os.access(folder, os.W_OK):
            return fail("kubelet dir", f"{folder} is not writable", "run the node plugin as root")
        try:
            holder = await self._mounter.containing(folder)
        except (OsUtilError, OSError) as exc:
            return warn("kubelet dir", f"cannot read the mount table: {exc}", "run it in the node plugin")
        if not holder.shared:
            return fail("kubelet dir", f"{folder} lies on mount {holder.mount_point} without shared "
                        "propagation: kubelet would not see what the plugin mounts",
                        "mount it with mountPropagation: Bidirectional (the chart does); on a host, "
                        "mount --make-rshared /")
        return ok("kubelet dir", f"{folder} is writable, mount {holder.mount_point} propagates (shared)")

    def _volume_limit(self) -> Finding:
        limit = self._target.max_volumes_per_node
        attached = len(self._virtio_disks())
        text = f"max {limit} volumes per node, {attached} attached now"
        if limit > DEFAULT_MAX_VOLUMES_PER_NODE:
            return warn("volume limit", f"{text}: above the {DEFAULT_MAX_VOLUMES_PER_NODE} virtio disks an "
                        "instance takes reliably; attaches past its PCI slots fail",
                        "lower --max-volumes-per-node")
        if attached >= limit * _NEAR_LIMIT_SHARE:
            return warn("volume limit", f"{text}: near the limit, the scheduler will soon keep pods away",
                        "move pods with volumes to other nodes, or add nodes")
        return ok("volume limit", text)

    def _virtio_disks(self) -> list[str]:
        try:
            return [name for name in os.listdir(self._target.device_dir) if name.startswith("virtio-")]
        except OSError:
            return []


def _version(text: str) -> str:
    """The first line of a tool's -V output, up to its version number when it has one."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    match = _VERSION.match(line)
    return match[0] if match else line
