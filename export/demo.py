"""A scripted recording through the trained pipeline: what a user would try first.

``make demo`` (``python -m export.demo --profile default``) speaks a short script with espeak-ng
over a synthetic street scene — "computer … yes", a pause, "computer … stop", then "go" with no
wake word (which must NOT become a command) — writes it to ``build/demo/demo.wav``, runs the
device pipeline on it as fast as possible, and prints the events next to what the script said,
with their times in the audio. The WAV stays for `python -m device detect` or listening.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from device.config import ConfigError, add_profile_arguments, config_from_args

# (pause before, text, expected event): the expected event is what a good model gives.
SCRIPT = [
    (1.0, "computer", ("wake", "computer")),
    (0.5, "yes", ("command", "yes")),
    (2.5, "computer", ("wake", "computer")),
    (0.5, "stop", ("command", "stop")),
    (5.0, "go", None),  # no wake word in the last 4 s: a keyword, not a command
]
VOICE = "en-us+m3"


def make_recording(cfg, path: Path, scene: str = "street_music", seed: int = 7) -> list[dict]:
    """Write the demo WAV and return the script with each word's start and end in seconds."""
    import soundfile as sf

    from train.synth.scenes import generate_scene
    from train.synth.speech import Take, synthesize, trim_silence

    rate = cfg["frontend.keyword.sample_rate"]
    rng = np.random.default_rng(seed)
    parts, timeline, t_s = [], [], 0.0
    for pause_s, text, expected in SCRIPT:
        parts.append(np.zeros(int(pause_s * rate), np.float32))
        t_s += pause_s
        speech = trim_silence(synthesize(Take(text=text, voice=VOICE), rate), sample_rate=rate)
        speech = 0.3 * speech / (np.max(np.abs(speech)) + 1e-9)
        parts.append(speech.astype(np.float32))
        timeline.append({"text": text, "start_s": round(t_s, 3),
                         "end_s": round(t_s + len(speech) / rate, 3), "expected": expected})
        t_s += len(speech) / rate
    parts.append(np.zeros(int(1.5 * rate), np.float32))
    speech_track = np.concatenate(parts)
    background = generate_scene(scene, rng, clip_s=len(speech_track) / rate, sample_rate=rate,
                                level_db=(-36.0, -36.0))
    audio = speech_track + background[: len(speech_track)]
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate, subtype="PCM_16")
    return timeline


def run_demo(cfg, model: str | None = None, out_dir: Path | None = None) -> dict:
    """Make the recording, run the pipeline on it, return script, events and a score."""
    from device.audio_source import FileSource
    from device.pipeline import Pipeline

    out_dir = out_dir or cfg.build_dir / "demo"
    wav = out_dir / "demo.wav"
    timeline = make_recording(cfg, wav)
    pipe = Pipeline.from_config(cfg, model=model, keep_events=True, shedding=False)
    try:
        pipe.run(FileSource(wav, rate=cfg["frontend.keyword.sample_rate"]))
    finally:
        pipe.close()
    events = [e for e in pipe.events if e["type"] in ("wake", "command", "scene")]
    hits = 0
    for item in timeline:
        item["heard"] = None
        if item["expected"] is None:
            continue
        kind, label = item["expected"]
        for e in events:
            if e["type"] == kind and e["label"] == label and \
                    item["start_s"] <= e["t_audio_s"] <= item["end_s"] + 1.0:
                item["heard"] = round(e["t_audio_s"], 2)
                hits += 1
                break
    false_commands = [e for e in events if e["type"] == "command" and e["t_audio_s"] > timeline[-1]["start_s"]]
    report = {"wav": str(wav), "script": timeline, "events": events,
              "expected_heard": f"{hits}/{sum(1 for i in timeline if i['expected'])}",
              "false_commands_after_lone_keyword": len(false_commands)}
    (out_dir / "demo.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export.demo",
        description="Speak a short script over a street scene, run the device pipeline on it and "
                    "print the events next to the script (writes build/demo/demo.wav and demo.json).")
    add_profile_arguments(parser, "decisions.wake_threshold=0.7")
    parser.add_argument("--model", help="multitask .tflite (default: the profile's deployed model)")
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        report = run_demo(cfg, args.model)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"demo: {exc}\n(run `make train export` first if no model has been exported)", file=sys.stderr)
        return 2
    print(f"recording: {report['wav']}")
    print(f"{'said':>10}  {'from':>6}  {'to':>6}  {'expected':<18} heard at")
    for item in report["script"]:
        exp = "-" if item["expected"] is None else "/".join(item["expected"])
        heard = "-" if item["heard"] is None else f"{item['heard']:.2f} s"
        print(f"{item['text']:>10}  {item['start_s']:6.2f}  {item['end_s']:6.2f}  {exp:<18} {heard}")
    print("events:")
    for e in report["events"]:
        print("  " + json.dumps({k: e[k] for k in ("type", "label", "confidence", "t_audio_s") if k in e}))
    print(f"expected events heard: {report['expected_heard']}; commands after a lone keyword: "
          f"{report['false_commands_after_lone_keyword']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
