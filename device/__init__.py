"""hopwise device runtime: what runs on the Pi.

This package must never import TensorFlow (tests/device/test_no_tensorflow.py proves it): the Pi
runs TFLite models through ai_edge_litert or tflite_runtime, and the host imports the feature
definitions from here so that training and the device compute the same features.
"""
