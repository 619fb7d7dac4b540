"""Host-side export: trained models to what the device runs, and the bundle that carries them.

* `export.convert` — what every model shares: the fixed-batch copy, full-integer int8 TFLite,
  float ONNX (checked with onnxruntime), output-to-head mapping, manifests, and the
  int8-vs-float check through the device's own runner (`device.interpreter.TFLiteModel`);
* `export.multitask` — the keyword + scene model (``python -m export.multitask``,
  ``make export``): which variant, its heads, frontend and stride;
* `export.deploy` — the bundle for the Pi, local or over SSH (``make deploy``); it is to grow
  releases (versioned bundles to roll back to);
* `export.demo` — ``make demo``: a synthetic recording through the trained pipeline;
* `export.standin` — stand-in models with known behaviour (tone detectors) for the device's
  tests and benchmarks, converted with the exporter's own int8 recipe;
* `export.esn` — the echo state network: ``esn_int8.npz`` (int16 reservoir, normaliser,
  readout) and the readout as int8 TFLite, each with a manifest.

Export uses `train` (to load and rebuild a trained network); `train` never imports export.
Evaluation of exported models lives in `evaluation`.
"""
