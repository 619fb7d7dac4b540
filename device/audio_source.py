"""Audio providers: where the pipeline's samples come from (micro_speech's "audio provider").

Three sources, one interface (`AudioSource`): ``start()``, then ``read(n)`` for each hop of
``n`` samples at the pipeline's rate (float32 mono in [-1, 1]), ``stop()`` at the end.

* `SoundDeviceSource` — live capture through PortAudio/ALSA (``sounddevice``): any device by
  name or index, at its native rate, downmixed to mono and resampled (soxr) to the pipeline rate.
* `FileSource` — replay of a WAV/FLAC file, in real time (paced like a microphone, through the
  same ring buffer, so overruns behave as live) or as fast as the pipeline can go.
* `SyntheticSource` — tones and noise at known times, for tests and benchmarks.

Live and real-time sources run a producer (PortAudio's callback thread or a pacing thread) that
writes into a `RingBuffer`; ``read`` takes from it, so a slow hop never blocks capture. An overrun
(buffer full, oldest audio dropped) or a PortAudio input overflow is counted in ``overruns`` and
reported by the pipeline's status; never silent.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .frontend import as_float_audio
from .resample import Resampler
from .ring_buffer import RingBuffer

__all__ = ["AudioSource", "AudioInputError", "SoundDeviceSource", "FileSource", "SyntheticSource",
           "ArraySource", "Tone", "list_devices", "resolve_device"]

log = logging.getLogger("hopwise.audio")


class AudioInputError(ValueError):
    """Audio cannot be read from a file or device; the message names it, the reason and the fix.

    A ValueError, so every command line turns it into one line and exit code 2.
    """


class AudioSource:
    """Common interface of every audio provider.

    Attributes
    ----------
    rate : int
        Sample rate of what ``read`` returns (the pipeline's rate).
    realtime : bool
        True when samples arrive at the wall-clock rate (live or paced replay): then the
        pipeline must keep up, and its hop budget and shedding apply.
    on_block : callable(end_sample, wall_time) or None
        Called by the producer after each block enters the buffer; used to measure latency from
        "last sample of a word pushed" to "event published".
    """

    rate: int = 16000
    realtime: bool = False
    on_block: Callable[[int, float], None] | None = None

    def start(self) -> None:
        """Begin producing samples."""

    def read(self, n: int, timeout: float = 1.0) -> np.ndarray | None:
        """Next ``n`` samples (float32). Empty array: none yet (timeout). None: end of stream."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop producing; further reads drain the buffer then return None."""

    @property
    def overruns(self) -> int:
        return 0

    @property
    def dropped_samples(self) -> int:
        return 0

    @property
    def backlog(self) -> int:
        """Samples captured but not yet read (0 for pull sources)."""
        return 0

    def health(self) -> dict:
        return {"overruns": self.overruns, "dropped_samples": self.dropped_samples,
                "backlog_samples": self.backlog}

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def _to_mono(x: np.ndarray) -> np.ndarray:
    x = as_float_audio(x)
    return x if x.ndim == 1 else x.mean(axis=1, dtype=np.float32)


class _Sanitizer:
    """Float audio from a file can hold NaN/inf (a broken encoder) or run far beyond +-1 (an
    unnormalised export): both would poison the log-mel and every posterior after it. Non-finite
    samples become 0 and out-of-range ones are clipped; each kind is counted and warned about
    once, naming the source."""

    LIMIT = 1.0

    def __init__(self, name: str):
        self.name = name
        self.nonfinite_samples = 0
        self.clipped_samples = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        finite = np.isfinite(x)
        if not finite.all():
            bad = int(x.size - np.count_nonzero(finite))
            if not self.nonfinite_samples:
                log.warning("%s holds NaN or infinite samples: they are replaced by silence and "
                            "counted (status: audio.nonfinite_samples); re-export the file", self.name)
            self.nonfinite_samples += bad
            x = np.where(finite, x, np.float32(0.0))
        over = np.abs(x) > self.LIMIT
        if over.any():
            if not self.clipped_samples:
                log.warning("%s has samples beyond +-1 (peak %.2f): they are clipped and counted "
                            "(status: audio.clipped_samples); normalise the file", self.name,
                            float(np.abs(x).max()))
            self.clipped_samples += int(np.count_nonzero(over))
            x = np.clip(x, -self.LIMIT, self.LIMIT)
        return x


# --------------------------------------------------------------------------- block sources
class _BlockSource(AudioSource):
    """A source defined by a generator of blocks at ``self.rate``; real time or fast.

    Fast mode: ``read`` pulls straight from the generator (no thread, no buffer, no drops).
    Real-time mode: a thread pushes one block per ``block_ms`` of wall clock into a ring buffer,
    exactly like a capture callback.
    """

    def __init__(self, rate: int, realtime: bool, block_ms: float, buffer_s: float):
        self.rate = int(rate)
        self.realtime = bool(realtime)
        self.block = max(1, int(round(self.rate * block_ms / 1000.0)))
        self._ring = RingBuffer(max(self.block * 2, int(self.rate * buffer_s))) if realtime else None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._gen: Iterator[np.ndarray] | None = None
        self._pending = np.zeros(0, dtype=np.float32)
        self._done = False
        self.samples_produced = 0
        self.on_block = None

    def _blocks(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def start(self) -> None:
        self._gen = self._blocks()
        if self.realtime:
            self._thread = threading.Thread(target=self._pace, name="hopwise-replay", daemon=True)
            self._thread.start()

    def _pace(self) -> None:
        t0 = time.monotonic()
        try:
            for blk in self._gen:
                if self._stop.is_set():
                    break
                due = t0 + (self.samples_produced + len(blk)) / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self._ring.write(blk)
                self.samples_produced += len(blk)
                if self.on_block is not None:
                    self.on_block(self.samples_produced, time.time())
        finally:
            self._ring.close()

    def read(self, n: int, timeout: float = 1.0) -> np.ndarray | None:
        if self._gen is None:
            self.start()
        if self.realtime:
            out = self._ring.read(n, timeout=timeout)
            if out is None:
                return None if self._ring.closed else np.zeros(0, dtype=np.float32)
            return out
        if not self._pending.size and not self._done:  # common case: one block is one hop
            try:
                blk = next(self._gen)
            except StopIteration:
                self._done = True
                blk = self._pending
            self.samples_produced += len(blk)
            if self.on_block is not None and len(blk):
                self.on_block(self.samples_produced, time.time())
            if len(blk) == n:
                return blk
            self._pending = blk
        self._fill(n)
        if len(self._pending) < n:
            if len(self._pending):
                self._on_tail(len(self._pending))
                self._pending = np.zeros(0, dtype=np.float32)
            return None
        out, self._pending = self._pending[:n], self._pending[n:]
        return out

    def _fill(self, n: int) -> None:
        """Pull blocks from the generator (fast mode) until ``n`` samples are pending or the
        stream ends; `read` and `read_hops` share it."""
        while len(self._pending) < n and not self._done:
            try:
                blk = next(self._gen)
            except StopIteration:
                self._done = True
                break
            self._pending = np.concatenate([self._pending, blk]) if self._pending.size else blk
            self.samples_produced += len(blk)
            if self.on_block is not None:
                self.on_block(self.samples_produced, time.time())

    def read_all(self) -> np.ndarray:
        """Every sample still to come, the last partial hop included (fast mode only): for a
        whole clip, where `read`'s hops would drop the tail."""
        if self.realtime:
            raise ValueError("read_all() is for a source that is not paced in real time")
        if self._gen is None:
            self.start()
        parts = [self._pending] if self._pending.size else []
        for blk in self._gen:
            parts.append(blk)
            self.samples_produced += len(blk)
        self._pending = np.zeros(0, dtype=np.float32)
        self._done = True
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def read_hops(self, hop: int, max_hops: int, timeout: float = 1.0) -> np.ndarray | None:
        """Whole hops, as many as are ready up to ``max_hops`` (at least one, waiting for it as
        `read` does); None when the stream has ended. Real time: what the capture has buffered,
        so a block never waits for audio that has not arrived. Replay: ``max_hops`` hops, fewer
        at the end of the stream (the tail short of a hop is dropped as `read` drops it)."""
        if self.realtime:
            ready = self._ring.available // hop
            return self.read(hop * max(1, min(int(max_hops), ready)), timeout=timeout)
        if self._gen is None:
            self.start()
        self._fill(hop * int(max_hops))
        k = min(int(max_hops), len(self._pending) // hop)
        if k == 0:
            return self.read(hop, timeout=timeout)   # the end: read's tail handling
        out, self._pending = self._pending[:k * hop], self._pending[k * hop:]
        return out

    def _on_tail(self, samples: int) -> None:
        """The stream ended with ``samples`` (< one hop) that no hop will carry."""

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._ring is not None:
            self._ring.close()

    @property
    def overruns(self) -> int:
        return self._ring.overruns if self._ring is not None else 0

    @property
    def dropped_samples(self) -> int:
        return self._ring.dropped_samples if self._ring is not None else 0

    @property
    def backlog(self) -> int:
        return self._ring.available if self._ring is not None else 0


class FileSource(_BlockSource):
    """Replay a WAV/FLAC (anything libsndfile reads) as if it were a microphone.

    Usage::

        src = FileSource("kitchen.flac", rate=16000, realtime=False)
        with src:
            while (hop := src.read(160)) is not None: ...

    Parameters
    ----------
    path : str or Path
        Audio file; multichannel files are downmixed, other rates resampled with soxr.
    rate : int
        Pipeline rate delivered by ``read``.
    realtime : bool
        True paces delivery at the file's duration (tests the real-time path, overruns
        included); False delivers as fast as the pipeline reads (``python -m device detect``).
    block_ms : float
        Size of each paced block: like a capture period. Smaller = lower latency, more wakeups.
    buffer_s : float
        Ring buffer length in real-time mode.
    """

    READ_S = 0.5
    """Seconds of the file read at once (then handed out in ``block_ms`` blocks)."""

    def __init__(self, path: str | Path, rate: int = 16000, realtime: bool = False,
                 block_ms: float = 10.0, buffer_s: float = 2.0):
        import soundfile as sf
        self.path = Path(path)
        fix = "give a WAV/FLAC/OGG file (e.g. `sox in.mp3 -r 16000 -c 1 out.wav`)"
        if not self.path.exists():
            raise AudioInputError(f"audio file {self.path} does not exist; check the path")
        if self.path.is_dir():
            raise AudioInputError(f"{self.path} is a folder, not an audio file; {fix}")
        if self.path.is_file() and self.path.stat().st_size == 0:
            raise AudioInputError(f"audio file {self.path} is empty (0 bytes); {fix}")
        try:
            info = sf.info(str(self.path))
        except Exception as exc:  # noqa: BLE001 - libsndfile raises several types, all "unreadable"
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AudioInputError(f"{self.path} is not audio that libsndfile can read ({reason}); "
                                  f"{fix}") from None
        if info.frames <= 0 or info.samplerate <= 0:
            raise AudioInputError(f"audio file {self.path} holds no samples; {fix}")
        missing, present = _wav_missing_bytes(self.path)
        if missing:
            # libsndfile quietly reads what is there; the user should know the end is gone. The
            # bytes per frame come from what is present, so 24-bit and float files count right.
            log.warning("%s is truncated: its header promises %d more bytes of audio than the file "
                        "holds (about %.2f s); re-copy or re-export it", self.path, missing,
                        missing / max(1.0, present / info.frames) / info.samplerate)
        self.file_rate = int(info.samplerate)
        self.file_frames = int(info.frames)
        self.duration_s = info.frames / info.samplerate
        self.frames_read = 0
        self.truncated = bool(missing)
        self.tail_samples = 0
        self._sanitize = _Sanitizer(f"audio file {self.path}")
        super().__init__(rate, realtime, block_ms, buffer_s)

    def _blocks(self) -> Iterator[np.ndarray]:
        import soundfile as sf
        resample = Resampler(self.file_rate, self.rate)
        # Read the file in pieces much longer than a block: every soundfile read also asks
        # libsndfile where it is (a seek), which for FLAC cost more than the whole pipeline
        # when done per 10 ms block. Blocks are still handed out one at a time.
        in_block = max(1, int(round(self.block * self.file_rate / self.rate)),
                       int(self.READ_S * self.file_rate))
        with sf.SoundFile(str(self.path)) as fh:
            carry = np.zeros(0, dtype=np.float32)
            while True:
                try:
                    data = fh.read(in_block, dtype="float32", always_2d=False)
                except Exception as exc:  # noqa: BLE001 - a damaged stretch ends the file here
                    log.warning("%s cannot be read past %.2f s (%s): the rest is skipped",
                                self.path, self.frames_read / self.file_rate, exc)
                    data = np.zeros(0, dtype=np.float32)
                self.frames_read += len(data)
                last = len(data) < in_block
                y = resample(self._sanitize(_to_mono(data)), last=last)
                carry = np.concatenate([carry, y]) if carry.size else y
                while len(carry) >= self.block:
                    yield carry[: self.block]
                    carry = carry[self.block:]
                if last:
                    break
            if self.frames_read < self.file_frames:
                self.truncated = True
                log.warning("%s is truncated: its header promises %.2f s, %.2f s could be read; "
                            "re-copy or re-export it", self.path, self.duration_s,
                            self.frames_read / self.file_rate)
            if carry.size:
                yield carry

    def _on_tail(self, samples: int) -> None:
        self.tail_samples = samples
        log.warning("the last %.1f ms of %s are shorter than one hop and are not processed",
                    1000.0 * samples / self.rate, self.path)

    def health(self) -> dict:
        h = super().health()
        h.update(nonfinite_samples=self._sanitize.nonfinite_samples,
                 clipped_samples=self._sanitize.clipped_samples, truncated=self.truncated)
        return h


def _wav_missing_bytes(path: Path) -> tuple[int, int]:
    """For a RIFF/WAVE file: (bytes its ``data`` chunk declares beyond the file's end, bytes of
    it the file holds); ``(0, 0)`` when that cannot be told (not a WAV file, open size)."""
    import struct

    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return 0, 0
            size = path.stat().st_size
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return 0, 0
                cid, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"data":
                    if length == 0xFFFFFFFF:  # streaming writers leave the size open
                        return 0, 0
                    present = size - fh.tell()
                    return max(0, length - present), min(length, present)
                fh.seek(length + (length & 1), 1)
    except OSError:
        return 0, 0


class Tone:
    """One synthetic event: a sine of ``freq_hz`` from ``start_s`` to ``end_s`` at ``amplitude``
    (0..1 full scale), with 5 ms raised-cosine ramps so it has no clicks."""

    def __init__(self, start_s: float, end_s: float, freq_hz: float, amplitude: float = 0.5):
        self.start_s, self.end_s, self.freq_hz, self.amplitude = start_s, end_s, freq_hz, amplitude


def render_tones(tones: Sequence[Tone], duration_s: float, rate: int = 16000,
                 noise: float = 0.003, seed: int = 0) -> np.ndarray:
    """The whole synthetic signal, float32 (also used by tests to write WAV files)."""
    n = int(round(duration_s * rate))
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * noise).astype(np.float32)
    ramp = max(1, int(0.005 * rate))
    for tone in tones:
        a, b = int(tone.start_s * rate), min(n, int(tone.end_s * rate))
        if b <= a:
            continue
        t = np.arange(b - a) / rate
        env = np.ones(b - a)
        r = min(ramp, (b - a) // 2)
        if r:
            w = 0.5 - 0.5 * np.cos(np.pi * np.arange(r) / r)
            env[:r], env[-r:] = w, w[::-1]
        x[a:b] += (tone.amplitude * env * np.sin(2 * np.pi * tone.freq_hz * t)).astype(np.float32)
    return x


class SyntheticSource(_BlockSource):
    """Tones over faint noise at known times: a deterministic microphone for tests/benchmarks.

    Parameters
    ----------
    tones : list of Tone
        What sounds when.
    duration_s : float
        Length of the stream.
    rate, realtime, block_ms, buffer_s : as `FileSource`.
    noise : float
        RMS of the white noise floor (keeps log-mels away from the floor, as a real room does).
    """

    def __init__(self, tones: Sequence[Tone] = (), duration_s: float = 5.0, rate: int = 16000,
                 realtime: bool = False, block_ms: float = 10.0, buffer_s: float = 2.0,
                 noise: float = 0.003, seed: int = 0):
        super().__init__(rate, realtime, block_ms, buffer_s)
        self.signal = render_tones(tones, duration_s, rate, noise, seed)
        self.duration_s = duration_s

    def _blocks(self) -> Iterator[np.ndarray]:
        for i in range(0, len(self.signal), self.block):
            yield self.signal[i:i + self.block]


class ArraySource(_BlockSource):
    """Samples already in memory, replayed as a microphone: the pipeline's own cost, with no
    file decoding inside the run (what a CPU comparison with a peer that is handed decoded
    samples needs, e.g. `evaluation.cpu`); also a source for a program that has the audio.

    Usage::

        src = ArraySource(int16_samples, rate=16000)
        pipe.run(src)

    Parameters
    ----------
    samples : np.ndarray
        Mono at ``rate``: int16 (scaled by 1/32768 block by block, as capture is: an hour of
        int16 stays 115 MB instead of 230 MB of float32) or float32 in [-1, 1].
    rate, realtime, block_ms, buffer_s : as `FileSource`.
    """

    def __init__(self, samples: np.ndarray, rate: int = 16000, realtime: bool = False,
                 block_ms: float = 10.0, buffer_s: float = 2.0):
        x = np.asarray(samples)
        if x.ndim != 1:
            raise AudioInputError(f"ArraySource takes mono samples (1-D), got shape {x.shape}; "
                                  f"downmix first")
        if x.dtype not in (np.dtype(np.int16), np.dtype(np.float32)):
            x = as_float_audio(x)
        super().__init__(rate, realtime, block_ms, buffer_s)
        self.signal = x
        self.duration_s = len(x) / self.rate

    def _blocks(self) -> Iterator[np.ndarray]:
        for i in range(0, len(self.signal), self.block):
            yield as_float_audio(self.signal[i:i + self.block])


# --------------------------------------------------------------------------- live capture
def list_devices() -> list[dict]:
    """Input-capable devices PortAudio sees: index, name, channels, default rate, host API."""
    import sounddevice as sd
    apis = sd.query_hostapis()
    out = []
    for i, dev in enumerate(sd.query_devices()):
        if dev["max_input_channels"] > 0:
            out.append({"index": i, "name": dev["name"], "channels": dev["max_input_channels"],
                        "default_rate": dev["default_samplerate"],
                        "hostapi": apis[dev["hostapi"]]["name"]})
    return out


def _device_names() -> str:
    try:
        return ", ".join(f"{d['index']}: {d['name']}" for d in list_devices()) or "none"
    except Exception:  # noqa: BLE001 - only for a message
        return "unknown"


def resolve_device(device: str | int | None) -> int | None:
    """Device index from an index, an index as text, or a (part of a) name; None = default.

    Raises ValueError naming the devices there are when nothing or more than one matches.
    """
    if device is None or device == "":
        return None
    if isinstance(device, int) or (isinstance(device, str) and device.strip().isdigit()):
        return int(device)
    devices = list_devices()
    exact = [d for d in devices if d["name"] == device]
    matches = exact or [d for d in devices if str(device).lower() in d["name"].lower()]
    names = ", ".join(f"{d['index']}: {d['name']}" for d in devices) or "none"
    if not matches:
        raise AudioInputError(f"no input device matches {device!r}; input devices: {names} "
                              f"(see `python -m device list-devices`)")
    if len(matches) > 1:
        raise AudioInputError(f"{device!r} matches several input devices ({names}); give the "
                              f"index")
    return matches[0]["index"]


class SoundDeviceSource(AudioSource):
    """Live microphone through PortAudio (ALSA on the Pi).

    Usage::

        src = SoundDeviceSource(device="USB", rate=16000)
        src.start(); hop = src.read(160); ...; src.stop()

    Parameters
    ----------
    device : str, int or None
        Name (or unique part of it) or index, as ``python -m device list-devices`` shows; None
        is the system default.
    rate : int
        Pipeline rate. The device is opened at ``capture_rate`` and resampled with soxr.
    capture_rate : int or None
        Rate to open the device at; None = the device's default (its native rate: USB
        microphones are often 44.1/48 kHz only, and ALSA's own resampling is costlier).
    channels : int
        Channels to open; downmixed to mono by averaging.
    block_ms : float
        PortAudio period. Smaller = less latency, more callbacks (CPU) and more risk of xruns.
    buffer_s : float
        Ring buffer between callback and pipeline: how long a stall it rides out.
    """

    realtime = True

    def __init__(self, device: str | int | None = None, rate: int = 16000,
                 capture_rate: int | None = None, channels: int = 1, block_ms: float = 10.0,
                 buffer_s: float = 2.0, latency: str | float = "low"):
        try:
            import sounddevice as sd
        except OSError as exc:  # the Python module is there, the PortAudio library is not
            raise AudioInputError(f"PortAudio is missing ({exc}); install it: sudo apt-get install "
                                  f"libportaudio2") from None
        self._device_spec = device
        self.device = resolve_device(device)
        self.rate = int(rate)
        try:
            info = sd.query_devices(self.device, "input")
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioInputError(f"no input device {device!r} ({exc}); input devices: "
                                  f"{_device_names()} (see `python -m device list-devices`, then "
                                  f"--device NAME or capture.device)") from None
        self.device_name = info["name"]
        self.capture_rate = int(capture_rate or info["default_samplerate"])
        self.channels = int(channels)
        self.block_ms = block_ms
        self.latency = latency
        self._ring = RingBuffer(max(1024, int(self.rate * buffer_s)))
        self._resample = Resampler(self.capture_rate, self.rate)
        self._stream = None
        self.input_overflows = 0
        self.restarts = 0
        self.callbacks = 0
        self.samples_produced = 0
        self.on_block = None

    def _callback(self, indata, frames, time_info, status) -> None:
        if status and status.input_overflow:
            self.input_overflows += 1
        y = self._resample(_to_mono(indata))
        self._ring.write(y)
        self.callbacks += 1
        self.samples_produced += len(y)
        if self.on_block is not None:
            self.on_block(self.samples_produced, time.time())

    def start(self) -> None:
        import sounddevice as sd
        try:
            self._stream = sd.InputStream(
                device=self.device, samplerate=self.capture_rate, channels=self.channels,
                dtype="int16", blocksize=max(1, int(self.capture_rate * self.block_ms / 1000)),
                latency=self.latency, callback=self._callback)
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioInputError(f"cannot open input device {self.device_name!r} at "
                                  f"{self.capture_rate} Hz, {self.channels} channel(s) ({exc}); "
                                  f"try capture.capture_rate=0 (its native rate) or "
                                  f"capture.channels=1, or another --device") from None

    def read(self, n: int, timeout: float = 1.0) -> np.ndarray | None:
        out = self._ring.read(n, timeout=timeout)
        if out is None:
            return None if self._ring.closed else np.zeros(0, dtype=np.float32)
        return out

    def read_hops(self, hop: int, max_hops: int, timeout: float = 1.0) -> np.ndarray | None:
        """The whole hops captured so far, up to ``max_hops`` (at least one, waited for)."""
        return self.read(hop * max(1, min(int(max_hops), self._ring.available // hop)),
                         timeout=timeout)

    def restart(self) -> None:
        """Close and reopen the stream (the pipeline calls this when capture stalls: a USB
        microphone unplugged and plugged back in gets a new ALSA handle)."""
        import sounddevice as sd
        if self._stream is not None:
            try:
                self._stream.abort()
                self._stream.close()
            except Exception:  # noqa: BLE001 - the old stream may be gone with its device
                pass
            self._stream = None
        sd._terminate()       # PortAudio re-enumerates devices only on re-initialisation
        sd._initialize()
        self.restarts += 1
        self.device = resolve_device(self._device_spec)  # its index may have changed
        self.start()

    def stop(self) -> None:
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            finally:
                self._stream = None
        self._ring.close()

    @property
    def overruns(self) -> int:
        return self._ring.overruns + self.input_overflows

    @property
    def dropped_samples(self) -> int:
        return self._ring.dropped_samples

    @property
    def backlog(self) -> int:
        return self._ring.available

    def health(self) -> dict:
        h = super().health()
        h.update(device=self.device_name, capture_rate=self.capture_rate,
                 input_overflows=self.input_overflows, restarts=self.restarts)
        return h
