"""Operators' tools: `csi-xloud doctor` (checks of the cloud and the node) and `csi-xloud classes`."""
