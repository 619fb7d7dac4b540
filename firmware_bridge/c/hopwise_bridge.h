/*
 * hopwise_bridge.h - C99 codec of the hopwise Pi <-> microcontroller protocol.
 *
 * Wire format (see firmware_bridge/PROTOCOL.md, the normative text):
 *
 *     0x00  COBS( version | type | seq | payload | crc16 )  0x00
 *
 * little-endian integers, CRC-16/CCITT-FALSE over version..payload.
 *
 * No heap, no stdio, fixed buffers: a decoder is ~290 bytes of RAM and is fed
 * one byte at a time from the UART interrupt or loop(); the encoder writes
 * into a caller buffer of HB_MAX_FRAME bytes.
 *
 * Typical MCU use:
 *
 *     static hb_decoder_t dec;            hb_decoder_init(&dec);
 *     while (Serial.available()) {
 *         hb_msg_t msg;
 *         if (hb_decoder_feed(&dec, Serial.read(), &msg) == HB_MSG) { ... }
 *     }
 */
#ifndef HOPWISE_BRIDGE_H
#define HOPWISE_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HB_PROTOCOL_VERSION 1u
#define HB_MAX_PAYLOAD 240u
#define HB_HEADER_BYTES 4u
#define HB_CRC_BYTES 2u
/* version + type + seq + payload + crc */
#define HB_MAX_BODY (HB_HEADER_BYTES + HB_MAX_PAYLOAD + HB_CRC_BYTES)
/* COBS of a body < 254 bytes costs exactly one extra byte */
#define HB_MAX_ENCODED (HB_MAX_BODY + 1u)
/* leading and trailing delimiter */
#define HB_MAX_FRAME (HB_MAX_ENCODED + 2u)
#define HB_MAX_LABEL_BYTES 32u
#define HB_UNSEQUENCED 0u
#define HB_KIND_ANY 0xFFu
#define HB_LABEL_ANY 0xFFFFu
#define HB_FLAG_CRITICAL 0x01u

enum hb_type {
    HB_EVENT = 0x01,
    HB_HEARTBEAT = 0x02,
    HB_LABEL_TABLE = 0x03,
    HB_ACK = 0x04,
    HB_CONFIG = 0x05,
    HB_PING = 0x06,
    HB_PONG = 0x07,
    HB_HELLO = 0x08
};

enum hb_kind { HB_KIND_WAKE = 0, HB_KIND_COMMAND = 1, HB_KIND_SCENE = 2, HB_KIND_BEAT = 3, HB_KIND_SOUND = 4, HB_KIND_COUNT = 5 };

enum hb_config_key { HB_CFG_THRESHOLD_MILLI = 1, HB_CFG_ENABLED = 2, HB_CFG_HEARTBEAT_MS = 3 };

typedef struct {
    uint8_t kind;            /* enum hb_kind */
    uint8_t flags;           /* HB_FLAG_CRITICAL */
    uint16_t label_id;       /* index in the kind's label table, 0xFFFF unknown */
    uint16_t confidence_q16; /* confidence * 65535 */
    uint32_t timestamp_ms;   /* Pi clock, wraps */
} hb_event_t;

typedef struct {
    uint32_t uptime_ms;
    uint16_t pending;
    uint32_t dropped_overflow;
    uint32_t corrupt_frames;
    uint16_t reconnects;
} hb_heartbeat_t;

/* Entries are (len u8, len bytes of UTF-8) repeated `count` times.  After
 * decoding, `entries` points into the decoder's buffer and stays valid only
 * until the next hb_decoder_feed(); walk it with hb_label_next(). */
typedef struct {
    uint8_t kind;
    uint16_t total;
    uint16_t start_id;
    uint8_t count;
    const uint8_t *entries;
    uint8_t entries_len;
} hb_label_table_t;

typedef struct {
    uint16_t ack_seq;
} hb_ack_t;

typedef struct {
    uint8_t key;       /* enum hb_config_key */
    uint8_t kind;      /* HB_KIND_ANY for all */
    uint16_t label_id; /* HB_LABEL_ANY for all */
    int32_t value;
} hb_config_t;

typedef struct {
    uint32_t nonce;
} hb_ping_t; /* also used for PONG */

typedef struct {
    uint16_t firmware_version;
    uint16_t max_frame;
    uint16_t session; /* random per start; a new value means "forget seen seqs" */
} hb_hello_t;

typedef struct {
    uint8_t type; /* enum hb_type */
    uint16_t seq; /* 0 = unsequenced (not acknowledged) */
    union {
        hb_event_t event;
        hb_heartbeat_t heartbeat;
        hb_label_table_t label_table;
        hb_ack_t ack;
        hb_config_t config;
        hb_ping_t ping; /* PING and PONG */
        hb_hello_t hello;
    } u;
} hb_msg_t;

typedef enum {
    HB_NONE = 0,         /* byte consumed, no frame finished */
    HB_MSG = 1,          /* *out holds a good message */
    HB_ERR_COBS = -1,    /* frame ended inside a COBS block */
    HB_ERR_LENGTH = -2,  /* body shorter than header + CRC */
    HB_ERR_CRC = -3,     /* checksum mismatch */
    HB_ERR_VERSION = -4, /* version byte is not HB_PROTOCOL_VERSION */
    HB_ERR_TYPE = -5,    /* unknown message type */
    HB_ERR_PAYLOAD = -6, /* payload size/content wrong for its type */
    HB_ERR_OVERSIZE = -7 /* more than HB_MAX_ENCODED bytes without delimiter */
} hb_result_t;

typedef struct {
    uint8_t body[HB_MAX_BODY];
    uint16_t body_len;
    uint16_t encoded_len; /* stuffed bytes since the last delimiter */
    uint8_t block_left;   /* data bytes left in the current COBS block */
    uint8_t block_code;   /* code byte of the current block, 0 = none yet */
    uint8_t skipping;     /* oversize frame: ignore bytes up to the next 0x00 */
    /* counters, cumulative since hb_decoder_init */
    uint32_t frames_ok;
    uint32_t cobs_errors;
    uint32_t length_errors;
    uint32_t crc_errors;
    uint32_t version_errors;
    uint32_t unknown_type;
    uint32_t payload_errors;
    uint32_t oversize_frames;
} hb_decoder_t;

/* Remembers the last HB_SEEN_WINDOW sequence numbers so a retransmitted frame
 * is acknowledged again but handled only once. */
#ifndef HB_SEEN_WINDOW
#define HB_SEEN_WINDOW 32u /* may be raised at build time, up to 255 */
#endif
typedef struct {
    uint16_t seqs[HB_SEEN_WINDOW];
    uint8_t head;
    uint8_t used;
} hb_seen_t;

uint16_t hb_crc16(const uint8_t *data, size_t len);
uint16_t hb_crc16_update(uint16_t crc, const uint8_t *data, size_t len);

/* COBS without delimiters.  Return the output length, or 0 if `out_cap` is too
 * small (encode) or the input is not valid COBS (decode; empty input is also 0). */
size_t hb_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap);
size_t hb_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap);

/* Encode a whole frame, both delimiters included, into out[0..out_cap).
 * Returns the frame length, or 0 if a field is invalid or out_cap too small
 * (HB_MAX_FRAME is always enough). */
size_t hb_encode(const hb_msg_t *msg, uint8_t *out, size_t out_cap);

/* Convenience: frame acknowledging `seq`. */
size_t hb_encode_ack(uint16_t seq, uint8_t *out, size_t out_cap);

/* Parse an un-stuffed body; HB_MSG or an HB_ERR_* code. Label table entries
 * point into `body`. */
hb_result_t hb_parse_body(const uint8_t *body, size_t len, hb_msg_t *out);

void hb_decoder_init(hb_decoder_t *dec);
/* Feed one received byte. Never fails on any input; errors are returned and
 * counted.  On HB_MSG, *out is filled (label entries valid until next feed). */
hb_result_t hb_decoder_feed(hb_decoder_t *dec, uint8_t byte, hb_msg_t *out);
uint32_t hb_decoder_corrupt(const hb_decoder_t *dec);

/* Iterate label table entries: *pos starts at 0; returns 1 and sets
 * name/len for each entry, 0 at the end. Names are not NUL-terminated. */
int hb_label_next(const hb_label_table_t *table, size_t *pos, const uint8_t **name, uint8_t *name_len);

void hb_seen_init(hb_seen_t *seen);
/* Returns 1 if `seq` was seen in the window (a duplicate), else records it and returns 0. */
int hb_seen_check(hb_seen_t *seen, uint16_t seq);

#ifdef __cplusplus
}
#endif

#endif /* HOPWISE_BRIDGE_H */
