"""Python-backend model files copied into a Triton model repository as ``<version>/model.py``.

They run inside Triton's python backend stub, where ``triton_python_backend_utils`` exists;
they are not imported by the rest of morphoflow.
"""
