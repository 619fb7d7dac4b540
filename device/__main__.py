"""hopwise device runtime command line.

  python -m device run --profile default --model build/export/multitask_int8.tflite \\
         [--device NAME|INDEX] [--set key=value ...]
      Live: capture from a microphone, run the pipeline, send events to the configured sinks
      (``[sinks.*]``: stdout, mqtt, serial, logfile) until SIGTERM/SIGINT; then flush and exit.
      ``--replay FILE [--realtime]`` takes the audio from a file instead (for trying sinks).

  python -m device detect FILE [--realtime] [--model ...] [--set ...]
      Run the pipeline on an audio file as fast as possible (or in real time) and print the
      events as JSON lines, with their times in the audio (``t_audio_s``). A summary with the
      real-time factor goes to stderr.

  python -m device bench [--model ...] [--out DIR] [--set bench.audio_s=60 ...]
      The hop-budget report (device/bench.py): every stage's and model's p50/p99 against the
      hop budget, the real-time factor on one core, memory, model sizes, float vs int8
      accuracy; JSON + Markdown (+ PNG with matplotlib) in build/reports/<profile>/.

  python -m device selfcheck [--profile profile.toml] [--json FILE]
      Does this bundle work here (device/selfcheck.py): bundle hashes, models load, the bundled
      test signal raises the events recorded at export, hop budget met, sinks reachable. A table;
      exit 1 when a check failed. Deploy runs it in every new release.

  python -m device separate FILE [--out DIR] [--model build/export/separation.tflite]
      Separate a recording into its sources with the deep attractor network (fixed attractors,
      no clustering): one 8 kHz WAV per source (``<stem>.<source>.wav``) in DIR.

  python -m device list-devices
      The capture devices PortAudio sees, with the index/name ``--device`` takes.

  python -m device config --show [--profile ...] [--set ...]
      The merged profile, every value with the file or --set it came from (secrets hidden).

  python -m device enrol (--wav CLASS=FILE ... | --folder DIR | --mic N) [--restore]
      Re-teach the vocal-percussion ESN's readout your own sounds, on the device, in well under
      a second (device/enrol.py); a running service picks the new readout up by itself.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time

from .config import add_profile_arguments, config_from_args

log = logging.getLogger("hopwise")

DESCRIPTION = """hopwise device runtime: wake word, commands and acoustic scenes from a microphone,
reported over MQTT, serial, stdout or a rotating log file.

Every event is one JSON object:
  {"type": "wake"|"command"|"scene"|"beat"|"sound"|"status", "label": "...", "confidence": 0..1,
   "t_audio_s": seconds into the audio stream, "t_wall": unix time, "seq": n, "device": id}
Settings come from a profile (--profile) and --set overrides: [pipeline] and [stages.*] (what
runs), [decisions], [runtime] (hop budget, shedding, heartbeat), [capture], [sinks.*]."""

EXAMPLES = """examples:
  python -m device run --model build/export/multitask_int8.tflite --device USB --set sinks.mqtt.enabled=true --set sinks.mqtt.host=broker.local
  python -m device detect recording.flac --model build/export/multitask_int8.tflite > events.jsonl
  python -m device bench --set bench.audio_s=10
  python -m device list-devices
  python -m device config --show --profile real --set decisions.wake_threshold=0.7
"""


RUN_DESCRIPTION = """Run the device: capture from a microphone (or --replay a file), run the
profile's [pipeline] stages hop by hop (log-mel features -> int8 keyword+scene model -> wake word,
command and scene decisions) and send every event to the enabled sinks ([sinks.*]: stdout, mqtt,
serial, logfile), until SIGTERM/SIGINT; then send a final status, flush the sinks and exit 0.

Events are JSON objects (one per line on stdout with the stdout sink):
  {"type": "wake"|"command"|"scene"|"beat"|"sound"|"status", "label": ..., "confidence": 0..1,
   "t_audio_s": ..., "t_wall": ..., "seq": ..., "device": ...}
(`python -m device --help` describes the fields; status heartbeats carry timings and health.)
A bad profile value, a wrong device name or a model that does not match the profile stops
start-up with exit code 2 and a message that says the fix."""

RUN_EXAMPLES = """examples:
  python -m device run --model build/export/multitask_int8.tflite
  python -m device run --device USB --set sinks.mqtt.enabled=true --set sinks.mqtt.host=broker.local
  python -m device run --replay recording.flac --realtime --set sinks.logfile.enabled=true
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="the .tflite of the pipeline's tflite_model stage (its .json manifest "
                        "beside it); default: stages.multitask.model of the profile, under "
                        "project.build_dir")
    add_profile_arguments(p, "decisions.wake_threshold=0.7")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m device", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="live capture -> pipeline -> sinks until SIGTERM/SIGINT",
                         description=RUN_DESCRIPTION,
                         formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RUN_EXAMPLES)
    _common(run)
    run.add_argument("--device", default=None,
                     help="capture device name (or unique part) or index; see list-devices "
                          "(default: capture.device of the profile, else the system default)")
    run.add_argument("--replay", default=None, metavar="FILE",
                     help="take audio from FILE instead of a microphone")
    run.add_argument("--realtime", action="store_true", help="with --replay: pace at real time")
    run.add_argument("--duration-s", type=float, default=None,
                     help="stop after this much audio (default: run until signalled)")

    det = sub.add_parser("detect", help="events of an audio file as JSON lines on stdout",
                         formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    _common(det)
    det.add_argument("file", help="WAV/FLAC/OGG file (any rate, any channels)")
    det.add_argument("--realtime", action="store_true",
                     help="pace the file at real time (default: as fast as possible)")
    det.add_argument("--status", action="store_true", help="also print status events")

    bench = sub.add_parser(
        "bench", help="the hop-budget report: stage and model costs against the hop budget",
        description="Run the profile's pipeline on bench.audio_s of synthetic audio, pinned to "
                    "one core and as fast as it goes, time each sink and the serial codec per "
                    "event, and write the hop-budget report: p50/p99 per invocation, "
                    "invocations per second, share of the hop budget (pipeline.hop_ms), the "
                    "real-time factor (CPU s per audio s), peak memory, model sizes and float vs "
                    "int8 accuracy. JSON + Markdown, and a PNG where matplotlib is installed.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    _common(bench)
    bench.add_argument("--out", default=None, metavar="DIR",
                       help="where the report goes (default: build/reports/<profile>/)")

    check = sub.add_parser(
        "selfcheck", help="does this bundle work here: hashes, models, test signal, budget, sinks",
        description="Check the deployed bundle on this machine (device/selfcheck.py): every file "
                    "against bundle.json, the models load with their manifests, the bundled test "
                    "signal raises the events recorded at export, every stage's p99 is within the "
                    "hop, and the enabled sinks can reach their other end (a warning, not a "
                    "failure). Prints a table; exit 1 when a check failed.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    _common(check)
    check.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    check.add_argument("--no-budget", action="store_true",
                       help="skip the hop-budget check: for an emulated machine (qemu-user), whose "
                            "timings say nothing about a real one")

    from .heartbeat import __doc__ as heartbeat_doc, add_arguments as heartbeat_arguments
    beat = sub.add_parser("heartbeat", help="wait for the service's first heartbeat on its MQTT "
                          "status topic (what deploy runs on the Pi)", description=heartbeat_doc,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    add_profile_arguments(beat, "sinks.mqtt.port=1884")
    beat.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING (default: %(default)s)")
    heartbeat_arguments(beat)

    separate = sub.add_parser(
        "separate", help="separate a recording into its sources (one WAV per source)",
        description="Separate FILE with the exported deep attractor network "
                    "(model.separation.model, fixed attractors: no clustering): the audio is "
                    "resampled to [frontend.separation] (8 kHz), masked chunk by chunk "
                    "(model.separation.chunk_frames) and written as one WAV per source, "
                    "<stem>.<source>.wav, in --out. Prints the files and the real-time factor.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python -m device separate noisy.wav --out separated/\n"
               "  python -m device separate mix.flac --model build/export/default/"
               "separation_full_float16.tflite")
    add_profile_arguments(separate, "model.separation.chunk_frames=100")
    separate.add_argument("file", help="WAV/FLAC/OGG file (any rate, any channels)")
    separate.add_argument("--model", default=None, help="the separator .tflite (its manifest "
                          "beside it); default: model.separation.model under project.build_dir")
    separate.add_argument("--out", default=".", metavar="DIR",
                          help="folder for the sources (default: the current one)")

    sub.add_parser("list-devices", help="capture devices PortAudio/ALSA sees")

    conf = sub.add_parser("config", help="check a profile and print it with where each value came from",
                          description="Load the profile with its --set overrides, check every key "
                                      "against the schema (unknown keys, types, ranges: exit 2 with "
                                      "the fix), and with --show print the merged profile as TOML, "
                                      "each value followed by the file or --set it came from. "
                                      "Secrets (passwords) are never printed.")
    add_profile_arguments(conf, "decisions.wake_threshold=0.7")
    conf.add_argument("--show", action="store_true",
                      help="print the merged profile (default: only check it and say so)")

    from .enrol import __doc__ as enrol_doc, add_arguments as enrol_arguments
    enrol = sub.add_parser("enrol", help="refit the vocal-percussion readout on your own sounds",
                           description=enrol_doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_profile_arguments(enrol, "model.esn.enrol_folds=3")
    enrol_arguments(enrol)
    return parser


def cmd_enrol(args) -> int:
    from .enrol import cmd_enrol as run_enrol
    return run_enrol(config_from_args(args), args)


def _install_signals(pipeline) -> None:
    def handler(signum, frame):
        log.info("signal %s: stopping", signal.Signals(signum).name)
        pipeline.stop()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def cmd_heartbeat(args) -> int:
    from .heartbeat import cmd_heartbeat as wait
    return wait(config_from_args(args), args)


def cmd_separate(args) -> int:
    from pathlib import Path

    import soundfile as sf

    from .audio_source import _to_mono
    from .resample import resample
    from .separation import Separator
    cfg = config_from_args(args)
    path = Path(args.file)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: give a WAV/FLAC/OGG file")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except RuntimeError as exc:  # libsndfile's "format not recognised"
        raise ValueError(f"{path} cannot be read as audio ({exc}); convert it first, e.g. "
                         f"`sox in.mp3 -r 8000 -c 1 out.wav`") from None
    sep = Separator.from_config(cfg, args.model, num_threads=int(cfg["runtime.num_threads"]))
    x = resample(_to_mono(audio), rate, sep.stft_cfg.sample_rate)
    t0 = time.perf_counter()
    sources = sep.separate(x)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for label, est in zip(sep.labels, sources):
        target = out / f"{path.stem}.{label}.wav"
        sf.write(str(target), est, sep.stft_cfg.sample_rate, subtype="FLOAT")
        written.append(str(target))
    audio_s = len(x) / sep.stft_cfg.sample_rate
    print(json.dumps({"file": str(path), "sources": written, "audio_s": round(audio_s, 3),
                      "seconds": round(seconds, 4),
                      "rtf": round(seconds / audio_s, 4) if audio_s else None,
                      "model": str(sep.model.path), "variant": sep.model.manifest.get("variant")}))
    return 0


def cmd_list_devices(args) -> int:
    from .audio_source import list_devices
    devices = list_devices()
    if not devices:
        print("no capture devices found (PortAudio sees none: check `arecord -l`, the user's "
              "audio group membership, or an ~/.asoundrc)", file=sys.stderr)
        return 1
    for d in devices:
        print(f"{d['index']:3d}  {d['name']}  ({d['channels']} ch, {d['default_rate']:.0f} Hz, "
              f"{d['hostapi']})")
    return 0


def cmd_config(args) -> int:
    from .config import show_config
    cfg = config_from_args(args)
    if args.show:
        sys.stdout.write(show_config(cfg))
    else:
        print(f"profile {cfg.name}: ok ({len(args.overrides)} override(s)); --show prints it")
    return 0


def cmd_run(args) -> int:
    from .audio_source import FileSource, SoundDeviceSource
    from .pipeline import Pipeline
    from .sinks import build_sinks
    cfg = config_from_args(args)
    rate = int(cfg["pipeline.rate"])
    # The audio source first: a wrong device name fails at once, before the model loads.
    if args.replay:
        source = FileSource(args.replay, rate=rate, realtime=args.realtime,
                            buffer_s=cfg["capture.buffer_s"])
    else:
        device = args.device if args.device is not None else (cfg["capture.device"] or None)
        source = SoundDeviceSource(device=device, rate=rate,
                                   capture_rate=cfg["capture.capture_rate"] or None,
                                   channels=cfg["capture.channels"],
                                   block_ms=cfg["capture.block_ms"],
                                   buffer_s=cfg["capture.buffer_s"])
        log.info("capturing from %s at %d Hz -> %d Hz", source.device_name, source.capture_rate,
                 rate)
    pipe = Pipeline.from_config(cfg, model=args.model, sinks=None, persist_seq=True)
    pipe.sinks = build_sinks(cfg)
    _install_signals(pipe)
    try:
        status = pipe.run(source, max_audio_s=args.duration_s)
    finally:
        sinks = pipe.sinks
        pipe.close()   # waits up to runtime.flush_timeout_s for the sinks
    queued = {s.name: s.left_at_close for s in sinks.sinks if getattr(s, "left_at_close", 0)}
    log.info("stopped after %.1f s of audio; overruns %s, deadline misses %d, events emitted %d%s",
             status["audio_s"], status.get("overruns"), status["deadline_misses"], pipe.seq,
             f", still queued {queued} (sent at the next start)" if queued else "")
    return 0


def cmd_detect(args) -> int:
    from .audio_source import FileSource
    from .pipeline import DETECTION_TYPES, Pipeline
    from .sinks import SinkSet, StdoutSink
    cfg = config_from_args(args)
    types = None if args.status else list(DETECTION_TYPES)
    stdout = StdoutSink(types=types)
    sinks = SinkSet([stdout])
    pipe = Pipeline.from_config(cfg, model=args.model, sinks=sinks, shedding=args.realtime)
    stdout.on_closed = pipe.stop   # `detect FILE | head`: stop when the reader has gone
    source = FileSource(args.file, rate=pipe.rate, realtime=args.realtime)
    _install_signals(pipe)
    t0 = time.perf_counter()
    try:
        status = pipe.run(source)
    finally:
        pipe.close()
    wall = time.perf_counter() - t0
    audio = status["audio_s"]
    summary = {"file": args.file, "audio_s": audio, "wall_s": round(wall, 3),
               "rtf": round(wall / audio, 4) if audio else None,
               "events": {k: v for k, v in status["events"].items() if not k.startswith("status")},
               "stages": status["stages"]}
    print(json.dumps(summary), file=sys.stderr)
    return 0


def cmd_bench(args) -> int:
    from .bench import run_report
    cfg = config_from_args(args)
    command = " ".join(["python -m device bench", *sys.argv[2:]]) if sys.argv[1:2] == ["bench"] \
        else "python -m device bench"
    files = run_report(cfg, model=args.model, out_dir=args.out, command=command)
    written = ", ".join(p.name for p in files.values() if p is not None)
    print(f"hop-budget report: {files['markdown'].parent} ({written})")
    return 0


def cmd_selfcheck(args) -> int:
    from pathlib import Path

    from .selfcheck import failed, run_selfcheck, table, to_json
    cfg = config_from_args(args)
    rows = run_selfcheck(cfg, model=args.model, budget=bool(cfg["selfcheck.budget"]) and not args.no_budget)
    sys.stdout.write(table(rows))
    if args.json:
        Path(args.json).write_text(to_json(rows) + "\n")
    return 1 if failed(rows) else 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "INFO").upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .config import ConfigError
    from .faults import EssentialStageFailed
    from .manifest import ManifestError
    try:
        return {"run": cmd_run, "detect": cmd_detect, "bench": cmd_bench, "selfcheck": cmd_selfcheck,
                "heartbeat": cmd_heartbeat, "list-devices": cmd_list_devices, "config": cmd_config,
                "separate": cmd_separate,
                "enrol": cmd_enrol}[args.command](args)
    except EssentialStageFailed as exc:
        # Not the user's input: a run-time fault. Exit 1, which systemd's Restart=on-failure
        # restarts (exit 2, a bad profile or file, is not restarted: RestartPreventExitStatus).
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, ManifestError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
