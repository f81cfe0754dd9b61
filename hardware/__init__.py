"""Hardware selection: runtimes, benchmarks and cost measurement."""
