"""A local Xloud: Identity, Storage and Compute APIs with real data, for the demo, tests and benchmarks."""
