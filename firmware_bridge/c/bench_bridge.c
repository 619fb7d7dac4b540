/* Host timing of the C codec (encode / byte-wise decode of an EVENT frame).
 * Host numbers only bound the MCU cost from below; on a 16 MHz AVR expect
 * roughly 100-300x longer, still far below the 1.65 ms a frame takes on the
 * wire at 115200 baud. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hopwise_bridge.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(void) {
    enum { N = 2000000 };
    hb_msg_t msg, out;
    uint8_t frame[HB_MAX_FRAME];
    size_t len = 0, i, j;
    volatile size_t sink = 0;
    hb_decoder_t dec;
    double t0, enc_s, dec_s;
    memset(&msg, 0, sizeof msg);
    msg.type = HB_EVENT;
    msg.u.event.kind = HB_KIND_WAKE;
    msg.u.event.flags = HB_FLAG_CRITICAL;
    msg.u.event.label_id = 3;
    msg.u.event.confidence_q16 = 60948;
    t0 = now_s();
    for (i = 0; i < N; i++) {
        msg.seq = (uint16_t)(i | 1u);
        msg.u.event.timestamp_ms = (uint32_t)i;
        len = hb_encode(&msg, frame, sizeof frame);
        sink += frame[len / 2];
    }
    enc_s = (now_s() - t0) / N;
    hb_decoder_init(&dec);
    t0 = now_s();
    for (i = 0; i < N; i++) {
        for (j = 0; j < len; j++) sink += (size_t)(hb_decoder_feed(&dec, frame[j], &out) == HB_MSG);
    }
    dec_s = (now_s() - t0) / N;
    printf("C encode: %.3f us/frame (%.0f frames/s)\n", enc_s * 1e6, 1.0 / enc_s);
    printf("C decode: %.3f us/frame (%.0f frames/s), %zu-byte frames, %u ok\n", dec_s * 1e6, 1.0 / dec_s, len,
           (unsigned)dec.frames_ok);
    return sink == 0;
}
