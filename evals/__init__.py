"""Quality: workloads (eval data), rubric scoring and the scorer plugins."""

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"  # the data this project ships (support FAQ and prompts)
