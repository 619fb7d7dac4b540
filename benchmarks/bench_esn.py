"""The echo state network's step, per 16 ms ESN hop — the place for it (not built yet).

``device/esn.py`` (the fixed-point reservoir, CONTRIBUTING.md "How to add a model") does not
exist yet, so this module skips. When it lands, replace the test below with pytest-benchmark
cases of:

* one reservoir step on one frame of ``[frontend.esn]`` features (the fixed-point kernel, and its
  NumPy reference for comparison), against the ESN frontend's 16 ms hop;
* the ESN stage's ``process`` on a hop, as the pipeline calls it;
* the readout, when it is exported as int8 TFLite: it is then timed with every other model by
  bench_multitask.py, which measures every exported ``.tflite`` with a manifest.

The hop-budget report (``python -m device bench``) needs nothing new: it times every stage in
the profile's ``[pipeline] stages``, so an ``esn`` stage there appears in it by itself. Like
every suite here, this one must import only ``device``, ``firmware_bridge``, numpy and pytest
(tests/test_architecture.py), so that it runs unchanged on the Pi.
"""
from __future__ import annotations

import pytest

esn = pytest.importorskip("device.esn", reason="device/esn.py (the reservoir) is not built yet")


def test_esn_step_benchmark_written():
    pytest.fail("device/esn.py exists now: write its benchmarks here (see this module's "
                "docstring) in place of this reminder")
