"""The node OS layer: devices, blkid, mkfs, mount, resize, statvfs. Knows nothing of CSI."""
