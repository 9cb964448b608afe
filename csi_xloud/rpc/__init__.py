"""gRPC plumbing: the server, interceptors, the one error table, request ids, logs and metrics."""
