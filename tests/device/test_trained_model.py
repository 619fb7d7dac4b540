"""The trained model (when one has been exported) on synthesized speech: "computer ... yes".

Skipped, saying why, when build/export holds no trained multitask model or when its manifest's
own test accuracy says it has not learned the keywords yet (a smoke-test export)."""
import shutil
import subprocess

import numpy as np
import pytest

from device.config import REPO_ROOT, load_config
from device.manifest import load_manifest
from device.pipeline import Pipeline
from device.audio_source import FileSource

CANDIDATES = [REPO_ROOT / "build" / "export" / "multitask_int8.tflite",
              REPO_ROOT / "build" / "export" / "default" / "multitask_int8.tflite"]


def trained_model():
    for path in CANDIDATES:
        if path.exists() and path.with_suffix(".json").exists():
            acc = (load_manifest(path).get("metrics", {}).get("test_int8", {}) or {}).get("keyword_only")
            if acc is None or acc < 0.8:
                pytest.skip(f"{path} is not a trained model yet (int8 keyword test accuracy {acc})")
            return path
    pytest.skip("no trained model in build/export (run `make train export`)")


def speak(words_and_gaps, path, rate=16000):
    import soundfile as sf
    import soxr
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    parts, times = [], []
    t = 0.0
    rng = np.random.default_rng(0)
    for i, (word, gap) in enumerate(words_and_gaps):
        parts.append((rng.standard_normal(int(gap * rate)) * 0.002).astype(np.float32))
        t += gap
        wav = path.parent / f"w{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), word], check=True, timeout=30)
        x, r = sf.read(wav, dtype="float32")
        x = soxr.resample(x, r, rate) * 0.8
        parts.append(x)
        times.append((word, t, t + len(x) / rate))
        t += len(x) / rate
    parts.append(np.zeros(int(1.5 * rate), np.float32))
    sf.write(path, np.concatenate(parts), rate)
    return times


@pytest.mark.timeout(60)
def test_trained_model_hears_the_wake_word_then_a_command(tmp_path):
    model = trained_model()
    words = speak([("computer", 1.0), ("yes", 0.8)], tmp_path / "speech.wav")
    cfg = load_config("default", [f"stages.multitask.model={model}"])
    pipe = Pipeline.from_config(cfg, keep_events=True)
    pipe.run(FileSource(tmp_path / "speech.wav", rate=16000))
    got = [(e["type"], e["label"], e["t_audio_s"]) for e in pipe.events if e["type"] in ("wake", "command")]
    assert [(k, l) for k, l, _ in got] == [("wake", "computer"), ("command", "yes")], (got, words)
    for (_, _, t), (_, start, end) in zip(got, words):
        assert start < t <= end + 1.0
