"""Shared test vectors: one list of messages and byte streams for Python and C.

``python -m firmware_bridge.vectors`` regenerates ``test_vectors.json`` (the
committed reference: fields and exact frame bytes) and ``c/test_vectors.h``
(the same data as C initialisers, so the C test needs no JSON parser).  The
Python tests check that both committed files equal what this module renders,
so a codec change that alters bytes shows up as a failing test rather than
as silent drift between the two implementations.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

from . import codec
from .codec import (
    Ack,
    Config,
    Decoder,
    Event,
    Heartbeat,
    Hello,
    LabelTable,
    Ping,
    Pong,
    confidence_to_q16,
    crc16_ccitt_false,
    encode,
)

HERE = Path(__file__).resolve().parent
JSON_PATH = HERE / "test_vectors.json"
HEADER_PATH = HERE / "c" / "test_vectors.h"

_TYPE_NAMES = {
    Event: "event",
    Heartbeat: "heartbeat",
    LabelTable: "label_table",
    Ack: "ack",
    Config: "config",
    Ping: "ping",
    Pong: "pong",
    Hello: "hello",
}
_BY_NAME = {v: k for k, v in _TYPE_NAMES.items()}


def messages() -> list:
    """The canonical (name, message) pairs covered by the vectors."""
    return [
        ("event_wake_critical", Event(1, "wake", 0, confidence_to_q16(0.93), 123456, True)),
        ("event_command", Event(2, "command", 5, confidence_to_q16(0.5), 0xDEADBEEF, False)),
        ("event_scene_zero_conf", Event(0x1234, "scene", 2, 0, 0, False)),
        ("event_beat_max", Event(0xFFFF, "beat", 0xFFFF, 0xFFFF, 0xFFFFFFFF, False)),
        ("event_sound", Event(0x0203, "sound", 7, confidence_to_q16(0.75), 5000, False)),
        # seq 0x0100 and label 0x0000 put zeros in the body: exercises COBS stuffing
        ("event_zeros", Event(0x0100, "wake", 0, 0x0100, 0x01000000, True)),
        ("heartbeat", Heartbeat(60000, 3, 17, 2, 1)),
        ("label_table_wake", LabelTable(3, "wake", 1, 0, ("hey_hop",))),
        ("label_table_command", LabelTable(4, "command", 12, 8, ("lights_on", "lights_off", "stop", "h\u00e9"))),
        ("label_table_empty", LabelTable(5, "scene", 0, 0, ())),
        ("ack", Ack(0xBEEF)),
        ("config_threshold", Config(7, 1, 0, 0, 850)),
        ("config_negative_any", Config(8, 3, 0xFF, 0xFFFF, -1)),
        ("ping", Ping(0x01020304)),
        ("pong", Pong(0xCAFEBABE)),
        ("hello", Hello(0x0102, 249, 0xA11C)),
    ]


def _raw_frame(body_without_crc: bytes) -> bytes:
    """Frame an arbitrary body with a valid CRC (to build well-checksummed nonsense)."""
    body = body_without_crc + struct.pack("<H", crc16_ccitt_false(body_without_crc))
    return b"\x00" + codec.cobs_encode(body) + b"\x00"


def streams() -> list:
    """(name, bytes) line captures with noise, cuts and malformed frames."""
    m = dict(messages())
    wake = encode(m["event_wake_critical"])
    cmd = encode(m["event_command"])
    ping = encode(m["ping"])
    table = encode(m["label_table_command"])
    flipped = bytearray(cmd)
    flipped[6] ^= 0x10
    return [
        ("clean_pair", wake + cmd),
        ("idle_delimiters", b"\x00\x00\x00" + ping + b"\x00\x00"),
        ("garbage_then_frame", b"\x13\x37garbage\xff\xfe" + wake),
        ("cut_frame_then_frame", wake[: len(wake) // 2] + cmd),
        ("bit_flip_crc", bytes(flipped) + ping),
        ("wrong_version", _raw_frame(bytes([2, codec.MsgType.PING, 0, 0, 1, 2, 3, 4])) + ping),
        ("unknown_type", _raw_frame(bytes([1, 0x7F, 0, 0, 9])) + ping),
        ("bad_payload_length", _raw_frame(bytes([1, codec.MsgType.EVENT, 1, 0]) + bytes(9)) + ping),
        ("bad_event_kind", _raw_frame(bytes([1, codec.MsgType.EVENT, 1, 0, len(codec.EVENT_KINDS)]) + bytes(9)) + ping),
        ("bad_label_entry", _raw_frame(bytes([1, codec.MsgType.LABEL_TABLE, 1, 0, 0, 1, 0, 0, 0, 1, 5, 65])) + ping),
        ("short_body", b"\x00\x03\x01\x02\x00" + ping),
        ("cobs_truncated", b"\x00\x09\x01\x02\x00" + ping),
        ("oversize_noise", bytes([0x55]) * 600 + wake),
        ("oversize_exact_limit", b"\x00" + bytes([0x55]) * (codec.MAX_BODY + 2) + b"\x00" + wake),
        ("label_table_then_ping", table + ping),
        ("unfinished_tail", wake + cmd[:7]),
    ]


def _msg_fields(msg) -> dict:
    fields = {k: v for k, v in msg.__dict__.items()}
    if isinstance(msg, LabelTable):
        fields["names"] = list(msg.names)
    return fields


def _msg_from(type_name: str, fields: dict):
    cls = _BY_NAME[type_name]
    fields = dict(fields)
    if cls is LabelTable:
        fields["names"] = tuple(fields["names"])
    return cls(**fields)


def build() -> dict:
    """The vector document as a dict (what the JSON file must contain)."""
    msgs = messages()
    index_of = {}
    out_msgs = []
    for i, (name, msg) in enumerate(msgs):
        index_of[msg] = i
        out_msgs.append({"name": name, "type": _TYPE_NAMES[type(msg)], "fields": _msg_fields(msg), "hex": encode(msg).hex()})
    out_streams = []
    for name, data in streams():
        dec = Decoder()
        got = dec.feed(data)
        counters = dec.counters()
        out_streams.append(
            {
                "name": name,
                "hex": data.hex(),
                # received messages by index into "messages"
                "expect": [index_of[g] for g in got],
                "errors": {k: counters[k] for k in Decoder._COUNTERS},
            }
        )
    return {
        "protocol_version": codec.PROTOCOL_VERSION,
        "crc": "CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, refin/refout false, xorout 0x0000), stored little-endian",
        "framing": "0x00 COBS(version u8 | type u8 | seq u16le | payload | crc16le) 0x00",
        "messages": out_msgs,
        "streams": out_streams,
    }


def load() -> dict:
    """The committed JSON document."""
    return json.loads(JSON_PATH.read_text(encoding="utf-8"))


def message_from_vector(vector: dict):
    """Rebuild the message dataclass from one ``messages`` entry of the JSON."""
    return _msg_from(vector["type"], vector["fields"])


def render_json(doc: dict) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def _c_bytes(data: bytes) -> str:
    return ", ".join(f"0x{b:02x}" for b in data) if data else "0"


def render_header(doc: dict) -> str:
    """C header holding the same vectors as ``doc`` (generated, do not edit)."""
    kinds = {name: f"HB_KIND_{name.upper()}" for name in codec.EVENT_KINDS}
    lines = [
        "/* GENERATED by `python -m firmware_bridge.vectors` from test_vectors.json - do not edit. */",
        "#ifndef HOPWISE_TEST_VECTORS_H",
        "#define HOPWISE_TEST_VECTORS_H",
        '#include "hopwise_bridge.h"',
        "",
        "typedef struct { const char *name; hb_msg_t msg; const uint8_t *frame; size_t frame_len; } hb_vector_t;",
        "typedef struct { const char *name; const uint8_t *data; size_t len; size_t n_expect; const int *expect;",
        "                 uint32_t errors[7]; /* cobs,length,crc,version,unknown_type,payload,oversize */ } hb_stream_vector_t;",
        "",
    ]
    inits = []
    for i, v in enumerate(doc["messages"]):
        f = v["fields"]
        frame = bytes.fromhex(v["hex"])
        lines.append(f"static const uint8_t hbv_frame_{i}[] = {{{_c_bytes(frame)}}};")
        t = v["type"]
        if t == "event":
            u = (
                f".u.event = {{{kinds[f['kind']]}, {1 if f['critical'] else 0}, {f['label_id']}u, "
                f"{f['confidence_q16']}u, {f['timestamp_ms']}u}}"
            )
            ty = "HB_EVENT"
        elif t == "heartbeat":
            u = (
                f".u.heartbeat = {{{f['uptime_ms']}u, {f['pending']}u, {f['dropped_overflow']}u, "
                f"{f['corrupt_frames']}u, {f['reconnects']}u}}"
            )
            ty = "HB_HEARTBEAT"
        elif t == "label_table":
            entries = b"".join(bytes([len(n.encode())]) + n.encode() for n in f["names"])
            lines.append(f"static const uint8_t hbv_entries_{i}[] = {{{_c_bytes(entries)}}};")
            u = (
                f".u.label_table = {{{kinds[f['kind']]}, {f['total']}u, {f['start_id']}u, {len(f['names'])}u, "
                f"hbv_entries_{i}, {len(entries)}u}}"
            )
            ty = "HB_LABEL_TABLE"
        elif t == "ack":
            u = f".u.ack = {{{f['ack_seq']}u}}"
            ty = "HB_ACK"
        elif t == "config":
            u = f".u.config = {{{f['key']}u, {f['kind']}u, {f['label_id']}u, {f['value']}}}"
            ty = "HB_CONFIG"
        elif t in ("ping", "pong"):
            u = f".u.ping = {{{f['nonce']}u}}"
            ty = "HB_PING" if t == "ping" else "HB_PONG"
        elif t == "hello":
            u = f".u.hello = {{{f['firmware_version']}u, {f['max_frame']}u, {f['session']}u}}"
            ty = "HB_HELLO"
        else:  # pragma: no cover - build() only emits known types
            raise ValueError(t)
        inits.append(
            f'    {{"{v["name"]}", {{.type = {ty}, .seq = {f["seq"]}u, {u}}}, hbv_frame_{i}, sizeof hbv_frame_{i}}},'
        )
    lines += ["", "static const hb_vector_t hb_vectors[] = {", *inits, "};", ""]
    sinits = []
    for i, s in enumerate(doc["streams"]):
        data = bytes.fromhex(s["hex"])
        lines.append(f"static const uint8_t hbs_data_{i}[] = {{{_c_bytes(data)}}};")
        lines.append(f"static const int hbs_expect_{i}[] = {{{', '.join(map(str, s['expect'])) or '-1'}}};")
        errs = ", ".join(f"{s['errors'][k]}u" for k in Decoder._COUNTERS)
        sinits.append(
            f'    {{"{s["name"]}", hbs_data_{i}, sizeof hbs_data_{i}, {len(s["expect"])}u, hbs_expect_{i}, {{{errs}}}}},'
        )
    lines += ["", "static const hb_stream_vector_t hb_stream_vectors[] = {", *sinits, "};", ""]
    lines += [
        "#define HB_N_VECTORS (sizeof hb_vectors / sizeof hb_vectors[0])",
        "#define HB_N_STREAM_VECTORS (sizeof hb_stream_vectors / sizeof hb_stream_vectors[0])",
        "",
        "#endif",
        "",
    ]
    return "\n".join(lines)


def main(argv: list | None = None) -> int:
    """Write (default) or ``--check`` the JSON and the C header."""
    argv = sys.argv[1:] if argv is None else argv
    doc = build()
    want = {JSON_PATH: render_json(doc), HEADER_PATH: render_header(doc)}
    if "--check" in argv:
        stale = [str(p) for p, text in want.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
        for p in stale:
            print(f"stale: {p}")
        return 1 if stale else 0
    for path, text in want.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
