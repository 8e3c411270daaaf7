"""morphoflow.learning."""
