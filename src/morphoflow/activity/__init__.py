"""morphoflow.activity."""
