"""gRPC plumbing: the server, interceptors (request ids, logs, metrics), the one error table, log set-up."""
