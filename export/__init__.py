"""Host-side export: int8 TFLite + ONNX with manifests (`export.tflite`), evaluation of an
exported model on a dataset folder (`export.evaluate`), and the deploy bundle (`export.deploy`)."""
