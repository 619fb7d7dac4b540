"""Model conversion shared by every exported model: full-integer int8 TFLite (and, as the
models arrive, float ONNX and manifests). Per-model export modules only say what is their own.

TensorFlow is imported inside the functions: importing this module costs nothing.
"""
from __future__ import annotations

import numpy as np

__all__ = ["convert_int8"]


def convert_int8(model, calibration: np.ndarray) -> bytes:
    """Full-integer int8 conversion (int8 in and out), calibrated on normalised features.

    Parameters
    ----------
    model : keras.Model
        With a fixed batch of 1.
    calibration : np.ndarray
        ``(n, frames, mels)`` *normalised* training features; a few hundred cover the ranges
        well, more only slows the conversion.
    """
    import tensorflow as tf

    def representative():
        for x in calibration:
            yield [x[None, :, :, None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()
