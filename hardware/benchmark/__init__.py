"""Latency benchmarking: MLPerf-LoadGen-style scenarios and statistics."""
