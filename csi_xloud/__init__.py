"""csi-xloud: the Kubernetes CSI driver for Xloud Block Storage."""

__version__ = "0.1.0"

DRIVER_NAME = "block.csi.xloud.tech"
TOPOLOGY_KEY = "topology.block.csi.xloud.tech/zone"
