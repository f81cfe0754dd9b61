"""Units of work the flow runs: techniques (plugins), variants, measurement and gates."""
