"""The CSI controller service and the workers it delegates to."""
