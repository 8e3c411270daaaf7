"""morphoflow.assembly: strong-treatment selection and the combined training set.

- :func:`phenotype_strength` / :func:`control_null` (:mod:`.strength`): per (source,
  treatment), the distance of the replicate mean from the negative controls against a
  control-to-control null.
- :func:`select_strong`, :func:`harmonise`, :func:`combined_index`, :func:`manifest`,
  :func:`content_hash` (:mod:`.combined`): the cells of strong treatments plus both kinds of
  negative control, labelled by class, and a JSON description with a content hash.
"""

from __future__ import annotations

from morphoflow.assembly.combined import (
    combined_index,
    content_hash,
    harmonise,
    manifest,
    select_strong,
)
from morphoflow.assembly.strength import control_null, phenotype_strength

__all__ = [
    "combined_index",
    "content_hash",
    "control_null",
    "harmonise",
    "manifest",
    "phenotype_strength",
    "select_strong",
]
