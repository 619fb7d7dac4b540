"""How good the models are: evaluation, the seed table, and the reports and benchmarks to come.

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
* Coming here: the wake-word benchmark (false accepts per hour against false rejects), writing
  under ``build/reports/`` through `device.paths.BuildPaths`.

Every command line takes ``--profile`` and ``--set`` (`device.config.add_profile_arguments`).
"""
