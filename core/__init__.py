"""The ground floor: the records and tables every other floor builds on.

Nothing here imports from the floors above (``hardware``, ``evals``, ``tasks``,
``registry``, ``flows``), and nothing here imports a heavy package at import
time, so every floor, every worker process and the CLI can stand on it.
"""
