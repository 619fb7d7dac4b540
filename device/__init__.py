"""hopwise device runtime: what runs on the Pi.

One hop (10 ms) of audio goes ``audio_source`` -> ``pipeline`` -> each of ``stages`` in profile
order -> ``sinks``. The modules:

* `config` — TOML profiles with inheritance and ``--set`` overrides (host and device share it);
  `schema` — the keys, types and ranges every profile is checked against (from the default
  profile itself, plus a table of ranges).
* `paths` — where everything under ``project.build_dir`` lives (models, state, reports).
* `audio_source` — microphone (PortAudio), file replay and synthetic sources; `ring_buffer`
  between a capture thread and the pipeline; `resample` — the one soxr resampler.
* `pipeline` — the hop clock: `Pipeline.push` / ``process_hop`` / ``run``, event stamping and
  fan-out, heartbeats.
* `budget` — per-stage timing, load, shedding and restoring; `supervision` — capture stalls,
  reopening and overruns; `faults` — a stage that raises: reported once, counted, reset,
  switched off or (essential) the end of the run; `status` — latency statistics and the status
  report; `sequence` — event numbers that stay unique across restarts.
* `stages` — one module per stage type: ``logmel`` features, a ``tflite_model`` for any
  manifest-described model, ``keyword_decisions``, ``scene_decisions``, ``esn`` (beats).
* `frontend` — log-mel and STFT features (training imports the same code; `logmel_numba` is
  its numba kernel); `interpreter` and `manifest` — verified int8 TFLite models; `decisions` —
  posteriors to events over time.
* `esn` — the vocal-percussion echo state network in fixed point (numba kernel and NumPy
  reference, the model file, the readout); `enrol` — refitting its readout on the device.
* `sinks` — stdout, rotating log file, MQTT (on-disk queue), serial (firmware_bridge).
* `bench` — the hop-budget report (``python -m device bench``): every stage's, model's and
  sink's cost against the hop budget, the real-time factor on one core, memory, model sizes.

This package must never import TensorFlow (tests/device/test_no_tensorflow.py proves it): the Pi
runs TFLite models through ai_edge_litert or tflite_runtime, and the host imports the feature
definitions from here so that training and the device compute the same features.
"""
