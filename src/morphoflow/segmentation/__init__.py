"""morphoflow.segmentation."""
