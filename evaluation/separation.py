"""BSS-eval of the source separator: oracle masks, every exported variant, k-means vs fixed.

::

    python -m evaluation.separation                                   # the corpus's test mixtures
    python -m evaluation.separation --sources ../shared/data/speech_commands_v2_test \\
        --sources ../shared/data/esc50 --name speech_esc50           # any two folders of sources

Test mixtures are built deterministically (`build_mixtures`, seeded by ``eval.separation.seed``):
``eval.separation.mixtures`` pairs, each a ``clip_s`` stretch of a source of each set, the
first set scaled to ``snr_db`` against the second (0 dB: equal energy). Without ``--sources``
the pairs are the corpus's held-out test mixtures (`train.corpus.split_corpus`), re-levelled to
``snr_db``.

Rows of the table (`evaluate`):

* ``oracle IBM`` / ``oracle IRM``: the ideal binary and ratio masks applied to the mixture's
  STFT: what a mask can reach on this set at this STFT (the ceiling of every other row);
* ``mixture``: the unprocessed mixture as the estimate of every source (the NSDR reference);
* every exported variant, run by the device's runner (`device.separation.Separator`: fixed
  attractors, the quantised file), with its parameters, file size and real-time factor on one
  host core (`Separator.separate`, pinned to one CPU);
* ``--kmeans VARIANT``: the float Keras embeddings with k-means attractors per chunk
  (scikit-learn), the original DANet's inference, beside the same variant's fixed attractors.

Metrics: SDR, SIR, SAR by BSS-eval v3 (``mir_eval.separation.bss_eval_sources``; the source
order is known for the oracle and fixed-attractor rows, and searched for the k-means rows);
NSDR = SDR(estimate) - SDR(mixture) per source; GNSDR, GSIR, GSAR are their means over every
source of every mixture weighted by the mixture's length. Written to
``reports/separation_<name>.{json,md}`` with audio (sources, mixture, estimates) and a waveform
+ spectrogram PNG of ``eval.separation.examples`` mixtures in ``reports/separation_<name>/``.
"""
from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from device.config import Config, add_profile_arguments, config_from_args  # noqa: E402
from device.frontend import STFTConfig, istft, stft  # noqa: E402
from device.paths import BuildPaths  # noqa: E402
from device.separation import Separator  # noqa: E402

__all__ = ["build_mixtures", "corpus_mixtures", "oracle_masks", "bss_eval", "global_scores",
           "evaluate", "main"]

log = logging.getLogger("evaluation.separation")


# --------------------------------------------------------------------------- test mixtures
def _level(sources: np.ndarray, snr_db: float) -> np.ndarray:
    """Scale source 0 to ``snr_db`` against source 1; the sum peaks at most at 0.99."""
    e = np.sqrt(np.mean(sources.astype(np.float64) ** 2, axis=1)) + 1e-12
    out = sources / e[:, None] * 0.05
    out[0] *= 10.0 ** (snr_db / 20.0)
    peak = np.abs(out.sum(0)).max()
    if peak > 0.99:
        out *= 0.99 / peak
    return out.astype(np.float32)


def build_mixtures(folders: Sequence[str | Path], n: int, clip_s: float, snr_db: float,
                   seed: int, sample_rate: int) -> list[dict]:
    """Deterministic two-source mixtures from two folders of recordings (any layout).

    Files are listed recursively and sorted, so the same folders and seed give the same
    mixtures on any machine. Each mixture takes a random file of each folder, its loudest
    ``clip_s`` stretch (quiet stretches of a keyword recording are silence, not speech), and
    levels the first source to ``snr_db`` against the second.

    Returns
    -------
    list of dict
        ``{"sources": (2, n_samples) float32, "mixture": (n_samples,), "files": [a, b]}``.
    """
    from train.audio_io import load_audio
    from train.datasets import AUDIO_EXTENSIONS

    if len(folders) != 2:
        raise ValueError(f"give two folders of sources (--sources A --sources B), got {len(folders)}")
    lists = []
    for folder in folders:
        files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        if not files:
            raise FileNotFoundError(f"no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) "
                                    f"under {folder}")
        lists.append(files)
    rng = np.random.default_rng(seed)
    length = int(round(clip_s * sample_rate))
    out = []
    while len(out) < n:
        picks = [files[int(rng.integers(len(files)))] for files in lists]
        sources = []
        for path in picks:
            audio = load_audio(path, sample_rate)
            if len(audio) < length:
                audio = np.pad(audio, (0, length - len(audio)))
            hop = max(1, length // 8)
            energy = [float(np.mean(audio[i:i + length] ** 2))
                      for i in range(0, len(audio) - length + 1, hop)]
            start = int(np.argmax(energy)) * hop
            sources.append(audio[start:start + length])
        sources = np.stack(sources)
        if np.any(np.sqrt(np.mean(sources ** 2, axis=1)) < 1e-4):
            continue  # a silent recording has no source to separate
        sources = _level(sources, snr_db)
        out.append({"sources": sources, "mixture": sources.sum(0), "files": [str(p) for p in picks]})
    return out


def corpus_mixtures(cfg: Config, n: int, snr_db: float) -> list[dict]:
    """The corpus's held-out test mixtures (first ``n``), re-levelled to ``snr_db``."""
    from train.corpus import build_corpus, split_corpus

    test = split_corpus(build_corpus(cfg, progress=False), cfg)["test"].separation
    if not test:
        raise ValueError("the corpus has no test mixtures: raise data.synthetic."
                         "separation_mixtures or give --sources")
    out = []
    for m in test[:n]:
        sources = _level(np.asarray(m["sources"], np.float32), snr_db)
        out.append({"sources": sources, "mixture": sources.sum(0), "files": list(m["labels"])})
    return out


# --------------------------------------------------------------------------- masks and metrics
def oracle_masks(sources: np.ndarray, cfg: STFTConfig, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(mixture STFT, ideal masks ``(frames, bins, n_sources)``): ``"ibm"`` one-hot of the
    loudest source per bin, ``"irm"`` each source's magnitude share."""
    specs = np.stack([stft(s, cfg) for s in sources])
    mags = np.abs(specs)
    if kind == "ibm":
        masks = (np.argmax(mags, axis=0)[None] == np.arange(len(sources))[:, None, None])
    elif kind == "irm":
        masks = mags / (mags.sum(axis=0, keepdims=True) + 1e-12)
    else:
        raise ValueError(f"oracle mask kind must be 'ibm' or 'irm', got {kind!r}")
    return specs.sum(axis=0), np.moveaxis(masks.astype(np.float32), 0, -1)


def apply_masks(spectrum: np.ndarray, masks: np.ndarray, cfg: STFTConfig, length: int) -> np.ndarray:
    return np.stack([istft(spectrum * masks[..., c], cfg, length=length)
                     for c in range(masks.shape[-1])]).astype(np.float32)


def bss_eval(reference: np.ndarray, estimate: np.ndarray, permute: bool = False) -> dict:
    """SDR, SIR, SAR per source (dB) by ``mir_eval.separation.bss_eval_sources``.

    A silent estimate (BSS-eval cannot score one) gets a -inf-free stand-in: a 1e-8 dither.
    """
    import mir_eval

    est = np.asarray(estimate, np.float64)
    silent = np.abs(est).max(axis=1) == 0
    if silent.any():
        est[silent] = 1e-8 * np.random.default_rng(0).standard_normal((int(silent.sum()), est.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # "deprecated as of 0.8": still the reference
        sdr, sir, sar, perm = mir_eval.separation.bss_eval_sources(
            np.asarray(reference, np.float64), est, compute_permutation=permute)
    return {"sdr": sdr.tolist(), "sir": sir.tolist(), "sar": sar.tolist(),
            "permutation": [int(p) for p in perm]}


def global_scores(rows: Sequence[dict], mixture_rows: Sequence[dict]) -> dict:
    """GNSDR, GSDR, GSIR, GSAR: length-weighted means over every source of every mixture."""
    w, nsdr, sdr, sir, sar = [], [], [], [], []
    for r, m in zip(rows, mixture_rows):
        for c in range(len(r["sdr"])):
            w.append(r["length"])
            nsdr.append(r["sdr"][c] - m["sdr"][c])
            sdr.append(r["sdr"][c])
            sir.append(r["sir"][c])
            sar.append(r["sar"][c])
    w = np.asarray(w, np.float64)

    def mean(v):
        return float(np.sum(w * np.asarray(v)) / np.sum(w))
    per_source = {}
    n_sources = len(rows[0]["sdr"])
    for c in range(n_sources):
        lw = np.asarray([r["length"] for r in rows], np.float64)
        per_source[c] = float(np.sum(lw * np.asarray([r["sdr"][c] - m["sdr"][c] for r, m in
                                                      zip(rows, mixture_rows)])) / lw.sum())
    return {"gnsdr": mean(nsdr), "gsdr": mean(sdr), "gsir": mean(sir), "gsar": mean(sar),
            "gnsdr_per_source": per_source}


def _one_core_rtf(sep: Separator, mixtures: Sequence[dict], rate: int) -> float:
    """CPU seconds per audio second of `Separator.separate`, pinned to one CPU."""
    from device.bench import one_core

    sep.separate(mixtures[0]["mixture"])   # warm-up: first call allocates
    with one_core():
        t0 = time.process_time()
        for m in mixtures:
            sep.separate(m["mixture"])
        seconds = time.process_time() - t0
    return seconds / (sum(len(m["mixture"]) for m in mixtures) / rate)


# --------------------------------------------------------------------------- the table
def evaluate(cfg: Config, mixtures: Sequence[dict], models: Sequence[Path],
             kmeans: Sequence[str] = (), progress: bool = True) -> dict:
    """Score the oracle masks, the mixture, every model file and k-means rows on ``mixtures``.

    Returns
    -------
    dict
        ``{"rows": [{"name", "kind", "gnsdr", "gsir", ...}], "per_mixture": {...}}``.
    """
    scfg = STFTConfig.from_config(cfg, "separation")
    rate = scfg.sample_rate
    bar = _bar(progress)
    per: dict[str, list] = {}

    def score(name, estimates, permute=False):
        rows = per.setdefault(name, [])
        for m, est in zip(mixtures, estimates):
            r = bss_eval(m["sources"], est, permute)
            r["length"] = len(m["mixture"])
            rows.append(r)

    score("mixture", bar([np.stack([m["mixture"]] * len(m["sources"])) for m in mixtures],
                         "mixture"))
    for kind in ("ibm", "irm"):
        ests = []
        for m in mixtures:
            spec, masks = oracle_masks(m["sources"], scfg, kind)
            ests.append(apply_masks(spec, masks, scfg, len(m["mixture"])))
        score(f"oracle {kind.upper()}", bar(ests, f"oracle {kind}"))
    info: dict[str, dict] = {"mixture": {"kind": "reference"},
                             "oracle IBM": {"kind": "oracle"}, "oracle IRM": {"kind": "oracle"}}
    for path in models:
        sep = Separator(path, frontend=cfg.section("frontend.separation"))
        man = sep.model.manifest
        name = f"{man.get('variant', Path(path).stem)} ({man.get('quantization', '?')})"
        score(name, bar([sep.separate(m["mixture"]) for m in mixtures], name))
        info[name] = {"kind": "model", "file": str(path), "variant": man.get("variant"),
                      "quantization": man.get("quantization"), "params": man.get("params"),
                      "size_bytes": Path(path).stat().st_size,
                      # what a pruned model's zeros buy: LiteRT runs them dense, gzip packs them
                      "size_gzip_bytes": len(gzip.compress(Path(path).read_bytes(), 9)),
                      "sparsity": man.get("sparsity"),
                      "rtf_one_core": _one_core_rtf(sep, mixtures, rate),
                      "backend": sep.model.backend}
    for variant in kmeans:
        from train import separation as tsep

        embedding, normalizer, attractors, tinfo = tsep.load_trained(cfg, variant)
        chunk = int(cfg["model.separation.chunk_frames"])
        silence = float(cfg["model.separation.silence_db"])
        for mode, attr in (("k-means", None), ("fixed, float", attractors)):
            name = f"{variant} ({mode})"
            ests = [tsep.separate_keras(embedding, normalizer, m["mixture"], scfg, chunk, attr,
                                        len(attractors), silence, int(cfg["project.seed"]))
                    for m in mixtures]
            score(name, bar(ests, name), permute=attr is None)
            info[name] = {"kind": "keras", "variant": variant, "attractors": mode,
                          "params": tinfo.get("params")}
    table = []
    for name, rows in per.items():
        g = global_scores(rows, per["mixture"])
        table.append({"name": name, **info.get(name, {}), **g})
    return {"rows": table, "per_mixture": per,
            "mixtures": [{"files": m["files"], "length": len(m["mixture"])} for m in mixtures]}


def keyword_accuracy(cfg: Config, separator_path: Path, keyword_model: Path,
                     progress: bool = True) -> dict:
    """Keyword accuracy of the deployed keyword model on the seed table's mixed-keyword test
    set, as the mixture and as the separator's speech estimate (what the ``separated``
    profile feeds the keyword frontend), and on the clean clips both ways.

    The mixtures are the seed table's (`train.multitask.eval_sets`: the same seed, share and
    partner draws); the separator works at 8 kHz, so its speech estimate is resampled back to
    16 kHz with the device's resampler before the log-mel.
    """
    from device.frontend import LogMelConfig
    from device.interpreter import TFLiteModel
    from device.resample import resample
    from train import multitask as mt
    from train import waveforms as wf
    from train.features import log_mel_batch

    data = mt.load_splits(cfg)["test"]
    lm_cfg = LogMelConfig.from_config(cfg, "keyword")
    rng = np.random.default_rng(int(cfg["eval.seed"]))   # the draws of mt.eval_sets, in order
    scene_audio, _ = data.scenes.loudest(int(cfg["eval.scene_crops_per_clip"]))
    partner = rng.integers(0, len(scene_audio), size=len(data.keyword_audio))
    silence = data.keyword_labels == data.silence_index
    mixed = wf.mix_at_share(data.keyword_audio, scene_audio[partner],
                            float(cfg["eval.keyword_share"]), silence)
    sep = Separator(separator_path, frontend=cfg.section("frontend.separation"))
    keep = sep.labels.index("speech") if "speech" in sep.labels else 0
    rate, srate = lm_cfg.sample_rate, sep.stft_cfg.sample_rate
    quality = cfg["resample.stage_quality"]

    def separated(batch):
        out = np.empty_like(batch)
        for i, clip in enumerate(_bar(progress)(list(batch), "separating keyword clips")):
            est = sep.separate(resample(clip, rate, srate, quality))[keep]
            back = resample(est, srate, rate, quality)[: len(clip)]
            out[i] = np.pad(back, (0, len(clip) - len(back)))
        return out

    model = TFLiteModel(keyword_model, frontend=cfg.section("frontend.keyword"))
    labels = data.keyword_labels

    def acc(audio):
        probs = model.predict(log_mel_batch(audio, lm_cfg))["keyword"]
        return float(np.mean(probs.argmax(1) == labels))

    return {"clips": int(len(labels)), "keyword_share": float(cfg["eval.keyword_share"]),
            "separator": str(separator_path), "keyword_model": str(keyword_model),
            "mixed": acc(mixed), "mixed_separated": acc(separated(mixed)),
            "clean": acc(data.keyword_audio), "clean_separated": acc(separated(data.keyword_audio))}


def _bar(progress: bool):
    def wrap(items, desc):
        if not progress:
            return items
        try:
            from tqdm import tqdm
            return list(tqdm(items, desc=desc, leave=False))
        except ImportError:
            return items
    return wrap


def markdown(result: dict, title: str) -> str:
    """The table as Markdown: oracle rows first, then the models by GNSDR."""
    lines = [f"# {title}", "", "| row | GNSDR dB | GSIR dB | GSAR dB | GSDR dB | params | file bytes "
             "| gzip bytes | RTF one core |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        rtf = r.get("rtf_one_core")
        lines.append(f"| {r['name']} | {r['gnsdr']:.2f} | {r['gsir']:.2f} | {r['gsar']:.2f} | "
                     f"{r['gsdr']:.2f} | {r.get('params') or ''} | {r.get('size_bytes') or ''} | "
                     f"{r.get('size_gzip_bytes') or ''} | {'' if rtf is None else f'{rtf:.4f}'} |")
    lines += ["", f"{len(result['mixtures'])} mixtures; GNSDR = length-weighted mean of SDR(estimate)"
              " - SDR(mixture) over every source (BSS-eval v3, mir_eval)."]
    return "\n".join(lines) + "\n"


def save_examples(cfg: Config, mixtures: Sequence[dict], models: Sequence[Path], folder: Path,
                  count: int) -> list[Path]:
    """Audio (sources, mixture, each model's estimates) and a waveform + spectrogram PNG of the
    first ``count`` mixtures."""
    import soundfile as sf
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scfg = STFTConfig.from_config(cfg, "separation")
    rate = scfg.sample_rate
    folder.mkdir(parents=True, exist_ok=True)
    seps = [Separator(p, frontend=cfg.section("frontend.separation")) for p in models]
    written = []
    for i, m in enumerate(mixtures[:count]):
        tracks = {"mixture": m["mixture"]}
        for c, s in enumerate(m["sources"]):
            tracks[f"source{c}"] = s
        for sep in seps:
            variant = sep.model.manifest.get("variant", sep.model.path.stem)
            for label, est in zip(sep.labels, sep.separate(m["mixture"])):
                tracks[f"{variant}.{label}"] = est
        for name, audio in tracks.items():
            target = folder / f"mix{i:02d}.{name}.wav"
            sf.write(str(target), audio, rate, subtype="FLOAT")
            written.append(target)
        fig, axes = plt.subplots(len(tracks), 2, figsize=(11, 1.6 * len(tracks)), squeeze=False)
        t = np.arange(len(m["mixture"])) / rate
        for row, (name, audio) in enumerate(tracks.items()):
            axes[row, 0].plot(t, audio, lw=0.4)
            axes[row, 0].set_ylabel(name, fontsize=7)
            spec = 20 * np.log10(np.abs(stft(audio, scfg)).T + 1e-6)
            axes[row, 1].imshow(spec, origin="lower", aspect="auto", vmin=spec.max() - 80,
                                extent=(0, t[-1], 0, rate / 2))
        axes[-1, 0].set_xlabel("s")
        axes[-1, 1].set_xlabel("s (spectrogram, Hz)")
        fig.suptitle(f"mixture {i}: {' + '.join(Path(f).stem for f in m['files'])}", fontsize=9)
        fig.tight_layout()
        png = folder / f"mix{i:02d}.png"
        fig.savefig(png, dpi=80)
        plt.close(fig)
        written.append(png)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.separation", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="BSS-eval of the source separator on deterministic test mixtures: "
                    "oracle IBM/IRM, the mixture, every exported "
                    "separator (--model, default: the deployed one and build/export/<profile>/"
                    "separation_*.tflite) and k-means rows; GNSDR/GSIR/GSAR, parameters, file "
                    "size, RTF on one core; JSON + Markdown + example audio and PNGs in "
                    "build/reports/.",
        epilog="examples:\n  python -m evaluation.separation --kmeans lstm64\n"
               "  python -m evaluation.separation --sources ../shared/data/speech_commands_v2_test"
               " --sources ../shared/data/background_noise --name speech_noise")
    add_profile_arguments(parser, "eval.separation.mixtures=10")
    parser.add_argument("--sources", action="append", default=None, metavar="FOLDER",
                        help="two folders of sources (first: the one levelled to snr_db); "
                             "default: the corpus's test mixtures")
    parser.add_argument("--model", action="append", type=Path, default=None,
                        help="separator .tflite files to score (repeatable)")
    parser.add_argument("--kmeans", action="append", default=[], metavar="VARIANT",
                        help="also score this trained variant's float embeddings with k-means "
                             "and with its fixed attractors (repeatable)")
    parser.add_argument("--keywords", action="store_true",
                        help="also: keyword accuracy of the deployed keyword model on the seed "
                             "table's mixed-keyword test set, with and without the deployed "
                             "separator in front (needs `make train export` and `make separation`)")
    parser.add_argument("--name", default=None, help="report name (default: separation_<profile>)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = config_from_args(args)
    paths = BuildPaths(cfg)
    e = cfg.section("eval.separation")
    rate = int(cfg["frontend.separation.sample_rate"])
    try:
        if args.sources:
            mixtures = build_mixtures(args.sources, int(e["mixtures"]), float(e["clip_s"]),
                                      float(e["snr_db"]), int(e["seed"]), rate)
        else:
            mixtures = corpus_mixtures(cfg, int(e["mixtures"]), float(e["snr_db"]))
        models = args.model or ([paths.resolve(cfg["model.separation.model"])] + sorted(
            (paths.export_dir / paths.profile).glob("separation_*.tflite")))
        models = [m for m in models if Path(m).exists()]
        if not models and not args.kmeans:
            raise FileNotFoundError("no exported separator: run `make separation` first")
        result = evaluate(cfg, mixtures, models, args.kmeans, progress=not args.quiet)
    except (FileNotFoundError, ValueError) as exc:
        print(f"evaluation.separation: {exc}", file=sys.stderr)
        return 2
    name = args.name or f"separation_{paths.profile}"
    if args.keywords:
        result["keywords"] = keyword_accuracy(cfg, paths.resolve(cfg["model.separation.model"]),
                                              paths.resolve(cfg["stages.multitask.model"]),
                                              progress=not args.quiet)
    result["settings"] = {**e, "sources": args.sources or "corpus test split"}
    paths.report(f"{name}.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    md = markdown(result, f"Source separation: {name} ({result['settings']['sources']}, "
                          f"{e['snr_db']} dB)")
    paths.report(f"{name}.md").write_text(md)
    save_examples(cfg, mixtures, models[:3], paths.report(name), int(e["examples"]))
    if "keywords" in result:
        k = result["keywords"]
        md += (f"\nKeyword accuracy ({k['clips']} test clips, int8 keyword model): mixed "
               f"{k['mixed']:.3f} -> separated {k['mixed_separated']:.3f}; clean {k['clean']:.3f}"
               f" -> separated {k['clean_separated']:.3f}\n")
        paths.report(f"{name}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
