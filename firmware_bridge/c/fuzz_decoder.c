/* Fuzz harness for the streaming decoder and COBS.
 *
 * Built two ways (see Makefile):
 *   - libFuzzer: clang -fsanitize=fuzzer,address,undefined (LLVMFuzzerTestOneInput)
 *   - standalone: -DHB_FUZZ_STANDALONE, a random-input loop for when clang is absent.
 *
 * Besides "no crash / no sanitizer report", it checks properties and aborts
 * when one fails: every message the decoder returns re-encodes into a frame
 * that decodes to the same message, and the counters add up.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hopwise_bridge.h"

static void check_reencode(const hb_msg_t *msg) {
    uint8_t frame[HB_MAX_FRAME];
    uint8_t entries[HB_MAX_PAYLOAD];
    hb_msg_t copy = *msg, again;
    hb_decoder_t dec;
    size_t n, i;
    int got = 0;
    /* the entries point into the decoder's buffer; keep them across the re-decode */
    if (msg->type == HB_LABEL_TABLE && msg->u.label_table.entries_len) {
        memcpy(entries, msg->u.label_table.entries, msg->u.label_table.entries_len);
        copy.u.label_table.entries = entries;
    }
    n = hb_encode(&copy, frame, sizeof frame);
    if (n == 0 || n > HB_MAX_FRAME) abort();
    hb_decoder_init(&dec);
    for (i = 0; i < n; i++) {
        hb_result_t r = hb_decoder_feed(&dec, frame[i], &again);
        if (r < 0) abort();
        if (r == HB_MSG) got++;
    }
    if (got != 1 || again.type != copy.type || again.seq != copy.seq) abort();
    if (copy.type == HB_LABEL_TABLE) {
        if (again.u.label_table.entries_len != copy.u.label_table.entries_len ||
            memcmp(again.u.label_table.entries, entries, copy.u.label_table.entries_len) != 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hb_decoder_t dec;
    hb_msg_t msg;
    uint8_t out[1100];
    uint32_t results = 0, errors = 0;
    size_t i;
    hb_decoder_init(&dec);
    for (i = 0; i < size; i++) {
        hb_result_t r = hb_decoder_feed(&dec, data[i], &msg);
        if (r == HB_MSG) {
            results++;
            check_reencode(&msg);
        } else if (r < 0) {
            errors++;
        }
    }
    if (results != dec.frames_ok || errors != hb_decoder_corrupt(&dec)) abort();
    /* plain COBS round trip of the raw input */
    if (size <= 1000) {
        uint8_t back[1100];
        size_t n = hb_cobs_encode(data, size, out, sizeof out);
        if (n == 0 || hb_cobs_decode(out, n, back, sizeof back) != size || memcmp(back, data, size) != 0) {
            if (size != 0 || n != 1) abort();
        }
        (void)hb_cobs_decode(data, size, back, sizeof back);
    }
    return 0;
}

#ifdef HB_FUZZ_STANDALONE
#include <stdio.h>
#include <time.h>

/* Random inputs biased towards near-valid frames, so the checks past CRC get exercised. */
int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 60.0;
    uint64_t state = 0x9E3779B97F4A7C15ull;
    unsigned long long runs = 0;
    time_t start = time(NULL);
    uint8_t buf[2048];
    while (difftime(time(NULL), start) < seconds) {
        size_t len, i;
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        len = (size_t)(state % sizeof buf);
        for (i = 0; i < len; i++) {
            state ^= state << 13, state ^= state >> 7, state ^= state << 17;
            buf[i] = (uint8_t)state;
        }
        if (state & 1u) {
            /* splice in a valid frame at a random place */
            hb_msg_t m;
            uint8_t frame[HB_MAX_FRAME];
            size_t n, at;
            memset(&m, 0, sizeof m);
            m.type = HB_EVENT;
            m.seq = (uint16_t)(state >> 8);
            m.u.event.kind = (uint8_t)((state >> 24) & 3u);
            m.u.event.timestamp_ms = (uint32_t)(state >> 32);
            n = hb_encode(&m, frame, sizeof frame);
            at = len > n ? (size_t)((state >> 40) % (len - n)) : 0;
            if (len >= n) memcpy(buf + at, frame, n);
        }
        LLVMFuzzerTestOneInput(buf, len);
        runs++;
    }
    printf("standalone fuzz: %llu runs in %.0f s, no crash\n", runs, difftime(time(NULL), start));
    return 0;
}
#endif
