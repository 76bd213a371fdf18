"""The benchmark: the exporter against the stack's ceiling, measured in one run."""
