"""Gated promotion and rollback of registered models, with every decision recorded.

Aliases (never stages): ``champion`` (what pipelines and serving use), ``challenger`` (the
newest registered version), ``previous-champion`` (what :func:`rollback` restores).

:func:`promote` takes the candidate (a version, or the ``challenger``) through two gates:

1. parity: the candidate's ``parity_passed`` tag must be ``true`` (the ONNX export matched
   torch within its tolerance); a missing or failed tag is refused;
2. quality: both the candidate and the champion are scored, through onnxruntime, on a frozen
   held-out set (:mod:`.heldout`, verified file by file against its manifest first) with the
   metric of the model kind (:mod:`.evaluate`: DSB 2018 score with 8-view TTA for
   ``segmentation``, MoA mAP for ``featurizer``); the candidate is refused when its score is
   below the champion's by more than ``margin``.

With no champion yet only the parity gate applies (the candidate is still scored when a
held-out set exists, as the baseline for the next promotion).

Every decision (``promoted``, ``refused``, ``unchanged``, ``rollback``) is recorded twice: as
``promotion.*`` tags on the model version, and as a run of the ``morphoflow-promotions``
experiment (params, metrics, and a one-line ``decision.txt``).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from morphoflow.lifecycle.evaluate import SEGMENTATION_METRIC_VIEWS
from morphoflow.lifecycle.registry import (
    CHALLENGER,
    CHAMPION,
    MODEL_KINDS,
    PREVIOUS_CHAMPION,
    now_iso,
)

PROMOTION_EXPERIMENT = "morphoflow-promotions"
#: Default largest score drop (candidate below champion) still promoted.
DEFAULT_MARGIN = 0.01
_MAX_TAG = 4000


@dataclass(frozen=True)
class PromotionDecision:
    """What :func:`promote` or :func:`rollback` decided.

    Attributes:
        model: Registered model name.
        decision: ``promoted``, ``refused``, ``unchanged`` (the candidate already is champion)
            or ``rollback``.
        candidate_version: The version promoted, refused, or restored by a rollback.
        champion_version: The champion before the decision (None when there was none).
        candidate_score: The candidate's held-out score (None when not scored).
        champion_score: The champion's held-out score (None when not scored).
        metric: ``dsb_score`` or ``moa_map`` ("" when nothing was scored).
        margin: The allowed score drop.
        reason: One line saying why.
        timestamp: UTC, ISO 8601.
        heldout: The held-out folder used ("" when none).
        heldout_digest: SHA-256 of its manifest ("" when none).
        run_id: The MLflow run that records the decision.
        aliases: Alias -> version after the decision.
    """

    model: str
    decision: str
    candidate_version: int | None
    champion_version: int | None
    candidate_score: float | None
    champion_score: float | None
    metric: str
    margin: float
    reason: str
    timestamp: str
    heldout: str = ""
    heldout_digest: str = ""
    run_id: str = ""
    aliases: dict[str, int] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        """The candidate is champion now (``promoted``, ``unchanged`` or ``rollback``)."""
        return self.decision != "refused"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    def line(self) -> str:
        """The decision as one line of text."""
        scores = ""
        if self.candidate_score is not None:
            scores = f"; {self.metric} candidate {self.candidate_score:.4f}"
            if self.champion_score is not None:
                scores += f" vs champion {self.champion_score:.4f} (margin {self.margin:g})"
        return (
            f"{self.timestamp} {self.model} v{self.candidate_version}: {self.decision}"
            f"{scores}: {self.reason}"
        )


class PromotionRefused(RuntimeError):
    """A gate refused the candidate; ``decision`` holds the recorded decision."""

    def __init__(self, decision: PromotionDecision) -> None:
        super().__init__(decision.line())
        self.decision = decision


class RollbackImpossible(ValueError):
    """There is no champion, or no previous champion to restore."""


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def _alias_version(client: Any, name: str, alias: str) -> Any | None:
    import mlflow

    try:
        return client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None


def _aliases(client: Any, name: str) -> dict[str, int]:
    return {k: int(v) for k, v in client.get_registered_model(name).aliases.items()}


def _require_model(client: Any, name: str) -> None:
    import mlflow

    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        raise ValueError(
            f"no registered model named {name!r} in {mlflow.get_tracking_uri()}"
        ) from None


def _experiment_id(client: Any) -> str:
    experiment = client.get_experiment_by_name(PROMOTION_EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(PROMOTION_EXPERIMENT)


def _record(client: Any, decision: PromotionDecision) -> PromotionDecision:
    """Write the decision as an MLflow run and as tags on the candidate version."""
    run = client.create_run(
        _experiment_id(client),
        run_name=f"{decision.decision} {decision.model} v{decision.candidate_version}",
        tags={"morphoflow.model": decision.model, "morphoflow.decision": decision.decision},
    )
    run_id = run.info.run_id
    params = {
        "model": decision.model,
        "decision": decision.decision,
        "candidate_version": decision.candidate_version,
        "champion_version": decision.champion_version,
        "metric": decision.metric,
        "margin": decision.margin,
        "heldout": decision.heldout,
        "heldout_sha256": decision.heldout_digest,
    }
    for key, value in params.items():
        client.log_param(run_id, key, "" if value is None else str(value)[:_MAX_TAG])
    for key, value in (
        ("candidate_score", decision.candidate_score),
        ("champion_score", decision.champion_score),
    ):
        if value is not None:
            client.log_metric(run_id, key, float(value))
    if decision.candidate_score is not None and decision.champion_score is not None:
        client.log_metric(
            run_id, "score_difference", float(decision.candidate_score - decision.champion_score)
        )
    client.set_tag(run_id, "morphoflow.reason", decision.reason[:_MAX_TAG])
    recorded = PromotionDecision(**{**asdict(decision), "run_id": run_id})
    client.log_text(run_id, recorded.line() + "\n", "decision.txt")
    client.log_dict(run_id, recorded.to_dict(), "decision.json")
    client.set_terminated(run_id)
    if decision.candidate_version is not None:
        tags = {
            "promotion.decision": decision.decision,
            "promotion.reason": decision.reason,
            "promotion.score": decision.candidate_score,
            "promotion.champion_score": decision.champion_score,
            "promotion.champion_version": decision.champion_version,
            "promotion.metric": decision.metric,
            "promotion.margin": decision.margin,
            "promotion.timestamp": decision.timestamp,
            "promotion.heldout_sha256": decision.heldout_digest,
            "promotion.run_id": run_id,
        }
        for key, value in tags.items():
            text = "" if value is None else str(value)
            client.set_model_version_tag(
                decision.model, str(decision.candidate_version), key, text[:_MAX_TAG]
            )
    return recorded


def _parity_problem(tags: dict[str, str]) -> str | None:
    passed = tags.get("parity_passed")
    if passed is None or "parity_max_abs_diff" not in tags:
        return "no parity check recorded (tags parity_passed / parity_max_abs_diff missing)"
    if passed.lower() != "true":
        return (
            f"parity check failed: ONNX differs from torch by {tags['parity_max_abs_diff']} "
            f"(tolerance {tags.get('parity_tolerance', '?')})"
        )
    return None


def candidate_kind(name: str, version: int | None = None) -> str | None:
    """The ``model_kind`` tag of a version (default: the ``challenger``); None when unknown."""
    import mlflow

    client = _client()
    if version is None:
        candidate = _alias_version(client, name, CHALLENGER)
    else:
        try:
            candidate = client.get_model_version(name, str(int(version)))
        except mlflow.exceptions.MlflowException:
            return None
    return None if candidate is None else candidate.tags.get("model_kind")


def download_onnx(name: str, version: int, dst: str | Path) -> Path:
    """Download a registered version's artifacts into ``dst``; return its ``.onnx`` file.

    Raises:
        ValueError: The version holds no ONNX file.
    """
    import mlflow

    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=str(dst)
        )
    )
    files = [local] if local.is_file() else sorted(local.rglob("*.onnx"))
    if not files:
        raise ValueError(f"models:/{name}/{version} holds no .onnx file")
    return files[0]


def evaluate_version(
    name: str,
    version: int,
    heldout: str | Path,
    model_kind: str | None = None,
    views: int = SEGMENTATION_METRIC_VIEWS,
) -> Any:
    """Score a registered version on a frozen held-out set (see :mod:`.evaluate`).

    Args:
        name: Registered model name.
        version: Its version.
        heldout: The held-out folder (verified against its manifest).
        model_kind: Default: the version's ``model_kind`` tag.
        views: TTA views of the segmentation metric.

    Returns:
        The :class:`~morphoflow.lifecycle.evaluate.EvaluationScore`.

    Raises:
        ValueError: Unknown model kind, or no ONNX file.
        HeldoutError: The held-out set is missing or changed.
    """
    from morphoflow.lifecycle.evaluate import evaluate_onnx

    client = _client()
    kind = model_kind or client.get_model_version(name, str(version)).tags.get("model_kind")
    if kind not in MODEL_KINDS:
        raise ValueError(f"{name} v{version}: model_kind tag is {kind!r}, not one of {MODEL_KINDS}")
    with tempfile.TemporaryDirectory() as tmp:
        return evaluate_onnx(download_onnx(name, version, tmp), kind, heldout, views=views)


def _heldout_dir(heldout: str | Path | None, kind: str | None) -> Path | None:
    from morphoflow.lifecycle.heldout import DEFAULT_HELDOUT_DIRS

    if heldout is not None:
        return Path(heldout)
    if kind in DEFAULT_HELDOUT_DIRS:
        return DEFAULT_HELDOUT_DIRS[kind]
    return None


def promote(
    name: str,
    version: int | None = None,
    margin: float = DEFAULT_MARGIN,
    heldout: str | Path | None = None,
    views: int = SEGMENTATION_METRIC_VIEWS,
) -> PromotionDecision:
    """Promote a candidate version to ``champion`` when it passes the gates.

    On success: ``previous-champion`` <- the old champion, ``champion`` <- the candidate, and
    ``challenger`` is removed when it pointed at the candidate. Every outcome is recorded (see
    the module docstring).

    Args:
        name: Registered model name.
        version: Candidate version; default: the ``challenger`` alias.
        margin: Largest drop of the held-out score (candidate below champion) still promoted.
        heldout: Frozen held-out folder; default: ``data/05_model_input/heldout/<model kind>``.
            Needed when there is a champion to compare with.
        views: TTA views of the segmentation metric (8 = all dihedral views).

    Returns:
        The recorded :class:`PromotionDecision` (``promoted`` or ``unchanged``).

    Raises:
        PromotionRefused: A gate refused the candidate (the refusal is recorded first; aliases
            are unchanged), including a held-out set that is missing or changed.
        ValueError: Unknown model or version, no ``challenger`` when ``version`` is None, or a
            negative ``margin``.
    """
    from morphoflow.lifecycle.heldout import HeldoutError, verify_heldout

    if not float(margin) >= 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    client = _client()
    _require_model(client, name)
    if version is None:
        candidate = _alias_version(client, name, CHALLENGER)
        if candidate is None:
            raise ValueError(f"model {name!r} has no {CHALLENGER!r} alias; pass a version")
    else:
        import mlflow

        try:
            candidate = client.get_model_version(name, str(int(version)))
        except mlflow.exceptions.MlflowException:
            raise ValueError(f"model {name!r} has no version {version!r}") from None
    cand_version = int(candidate.version)
    champion = _alias_version(client, name, CHAMPION)
    champ_version = int(champion.version) if champion is not None else None
    kind = candidate.tags.get("model_kind")
    folder = _heldout_dir(heldout, kind)
    base: dict[str, Any] = {
        "model": name,
        "candidate_version": cand_version,
        "champion_version": champ_version,
        "candidate_score": None,
        "champion_score": None,
        "metric": "",
        "margin": float(margin),
        "timestamp": now_iso(),
        "heldout": str(folder) if folder is not None else "",
    }

    def refuse(reason: str, **extra: Any) -> PromotionRefused:
        decision = PromotionDecision(
            **{**base, **extra, "decision": "refused", "reason": reason, "aliases": {}}
        )
        decision = _record(client, decision)
        decision = PromotionDecision(**{**asdict(decision), "aliases": _aliases(client, name)})
        return PromotionRefused(decision)

    problem = _parity_problem(candidate.tags)
    if problem is not None:
        raise refuse(problem)
    if kind not in MODEL_KINDS:
        raise refuse(f"model_kind tag is {kind!r}, not one of {MODEL_KINDS}")
    if champion is not None and champ_version == cand_version:
        decision = PromotionDecision(
            **{**base, "decision": "unchanged", "reason": f"v{cand_version} already is champion"}
        )
        decision = _record(client, decision)
        return PromotionDecision(**{**asdict(decision), "aliases": _aliases(client, name)})
    if champion is not None and champion.tags.get("model_kind") not in (None, kind):
        raise refuse(
            f"candidate is a {kind} model, champion v{champ_version} a "
            f"{champion.tags.get('model_kind')} model"
        )

    if champion is not None and folder is None:
        # never promote over a champion without scoring both on the same frozen set
        raise refuse(
            f"no held-out set for {kind} models (no default folder): pass heldout to compare "
            f"with champion v{champ_version}"
        )
    scored = champion is not None or heldout is not None or (folder is not None and folder.exists())
    reason = f"no champion yet; parity passed; not scored (no held-out set at {folder})"
    if scored and folder is not None:
        try:
            held = verify_heldout(folder, kind)
        except HeldoutError as exc:
            raise refuse(f"held-out set refused: {exc}") from exc
        base.update(heldout=str(held.root), heldout_digest=held.digest)
        try:
            cand_eval = evaluate_version(name, cand_version, held.root, kind, views)
        except Exception as exc:  # noqa: BLE001 - any failure to run the candidate refuses it
            raise refuse(f"candidate could not be evaluated: {exc}") from exc
        base.update(metric=cand_eval.metric, candidate_score=cand_eval.score)
        if not math.isfinite(cand_eval.score):
            raise refuse(f"candidate {cand_eval.metric} is {cand_eval.score}, not a number")
        if champion is None:
            reason = f"no champion yet; parity passed; baseline {cand_eval.metric} recorded"
        else:
            try:
                champ_eval = evaluate_version(name, int(champion.version), held.root, kind, views)
            except Exception as exc:  # noqa: BLE001
                raise refuse(f"champion v{champ_version} could not be evaluated: {exc}") from exc
            base.update(champion_score=champ_eval.score)
            drop = champ_eval.score - cand_eval.score
            if not drop <= float(margin):  # a NaN champion score refuses too
                raise refuse(
                    f"{cand_eval.metric} {cand_eval.score:.4f} is {drop:.4f} below champion "
                    f"v{champ_version} ({champ_eval.score:.4f}), more than the margin {margin:g}"
                )
            reason = (
                f"{cand_eval.metric} {cand_eval.score:.4f} vs champion v{champ_version} "
                f"{champ_eval.score:.4f}: within margin {margin:g} or better"
            )

    if champion is not None:
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, str(champ_version))
        client.set_model_version_tag(
            name, str(champ_version), "promotion.replaced_by", cand_version
        )
        client.set_model_version_tag(name, str(champ_version), "promotion.replaced_at", now_iso())
    client.set_registered_model_alias(name, CHAMPION, str(cand_version))
    challenger = _alias_version(client, name, CHALLENGER)
    if challenger is not None and int(challenger.version) == cand_version:
        client.delete_registered_model_alias(name, CHALLENGER)
    decision = _record(
        client, PromotionDecision(**{**base, "decision": "promoted", "reason": reason})
    )
    return PromotionDecision(**{**asdict(decision), "aliases": _aliases(client, name)})


def rollback(name: str) -> PromotionDecision:
    """Restore the previous champion: ``champion`` <- ``previous-champion``.

    The ``previous-champion`` alias is removed (a second rollback needs another promotion in
    between); the rolled-back version is tagged ``rolled_back=true`` with the time and the
    version restored. The decision is recorded like a promotion's.

    Args:
        name: Registered model name.

    Returns:
        The recorded :class:`PromotionDecision` (``rollback``; ``candidate_version`` is the
        restored version, ``champion_version`` the rolled-back one).

    Raises:
        ValueError: Unknown model.
        RollbackImpossible: No champion, or no previous champion.
    """
    client = _client()
    _require_model(client, name)
    champion = _alias_version(client, name, CHAMPION)
    previous = _alias_version(client, name, PREVIOUS_CHAMPION)
    if champion is None:
        raise RollbackImpossible(f"model {name!r} has no {CHAMPION!r}: nothing to roll back")
    if previous is None:
        raise RollbackImpossible(
            f"model {name!r} has no {PREVIOUS_CHAMPION!r} alias: nothing to roll back to"
        )
    old, restored = int(champion.version), int(previous.version)
    timestamp = now_iso()
    client.set_registered_model_alias(name, CHAMPION, str(restored))
    client.delete_registered_model_alias(name, PREVIOUS_CHAMPION)
    decision = _record(
        client,
        PromotionDecision(
            model=name,
            decision="rollback",
            candidate_version=restored,
            champion_version=old,
            candidate_score=None,
            champion_score=None,
            metric="",
            margin=0.0,
            reason=f"rolled back from v{old} to previous champion v{restored}",
            timestamp=timestamp,
        ),
    )
    for key, value in {
        "rolled_back": "true",
        "rolled_back_at": timestamp,
        "rolled_back_to": restored,
        "rollback.run_id": decision.run_id,
    }.items():
        client.set_model_version_tag(name, str(old), key, str(value))
    return PromotionDecision(**{**asdict(decision), "aliases": _aliases(client, name)})
