/* hopwise_bridge.c - see hopwise_bridge.h and ../PROTOCOL.md. */
#include "hopwise_bridge.h"

#include <string.h>

/* ---- little-endian helpers (no unaligned access, no host-endian assumptions) */

static void put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | ((uint16_t)p[1] << 8)); }

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* ---- CRC-16/CCITT-FALSE: bitwise, because a 512-byte table costs more flash
 * than the few hundred cycles per frame are worth on a small MCU. */

uint16_t hb_crc16_update(uint16_t crc, const uint8_t *data, size_t len) {
    size_t i;
    int bit;
    for (i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint16_t)data[i] << 8);
        for (bit = 0; bit < 8; bit++) {
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

uint16_t hb_crc16(const uint8_t *data, size_t len) { return hb_crc16_update(0xFFFFu, data, len); }

/* ---- COBS */

size_t hb_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap) {
    size_t read = 0, write = 1, code_pos = 0;
    uint8_t code = 1;
    if (out_cap < 1) return 0;
    while (read < len) {
        if (in[read] == 0) {
            out[code_pos] = code;
            code = 1;
            code_pos = write++;
            if (write > out_cap) return 0;
            read++;
        } else {
            if (write >= out_cap) return 0;
            out[write++] = in[read++];
            code++;
            if (code == 0xFFu) {
                out[code_pos] = code;
                code = 1;
                if (read == len) return write; /* canonical: no empty block after a final full run */
                code_pos = write++;
                if (write > out_cap) return 0;
            }
        }
    }
    out[code_pos] = code;
    return write;
}

size_t hb_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap) {
    size_t read = 0, write = 0;
    while (read < len) {
        uint8_t code = in[read++];
        uint8_t i;
        if (code == 0) return 0;
        for (i = 1; i < code; i++) {
            if (read >= len || in[read] == 0 || write >= out_cap) return 0;
            out[write++] = in[read++];
        }
        if (code != 0xFFu && read < len) {
            if (write >= out_cap) return 0;
            out[write++] = 0;
        }
    }
    return write;
}

/* ---- message bodies */

static size_t build_payload(const hb_msg_t *msg, uint8_t *p) {
    switch (msg->type) {
    case HB_EVENT: {
        const hb_event_t *e = &msg->u.event;
        if (e->kind >= HB_KIND_COUNT || (e->flags & (uint8_t)~HB_FLAG_CRITICAL)) return 0;
        p[0] = e->kind;
        p[1] = e->flags;
        put_u16(p + 2, e->label_id);
        put_u16(p + 4, e->confidence_q16);
        put_u32(p + 6, e->timestamp_ms);
        return 10;
    }
    case HB_HEARTBEAT: {
        const hb_heartbeat_t *h = &msg->u.heartbeat;
        put_u32(p, h->uptime_ms);
        put_u16(p + 4, h->pending);
        put_u32(p + 6, h->dropped_overflow);
        put_u32(p + 10, h->corrupt_frames);
        put_u16(p + 14, h->reconnects);
        return 16;
    }
    case HB_LABEL_TABLE: {
        const hb_label_table_t *t = &msg->u.label_table;
        size_t pos = 0;
        uint8_t n;
        if (t->kind >= HB_KIND_COUNT || (size_t)t->entries_len + 6u > HB_MAX_PAYLOAD) return 0;
        if (t->entries_len && !t->entries) return 0;
        /* validate the entries so the encoder never emits what the decoder rejects */
        for (n = 0; n < t->count; n++) {
            uint8_t size;
            if (pos >= t->entries_len) return 0;
            size = t->entries[pos];
            if (size == 0 || size > HB_MAX_LABEL_BYTES || pos + 1u + size > t->entries_len) return 0;
            pos += 1u + size;
        }
        if (pos != t->entries_len) return 0;
        p[0] = t->kind;
        put_u16(p + 1, t->total);
        put_u16(p + 3, t->start_id);
        p[5] = t->count;
        if (t->entries_len) memcpy(p + 6, t->entries, t->entries_len);
        return 6u + t->entries_len;
    }
    case HB_ACK:
        put_u16(p, msg->u.ack.ack_seq);
        return 2;
    case HB_CONFIG: {
        const hb_config_t *c = &msg->u.config;
        p[0] = c->key;
        p[1] = c->kind;
        put_u16(p + 2, c->label_id);
        put_u32(p + 4, (uint32_t)c->value);
        return 8;
    }
    case HB_PING:
    case HB_PONG:
        put_u32(p, msg->u.ping.nonce);
        return 4;
    case HB_HELLO:
        put_u16(p, msg->u.hello.firmware_version);
        put_u16(p + 2, msg->u.hello.max_frame);
        put_u16(p + 4, msg->u.hello.session);
        return 6;
    default:
        return 0;
    }
}

size_t hb_encode(const hb_msg_t *msg, uint8_t *out, size_t out_cap) {
    uint8_t body[HB_MAX_BODY];
    size_t payload_len, body_len, stuffed;
    uint16_t crc;
    if (!msg || !out || out_cap < 3) return 0;
    payload_len = build_payload(msg, body + HB_HEADER_BYTES);
    /* every message has a non-empty payload, so 0 means "invalid" */
    if (payload_len == 0) return 0;
    body[0] = HB_PROTOCOL_VERSION;
    body[1] = msg->type;
    put_u16(body + 2, msg->seq);
    body_len = HB_HEADER_BYTES + payload_len;
    crc = hb_crc16(body, body_len);
    put_u16(body + body_len, crc);
    body_len += HB_CRC_BYTES;
    out[0] = 0;
    stuffed = hb_cobs_encode(body, body_len, out + 1, out_cap - 2);
    if (stuffed == 0) return 0;
    out[1 + stuffed] = 0;
    return stuffed + 2;
}

size_t hb_encode_ack(uint16_t seq, uint8_t *out, size_t out_cap) {
    hb_msg_t ack;
    memset(&ack, 0, sizeof ack);
    ack.type = HB_ACK;
    ack.seq = HB_UNSEQUENCED;
    ack.u.ack.ack_seq = seq;
    return hb_encode(&ack, out, out_cap);
}

hb_result_t hb_parse_body(const uint8_t *body, size_t len, hb_msg_t *out) {
    const uint8_t *p;
    size_t n;
    if (len < HB_HEADER_BYTES + HB_CRC_BYTES || len > HB_MAX_BODY) return HB_ERR_LENGTH;
    if (hb_crc16(body, len - 2) != get_u16(body + len - 2)) return HB_ERR_CRC;
    if (body[0] != HB_PROTOCOL_VERSION) return HB_ERR_VERSION;
    memset(out, 0, sizeof *out);
    out->type = body[1];
    out->seq = get_u16(body + 2);
    p = body + HB_HEADER_BYTES;
    n = len - HB_HEADER_BYTES - HB_CRC_BYTES;
    switch (out->type) {
    case HB_EVENT:
        if (n != 10 || p[0] >= HB_KIND_COUNT || (p[1] & (uint8_t)~HB_FLAG_CRITICAL)) return HB_ERR_PAYLOAD;
        out->u.event.kind = p[0];
        out->u.event.flags = p[1];
        out->u.event.label_id = get_u16(p + 2);
        out->u.event.confidence_q16 = get_u16(p + 4);
        out->u.event.timestamp_ms = get_u32(p + 6);
        return HB_MSG;
    case HB_HEARTBEAT:
        if (n != 16) return HB_ERR_PAYLOAD;
        out->u.heartbeat.uptime_ms = get_u32(p);
        out->u.heartbeat.pending = get_u16(p + 4);
        out->u.heartbeat.dropped_overflow = get_u32(p + 6);
        out->u.heartbeat.corrupt_frames = get_u32(p + 10);
        out->u.heartbeat.reconnects = get_u16(p + 14);
        return HB_MSG;
    case HB_LABEL_TABLE: {
        size_t pos = 6;
        uint8_t i;
        if (n < 6 || p[0] >= HB_KIND_COUNT) return HB_ERR_PAYLOAD;
        for (i = 0; i < p[5]; i++) {
            uint8_t size;
            if (pos >= n) return HB_ERR_PAYLOAD;
            size = p[pos];
            if (size == 0 || size > HB_MAX_LABEL_BYTES || pos + 1u + size > n) return HB_ERR_PAYLOAD;
            pos += 1u + size;
        }
        if (pos != n) return HB_ERR_PAYLOAD;
        out->u.label_table.kind = p[0];
        out->u.label_table.total = get_u16(p + 1);
        out->u.label_table.start_id = get_u16(p + 3);
        out->u.label_table.count = p[5];
        out->u.label_table.entries = p + 6;
        out->u.label_table.entries_len = (uint8_t)(n - 6);
        return HB_MSG;
    }
    case HB_ACK:
        if (n != 2) return HB_ERR_PAYLOAD;
        out->u.ack.ack_seq = get_u16(p);
        return HB_MSG;
    case HB_CONFIG:
        if (n != 8) return HB_ERR_PAYLOAD;
        out->u.config.key = p[0];
        out->u.config.kind = p[1];
        out->u.config.label_id = get_u16(p + 2);
        out->u.config.value = (int32_t)get_u32(p + 4);
        return HB_MSG;
    case HB_PING:
    case HB_PONG:
        if (n != 4) return HB_ERR_PAYLOAD;
        out->u.ping.nonce = get_u32(p);
        return HB_MSG;
    case HB_HELLO:
        if (n != 6) return HB_ERR_PAYLOAD;
        out->u.hello.firmware_version = get_u16(p);
        out->u.hello.max_frame = get_u16(p + 2);
        out->u.hello.session = get_u16(p + 4);
        return HB_MSG;
    default:
        return HB_ERR_TYPE;
    }
}

/* ---- streaming decoder: un-stuffs COBS on the fly so only the body is buffered */

static void frame_reset(hb_decoder_t *dec) {
    dec->body_len = 0;
    dec->encoded_len = 0;
    dec->block_left = 0;
    dec->block_code = 0;
    dec->skipping = 0;
}

void hb_decoder_init(hb_decoder_t *dec) {
    memset(dec, 0, sizeof *dec);
    frame_reset(dec);
}

uint32_t hb_decoder_corrupt(const hb_decoder_t *dec) {
    return dec->cobs_errors + dec->length_errors + dec->crc_errors + dec->version_errors + dec->unknown_type +
           dec->payload_errors + dec->oversize_frames;
}

hb_result_t hb_decoder_feed(hb_decoder_t *dec, uint8_t byte, hb_msg_t *out) {
    hb_result_t result;
    if (byte == 0) {
        if (dec->skipping || dec->encoded_len == 0) {
            /* end of an already-counted oversize frame, or idle fill between frames */
            frame_reset(dec);
            return HB_NONE;
        }
        if (dec->block_left != 0) {
            result = HB_ERR_COBS;
        } else {
            result = hb_parse_body(dec->body, dec->body_len, out);
        }
        frame_reset(dec);
        switch (result) {
        case HB_MSG: dec->frames_ok++; break;
        case HB_ERR_COBS: dec->cobs_errors++; break;
        case HB_ERR_LENGTH: dec->length_errors++; break;
        case HB_ERR_CRC: dec->crc_errors++; break;
        case HB_ERR_VERSION: dec->version_errors++; break;
        case HB_ERR_TYPE: dec->unknown_type++; break;
        default: dec->payload_errors++; break;
        }
        return result;
    }
    if (dec->skipping) return HB_NONE;
    if (++dec->encoded_len > HB_MAX_ENCODED) {
        /* noise without delimiters: give up on this frame now, count it once */
        dec->oversize_frames++;
        frame_reset(dec);
        dec->skipping = 1;
        return HB_ERR_OVERSIZE;
    }
    if (dec->block_left == 0) {
        /* a code byte; the previous block (if any, and not a full 0xFF run) ended in a zero */
        if (dec->block_code != 0 && dec->block_code != 0xFFu) dec->body[dec->body_len++] = 0;
        dec->block_code = byte;
        dec->block_left = (uint8_t)(byte - 1u);
    } else {
        dec->body[dec->body_len++] = byte;
        dec->block_left--;
    }
    return HB_NONE;
}

int hb_label_next(const hb_label_table_t *table, size_t *pos, const uint8_t **name, uint8_t *name_len) {
    uint8_t size;
    if (!table->entries || *pos >= table->entries_len) return 0;
    size = table->entries[*pos];
    if (size == 0 || *pos + 1u + size > table->entries_len) return 0;
    *name = table->entries + *pos + 1;
    *name_len = size;
    *pos += 1u + size;
    return 1;
}

void hb_seen_init(hb_seen_t *seen) { memset(seen, 0, sizeof *seen); }

int hb_seen_check(hb_seen_t *seen, uint16_t seq) {
    uint8_t i;
    for (i = 0; i < seen->used; i++) {
        if (seen->seqs[i] == seq) return 1;
    }
    seen->seqs[seen->head] = seq;
    seen->head = (uint8_t)((seen->head + 1u) % HB_SEEN_WINDOW);
    if (seen->used < HB_SEEN_WINDOW) seen->used++;
    return 0;
}
