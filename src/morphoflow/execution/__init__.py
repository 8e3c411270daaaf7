"""Running per-partition work (plates) sequentially or on a Dask distributed cluster.

:func:`~morphoflow.execution.runner.run_partitions` maps one function over named partitions;
:class:`~morphoflow.execution.settings.ExecutionSettings` is the ``execution:`` parameters
block; :mod:`morphoflow.execution.store` keeps each partition's outputs under the screen's key,
written atomically with the fingerprint that makes re-runs resume.
"""
