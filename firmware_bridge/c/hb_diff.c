/* Thin entry point for differential tests from Python (ctypes): decode a whole
 * byte stream with the C decoder and report what came out. Host-only. */
#include "hopwise_bridge.h"

/* counters[8] = cobs, length, crc, version, unknown_type, payload, oversize, frames_ok.
 * For each message (up to max_msgs) its type and seq are stored.  Returns the
 * number of messages decoded (may exceed max_msgs). */
size_t hb_diff_decode(const uint8_t *data, size_t len, uint32_t *counters, uint8_t *types, uint16_t *seqs,
                      size_t max_msgs) {
    hb_decoder_t dec;
    hb_msg_t msg;
    size_t i, n = 0;
    hb_decoder_init(&dec);
    for (i = 0; i < len; i++) {
        if (hb_decoder_feed(&dec, data[i], &msg) == HB_MSG) {
            if (n < max_msgs) {
                types[n] = msg.type;
                seqs[n] = msg.seq;
            }
            n++;
        }
    }
    counters[0] = dec.cobs_errors;
    counters[1] = dec.length_errors;
    counters[2] = dec.crc_errors;
    counters[3] = dec.version_errors;
    counters[4] = dec.unknown_type;
    counters[5] = dec.payload_errors;
    counters[6] = dec.oversize_frames;
    counters[7] = dec.frames_ok;
    return n;
}

/* Encode a message given as raw fields; used to compare encoders. Returns the frame length. */
size_t hb_diff_encode_event(uint16_t seq, uint8_t kind, uint8_t flags, uint16_t label_id, uint16_t q16,
                            uint32_t timestamp_ms, uint8_t *out, size_t cap) {
    hb_msg_t m;
    m.type = HB_EVENT;
    m.seq = seq;
    m.u.event.kind = kind;
    m.u.event.flags = flags;
    m.u.event.label_id = label_id;
    m.u.event.confidence_q16 = q16;
    m.u.event.timestamp_ms = timestamp_ms;
    return hb_encode(&m, out, cap);
}
