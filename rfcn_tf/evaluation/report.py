"""Presenting an ``evaluate_detections`` result: a text table and a JSON file."""

import json
import math
import os


def format_table(result):
    """Per-class AP table (plus the COCO summary for ``metric="coco"``) as a string.

    Classes without ground truth show ``n/a``; ``GT`` counts non-difficult (non-crowd)
    objects.
    """
    names = [str(k) for k in result["per_class"]]
    width = max([len("class"), len("mAP")] + [len(n) for n in names])
    header = f"{result['metric']} on {result['num_images']} images"
    if "iou_threshold" in result:
        header += f", IoU >= {result['iou_threshold']:g}"
    lines = [header, f"{'class':<{width}}  {'AP':>7}  {'GT':>7}  {'detections':>10}"]
    for key, name in zip(result["per_class"], names):
        lines.append(
            f"{name:<{width}}  {_number(result['per_class'][key]):>7}  "
            f"{result['num_ground_truth'][key]:>7}  {result['num_detections'][key]:>10}"
        )
    lines.append("-" * len(lines[1]))
    lines.append(f"{'mAP':<{width}}  {_number(result['mAP']):>7}")
    if "coco" in result:
        lines.append("")
        lines.extend(f"{key:<9} {_number(value)}" for key, value in result["coco"].items())
    return "\n".join(lines)


def save_json(result, path):
    """Write ``result`` to ``path`` as JSON (NaN → null, class ids → strings); returns path.

    Parent directories are created.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_json_safe(result), f, indent=2, allow_nan=False)
        f.write("\n")
    return path


def _number(value):
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
