"""The CSI node service over the OS layer (osutil)."""
