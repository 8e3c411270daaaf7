"""morphoflow.pipelines."""
