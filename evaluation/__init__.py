"""How good the models are: evaluation, the seed table and the wake-word benchmark.

Evaluation uses training and export (``evaluation -> export -> train``); nothing under
``train/`` or ``export/`` imports it. Every int8 figure is measured with the device's own runner
(`device.interpreter.TFLiteModel`), so a table says what the Pi will do.

* `evaluation.seed_table` (``python -m evaluation.seed_table``, ``make seed-table``): trains,
  exports and evaluates every multitask variant on the held-out split, float and int8, and
  chooses the deployed variant.
* `evaluation.evaluate` (``python -m evaluation.evaluate --data DIR``): one exported model on a
  dataset folder in a standard layout (Speech Commands, wake words, ESC-50, UrbanSound8K).
* Not here: the hop-budget report, which must run on the Pi too, is `device.bench`
  (``python -m device bench``; ``make bench``, ``make bench TARGET=...``: benchmarks/hop_budget.py).
* `evaluation.wakeword` (``python -m evaluation.wakeword``, ``make bench-wakeword``): misses
  against false alarms per hour on long audio, hopwise's ``detect`` path beside Porcupine and
  openWakeWord (``make peers``) on the same streams; DET curves, the operating point (into the
  manifest). Its parts: `evaluation.wakeword_streams` (the audio), `evaluation.wakeword_scoring`
  (hits, false alarms, DET), `evaluation.wakeword_engines` (the engines).

Every command line takes ``--profile`` and ``--set`` (`device.config.add_profile_arguments`).
"""
