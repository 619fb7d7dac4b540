/* Unit tests of the C codec.  Exit status 0 only if every check passed; the
 * last line printed is "hb tests: N checks, F failures". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hopwise_bridge.h"
#include "test_vectors.h"

static int checks, failures;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        checks++;                                                            \
        if (!(cond)) {                                                       \
            failures++;                                                      \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);           \
            printf(__VA_ARGS__);                                             \
            printf("\n");                                                    \
        }                                                                    \
    } while (0)

static int msg_equal(const hb_msg_t *a, const hb_msg_t *b) {
    if (a->type != b->type || a->seq != b->seq) return 0;
    switch (a->type) {
    case HB_EVENT:
        return a->u.event.kind == b->u.event.kind && a->u.event.flags == b->u.event.flags &&
               a->u.event.label_id == b->u.event.label_id &&
               a->u.event.confidence_q16 == b->u.event.confidence_q16 &&
               a->u.event.timestamp_ms == b->u.event.timestamp_ms;
    case HB_HEARTBEAT:
        return memcmp(&a->u.heartbeat, &b->u.heartbeat, sizeof a->u.heartbeat) == 0 ||
               (a->u.heartbeat.uptime_ms == b->u.heartbeat.uptime_ms &&
                a->u.heartbeat.pending == b->u.heartbeat.pending &&
                a->u.heartbeat.dropped_overflow == b->u.heartbeat.dropped_overflow &&
                a->u.heartbeat.corrupt_frames == b->u.heartbeat.corrupt_frames &&
                a->u.heartbeat.reconnects == b->u.heartbeat.reconnects);
    case HB_LABEL_TABLE:
        return a->u.label_table.kind == b->u.label_table.kind && a->u.label_table.total == b->u.label_table.total &&
               a->u.label_table.start_id == b->u.label_table.start_id &&
               a->u.label_table.count == b->u.label_table.count &&
               a->u.label_table.entries_len == b->u.label_table.entries_len &&
               (a->u.label_table.entries_len == 0 ||
                memcmp(a->u.label_table.entries, b->u.label_table.entries, a->u.label_table.entries_len) == 0);
    case HB_ACK:
        return a->u.ack.ack_seq == b->u.ack.ack_seq;
    case HB_CONFIG:
        return a->u.config.key == b->u.config.key && a->u.config.kind == b->u.config.kind &&
               a->u.config.label_id == b->u.config.label_id && a->u.config.value == b->u.config.value;
    case HB_PING:
    case HB_PONG:
        return a->u.ping.nonce == b->u.ping.nonce;
    case HB_HELLO:
        return a->u.hello.firmware_version == b->u.hello.firmware_version &&
               a->u.hello.max_frame == b->u.hello.max_frame && a->u.hello.session == b->u.hello.session;
    default:
        return 0;
    }
}

static void test_crc(void) {
    const uint8_t check[] = "123456789";
    CHECK(hb_crc16(check, 9) == 0x29B1u, "crc=%04x", hb_crc16(check, 9));
    CHECK(hb_crc16_update(hb_crc16(check, 4), check + 4, 5) == 0x29B1u, "incremental crc");
    CHECK(hb_crc16(check, 0) == 0xFFFFu, "empty crc");
}

static void cobs_round_trip(const uint8_t *data, size_t len) {
    uint8_t enc[600], dec[600];
    size_t n = hb_cobs_encode(data, len, enc, sizeof enc), m, i;
    CHECK(n > 0 && n <= len + 1 + len / 254, "encode len %zu for %zu", n, len);
    for (i = 0; i < n; i++) CHECK(enc[i] != 0, "zero at %zu", i);
    m = hb_cobs_decode(enc, n, dec, sizeof dec);
    CHECK(m == len && (len == 0 || memcmp(data, dec, len) == 0), "round trip of %zu bytes gave %zu", len, m);
}

static void test_cobs(void) {
    static const size_t sizes[] = {0, 1, 2, 253, 254, 255, 256, 508, 509};
    uint8_t data[520], out[8];
    size_t s, i;
    for (s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (i = 0; i < sizes[s]; i++) data[i] = (uint8_t)(i % 255 + 1);
        cobs_round_trip(data, sizes[s]);
        memset(data, 0, sizes[s]);
        cobs_round_trip(data, sizes[s]);
        for (i = 0; i < sizes[s]; i++) data[i] = (uint8_t)((i * 37u) & 0xFFu);
        cobs_round_trip(data, sizes[s]);
    }
    /* Wikipedia reference examples */
    {
        const uint8_t in1[] = {0x11, 0x22, 0x00, 0x33};
        const uint8_t want1[] = {0x03, 0x11, 0x22, 0x02, 0x33};
        uint8_t enc[16];
        size_t n = hb_cobs_encode(in1, sizeof in1, enc, sizeof enc);
        CHECK(n == sizeof want1 && memcmp(enc, want1, n) == 0, "cobs example 1");
    }
    for (i = 0; i < 254; i++) data[i] = (uint8_t)(i + 1);
    {
        uint8_t enc[300];
        size_t n = hb_cobs_encode(data, 254, enc, sizeof enc);
        CHECK(n == 255 && enc[0] == 0xFF, "254-byte run is one 0xFF block, len %zu", n);
    }
    CHECK(hb_cobs_encode(data, 10, out, 5) == 0, "encode reports a too-small buffer");
    {
        const uint8_t bad[] = {0x05, 0x01, 0x02};
        const uint8_t zero[] = {0x02, 0x00};
        CHECK(hb_cobs_decode(bad, sizeof bad, out, sizeof out) == 0, "truncated block rejected");
        CHECK(hb_cobs_decode(zero, sizeof zero, out, sizeof out) == 0, "zero inside rejected");
    }
}

static void test_vectors(void) {
    size_t i, j;
    for (i = 0; i < HB_N_VECTORS; i++) {
        const hb_vector_t *v = &hb_vectors[i];
        uint8_t frame[HB_MAX_FRAME];
        hb_decoder_t dec;
        hb_msg_t got;
        int n_msgs = 0;
        size_t n = hb_encode(&v->msg, frame, sizeof frame);
        CHECK(n == v->frame_len && memcmp(frame, v->frame, n) == 0, "encode %s: %zu vs %zu bytes", v->name, n,
              v->frame_len);
        hb_decoder_init(&dec);
        for (j = 0; j < v->frame_len; j++) {
            hb_result_t r = hb_decoder_feed(&dec, v->frame[j], &got);
            if (r == HB_MSG) {
                n_msgs++;
                CHECK(msg_equal(&got, &v->msg), "decode %s", v->name);
            }
            CHECK(r >= 0, "decode %s: error %d at byte %zu", v->name, (int)r, j);
        }
        CHECK(n_msgs == 1 && dec.frames_ok == 1 && hb_decoder_corrupt(&dec) == 0, "decode %s: %d msgs", v->name,
              n_msgs);
        /* the frame must also fit a buffer of exactly its size and not one byte less */
        CHECK(hb_encode(&v->msg, frame, v->frame_len) == v->frame_len, "exact buffer %s", v->name);
        CHECK(hb_encode(&v->msg, frame, v->frame_len - 1) == 0, "short buffer %s", v->name);
    }
}

static void test_streams(void) {
    size_t i, j;
    for (i = 0; i < HB_N_STREAM_VECTORS; i++) {
        const hb_stream_vector_t *s = &hb_stream_vectors[i];
        hb_decoder_t dec;
        hb_msg_t got;
        size_t n_got = 0;
        uint32_t errs[7];
        hb_decoder_init(&dec);
        for (j = 0; j < s->len; j++) {
            if (hb_decoder_feed(&dec, s->data[j], &got) == HB_MSG) {
                CHECK(n_got < s->n_expect, "stream %s: extra message", s->name);
                if (n_got < s->n_expect) {
                    CHECK(msg_equal(&got, &hb_vectors[s->expect[n_got]].msg), "stream %s: message %zu", s->name,
                          n_got);
                }
                n_got++;
            }
        }
        CHECK(n_got == s->n_expect, "stream %s: %zu of %zu messages", s->name, n_got, s->n_expect);
        errs[0] = dec.cobs_errors;
        errs[1] = dec.length_errors;
        errs[2] = dec.crc_errors;
        errs[3] = dec.version_errors;
        errs[4] = dec.unknown_type;
        errs[5] = dec.payload_errors;
        errs[6] = dec.oversize_frames;
        for (j = 0; j < 7; j++) {
            CHECK(errs[j] == s->errors[j], "stream %s: counter %zu is %u, want %u", s->name, j, (unsigned)errs[j],
                  (unsigned)s->errors[j]);
        }
    }
}

static void test_invalid_encode(void) {
    hb_msg_t m;
    uint8_t frame[HB_MAX_FRAME];
    uint8_t entries[HB_MAX_PAYLOAD];
    memset(&m, 0, sizeof m);
    m.type = HB_EVENT;
    m.u.event.kind = HB_KIND_COUNT;
    CHECK(hb_encode(&m, frame, sizeof frame) == 0, "bad kind rejected");
    m.u.event.kind = HB_KIND_WAKE;
    m.u.event.flags = 0x80;
    CHECK(hb_encode(&m, frame, sizeof frame) == 0, "bad flags rejected");
    m.type = 0x42;
    CHECK(hb_encode(&m, frame, sizeof frame) == 0, "bad type rejected");
    memset(&m, 0, sizeof m);
    m.type = HB_LABEL_TABLE;
    m.u.label_table.count = 1;
    entries[0] = 40; /* longer than HB_MAX_LABEL_BYTES */
    memset(entries + 1, 'a', 40);
    m.u.label_table.entries = entries;
    m.u.label_table.entries_len = 41;
    CHECK(hb_encode(&m, frame, sizeof frame) == 0, "over-long label rejected");
    /* largest legal label table: 7 labels of 32 bytes + 1 of 2 -> payload of exactly 240 */
    {
        size_t pos = 0, k, n;
        hb_decoder_t dec;
        hb_msg_t got;
        int ok = 0;
        for (k = 0; k < 7; k++) {
            entries[pos++] = 32;
            memset(entries + pos, 'x', 32);
            pos += 32;
        }
        entries[pos++] = 2;
        memset(entries + pos, 'y', 2);
        pos += 2;
        m.u.label_table.count = 8;
        m.u.label_table.entries_len = (uint8_t)pos;
        CHECK(pos + 6 == HB_MAX_PAYLOAD, "payload %zu", pos + 6);
        n = hb_encode(&m, frame, sizeof frame);
        CHECK(n == HB_MAX_FRAME, "max frame is %zu", n);
        hb_decoder_init(&dec);
        for (k = 0; k < n; k++) ok += hb_decoder_feed(&dec, frame[k], &got) == HB_MSG;
        CHECK(ok == 1 && msg_equal(&got, &m), "max frame decodes");
        {
            size_t it = 0, names = 0;
            const uint8_t *name;
            uint8_t len;
            while (hb_label_next(&got.u.label_table, &it, &name, &len)) names++;
            CHECK(names == 8, "iterated %zu labels", names);
        }
    }
}

static void test_noise_recovery(void) {
    /* pseudo-random noise of every length before a good frame: the frame is always received */
    uint32_t state = 12345u;
    size_t trial, k;
    hb_msg_t ping, got;
    uint8_t frame[HB_MAX_FRAME];
    size_t n;
    memset(&ping, 0, sizeof ping);
    ping.type = HB_PING;
    ping.u.ping.nonce = 0xA5A5A5A5u;
    n = hb_encode(&ping, frame, sizeof frame);
    for (trial = 0; trial < 2000; trial++) {
        hb_decoder_t dec;
        size_t noise = trial % 700, good = 0;
        hb_decoder_init(&dec);
        for (k = 0; k < noise; k++) {
            state = state * 1103515245u + 12345u;
            (void)hb_decoder_feed(&dec, (uint8_t)(state >> 16), &got);
        }
        for (k = 0; k < n; k++) good += hb_decoder_feed(&dec, frame[k], &got) == HB_MSG && msg_equal(&got, &ping);
        CHECK(good == 1, "trial %zu: frame after %zu noise bytes not received", trial, noise);
    }
}

static void test_seen(void) {
    hb_seen_t seen;
    uint16_t s;
    hb_seen_init(&seen);
    CHECK(hb_seen_check(&seen, 5) == 0, "first time");
    CHECK(hb_seen_check(&seen, 5) == 1, "duplicate");
    for (s = 100; s < 100 + HB_SEEN_WINDOW; s++) (void)hb_seen_check(&seen, s);
    CHECK(hb_seen_check(&seen, 5) == 0, "forgotten after the window");
    CHECK(hb_seen_check(&seen, 100 + HB_SEEN_WINDOW - 1) == 1, "recent remembered");
}

int main(void) {
    test_crc();
    test_cobs();
    test_vectors();
    test_streams();
    test_invalid_encode();
    test_noise_recovery();
    test_seen();
    printf("hb tests: %d checks, %d failures (%u vectors, %u streams)\n", checks, failures, (unsigned)HB_N_VECTORS,
           (unsigned)HB_N_STREAM_VECTORS);
    return failures ? 1 : 0;
}
