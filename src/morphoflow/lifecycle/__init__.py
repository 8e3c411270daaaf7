"""morphoflow.lifecycle."""
