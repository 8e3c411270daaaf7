"""Evaluation of profiles: retrieval mAP, permutation p-values, enrichment, replicate QC, plots.

Three modules, as copairs keeps metrics apart from plotting: :mod:`.retrieval` (similarity,
AP, mAP with p-values, interpolated mAP, replicate reproducibility), :mod:`.enrichment` (folds
of enrichment) and :mod:`.plots`; everything public is re-exported here.

Profile tables follow the pycytominer convention: columns starting with ``Metadata_`` are
metadata, every other column is a numeric feature. Treatment-level profiles carry
``Metadata_Treatment`` and ``Metadata_MoA``; controls may have an empty MoA and null (inactive)
treatments the MoA ``"inactive"``.

Retrieval setup shared by :func:`retrieval_ap`, :func:`interpolated_map` and
:func:`folds_of_enrichment`:

- **Similarity**: cosine similarity of the feature vectors (rows L2-normalised; an all-zero row
  has similarity 0 with every profile).
- **Queries**: profiles whose label is not excluded (``exclude_labels``; a missing/NaN label
  counts as excluded) and that have at least one *other* profile with the same label.
- **Candidates** of a query: every other profile of the table -- the query itself is never
  ranked. **Positives** are the candidates with the query's label; **negatives** are all the
  other candidates, *including profiles whose label is excluded* (e.g. ``"inactive"``
  treatments or controls with an empty MoA): they are never queries and never positives, but
  they are negatives for every query, so a method that puts an inactive compound next to an
  active one is penalised.
- **Ties** (``mode="exact"``, the default): candidates are ranked by descending float64
  similarity; candidates with exactly equal similarity keep the order of their rows in the
  table (a stable sort), so results are deterministic and do not depend on the labels.

Agreement with copairs (``copairs.map.average_precision`` with ``pos_sameby=[label]``,
``neg_diffby=[label]``): copairs has no "negative-only" label, so it matches our candidate set
when each excluded profile is given a unique label (then it has no positive pair, is never a
query, and is a negative for everybody). On that input our per-query AP equals copairs' to
1e-9 whenever no two candidates of a query tie. copairs ranks float32 similarities (its sort
key is ``float32(1 - sim)``) and breaks ties *positives first* (its ``build_rank_lists``
lexsort is stable over positive pairs listed before negative pairs); ``mode="copairs"``
reproduces exactly that ranking, including ties created by float32 rounding.

No kedro, mlflow, great_expectations or tritonclient here: numpy, pandas and scipy only
(scikit-learn and matplotlib are imported lazily by the plot helpers).
"""

from morphoflow.profiling.evaluation.enrichment import folds_of_enrichment
from morphoflow.profiling.evaluation.plots import plot_embedding, plot_pr_curves
from morphoflow.profiling.evaluation.retrieval import (
    DEFAULT_EXCLUDE_LABELS,
    METADATA_PREFIX,
    Mode,
    average_precision,
    cosine_similarity_matrix,
    feature_columns,
    interpolated_map,
    interpolated_precision,
    mean_average_precision,
    replicate_reproducibility,
    retrieval_ap,
)

__all__ = [
    "DEFAULT_EXCLUDE_LABELS",
    "METADATA_PREFIX",
    "Mode",
    "average_precision",
    "cosine_similarity_matrix",
    "feature_columns",
    "folds_of_enrichment",
    "interpolated_map",
    "interpolated_precision",
    "mean_average_precision",
    "plot_embedding",
    "plot_pr_curves",
    "replicate_reproducibility",
    "retrieval_ap",
]
