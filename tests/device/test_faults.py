"""A stage that raises never leaves the device deaf without a word: it is reported once with its
traceback and a status event, counted after that, reset, switched off when it keeps failing
(non-essential) or ends the run with exit code 1 (essential)."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from device.config import load_config
from device.faults import EssentialStageFailed
from device.pipeline import Pipeline
from device.stages import STAGE_TYPES, Stage, register_stage


class _Broken(Stage):
    """Raises on the hops listed in ``fail_hops`` (all hops when it is empty), counting resets."""

    consumes, emits = ("audio",), ("test.broken",)
    fail_hops: set = set()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.resets = 0

    def process(self, ctx):
        if not self.fail_hops or ctx.hop_index in self.fail_hops:
            raise ValueError("tensor shape mismatch " + "x" * 5000)  # long, like LiteRT's
        ctx.put("test.broken", ctx.hop_index)

    def on_gap(self):
        self.resets += 1


if "test_broken" not in STAGE_TYPES:
    register_stage("test_broken")(_Broken)


def _pipeline(*overrides):
    cfg = load_config("default", ['pipeline.stages=["broken"]', "stages.broken.type=test_broken",
                                  "runtime.stage_failure_limit=5", "runtime.shedding=false",
                                  *overrides])
    return Pipeline.from_config(cfg, keep_events=True)


def _status(pipe, label):
    return [e for e in pipe.events if e["type"] == "status" and e["label"] == label]


def test_a_failing_optional_stage_is_reported_once_then_switched_off(caplog):
    pipe = _pipeline()
    with caplog.at_level(logging.ERROR, "hopwise.pipeline"):
        returned = pipe.push(np.zeros(160 * 20, np.float32))
    stage = pipe.stages[0]
    failed, disabled = _status(pipe, "stage_failed"), _status(pipe, "stage_disabled")
    assert len(failed) == 1 and failed[0]["stage"] == "broken" and failed[0]["hop"] == 0
    assert len(failed[0]["error"]) < 400                       # one short line, not 5000 chars
    assert len(disabled) == 1 and disabled[0]["failures"] == 5
    assert failed[0] in returned and disabled[0] in returned   # push() returns them too
    assert pipe.event_counts["error.broken"] == 5              # then it no longer runs
    assert stage.resets == 5                                   # each failure starts it afresh
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1                                # the log does not grow per hop
    assert pipe.status()["faults"] == {"failures": {"broken": 5}, "disabled": ["broken"]}


def test_a_stage_that_recovers_says_so():
    _Broken.fail_hops = {2, 3}
    try:
        pipe = _pipeline()
        pipe.push(np.zeros(160 * 10, np.float32))
    finally:
        _Broken.fail_hops = set()
    assert len(_status(pipe, "stage_failed")) == 1
    recovered = _status(pipe, "stage_recovered")
    assert len(recovered) == 1 and recovered[0]["failures"] == 2
    assert not _status(pipe, "stage_disabled")


def test_an_essential_stage_that_keeps_failing_ends_the_run():
    pipe = _pipeline("stages.broken.essential=true")
    with pytest.raises(EssentialStageFailed, match="essential stage 'broken' failed 5 hops"):
        pipe.push(np.zeros(160 * 20, np.float32))
    assert pipe.hops == 5 and len(_status(pipe, "stage_fatal")) == 1


def test_the_command_line_exits_1_so_that_systemd_restarts_it(tmp_path, capsys):
    import soundfile as sf
    from device.__main__ import main
    wav = tmp_path / "x.wav"
    sf.write(wav, np.zeros(16000, np.float32), 16000)
    rc = main(["detect", str(wav), "--set", 'pipeline.stages=["broken"]',
               "--set", "stages.broken.type=test_broken", "--set", "stages.broken.essential=true",
               "--set", "runtime.stage_failure_limit=3"])
    assert rc == 1
    assert "essential stage 'broken' failed 3 hops in a row" in capsys.readouterr().err


def test_the_unit_does_not_restart_a_configuration_error():
    from pathlib import Path
    unit = (Path(__file__).resolve().parents[2] / "device" / "systemd" / "hopwise.service").read_text()
    assert "Restart=on-failure" in unit and "RestartPreventExitStatus=2" in unit
