"""morphoflow.screen."""
