"""Audio ring buffer: decouples the capture thread from the processing loop.

The capture callback (PortAudio's thread, or a replay thread) calls `RingBuffer.write`; the
pipeline calls `RingBuffer.read` for one hop at a time. When processing falls so far behind that
the buffer is full, the *oldest* audio is dropped (the device must stay close to real time; old
audio is worth less than new) and the overrun is counted: ``overruns`` (how many writes hit a
full buffer) and ``dropped_samples`` are reported in the status heartbeat, never silent.
"""
from __future__ import annotations

import threading

import numpy as np

__all__ = ["RingBuffer"]


class RingBuffer:
    """Single-producer / single-consumer sample FIFO of fixed capacity.

    Usage::

        rb = RingBuffer(capacity=16000, dtype=np.float32)   # 1 s at 16 kHz
        rb.write(chunk)                 # capture thread; never blocks
        hop = rb.read(160, timeout=0.5) # processing loop; None on timeout or when closed and empty

    Parameters
    ----------
    capacity : int
        Samples it holds. Larger rides out longer stalls (a slow model call, a GC pause) at the
        cost of memory and, after a stall, of latency (the backlog is processed late, then
        caught up). One second at 16 kHz is 64 kB of float32.
    dtype : numpy dtype
        Sample type stored (float32 after resampling).
    """

    def __init__(self, capacity: int, dtype=np.float32):
        if capacity <= 0:
            raise ValueError(f"ring buffer capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, dtype=dtype)
        self._read = 0    # absolute sample counters (monotonic; index = counter % capacity)
        self._write = 0
        self._cond = threading.Condition()
        self._closed = False
        self.overruns = 0
        self.dropped_samples = 0
        self.high_water = 0

    # ------------------------------------------------------------------ producer
    def write(self, samples: np.ndarray) -> int:
        """Append samples; if they do not fit, drop the oldest and count an overrun.

        Returns the number of samples dropped by this call. Never blocks on the consumer.
        """
        x = np.asarray(samples, dtype=self._buf.dtype).reshape(-1)
        n = len(x)
        if n == 0:
            return 0
        with self._cond:
            dropped = 0
            if n > self.capacity:  # a single write larger than the buffer: keep its tail
                dropped += n - self.capacity
                x = x[-self.capacity:]
                n = self.capacity
            free = self.capacity - (self._write - self._read)
            if n > free:
                dropped += n - free
                self._read += n - free
            start = self._write % self.capacity
            first = min(n, self.capacity - start)
            self._buf[start:start + first] = x[:first]
            if first < n:
                self._buf[: n - first] = x[first:]
            self._write += n
            if dropped:
                self.overruns += 1
                self.dropped_samples += dropped
            self.high_water = max(self.high_water, self._write - self._read)
            self._cond.notify_all()
            return dropped

    def close(self) -> None:
        """No more writes: readers drain what is left, then get None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ consumer
    @property
    def available(self) -> int:
        """Samples waiting to be read (the backlog)."""
        with self._cond:
            return self._write - self._read

    @property
    def samples_written(self) -> int:
        return self._write

    def read(self, n: int, timeout: float | None = None) -> np.ndarray | None:
        """Return exactly ``n`` samples, waiting up to ``timeout`` seconds for them.

        Returns None on timeout, or when the buffer is closed with fewer than ``n`` samples left
        (a final partial hop is discarded: the frontend could not complete a frame from it).
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._write - self._read >= n or self._closed,
                                       timeout=timeout):
                return None
            if self._write - self._read < n:
                return None
            start = self._read % self.capacity
            first = min(n, self.capacity - start)
            out = np.empty(n, dtype=self._buf.dtype)
            out[:first] = self._buf[start:start + first]
            if first < n:
                out[first:] = self._buf[: n - first]
            self._read += n
            return out
