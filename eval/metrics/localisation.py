"""The harness's name for the project's one IoU/AP implementation, :mod:`vlm.eval.localisation`.

The code lives with the image model's evaluation because VLM training calls it and :mod:`vlm` sits below
:mod:`eval` (docs/architecture.md); the protocols are described there.
"""

from vlm.eval.localisation import (
    COCO_MAX_DETS,
    COCO_THRESHOLDS,
    DEFAULT_PROTOCOL,
    PROTOCOL_DEFINITIONS,
    PROTOCOLS,
    RECALL_POINTS,
    VOC_RECALL_POINTS,
    any_box_hit,
    check_protocol,
    clamp_boxes,
    counts_image,
    dataset_ap,
    image_ap,
    image_localisation,
    interpolated_ap,
    iou_matrix,
    match_predictions,
    mean_image_ap,
    mean_localisation,
    top_box_hit,
)

__all__ = [
    "COCO_MAX_DETS",
    "COCO_THRESHOLDS",
    "DEFAULT_PROTOCOL",
    "PROTOCOLS",
    "PROTOCOL_DEFINITIONS",
    "RECALL_POINTS",
    "VOC_RECALL_POINTS",
    "any_box_hit",
    "check_protocol",
    "clamp_boxes",
    "counts_image",
    "dataset_ap",
    "image_ap",
    "image_localisation",
    "interpolated_ap",
    "iou_matrix",
    "match_predictions",
    "mean_image_ap",
    "mean_localisation",
    "top_box_hit",
]
