"""csi-xloud: the Kubernetes CSI driver for Xloud Block Storage."""

__version__ = "0.1.0"

DRIVER_NAME = "block.csi.xloud.tech"
TOPOLOGY_KEY = "topology.block.csi.xloud.tech/zone"

GIB = 1 << 30  # volumes come in whole GiB

# publish_context keys: ControllerPublishVolume writes them, NodeStageVolume and NodePublishVolume read them.
DEVICE_PATH_KEY = "device_path"  # where Compute says the disk appeared; only a hint (by-id names come first)
SIZE_GIB_KEY = "size_gib"  # the volume's size at attach time, so the node waits until the disk shows it
