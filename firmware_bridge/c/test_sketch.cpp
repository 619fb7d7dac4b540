/* Drives the Arduino example sketch on the host with a stub core: the Pi's
 * frames go in through Serial, the LED pin and the frames coming out are
 * checked.  Last line: "sketch tests: N checks, F failures". */
#include <stdio.h>

#include "Arduino.h"
#include "hopwise_bridge.h"

int stub_pins[32];
unsigned long stub_now_ms = 1000;
StubSerial Serial;
void pinMode(uint8_t, uint8_t) {}
void digitalWrite(uint8_t pin, int value) { stub_pins[pin] = value; }
int digitalRead(uint8_t pin) { return stub_pins[pin]; }
int analogRead(uint8_t) { return 321; }
unsigned long millis(void) { return stub_now_ms; }
unsigned long micros(void) { return stub_now_ms * 1000u + 17u; }

#include "../arduino/hopwise_bridge_example/hopwise_bridge_example.ino"

static int checks, failures;
#define CHECK(cond, what)                                          \
    do {                                                           \
        checks++;                                                  \
        if (!(cond)) {                                             \
            failures++;                                            \
            printf("FAIL line %d: %s (%s)\n", __LINE__, what, #cond); \
        }                                                          \
    } while (0)

/* Decode what the sketch wrote since the last call; count messages of `type` (and matching value). */
static hb_decoder_t out_dec;
static size_t out_pos;
static int count_out(uint8_t type, uint32_t value, int match_value) {
    int n = 0;
    hb_msg_t m;
    for (; out_pos < Serial.tx_len; out_pos++) {
        if (hb_decoder_feed(&out_dec, Serial.tx[out_pos], &m) != HB_MSG || m.type != type) continue;
        if (!match_value) n++;
        else if (type == HB_ACK && m.u.ack.ack_seq == value) n++;
        else if ((type == HB_PONG) && m.u.ping.nonce == value) n++;
        else if (type == HB_CONFIG && (uint32_t)m.u.config.value == value) n++;
    }
    return n;
}

struct Frame {
    hb_msg_t msg;
    uint8_t bytes[HB_MAX_FRAME];
    size_t len;
};

static Frame make_event(uint16_t seq, uint8_t kind) {
    Frame f;
    memset(&f, 0, sizeof f);
    f.msg.type = HB_EVENT;
    f.msg.seq = seq;
    f.msg.u.event.kind = kind;
    f.msg.u.event.confidence_q16 = 60000;
    f.msg.u.event.timestamp_ms = 1234;
    f.len = hb_encode(&f.msg, f.bytes, sizeof f.bytes);
    return f;
}

int main(void) {
    hb_decoder_init(&out_dec);
    stub_pins[BUTTON_PIN] = HIGH; /* pull-up: not pressed */
    setup();
    CHECK(count_out(HB_HELLO, 0, 0) == 1, "HELLO after boot");

    Frame wake_frame = make_event(1, HB_KIND_WAKE);
    const Frame *wake = &wake_frame;
    CHECK(wake->len > 0, "encode wake");
    Serial.feed(wake->bytes, wake->len);
    loop();
    CHECK(stub_pins[LED_BUILTIN] == HIGH, "LED on after wake");
    CHECK(count_out(HB_ACK, wake->msg.seq, 1) == 1, "wake event acked");

    stub_now_ms += 600;
    loop();
    CHECK(stub_pins[LED_BUILTIN] == LOW, "LED off after LED_ON_MS");

    Serial.feed(wake->bytes, wake->len); /* a retransmission */
    loop();
    CHECK(count_out(HB_ACK, wake->msg.seq, 1) == 1, "duplicate acked again");
    CHECK(stub_pins[LED_BUILTIN] == LOW, "duplicate not acted on");

    Frame cmd_frame = make_event(2, HB_KIND_COMMAND);
    const Frame *cmd = &cmd_frame;
    Serial.feed((const uint8_t *)"\x13\x37noise", 7); /* garbage before a frame */
    Serial.feed(cmd->bytes, cmd->len);
    loop();
    CHECK(count_out(HB_ACK, cmd->msg.seq, 1) == 1, "frame after noise acked");
    CHECK(stub_pins[LED_BUILTIN] == LOW, "command does not light the wake LED");

    Frame ping_frame;
    memset(&ping_frame, 0, sizeof ping_frame);
    ping_frame.msg.type = HB_PING;
    ping_frame.msg.u.ping.nonce = 0x01020304u;
    ping_frame.len = hb_encode(&ping_frame.msg, ping_frame.bytes, sizeof ping_frame.bytes);
    const Frame *ping = &ping_frame;
    Serial.feed(ping->bytes, ping->len);
    loop();
    CHECK(count_out(HB_PONG, ping->msg.u.ping.nonce, 1) == 1, "ping answered");

    stub_pins[BUTTON_PIN] = LOW; /* press */
    loop();
    CHECK(count_out(HB_CONFIG, 900, 1) == 1, "button sends CONFIG threshold 900");
    stub_now_ms += 250;
    loop();
    CHECK(count_out(HB_CONFIG, 900, 1) == 1, "unacked CONFIG resent");
    {
        uint8_t ack[HB_MAX_FRAME];
        size_t n = hb_encode_ack(config_seq, ack, sizeof ack);
        Serial.feed(ack, n);
    }
    loop();
    stub_now_ms += 1000;
    loop();
    CHECK(count_out(HB_CONFIG, 900, 1) == 0, "acked CONFIG not resent");

    printf("sketch tests: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
