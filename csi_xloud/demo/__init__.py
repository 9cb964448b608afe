"""The demo harness: the emulated cluster and the kubelet/sidecar stand-ins the demo and e2e tests drive."""
