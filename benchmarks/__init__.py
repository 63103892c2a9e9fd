"""Performance benchmarks of `lifecycle`: run ``python -m benchmarks`` (see `benchmarks.run`)."""
