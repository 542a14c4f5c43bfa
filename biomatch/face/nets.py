"""The vendored ONNX models: SHA-256 verified on load, one instance per thread.

The files and their licences are described in ``models/NOTICE``. Each file is read
once per process, its SHA-256 compared with the constant below, and the verified bytes
(never the path) are handed to OpenCV, so a file swapped after the check is not used.
OpenCV network objects are not thread-safe; each thread gets its own (``threading.local``).
"""

from __future__ import annotations

import hashlib
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import FaceModelError

__all__ = ["MODEL_DIR", "DETECTOR_FILE", "RECOGNIZER_FILE", "MODEL_SHA256", "MODEL_ID",
           "model_bytes", "detector", "recognizer"]

MODEL_DIR = Path(__file__).resolve().parent / "models"
DETECTOR_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
RECOGNIZER_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
MODEL_SHA256 = {
    DETECTOR_FILE: "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    RECOGNIZER_FILE: "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
}
MODEL_ID = "sface-2021dec-int8bq"
"""Identifier of the embedding model stored in every :class:`FaceTemplate`."""

_SFACE_INPUT = "data"  # OpenCV 5's new engine needs the input named
_local = threading.local()


def verify_bytes(name: str, data: bytes, expected: str) -> bytes:
    """Return ``data`` when its SHA-256 is ``expected``; raise :class:`FaceModelError` otherwise."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise FaceModelError(f"model {name!r}: expected SHA-256 {expected}, got {actual} "
                             "(the vendored file was altered or replaced; reinstall biomatch)")
    return data


@lru_cache(maxsize=None)
def model_bytes(name: str) -> bytes:
    """The verified content of a vendored model file (read and checked once per process)."""
    if name not in MODEL_SHA256:
        raise FaceModelError(f"name: expected one of {sorted(MODEL_SHA256)}, got {name!r}")
    path = MODEL_DIR / name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FaceModelError(f"model {str(path)!r}: cannot read: {exc.strerror}") from exc
    return verify_bytes(name, data, MODEL_SHA256[name])


def detector(score_threshold: float, nms_threshold: float):
    """This thread's YuNet detector (``cv2.FaceDetectorYN``), thresholds set as asked."""
    import cv2

    det = getattr(_local, "detector", None)
    if det is None:
        buf = np.frombuffer(model_bytes(DETECTOR_FILE), np.uint8)
        try:
            det = cv2.FaceDetectorYN.create("onnx", buf, np.empty(0, np.uint8), (320, 320),
                                            score_threshold, nms_threshold, 5000)
        except cv2.error as exc:
            raise FaceModelError(f"model {DETECTOR_FILE!r}: OpenCV cannot load it: {exc}") from exc
        _local.detector = det
    det.setScoreThreshold(score_threshold)
    det.setNMSThreshold(nms_threshold)
    return det


def recognizer():
    """This thread's SFace network (``cv2.dnn.Net``)."""
    import cv2

    net = getattr(_local, "recognizer", None)
    if net is None:
        buf = np.frombuffer(model_bytes(RECOGNIZER_FILE), np.uint8)
        try:
            net = cv2.dnn.readNetFromONNX(buf)
        except cv2.error as exc:
            raise FaceModelError(f"model {RECOGNIZER_FILE!r}: OpenCV cannot load it: {exc}") from exc
        _local.recognizer = net
    return net


def run_recognizer(blob: np.ndarray) -> np.ndarray:
    """Forward a (1, 3, 112, 112) float32 blob through this thread's SFace; returns shape (128,)."""
    net = recognizer()
    net.setInput(blob, _SFACE_INPUT)
    return np.asarray(net.forward(), dtype=np.float32).reshape(-1)
