"""Normalisation and batch correction of well profiles, fitted on negative-control wells.

Two scikit-learn transforms over feature arrays, both fitted on control rows only:

- :class:`Standardize` -- per feature ``(x - center) / scale`` with the controls' mean and
  standard deviation, or (robust) their median and MAD;
- :class:`Spherize` -- ZCA whitening ``(x - mu) W`` with
  ``W = V diag(1 / sqrt(s + lam * mean(s))) V^T`` from the controls' covariance
  ``C = V diag(s) V^T`` (see the class for the convention of ``lam``).

and the DataFrame-level API that applies them per *scope* (whole screen, per source, per
plate), fitting on each scope group's own controls: :class:`PlateStandardizer`,
:func:`batch_correct`, plus :func:`feature_select` (run it before sphering) and
:func:`select_lambda` (sweep of the sphering regulariser).

Controls are the rows selected by a pandas expression, by default
``Metadata_ControlType == "negcon"`` (every kind of negative control, e.g. DMSO and untreated).

Example:
    >>> import pandas as pd
    >>> wells = pd.DataFrame({"Metadata_Plate": ["p1"] * 3,
    ...                       "Metadata_ControlType": ["negcon", "negcon", ""],
    ...                       "f": [1.0, 3.0, 6.0]})
    >>> batch_correct(wells, method="standardize", scope="plate")["f"].round(4).tolist()
    [-0.7071, 0.7071, 2.8284]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import median_abs_deviation
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from morphoflow.profiling.aggregate import feature_columns

#: Default selection of the control rows every correction is fitted on.
CONTROL_QUERY = 'Metadata_ControlType == "negcon"'

Method = Literal["none", "standardize", "robustize", "sphere"]
Scope = Literal["screen", "source", "plate"]
_METHODS: tuple[str, ...] = ("none", "standardize", "robustize", "sphere")
_SCOPES: tuple[str, ...] = ("screen", "source", "plate")
_MIN_CONTROLS = 2
_EPS = np.finfo(np.float64).eps


# --------------------------------------------------------------------------- estimators


class Standardize(TransformerMixin, BaseEstimator):
    """Per-feature standardisation fitted on control rows: ``(x - center_) / scale_``.

    ``method="standard"``: ``center_`` = mean, ``scale_`` = standard deviation (``ddof=1``, so
    the controls come out with sample standard deviation exactly 1). ``method="robust"``:
    ``center_`` = median, ``scale_`` = MAD * 1.4826 (consistent with the standard deviation for
    Gaussian data; pycytominer's ``robustize``).

    Zero-scale rule: a scale not larger than ``10 * eps * max(1, |center_|)`` (zero up to
    floating-point rounding; ``eps`` = 2.2e-16) is replaced by 1, so a feature that is constant
    on the controls is only centred, never divided by ~0 (scikit-learn's ``StandardScaler`` rule,
    made relative to the feature's magnitude). ``zero_scale_`` marks those features.

    Args:
        method: ``"standard"`` or ``"robust"``.
    """

    def __init__(self, method: Literal["standard", "robust"] = "standard") -> None:
        self.method = method

    def fit(self, X: Any, y: Any = None) -> Standardize:
        """Estimate center and scale of every feature from control rows.

        Args:
            X: Control rows (n_controls >= 2, n_features), finite.
            y: Ignored.

        Returns:
            self

        Raises:
            ValueError: If ``method`` is unknown or ``X`` has fewer than 2 rows or non-finite
                values.
        """
        if self.method not in ("standard", "robust"):
            raise ValueError(f"method must be 'standard' or 'robust', got {self.method!r}")
        X = _validate(self, X, reset=True)
        if self.method == "standard":
            center = X.mean(axis=0)
            scale = X.std(axis=0, ddof=1)
        else:
            center = np.median(X, axis=0)
            scale = median_abs_deviation(X, axis=0, scale="normal")
        zero = scale <= 10 * _EPS * np.maximum(1.0, np.abs(center))
        self.center_ = center
        self.scale_ = np.where(zero, 1.0, scale)
        self.zero_scale_ = zero
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Return ``(X - center_) / scale_``.

        Args:
            X: Rows to transform (n, n_features), finite.

        Returns:
            The standardised rows, float64.
        """
        check_is_fitted(self, "scale_")
        X = _validate(self, X, reset=False)
        return (X - self.center_) / self.scale_


class Spherize(TransformerMixin, BaseEstimator):
    """ZCA sphering (whitening) fitted on control rows: ``transform(X) = (X - mean_) W``.

    With the controls' covariance ``C = V diag(s) V^T`` (``ddof=1``),

        ``W = V diag(1 / sqrt(s + lam_)) V^T``,   ``lam_ = lam * mean(s) = lam * trace(C) / d``.

    **Convention for lam.** ``lam`` is *relative to the controls' mean variance* (the mean
    eigenvalue of ``C``, over all ``d`` features). Equivalently: all features are divided by
    one common factor so that the controls' average feature variance is 1, and ``lam`` is then
    an absolute ridge on that scale. So the result does not depend on the units of the
    features, and the usual sweep is meaningful for any feature extractor: ``lam = 1`` adds the
    average eigenvalue to every eigenvalue (strong shrinkage towards a plain rescaling),
    ``lam = 1e-8`` is whitening up to numerical noise. If the features were standardised on
    the controls first (:class:`Standardize`, ``batch_correct(method="standardize")``),
    ``mean(s) = 1`` and this is exactly pycytominer's ``ZCA-cor`` with absolute ``epsilon =
    lam``.

    Rank-deficient controls (``n_controls - 1 < d``) are the normal case for deep features and
    are what ``lam`` is for: directions the controls do not span (``s = 0``) get the finite gain
    ``1 / sqrt(lam_)``. The decomposition is computed from a thin SVD of the centred controls,
    so fitting costs O(min(n, d)^2 max(n, d)) and ``W`` (d x d) is never formed for
    :meth:`transform`; :attr:`whitening_matrix_` builds it on request.

    ``W`` is symmetric (ZCA, not PCA whitening): the output keeps the input's feature axes,
    which is what keeps feature names meaningful and makes the result the whitening closest to
    the input (Kessy et al. 2018).

    Attributes:
        mean_: Control mean (n_features,).
        components_: Right singular vectors of the centred controls, (k, n_features) with
            k = min(n_controls, n_features).
        eigenvalues_: Covariance eigenvalues along ``components_`` (k,), descending.
        scale_: Mean control variance ``trace(C) / d`` that ``lam`` is relative to.
        lam_: Absolute regulariser ``lam * scale_``.

    Args:
        lam: Regulariser, > 0, relative to the controls' mean variance (see above).
        center: Subtract ``mean_`` before whitening (the covariance is centred either way).
    """

    def __init__(self, lam: float = 1e-2, center: bool = True) -> None:
        self.lam = lam
        self.center = center

    def fit(self, X: Any, y: Any = None) -> Spherize:
        """Estimate mean and covariance decomposition of the control rows.

        Args:
            X: Control rows (n_controls >= 2, n_features), finite.
            y: Ignored.

        Returns:
            self

        Raises:
            ValueError: If ``lam`` is not a positive finite number, ``X`` has fewer than 2 rows
                or non-finite values, or the controls do not vary in any feature.
        """
        lam = _check_lam(self.lam, "lam")
        X = _validate(self, X, reset=True)
        n, d = X.shape
        mean = X.mean(axis=0)
        _, sv, vt = np.linalg.svd(X - mean, full_matrices=False)
        eig = sv**2 / (n - 1)
        scale = float(eig.sum()) / d
        if not scale > 0:
            raise ValueError("X: the control rows are identical; sphering needs variation")
        self.mean_ = mean
        self.components_ = vt
        self.eigenvalues_ = eig
        self.scale_ = scale
        self.lam_ = lam * scale
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Return ``(X - mean_) W`` (``X W`` when ``center=False``).

        Args:
            X: Rows to transform (n, n_features), finite.

        Returns:
            The sphered rows, float64.
        """
        check_is_fitted(self, "components_")
        X = _validate(self, X, reset=False)
        return self._apply(X, self.lam_)

    def _apply(self, X: np.ndarray, lam_abs: float) -> np.ndarray:
        """Sphere ``X`` with the fitted decomposition and an absolute regulariser."""
        xc = X - self.mean_ if self.center else X
        vt = self.components_
        proj = xc @ vt.T
        out = (proj / np.sqrt(self.eigenvalues_ + lam_abs)) @ vt
        if vt.shape[0] < vt.shape[1]:  # the controls' null space: gain 1 / sqrt(lam_abs)
            out += (xc - proj @ vt) / np.sqrt(lam_abs)
        return out

    @property
    def whitening_matrix_(self) -> np.ndarray:
        """The symmetric whitening matrix ``W`` (n_features x n_features)."""
        check_is_fitted(self, "components_")
        vt = self.components_
        d = vt.shape[1]
        w = (vt.T / np.sqrt(self.eigenvalues_ + self.lam_)) @ vt
        if vt.shape[0] < d:
            w += (np.eye(d) - vt.T @ vt) / np.sqrt(self.lam_)
        return (w + w.T) / 2


def _validate(est: BaseEstimator, X: Any, *, reset: bool) -> np.ndarray:
    name = type(est).__name__
    arr = validate_data(
        est, X, reset=reset, dtype=np.float64, ensure_all_finite=False, ensure_min_samples=1
    )
    if not np.isfinite(arr).all():
        raise ValueError(f"X: {name} needs finite values (run feature_select first)")
    if reset and arr.shape[0] < _MIN_CONTROLS:
        raise ValueError(
            f"X: {name} needs at least {_MIN_CONTROLS} control rows, got {arr.shape[0]}"
        )
    return np.asarray(arr, dtype=np.float64)


def _check_lam(lam: float, name: str) -> float:
    value = float(lam)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {lam!r}")
    return value


# --------------------------------------------------------------------------- scoped helpers


def control_mask(df: pd.DataFrame, control_query: str = CONTROL_QUERY) -> np.ndarray:
    """Boolean mask of the control rows of a profile table.

    Args:
        df: Profile table.
        control_query: pandas expression (``DataFrame.eval``) that is true on control rows.

    Returns:
        Boolean array (len(df),).

    Raises:
        ValueError: If ``control_query`` cannot be evaluated or is not a boolean row mask.
    """
    try:
        result = df.eval(control_query)
    except Exception as exc:  # pandas raises many types for a bad expression
        raise ValueError(f"control_query {control_query!r} could not be evaluated: {exc}") from exc
    mask = np.asarray(result)
    if mask.shape != (len(df),) or mask.dtype != bool:
        raise ValueError(f"control_query {control_query!r} does not give one boolean per row")
    return mask


def _scope_columns(df: pd.DataFrame, scope: str) -> list[str]:
    if scope not in _SCOPES:
        raise ValueError(f"scope must be one of {_SCOPES}, got {scope!r}")
    if scope == "screen":
        return []
    if scope == "source":
        columns = ["Metadata_Source"]
    else:  # plate names are only unique within a source
        columns = [c for c in ("Metadata_Source", "Metadata_Plate") if c in df.columns]
        if "Metadata_Plate" not in columns:
            columns = ["Metadata_Plate"]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"scope {scope!r} needs the columns {missing}")
    return columns


def _scope_groups(df: pd.DataFrame, scope: str) -> list[tuple[tuple[Any, ...], np.ndarray]]:
    """(group key, row positions) per scope group, in sorted key order."""
    columns = _scope_columns(df, scope)
    if not columns:
        return [(("screen",), np.arange(len(df)))]
    indices = df.groupby(columns, sort=True, dropna=False).indices
    return [(k if isinstance(k, tuple) else (k,), np.asarray(v)) for k, v in indices.items()]


def _finite_features(df: pd.DataFrame, name: str) -> tuple[list[str], np.ndarray]:
    features = feature_columns(df)
    if not features:
        raise ValueError(f"{name} has no feature columns")
    bad = [c for c in features if not pd.api.types.is_numeric_dtype(df[c].dtype)]
    if bad:
        raise ValueError(f"{name}: feature columns must be numeric, not: {bad[:10]}")
    values = df[features].to_numpy(dtype=np.float64)
    finite = np.isfinite(values).all(axis=0)
    if not finite.all():
        bad = [f for f, ok in zip(features, finite, strict=True) if not ok]
        raise ValueError(
            f"{name}: features with NaN/inf values (drop them with feature_select): {bad[:10]}"
        )
    return features, values


def _make(method: str, lam: float) -> Standardize | Spherize:
    if method == "standardize":
        return Standardize("standard")
    if method == "robustize":
        return Standardize("robust")
    return Spherize(lam=lam)


def _fit_groups(
    df: pd.DataFrame,
    values: np.ndarray,
    method: str,
    scope: str,
    lam: float,
    control_query: str,
) -> list[tuple[tuple[Any, ...], np.ndarray, Standardize | Spherize]]:
    """Fit one estimator per scope group on its control rows: (key, rows, estimator)."""
    controls = control_mask(df, control_query)
    fitted = []
    for key, rows in _scope_groups(df, scope):
        ctrl = rows[controls[rows]]
        label = "the screen" if scope == "screen" else f"group {_label(key)}"
        if len(ctrl) < _MIN_CONTROLS:
            raise ValueError(
                f"scope {scope!r}: {label} has {len(ctrl)} control rows "
                f"({control_query}); {method} needs at least {_MIN_CONTROLS}"
            )
        try:
            est = _make(method, lam).fit(values[ctrl])
        except ValueError as exc:
            raise ValueError(f"scope {scope!r}: {label}: {exc}") from exc
        fitted.append((key, rows, est))
    return fitted


def _label(key: tuple[Any, ...]) -> str:
    return "/".join(map(str, key))


# --------------------------------------------------------------------------- DataFrame API


class PlateStandardizer(TransformerMixin, BaseEstimator):
    """Per-plate standardisation on the plate's own control wells (a DataFrame transform).

    For every plate, ``(x - center) / scale`` with the mean and standard deviation (or, with
    ``method="robust"``, median and MAD * 1.4826) of *that plate's* control rows; zero scales
    become 1 (see :class:`Standardize`). Plates are identified by
    ``(Metadata_Source, Metadata_Plate)`` when the table has a source column.

    Example:
        >>> import pandas as pd
        >>> wells = pd.DataFrame({"Metadata_Plate": ["p1", "p1", "p1", "p2", "p2"],
        ...                       "Metadata_ControlType": ["negcon", "negcon", "", "negcon",
        ...                                                "negcon"],
        ...                       "f": [1.0, 3.0, 5.0, 10.0, 10.0]})
        >>> PlateStandardizer().fit_transform(wells)["f"].round(4).tolist()
        [-0.7071, 0.7071, 2.1213, 0.0, 0.0]

    Args:
        method: ``"standard"`` or ``"robust"``.
        control_query: pandas expression selecting the control rows.
    """

    def __init__(
        self,
        method: Literal["standard", "robust"] = "standard",
        control_query: str = CONTROL_QUERY,
    ) -> None:
        self.method = method
        self.control_query = control_query

    def fit(self, X: pd.DataFrame, y: Any = None) -> PlateStandardizer:
        """Fit one :class:`Standardize` per plate on its control rows.

        Args:
            X: Well profiles with ``Metadata_Plate`` (and optionally ``Metadata_Source``).
            y: Ignored.

        Returns:
            self

        Raises:
            ValueError: If ``method`` is unknown, features are not finite, or a plate has
                fewer than 2 control rows (the message names the plate).
        """
        if self.method not in ("standard", "robust"):
            raise ValueError(f"method must be 'standard' or 'robust', got {self.method!r}")
        features, values = _finite_features(X, "X")
        method = "standardize" if self.method == "standard" else "robustize"
        fitted = _fit_groups(X, values, method, "plate", 0.0, self.control_query)
        self.plate_columns_ = _scope_columns(X, "plate")
        self.features_ = features
        self.standardizers_ = {key: est for key, _, est in fitted}
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Standardise every row with its plate's fitted controls.

        Args:
            X: Well profiles with the fitted feature columns and plate columns.

        Returns:
            A copy of ``X`` with the features standardised (float64); metadata unchanged.

        Raises:
            ValueError: If a plate was not seen in :meth:`fit` or features differ.
        """
        check_is_fitted(self, "standardizers_")
        features, values = _finite_features(X, "X")
        if features != self.features_:
            raise ValueError("X: feature columns differ from those seen in fit")
        out = values.copy()
        for key, rows in _scope_groups(X, "plate"):
            est = self.standardizers_.get(key)
            if est is None:
                raise ValueError(f"X: plate {_label(key)} was not seen in fit")
            out[rows] = est.transform(values[rows])
        result = X.copy()
        result[features] = out
        return result


def batch_correct(
    well_profiles: pd.DataFrame,
    method: Method = "sphere",
    scope: Scope = "screen",
    lam: float = 1e-2,
    control_query: str = CONTROL_QUERY,
) -> pd.DataFrame:
    """Correct well profiles per scope group with a transform fitted on that group's controls.

    Args:
        well_profiles: Well-level profiles (``Metadata_*`` + finite numeric features).
        method: ``"none"`` (copy), ``"standardize"`` (mean/std), ``"robustize"`` (median/MAD)
            or ``"sphere"`` (:class:`Spherize` with ``lam``).
        scope: Fit separately per ``"screen"`` (one fit), ``"source"`` (``Metadata_Source``)
            or ``"plate"`` (``Metadata_Source`` + ``Metadata_Plate``).
        lam: Sphering regulariser, relative to the controls' mean variance (see
            :class:`Spherize`); used only by ``"sphere"``.
        control_query: pandas expression selecting the control rows (default: every
            ``negcon`` row, whatever its treatment).

    Returns:
        A copy of ``well_profiles`` with the same rows, index and metadata, features
        transformed (float64, same names: ZCA keeps the feature axes).

    Raises:
        ValueError: If ``method``/``scope`` is unknown, ``lam`` is not positive, features are
            not finite, or a scope group has fewer than 2 control rows (the message names the
            scope and the group).
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    _scope_columns(well_profiles, scope)
    if method == "none":
        return well_profiles.copy()
    if method == "sphere":
        _check_lam(lam, "lam")
    features, values = _finite_features(well_profiles, "well_profiles")
    out = np.empty_like(values)
    for _, rows, est in _fit_groups(well_profiles, values, method, scope, lam, control_query):
        out[rows] = est.transform(values[rows])
    result = well_profiles.copy()
    result[features] = out
    return result


def feature_select(
    df: pd.DataFrame,
    controls_mask: Any = None,
    *,
    freq_cut: float = 0.05,
    unique_cut: float = 0.01,
    correlation_threshold: float | None = None,
) -> list[str]:
    """Choose the features worth keeping before sphering (fitted on the data given).

    A feature is dropped when

    1. it has a NaN or infinite value in *any* row of ``df``;
    2. it is constant on the fit rows (``controls_mask`` rows, else all rows);
    3. it has near-zero variance on the fit rows, pycytominer's ``variance_threshold``:
       (count of its second most common value) / (count of the most common) < ``freq_cut``,
       *or* (number of distinct values) / (number of rows) < ``unique_cut``;
    4. with ``correlation_threshold``, for every pair of remaining features with Pearson
       ``|r| > correlation_threshold`` on the fit rows, the member with the larger sum of
       ``|r|`` over all remaining features (pycytominer's rule, on absolute correlation).

    Args:
        df: Profile table.
        controls_mask: Optional boolean mask (len(df),) of the rows the variance and
            correlation criteria are computed on, e.g. the negative controls the sphering is
            fitted on; at least 2 rows.
        freq_cut: Threshold of criterion 3 (0 disables the frequency test).
        unique_cut: Threshold of criterion 3 (0 disables the distinct-value test).
        correlation_threshold: In (0, 1], or None to skip criterion 4.

    Returns:
        The kept feature names, in ``df`` order.

    Raises:
        ValueError: If an argument is out of range or ``controls_mask`` is not a boolean mask of
            ``df``'s rows selecting at least 2 rows.
    """
    if not 0 <= freq_cut <= 1:
        raise ValueError(f"freq_cut must be in [0, 1], got {freq_cut!r}")
    if not 0 <= unique_cut <= 1:
        raise ValueError(f"unique_cut must be in [0, 1], got {unique_cut!r}")
    if correlation_threshold is not None and not 0 < correlation_threshold <= 1:
        raise ValueError(
            f"correlation_threshold must be in (0, 1] or None, got {correlation_threshold!r}"
        )
    features = feature_columns(df)
    bad = [c for c in features if not pd.api.types.is_numeric_dtype(df[c].dtype)]
    if bad:
        raise ValueError(f"df: feature columns must be numeric, not: {bad[:10]}")
    rows = _row_mask(controls_mask, len(df), "controls_mask")
    if rows.sum() < 2:
        raise ValueError(f"controls_mask selects {int(rows.sum())} rows; at least 2 are needed")

    values = df[features].to_numpy(dtype=np.float64)
    keep = np.isfinite(values).all(axis=0)
    fit = values[rows]
    n = fit.shape[0]
    for j in np.flatnonzero(keep):
        column = fit[:, j]
        counts = np.sort(np.unique(column, return_counts=True)[1])[::-1]
        if len(counts) < 2:  # constant
            keep[j] = False
        elif counts[1] / counts[0] < freq_cut or len(counts) / n < unique_cut:
            keep[j] = False
    if correlation_threshold is not None and keep.sum() > 1:
        idx = np.flatnonzero(keep)
        corr = np.abs(np.corrcoef(fit[:, idx], rowvar=False))
        np.fill_diagonal(corr, 0.0)
        total = corr.sum(axis=0)
        ii, jj = np.nonzero(np.triu(corr > correlation_threshold, k=1))
        for a, b in zip(ii, jj, strict=True):
            # drop the member of the pair more correlated with everything; ties: the later one
            keep[idx[a] if total[a] > total[b] else idx[b]] = False
    return [f for f, k in zip(features, keep, strict=True) if k]


def _row_mask(mask: Any, n: int, name: str) -> np.ndarray:
    if mask is None:
        return np.ones(n, dtype=bool)
    arr = np.asarray(mask)
    if arr.shape != (n,) or arr.dtype != bool:
        raise ValueError(f"{name} must be a boolean array with one value per row ({n})")
    return arr


def select_lambda(
    well_profiles: pd.DataFrame,
    lambdas: Sequence[float],
    score_fn: Callable[[pd.DataFrame], float],
    selection_mask: Any,
    *,
    scope: Scope = "screen",
    control_query: str = CONTROL_QUERY,
) -> tuple[float, pd.DataFrame]:
    """Choose the sphering regulariser by a score on a selection of rows.

    For every ``lam``, the table is sphered exactly as by
    ``batch_correct(well_profiles, "sphere", scope, lam, control_query)`` and
    ``score_fn(corrected[selection_mask])`` is recorded (higher is better, e.g. the MoA
    retrieval mAP of the selected treatments). Only the selected rows reach ``score_fn``; the
    sphering itself is fitted on the controls of the whole table (they carry no labels).

    lam is a hyper-parameter: it must be selected on treatments (or plates) *other than* those
    the final result is reported on, otherwise the reported score is optimistically biased.
    Keeping the selection and reporting rows disjoint is the caller's responsibility: pass the
    selection treatments here and report on the complement.

    Args:
        well_profiles: Well profiles with finite features.
        lambdas: Candidate values (> 0), relative to the controls' mean variance (see
            :class:`Spherize`), e.g. ``[1, 1e-1, ..., 1e-8]``.
        score_fn: Maps the corrected selection rows (a DataFrame, metadata included) to a float.
        selection_mask: Boolean mask (len(well_profiles),) of the rows to score (positional).
        scope: Sphering scope (see :func:`batch_correct`).
        control_query: pandas expression selecting the control rows.

    Returns:
        (best lam, table with columns ``lam`` and ``score`` in ``lambdas`` order). Ties go to
        the first in ``lambdas``; NaN scores never win.

    Raises:
        ValueError: If ``lambdas`` is empty or not positive, ``selection_mask`` is not a
            non-empty boolean row mask, every score is NaN, or batch correction fails.
    """
    lams = [_check_lam(v, "lambdas") for v in lambdas]
    if not lams:
        raise ValueError("lambdas is empty")
    rows = _row_mask(selection_mask, len(well_profiles), "selection_mask")
    if not rows.any():
        raise ValueError("selection_mask selects no rows")
    _scope_columns(well_profiles, scope)
    features, values = _finite_features(well_profiles, "well_profiles")
    # The decomposition does not depend on lam: fit once per group, re-apply per lam.
    fitted = _fit_groups(well_profiles, values, "sphere", scope, lams[0], control_query)
    scores = []
    for lam in lams:
        out = np.empty_like(values)
        for _, group_rows, est in fitted:
            assert isinstance(est, Spherize)
            out[group_rows] = est._apply(values[group_rows], lam * est.scale_)
        corrected = well_profiles.copy()
        corrected[features] = out
        scores.append(float(score_fn(corrected[rows])))
    table = pd.DataFrame({"lam": lams, "score": scores})
    valid = table["score"].notna()
    if not valid.any():
        raise ValueError("score_fn returned NaN for every lambda")
    best = int(table.loc[valid, "score"].idxmax())  # first maximum
    return float(table.loc[best, "lam"]), table
