"""Mask R-CNN for nucleus instance segmentation (torchvision), with training, TTA and files.

Laid out like the U-Net: :mod:`~morphoflow.segmentation.maskrcnn.model` (config, network,
local weights, file format), :mod:`~morphoflow.segmentation.maskrcnn.training` (targets,
training loop), :mod:`~morphoflow.segmentation.maskrcnn.inference` (instance labels, TTA).
This package re-exports their public names.

The model is torchvision's Mask R-CNN with a ResNet-FPN backbone (ResNet-50 by default: the
architecture of ``torchvision.models.detection.maskrcnn_resnet50_fpn``, same state-dict keys),
set up for microscopy rather than COCO photographs:

- **Input.** A batch (N, 1, H, W) of single-channel images normalised to [0, 1] with
  :func:`~morphoflow.segmentation.postprocess.normalize_image` (exactly as for the U-Net).
  :class:`NucleusMaskRCNN` replicates the channel to 3 inside the module, so that the
  3-channel stem (and COCO / ImageNet weights) can be used unchanged; the internal transform
  then standardises with torchvision's ImageNet mean and std, as for COCO weights.
- **Scale.** By default (``min_size=None``) images are processed at their native resolution:
  no up- or down-scaling (they are only zero-padded to a multiple of 32 inside the batch).
  Setting ``min_size``/``max_size`` restores torchvision's resizing.
- **Anchors.** One size per FPN level, 8-128 px by default (torchvision: 32-512), for nuclei of
  about 8-60 px; 3 aspect ratios per location as in torchvision, so the RPN head keeps the
  shape of COCO checkpoints.
- **Crowded fields.** Up to 300 detections per image (torchvision: 100).
- **Weights.** Never downloaded: a model is built with random weights, or from a local
  state-dict file (e.g. COCO weights the user downloaded); tensors whose shapes differ (the
  91-class box and mask predictors of COCO) are skipped and reported (:func:`load_weights`).

Instances are made from the detections by :func:`predict_labels` (score and mask thresholds,
highest score wins overlaps, small remnants dropped) and merged over the dihedral TTA views by
:func:`segment_instances` (one batched model call per image; see
:mod:`morphoflow.segmentation.tta`). Models are saved as one file (format
``morphoflow-maskrcnn/1``) holding config, weights and metadata.

Box convention. Ground-truth boxes are pixel edges, ``[x_min, y_min, x_max + 1, y_max + 1]``
in (x, y) order, as COCO boxes of pixel masks: a one-pixel object has a 1 x 1 box.
"""

from morphoflow.segmentation.maskrcnn.inference import predict_labels, segment_instances
from morphoflow.segmentation.maskrcnn.model import (
    BACKBONES,
    MaskRCNNConfig,
    NucleusMaskRCNN,
    WeightsReport,
    build_maskrcnn,
    load_maskrcnn,
    load_weights,
    save_maskrcnn,
)
from morphoflow.segmentation.maskrcnn.training import Sample, labels_to_targets, train_maskrcnn

__all__ = [
    "BACKBONES",
    "MaskRCNNConfig",
    "NucleusMaskRCNN",
    "Sample",
    "WeightsReport",
    "build_maskrcnn",
    "labels_to_targets",
    "load_maskrcnn",
    "load_weights",
    "predict_labels",
    "save_maskrcnn",
    "segment_instances",
    "train_maskrcnn",
]
