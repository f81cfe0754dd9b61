"""Quality: workloads (eval data), rubric scoring and the scorer plugins."""
