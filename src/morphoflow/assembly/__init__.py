"""morphoflow.assembly."""
