"""morphoflow.serving."""
