"""The floor plan: which folder of the checkout is which floor of the ``ratchet`` package, lowest first.

Each floor is a top-level folder installed as ``ratchet.<folder>`` (pyproject's
``package-dir``). A module may import its own floor and the floors below it,
never one above: ``tests/test_layering.py`` enforces it on every import
statement, and README's layout table follows this order.
"""

from __future__ import annotations

from pathlib import Path

FLOORS = ("core", "hardware", "evals", "tasks", "registry", "flows")
# The checkout's root (examples, the default work folders): the folder that holds the floors.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
