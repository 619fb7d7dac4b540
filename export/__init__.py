"""Host-side export: int8 TFLite + ONNX with manifests (`export.multitask`, shared conversion in `export.convert`), evaluation of an
exported model on a dataset folder (`export.evaluate`), and the deploy bundle (`export.deploy`)."""
