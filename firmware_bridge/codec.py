"""Wire codec of the hopwise bridge protocol (see ``PROTOCOL.md``).

Pure Python and standard library only, so it runs on the Pi next to the audio
pipeline without pulling in numpy.  The layout implemented here is the single
source of truth that the C codec (``c/hopwise_bridge.c``) mirrors; the two are
held together by the shared vectors in ``test_vectors.json``.

A frame on the wire is::

    0x00  COBS( version | type | seq | payload | crc16 )  0x00

with every multi-byte integer little-endian and the CRC being
CRC-16/CCITT-FALSE over ``version .. payload``.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from typing import ClassVar, Union

__all__ = [
    "PROTOCOL_VERSION",
    "MAX_PAYLOAD",
    "MAX_BODY",
    "MAX_FRAME",
    "MAX_LABEL_BYTES",
    "EVENT_KINDS",
    "KIND_IDS",
    "CONFIG_KEYS",
    "UNSEQUENCED",
    "MsgType",
    "Event",
    "Heartbeat",
    "LabelTable",
    "Ack",
    "Config",
    "Ping",
    "Pong",
    "Hello",
    "Message",
    "crc16_ccitt_false",
    "cobs_encode",
    "cobs_decode",
    "CobsError",
    "encode",
    "decode_body",
    "Decoder",
    "confidence_to_q16",
    "q16_to_confidence",
    "next_seq",
]

PROTOCOL_VERSION = 1
#: Largest payload of any message; keeps a whole frame inside a 256-byte MCU buffer.
MAX_PAYLOAD = 240
#: version(1) + type(1) + seq(2) + payload + crc(2)
HEADER_BYTES = 4
CRC_BYTES = 2
MAX_BODY = HEADER_BYTES + MAX_PAYLOAD + CRC_BYTES
#: COBS adds one byte per 254 (MAX_BODY < 254, so exactly one) plus the two delimiters.
MAX_FRAME = MAX_BODY + 1 + 2
#: Longest label name (UTF-8 bytes) in a label table entry.
MAX_LABEL_BYTES = 32
#: Sequence number of messages that are not acknowledged (heartbeat, ack, ping, ...).
UNSEQUENCED = 0

EVENT_KINDS = ("wake", "command", "scene", "beat", "sound")
KIND_IDS = {name: i for i, name in enumerate(EVENT_KINDS)}
#: Kind byte in CONFIG meaning "every kind".
KIND_ANY = 0xFF
#: Label id in CONFIG meaning "every label"; in EVENT it means "label unknown to the table".
LABEL_ANY = 0xFFFF

#: Config keys understood by the Pi; values are signed integers in the stated units.
CONFIG_KEYS = {
    1: "threshold_milli",  # detection threshold x 1000 for (kind, label)
    2: "enabled",  # 0 = mute events of (kind, label), 1 = unmute
    3: "heartbeat_ms",  # requested heartbeat period
}

#: EVENT flag bit: the event is critical (never dropped for a non-critical one).
FLAG_CRITICAL = 0x01


class MsgType:
    """Numeric message type codes (byte 1 of the frame body)."""

    EVENT = 0x01
    HEARTBEAT = 0x02
    LABEL_TABLE = 0x03
    ACK = 0x04
    CONFIG = 0x05
    PING = 0x06
    PONG = 0x07
    HELLO = 0x08


class CobsError(ValueError):
    """Raised by :func:`cobs_decode` for a byte string that is not valid COBS."""


def crc16_ccitt_false(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0).

    Parameters
    ----------
    data : bytes
        Bytes to checksum.
    crc : int, optional
        Running value, to continue a CRC over several chunks.

    Returns
    -------
    int
        The 16-bit CRC; ``crc16_ccitt_false(b"123456789") == 0x29B1``.
    """
    # binascii.crc_hqx is exactly this polynomial, unreflected, in C: ~30x a Python loop.
    return binascii.crc_hqx(data, crc)


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing, without the trailing delimiter.

    Parameters
    ----------
    data : bytes
        Any bytes (zeros allowed).

    Returns
    -------
    bytes
        Encoded bytes, none of which is zero; ``len(data) + 1 + len(data) // 254`` at most.
    """
    out = bytearray()
    chunks = bytes(data).split(b"\x00")
    last_index = len(chunks) - 1
    for index, chunk in enumerate(chunks):
        while len(chunk) >= 254:
            out.append(0xFF)
            out += chunk[:254]
            chunk = chunk[254:]
            if not chunk and index == last_index:
                # Canonical COBS omits the empty block after a final full 254-byte run.
                return bytes(out)
        out.append(len(chunk) + 1)
        out += chunk
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Invert :func:`cobs_encode`.

    Parameters
    ----------
    data : bytes
        Encoded bytes without delimiters.

    Returns
    -------
    bytes
        The decoded bytes.

    Raises
    ------
    CobsError
        If ``data`` contains a zero or a block runs past its end.
    """
    out = bytearray()
    index = 0
    length = len(data)
    while index < length:
        code = data[index]
        if code == 0:
            raise CobsError("zero byte inside COBS data")
        end = index + code
        if end > length:
            raise CobsError("COBS block runs past the end of the frame")
        block = data[index + 1 : end]
        if 0 in block:
            raise CobsError("zero byte inside COBS data")
        out += block
        index = end
        if code != 0xFF and index < length:
            out.append(0)
    return bytes(out)


def confidence_to_q16(confidence: float) -> int:
    """Quantise a confidence in [0, 1] to the wire's unsigned 16-bit fixed point.

    NaN maps to 0 and values outside [0, 1] are clamped, so a misbehaving model
    cannot make encoding fail.
    """
    if confidence != confidence:  # NaN
        return 0
    if confidence <= 0.0:
        return 0
    if confidence >= 1.0:
        return 0xFFFF
    return int(round(confidence * 0xFFFF))


def q16_to_confidence(q16: int) -> float:
    """Inverse of :func:`confidence_to_q16` (exact for its outputs)."""
    return q16 / 0xFFFF


def next_seq(seq: int) -> int:
    """Sequence number after ``seq``: 1..65535, wrapping to 1 (0 means unsequenced)."""
    return 1 if seq >= 0xFFFF else seq + 1


def _check_u(value: int, bits: int, name: str) -> None:
    if not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise ValueError(f"{name}={value!r} is not an unsigned {bits}-bit integer")


@dataclass(frozen=True)
class Event:
    """An audio event reported by the Pi (type 0x01, sequenced, acknowledged).

    Parameters
    ----------
    seq : int
        Sequence number 1..65535.
    kind : str
        One of ``EVENT_KINDS`` (wake, command, scene, beat, sound).
    label_id : int
        Index of the label in this kind's label table; 0xFFFF if unknown.
    confidence_q16 : int
        Confidence x 65535 (see :func:`confidence_to_q16`); kept as an integer so
        that a round trip is exact.
    timestamp_ms : int
        Pi-side timestamp modulo 2**32 milliseconds.
    critical : bool
        Survives queue overflow ahead of non-critical events.
    """

    seq: int
    kind: str
    label_id: int
    confidence_q16: int
    timestamp_ms: int
    critical: bool = False
    TYPE: ClassVar[int] = MsgType.EVENT
    _FMT: ClassVar[struct.Struct] = struct.Struct("<BBHHI")

    @property
    def confidence(self) -> float:
        """Confidence as a float in [0, 1]."""
        return q16_to_confidence(self.confidence_q16)

    def payload(self) -> bytes:
        if self.kind not in KIND_IDS:
            raise ValueError(f"unknown event kind {self.kind!r}")
        _check_u(self.label_id, 16, "label_id")
        _check_u(self.confidence_q16, 16, "confidence_q16")
        _check_u(self.timestamp_ms, 32, "timestamp_ms")
        flags = FLAG_CRITICAL if self.critical else 0
        return self._FMT.pack(KIND_IDS[self.kind], flags, self.label_id, self.confidence_q16, self.timestamp_ms)

    @classmethod
    def from_payload(cls, seq: int, payload: bytes) -> "Event | None":
        if len(payload) != cls._FMT.size:
            return None
        kind, flags, label_id, conf, ts = cls._FMT.unpack(payload)
        if kind >= len(EVENT_KINDS) or flags & ~FLAG_CRITICAL:
            return None
        return cls(seq, EVENT_KINDS[kind], label_id, conf, ts, bool(flags & FLAG_CRITICAL))


@dataclass(frozen=True)
class Heartbeat:
    """Periodic link status from the Pi (type 0x02, unsequenced).

    Parameters
    ----------
    uptime_ms : int
        Milliseconds since the link object was created, modulo 2**32.
    pending : int
        Events waiting for an acknowledgement.
    dropped_overflow : int
        Events dropped so far because the retransmit queue was full (cumulative).
    corrupt_frames : int
        Corrupt frames the Pi has received so far (cumulative).
    reconnects : int
        Times the Pi reopened the serial port (cumulative, modulo 2**16).
    """

    uptime_ms: int
    pending: int
    dropped_overflow: int
    corrupt_frames: int
    reconnects: int
    seq: int = UNSEQUENCED
    TYPE: ClassVar[int] = MsgType.HEARTBEAT
    _FMT: ClassVar[struct.Struct] = struct.Struct("<IHIIH")

    def payload(self) -> bytes:
        _check_u(self.uptime_ms, 32, "uptime_ms")
        _check_u(self.pending, 16, "pending")
        _check_u(self.dropped_overflow, 32, "dropped_overflow")
        _check_u(self.corrupt_frames, 32, "corrupt_frames")
        _check_u(self.reconnects, 16, "reconnects")
        return self._FMT.pack(self.uptime_ms, self.pending, self.dropped_overflow, self.corrupt_frames, self.reconnects)

    @classmethod
    def from_payload(cls, seq: int, payload: bytes) -> "Heartbeat | None":
        if len(payload) != cls._FMT.size:
            return None
        return cls(*cls._FMT.unpack(payload), seq=seq)


@dataclass(frozen=True)
class LabelTable:
    """A slice of one kind's label names (type 0x03, sequenced, acknowledged).

    The table of a kind may be split over several frames; each carries the
    total size so the MCU knows when it is complete.

    Parameters
    ----------
    seq : int
        Sequence number 1..65535.
    kind : str
        Event kind the labels belong to.
    total : int
        Number of labels the kind has in all.
    start_id : int
        Label id of ``names[0]``.
    names : tuple of str
        Label names, each at most ``MAX_LABEL_BYTES`` UTF-8 bytes.
    """

    seq: int
    kind: str
    total: int
    start_id: int
    names: tuple = ()
    TYPE: ClassVar[int] = MsgType.LABEL_TABLE
    _HEAD: ClassVar[struct.Struct] = struct.Struct("<BHHB")

    def payload(self) -> bytes:
        if self.kind not in KIND_IDS:
            raise ValueError(f"unknown event kind {self.kind!r}")
        _check_u(self.total, 16, "total")
        _check_u(self.start_id, 16, "start_id")
        _check_u(len(self.names), 8, "count")
        out = bytearray(self._HEAD.pack(KIND_IDS[self.kind], self.total, self.start_id, len(self.names)))
        for name in self.names:
            raw = name.encode("utf-8")
            if not 0 < len(raw) <= MAX_LABEL_BYTES:
                raise ValueError(f"label {name!r} must be 1..{MAX_LABEL_BYTES} UTF-8 bytes")
            out.append(len(raw))
            out += raw
        if len(out) > MAX_PAYLOAD:
            raise ValueError("label table slice exceeds MAX_PAYLOAD; split it")
        return bytes(out)

    @classmethod
    def from_payload(cls, seq: int, payload: bytes) -> "LabelTable | None":
        if len(payload) < cls._HEAD.size:
            return None
        kind, total, start_id, count = cls._HEAD.unpack_from(payload)
        if kind >= len(EVENT_KINDS):
            return None
        names = []
        pos = cls._HEAD.size
        for _ in range(count):
            if pos >= len(payload):
                return None
            size = payload[pos]
            raw = payload[pos + 1 : pos + 1 + size]
            if not 0 < size <= MAX_LABEL_BYTES or len(raw) != size:
                return None
            try:
                names.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                return None
            pos += 1 + size
        if pos != len(payload):
            return None
        return cls(seq, EVENT_KINDS[kind], total, start_id, tuple(names))


@dataclass(frozen=True)
class Ack:
    """Acknowledges one sequenced frame (type 0x04, unsequenced, both directions).

    Parameters
    ----------
    ack_seq : int
        Sequence number being acknowledged.
    """

    ack_seq: int
    seq: int = UNSEQUENCED
    TYPE: ClassVar[int] = MsgType.ACK
    _FMT: ClassVar[struct.Struct] = struct.Struct("<H")

    def payload(self) -> bytes:
        _check_u(self.ack_seq, 16, "ack_seq")
        return self._FMT.pack(self.ack_seq)

    @classmethod
    def from_payload(cls, seq: int, payload: bytes) -> "Ack | None":
        if len(payload) != cls._FMT.size:
            return None
        return cls(cls._FMT.unpack(payload)[0], seq=seq)


@dataclass(frozen=True)
class Config:
    """A setting sent by the MCU (type 0x05, sequenced, acknowledged by the Pi).

    Parameters
    ----------
    seq : int
        MCU's sequence number 1..65535.
    key : int
        Which setting (``CONFIG_KEYS``: 1 threshold_milli, 2 enabled, 3 heartbeat_ms).
    kind : int
        Kind id the setting applies to, 0xFF for every kind.
    label_id : int
        Label id it applies to, 0xFFFF for every label.
    value : int
        Signed 32-bit value in the key's unit (integers, so MCUs need no float).
    """

    seq: int
    key: int
    kind: int
    label_id: int
    value: int
    TYPE: ClassVar[int] = MsgType.CONFIG
    _FMT: ClassVar[struct.Struct] = struct.Struct("<BBHi")

    @property
    def key_name(self) -> str:
        """Name of ``key`` or ``"key<N>"`` when unknown."""
        return CONFIG_KEYS.get(self.key, f"key{self.key}")

    def payload(self) -> bytes:
        _check_u(self.key, 8, "key")
        _check_u(self.kind, 8, "kind")
        _check_u(self.label_id, 16, "label_id")
        if not -(1 << 31) <= self.value < (1 << 31):
            raise ValueError("value is not a signed 32-bit integer")
        return self._FMT.pack(self.key, self.kind, self.label_id, self.value)

    @classmethod
    def from_payload(cls, seq: int, payload: bytes) -> "Config | None":
        if len(payload) != cls._FMT.size:
            return None
        return cls(seq, *cls._FMT.unpack(payload))


@dataclass(frozen=True)
class Ping:
    """Liveness probe (type 0x06, unsequenced, either direction); answered by a Pong.

    Parameters
    ----------
    nonce : int
        Echoed back in the Pong, to match them and measure round-trip time.
    """

    nonce: int
    seq: int = UNSEQUENCED
    TYPE: ClassVar[int] = MsgType.PING
    _FMT: ClassVar[struct.Struct] = struct.Struct("<I")

    def payload(self) -> bytes:
        _check_u(self.nonce, 32, "nonce")
        return self._FMT.pack(self.nonce)

    @classmethod
    def from_payload(cls, seq: int, payload: bytes):
        if len(payload) != cls._FMT.size:
            return None
        return cls(cls._FMT.unpack(payload)[0], seq=seq)


@dataclass(frozen=True)
class Pong(Ping):
    """Answer to a :class:`Ping` (type 0x07), carrying the same nonce."""

    TYPE: ClassVar[int] = MsgType.PONG


@dataclass(frozen=True)
class Hello:
    """Start of a session (type 0x08, unsequenced, both directions).

    Each side sends one after opening the port.  A session id different from
    the last one seen means the peer restarted, so its sequence numbers start
    over and the receiver must forget the sequence numbers it remembers for
    duplicate suppression.  When the MCU sends HELLO, the Pi also resends its
    label table (a rebooted MCU has lost it).

    Parameters
    ----------
    firmware_version : int
        Sender's software version, free for the application.
    max_frame : int
        Largest frame (bytes on the wire) the sender can receive.
    session : int
        Random 16-bit id chosen when the sender starts.
    """

    firmware_version: int
    max_frame: int
    session: int
    seq: int = UNSEQUENCED
    TYPE: ClassVar[int] = MsgType.HELLO
    _FMT: ClassVar[struct.Struct] = struct.Struct("<HHH")

    def payload(self) -> bytes:
        _check_u(self.firmware_version, 16, "firmware_version")
        _check_u(self.max_frame, 16, "max_frame")
        _check_u(self.session, 16, "session")
        return self._FMT.pack(self.firmware_version, self.max_frame, self.session)

    @classmethod
    def from_payload(cls, seq: int, payload: bytes) -> "Hello | None":
        if len(payload) != cls._FMT.size:
            return None
        return cls(*cls._FMT.unpack(payload), seq=seq)


Message = Union[Event, Heartbeat, LabelTable, Ack, Config, Ping, Pong, Hello]

_BY_TYPE = {cls.TYPE: cls for cls in (Event, Heartbeat, LabelTable, Ack, Config, Ping, Pong, Hello)}
_HEADER = struct.Struct("<BBH")
_CRC = struct.Struct("<H")


def encode(msg: Message) -> bytes:
    """Encode a message into one complete frame, delimiters included.

    Parameters
    ----------
    msg : Message
        Any of the message dataclasses.

    Returns
    -------
    bytes
        ``0x00 + COBS(body) + 0x00``; write it to the port as is.

    Raises
    ------
    ValueError
        If a field is out of range (a programming error, never caused by input from the wire).
    """
    _check_u(msg.seq, 16, "seq")
    body = _HEADER.pack(PROTOCOL_VERSION, msg.TYPE, msg.seq) + msg.payload()
    body += _CRC.pack(crc16_ccitt_false(body))
    return b"\x00" + cobs_encode(body) + b"\x00"


def decode_body(body: bytes) -> "Message | str":
    """Parse one un-stuffed frame body.

    Returns
    -------
    Message or str
        The message, or the name of the error counter to increment
        (``"length_errors"``, ``"crc_errors"``, ``"version_errors"``,
        ``"unknown_type"``, ``"payload_errors"``).
    """
    if len(body) < HEADER_BYTES + CRC_BYTES or len(body) > MAX_BODY:
        return "length_errors"
    if crc16_ccitt_false(body[:-2]) != _CRC.unpack_from(body, len(body) - 2)[0]:
        return "crc_errors"
    version, msg_type, seq = _HEADER.unpack_from(body)
    if version != PROTOCOL_VERSION:
        return "version_errors"
    cls = _BY_TYPE.get(msg_type)
    if cls is None:
        return "unknown_type"
    msg = cls.from_payload(seq, body[HEADER_BYTES:-2])
    if msg is None:
        return "payload_errors"
    return msg


class Decoder:
    """Streaming frame decoder: feed it any bytes, get whole messages back.

    It splits the stream at zero bytes, un-stuffs, checks length, CRC, version
    and payload, and returns the good messages.  Everything else is counted in
    the error attributes and thrown away; :meth:`feed` never raises on any
    input, so a noisy or cut line cannot take the link down.  Because every
    frame also *starts* with a zero, whatever garbage precedes a frame is
    closed off before it and the frame itself is received.

    Parameters
    ----------
    max_body : int, optional
        Largest un-stuffed body accepted.  Bytes beyond this without a
        delimiter are dropped at once (counted once in ``oversize_frames``) so
        that line noise without zeros cannot grow memory.

    Attributes
    ----------
    frames_ok : int
        Messages returned so far.
    cobs_errors, length_errors, crc_errors, version_errors, unknown_type, payload_errors, oversize_frames : int
        Rejected frames, by reason.

    Examples
    --------
    >>> dec = Decoder()
    >>> dec.feed(encode(Ping(7)) + b"junk" + encode(Pong(7)))
    [Ping(nonce=7, seq=0), Pong(nonce=7, seq=0)]
    >>> dec.corrupt_frames
    1
    """

    _COUNTERS = (
        "cobs_errors",
        "length_errors",
        "crc_errors",
        "version_errors",
        "unknown_type",
        "payload_errors",
        "oversize_frames",
    )

    def __init__(self, max_body: int = MAX_BODY) -> None:
        self.max_encoded = max_body + 1 + max_body // 254
        self._buf = bytearray()
        self._skipping = False
        self.frames_ok = 0
        for name in self._COUNTERS:
            setattr(self, name, 0)

    @property
    def corrupt_frames(self) -> int:
        """Total rejected frames (sum of all error counters)."""
        return sum(getattr(self, name) for name in self._COUNTERS)

    def counters(self) -> dict:
        """All counters as a dict (for health reports)."""
        out = {name: getattr(self, name) for name in self._COUNTERS}
        out["frames_ok"] = self.frames_ok
        out["corrupt_frames"] = self.corrupt_frames
        return out

    def reset(self) -> None:
        """Forget a partly received frame (after a reconnect); counters are kept."""
        self._buf.clear()
        self._skipping = False

    def feed(self, data: bytes) -> list:
        """Consume bytes, return the messages completed by them.

        Parameters
        ----------
        data : bytes
            Any bytes read from the line.

        Returns
        -------
        list of Message
            Good messages in arrival order (possibly empty).
        """
        out = []
        try:
            parts = bytes(data).split(b"\x00")
        except Exception:  # not bytes-like: treat as garbage rather than crash the link
            self.length_errors += 1
            return out
        # parts[:-1] each end at a delimiter; parts[-1] is an unfinished frame.
        for part in parts[:-1]:
            if self._skipping:
                self._skipping = False
                self._buf.clear()
                continue
            if self._buf:
                self._buf += part
                frame = bytes(self._buf)
                self._buf.clear()
            else:
                frame = part
            if not frame:
                continue  # back-to-back delimiters are idle fill, not errors
            if len(frame) > self.max_encoded:
                self.oversize_frames += 1
                continue
            self._decode_frame(frame, out)
        tail = parts[-1]
        if tail and not self._skipping:
            self._buf += tail
            if len(self._buf) > self.max_encoded:
                self.oversize_frames += 1
                self._buf.clear()
                self._skipping = True
        return out

    def _decode_frame(self, frame: bytes, out: list) -> None:
        try:
            body = cobs_decode(frame)
        except CobsError:
            self.cobs_errors += 1
            return
        result = decode_body(body)
        if isinstance(result, str):
            setattr(self, result, getattr(self, result) + 1)
        else:
            self.frames_ok += 1
            out.append(result)
