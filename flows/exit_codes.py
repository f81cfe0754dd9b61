"""The CLI's exit codes, in one place (README documents them)."""

MET = 0  # the champion meets every target (or: the command did what it was asked)
NOT_MET = 1  # the champion does not meet every target (or: some of the work failed)
INVALID = 2  # invalid input: one line on stderr, nothing computed, nothing written
INCONCLUSIVE = 3  # a verdict could not be reached: the machine was too noisy for a paired comparison to decide
