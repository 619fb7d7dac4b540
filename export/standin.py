"""Stand-in TFLite models for the device's tests and benchmarks (host side: needs TensorFlow).

The device runtime is tested and benchmarked without a trained model, with two stand-ins that
are real int8 TFLite files with real manifests (`device.manifest.write_manifest`), converted with
the exporter's own `export.convert.convert_int8`, so they exercise exactly the quantised path a
real export produces:

* `build_tone_model` — a model whose answers are known. A single linear layer per head over the
  (98, 40) normalised log-mel window, weights set by hand (no training), so that:

  - keyword head: "computer" when a tone at ``WAKE_HZ`` has just *ended* (it sounded in the body
    of the window, frames [-70, -10), and is absent from the last 6 frames: like a real
    detector, it fires once the word is complete); "yes" likewise for ``YES_HZ``; "_silence_"
    otherwise;
  - scene head: "siren" while a tone at ``SIREN_HZ`` fills most of the window, "street_music"
    otherwise.

  Tests render "recordings" of such tones (`device.audio_source.render_tones`) and check the
  events and their times.
* `build_standin_model` — a model with the trained model's *cost*: the DS-CNN layout of
  train/multitask.py with random weights, for benchmarks before anything has been trained. Its
  posteriors mean nothing.

Both write ``stride_hops`` from ``model.multitask.stride_hops`` into the manifest, as the real
export does. TensorFlow is imported inside the builders only: importing this module is cheap.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from device.audio_source import Tone, render_tones
# The tones' frequencies are the benchmark audio's (device.bench.scripted_tones): one definition
# of what the tone model recognises and what the benchmarks play. WORD_S: a "word" tone's length.
from device.bench import SIREN_HZ, WAKE_HZ, WORD_S, YES_HZ
from device.frontend import LogMelConfig, log_mel, mel_filterbank
from device.manifest import write_manifest
from export.convert import convert_int8

__all__ = ["WAKE_HZ", "YES_HZ", "SIREN_HZ", "WORD_S", "build_tone_model", "build_standin_model"]

FRAMES, N_MELS = 98, 40
BODY = slice(FRAMES - 70, FRAMES - 10)
TAIL = slice(FRAMES - 6, FRAMES)


def band_of(freq_hz: float, fcfg: LogMelConfig) -> int:
    fb = mel_filterbank(fcfg.sample_rate, fcfg.n_fft, fcfg.n_mels, fcfg.fmin_hz, fcfg.fmax_hz)
    bin_ = int(round(freq_hz / (fcfg.sample_rate / fcfg.n_fft)))
    return int(np.argmax(fb[:, bin_]))


def calibration(fcfg: LogMelConfig) -> tuple[float, float]:
    """Normalisation (mean, std) that maps the noise floor of `render_tones` to about -1 and a
    0.3-amplitude tone's band to about +1."""
    x = render_tones([Tone(0.5, 1.5, WAKE_HZ, 0.3)], 2.0, fcfg.sample_rate)
    m = log_mel(x, fcfg)
    b = band_of(WAKE_HZ, fcfg)
    quiet = float(np.median(m[:20, b]))
    loud = float(np.median(m[70:130, b]))
    return (quiet + loud) / 2.0, (loud - quiet) / 2.0


def head_weights(labels: list[str], scenes: list[str], wake_word: str, fcfg: LogMelConfig):
    k, c = 6.0, 5.0
    b_wake, b_yes, b_siren = (band_of(f, fcfg) for f in (WAKE_HZ, YES_HZ, SIREN_HZ))
    wk = np.zeros((FRAMES, N_MELS, len(labels)), np.float32)
    bk = np.full(len(labels), -10.0, np.float32)
    bk[labels.index("_silence_")] = 0.0
    for word, band in ((wake_word, b_wake), ("yes", b_yes)):
        i = labels.index(word)
        wk[BODY, band, i] = k / (BODY.stop - BODY.start)
        wk[TAIL, band, i] = -k / (TAIL.stop - TAIL.start)
        bk[i] = -c
    ws = np.zeros((FRAMES, N_MELS, len(scenes)), np.float32)
    bs = np.full(len(scenes), -10.0, np.float32)
    siren, street = scenes.index("siren"), scenes.index("street_music")
    ws[:, b_siren, siren] = k / FRAMES
    bs[siren], bs[street] = 0.0, 0.0
    return (wk.reshape(-1, len(labels)), bk), (ws.reshape(-1, len(scenes)), bs)


def build_tone_model(out_dir: str | Path, cfg, name: str = "tone_multitask") -> Path:
    """Write ``<out_dir>/<name>.tflite`` + ``.json`` for profile ``cfg``; return the model path."""
    tf = _tensorflow()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fcfg = LogMelConfig.from_config(cfg, "keyword")
    labels, scenes = cfg.keyword_labels, list(cfg["labels.scenes"])
    mean, std = calibration(fcfg)
    (wk, bk), (ws, bs) = head_weights(labels, scenes, cfg["labels.wake_word"], fcfg)

    inp = tf.keras.Input((FRAMES, N_MELS, 1), name="features")
    flat = tf.keras.layers.Flatten()(inp)
    kw = tf.keras.layers.Dense(len(labels), activation="softmax", name="keyword")
    sc = tf.keras.layers.Dense(len(scenes), activation="softmax", name="scene")
    model = tf.keras.Model(inp, [kw(flat), sc(flat)])
    kw.set_weights([wk, bk])
    sc.set_weights([ws, bs])

    # Representative inputs: normalised log-mels of tones and silence (sets the input scale).
    rep = []
    sig = render_tones([Tone(0.2, 0.7, WAKE_HZ, 0.3), Tone(1.2, 1.7, YES_HZ, 0.3),
                        Tone(2.0, 3.5, SIREN_HZ, 0.3)], 4.0, fcfg.sample_rate)
    feats = (log_mel(sig, fcfg) - mean) / std
    for start in range(0, len(feats) - FRAMES, 10):
        rep.append(feats[start:start + FRAMES])
    path = out_dir / f"{name}.tflite"
    path.write_bytes(convert_int8(model, np.stack(rep)))  # the exporter's own int8 recipe
    _write_manifest_for(path, cfg, name, mean=mean, std=std)
    return path


def build_standin_model(out_dir: str | Path, cfg, name: str = "standin_multitask") -> Path:
    """A model with the trained model's *cost*: the DS-CNN layout of train/multitask.py (stem
    conv 10x4/2, ``model.multitask.blocks`` depthwise-separable blocks of ``width`` channels,
    two softmax heads), random weights, converted full-int8, with a manifest. For benchmarks when
    build/export/multitask_int8.tflite has not been trained yet; its posteriors mean nothing."""
    tf = _tensorflow()
    layers = tf.keras.layers

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels, scenes = cfg.keyword_labels, list(cfg["labels.scenes"])
    width, blocks = int(cfg["model.multitask.width"]), int(cfg["model.multitask.blocks"])
    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((FRAMES, N_MELS, 1), batch_size=1)
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(width, (10, 4), strides=2, padding="same", use_bias=False)(inp)))
    for i in range(blocks):
        stride = 2 if i == 0 else 1
        y = layers.ReLU()(layers.BatchNormalization()(layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)))
        y = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(width, 1, use_bias=False)(y)))
        x = y if stride != 1 else layers.Add()([x, y])
    x = layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inp, [layers.Dense(len(labels), activation="softmax", name="keyword")(x),
                                 layers.Dense(len(scenes), activation="softmax", name="scene")(x)])
    calibration = np.random.default_rng(0).standard_normal((20, FRAMES, N_MELS))
    path = out_dir / f"{name}.tflite"
    path.write_bytes(convert_int8(model, calibration))
    _write_manifest_for(path, cfg, name, mean=-5.0, std=4.0)
    return path


def _tensorflow():
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # host-only
    return tf


def _write_manifest_for(path: Path, cfg, name: str, mean: float, std: float) -> None:
    """The manifest the exporter would write: outputs named by their size, the normalisation,
    the profile's keyword frontend and ``model.multitask.stride_hops``."""
    from ai_edge_litert.interpreter import Interpreter
    labels, scenes = cfg.keyword_labels, list(cfg["labels.scenes"])
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    ind = it.get_input_details()[0]
    outs = []
    for pos, det in enumerate(it.get_output_details()):
        n = int(np.prod(det["shape"]))
        head, head_labels = ("keyword", labels) if n == len(labels) else ("scene", scenes)
        outs.append({"name": head, "index": pos, "tensor_index": int(det["index"]),
                     "labels": head_labels, "dtype": "int8", "scale": float(det["quantization"][0]),
                     "zero_point": int(det["quantization"][1])})
    write_manifest(path, name=name, kind="multitask",
                   frontend={"name": "keyword", **cfg.section("frontend.keyword")},
                   input={"shape": [int(s) for s in ind["shape"]], "dtype": "int8",
                          "scale": float(ind["quantization"][0]),
                          "zero_point": int(ind["quantization"][1]),
                          "normalization": {"mean": mean, "std": std}},
                   outputs=outs, stride_hops=int(cfg["model.multitask.stride_hops"]))


# --------------------------------------------------------------------------- sound classifier
SOUND_TONES_HZ = {"dog": 1000.0, "clock_alarm": 3000.0}
"""What `build_tone_sound_model` recognises: a steady tone at each of these frequencies is that
sound; anything else (the noise floor of `render_tones`) is no class in particular."""


def build_tone_sound_model(out_dir: str | Path, cfg, name: str = "tone_sound",
                           segment_frames: int = 41) -> Path:
    """A stand-in sound classifier with known answers, through the real export path.

    One linear layer over the normalised ``[frontend.classifier]`` segment (mean over frames of
    the bands around each tone of `SOUND_TONES_HZ`), softmax over ``labels.sounds``: a tone at
    1 kHz is ``dog``, at 3 kHz ``clock_alarm``; the noise floor leaves every class near 1/8.
    Written with `export.convert.export_with_manifest` (int8, manifest, the device's check), as
    `export.classifiers` writes a trained one. Returns the ``.tflite`` path.
    """
    from export.convert import export_with_manifest
    from train.features import Normalizer
    tf = _tensorflow()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    section = cfg.section("frontend.classifier")
    fcfg = LogMelConfig.from_mapping(section)
    labels = list(cfg["labels.sounds"])
    tones = [Tone(0.5, 2.5, SOUND_TONES_HZ["dog"], 0.3), Tone(3.0, 5.0, SOUND_TONES_HZ["clock_alarm"], 0.3)]
    feats = log_mel(render_tones(tones, 5.5, fcfg.sample_rate), fcfg)
    norm = Normalizer.fit(feats)
    x = norm(feats)
    raw = np.stack([feats[s:s + segment_frames] for s in range(0, len(feats) - segment_frames, 4)])
    n_mels = fcfg.n_mels
    w = np.zeros((segment_frames, n_mels, len(labels)), np.float32)
    b = np.zeros(len(labels), np.float32)
    for label, hz in SOUND_TONES_HZ.items():
        band = band_of(hz, fcfg)
        bands = slice(max(0, band - 1), band + 2)
        level = x[:, bands].mean(1)                 # per frame: high in the tone, low in noise
        loud, quiet = np.percentile(level, 90), np.percentile(level, 10)
        k = 12.0 / max(loud - quiet, 1e-3)
        c = labels.index(label)
        w[:, bands, c] = k / (segment_frames * (bands.stop - bands.start))
        b[c] = -k * (loud + quiet) / 2.0
    inp = tf.keras.Input((segment_frames, n_mels, 1), batch_size=1, name="log_mel")
    dense = tf.keras.layers.Dense(len(labels), activation="softmax", name="sound")
    model = tf.keras.Model(inp, {"sound": dense(tf.keras.layers.Flatten()(inp))})
    dense.set_weights([w.reshape(-1, len(labels)), b])
    path = out_dir / f"{name}_int8.tflite"
    export_with_manifest(model, path, name=name, kind="sound_standin", heads={"sound": labels},
                         frontend=("classifier", section), normalizer=norm, raw_calibration=raw,
                         stride_hops=None, onnx=False)
    return path
