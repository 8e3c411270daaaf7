"""morphoflow.profiling."""
