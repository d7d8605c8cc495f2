"""The YOLOv2 family: one stride-32 grid, YOLOv2's passthrough neck, box coding and loss."""

from metaanchor.families.yolov2.detector import YOLOV2_VOC_ANCHORS, YoloV2Config, YoloV2Detector, fit_yolo_anchors

__all__ = ["YOLOV2_VOC_ANCHORS", "YoloV2Config", "YoloV2Detector", "fit_yolo_anchors"]
