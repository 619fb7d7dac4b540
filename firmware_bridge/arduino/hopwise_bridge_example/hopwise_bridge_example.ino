/*
 * hopwise_bridge_example.ino - MCU end of the hopwise bridge (see ../../PROTOCOL.md).
 *
 * Lights the built-in LED for LED_ON_MS after every "wake" event from the Pi,
 * acknowledges every sequenced frame, answers pings and sends HELLO after
 * boot.  A button from BUTTON_PIN to GND sends CONFIG threshold_milli=900 for
 * all wake labels (resent until the Pi acks it).  When the Pi has been silent
 * for PI_SILENT_MS (no heartbeat), the LED blinks slowly.
 *
 * Build: copy (or symlink) ../../c/hopwise_bridge.h and ../../c/hopwise_bridge.c
 * into this sketch folder - the Arduino IDE compiles .c files found there.
 * Works on AVR and ARM boards. RAM: decoder 288 B, duplicate filter 66 B, two
 * frame buffers of 249 B (about 0.9 KB; an Uno has 2 KB).
 */
#include "hopwise_bridge.h"

#ifndef LED_BUILTIN
#define LED_BUILTIN 13
#endif

static const unsigned long BAUD = 115200;
static const unsigned long LED_ON_MS = 500;
static const unsigned long CONFIG_RETRANSMIT_MS = 200;
static const unsigned long PI_SILENT_MS = 15000; /* 3 missed heartbeats at 5 s */
static const uint8_t BUTTON_PIN = 2;

static hb_decoder_t decoder;
static hb_seen_t seen; /* duplicate filter: a retransmitted event is acked again, acted on once */
static uint8_t frame[HB_MAX_FRAME];
static uint16_t next_seq = 1;
static uint16_t pi_session;
static bool have_pi_session = false;

static unsigned long led_off_at = 0;
static unsigned long last_heard_ms = 0;

/* one outstanding CONFIG, resent until the Pi acks it */
static uint16_t config_seq = 0;
static uint8_t config_frame[HB_MAX_FRAME];
static size_t config_len = 0;
static unsigned long config_sent_ms = 0;

static void send_frame(const uint8_t *data, size_t len) {
    if (len) Serial.write(data, len);
}

static void send_hello() {
    hb_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = HB_HELLO;
    m.u.hello.firmware_version = 1;
    m.u.hello.max_frame = HB_MAX_FRAME;
    /* a random-ish session per boot, so the Pi forgets our old sequence numbers */
    m.u.hello.session = (uint16_t)(micros() ^ ((uint16_t)analogRead(A0) << 6));
    send_frame(frame, hb_encode(&m, frame, sizeof frame));
}

static void send_threshold(int32_t threshold_milli) {
    hb_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = HB_CONFIG;
    m.seq = next_seq;
    next_seq = next_seq == 0xFFFF ? 1 : next_seq + 1;
    m.u.config.key = HB_CFG_THRESHOLD_MILLI;
    m.u.config.kind = HB_KIND_WAKE;
    m.u.config.label_id = HB_LABEL_ANY;
    m.u.config.value = threshold_milli;
    config_len = hb_encode(&m, config_frame, sizeof config_frame);
    config_seq = m.seq;
    config_sent_ms = millis();
    send_frame(config_frame, config_len);
}

static void on_event(const hb_event_t *event) {
    if (event->kind == HB_KIND_WAKE) {
        digitalWrite(LED_BUILTIN, HIGH);
        led_off_at = millis() + LED_ON_MS;
    }
    /* HB_KIND_COMMAND: switch a relay by event->label_id, HB_KIND_SCENE: show on a display, ... */
}

static void handle(const hb_msg_t *msg) {
    last_heard_ms = millis();
    if (msg->type == HB_ACK) {
        if (config_len && msg->u.ack.ack_seq == config_seq) config_len = 0;
        return;
    }
    if (msg->seq != HB_UNSEQUENCED) {
        /* ack every copy: our previous ack may have been lost on the line */
        send_frame(frame, hb_encode_ack(msg->seq, frame, sizeof frame));
        if (hb_seen_check(&seen, msg->seq)) return;
    }
    switch (msg->type) {
    case HB_EVENT:
        on_event(&msg->u.event);
        break;
    case HB_PING: {
        hb_msg_t pong;
        memset(&pong, 0, sizeof pong);
        pong.type = HB_PONG;
        pong.u.ping.nonce = msg->u.ping.nonce;
        send_frame(frame, hb_encode(&pong, frame, sizeof frame));
        break;
    }
    case HB_HELLO:
        if (!have_pi_session || msg->u.hello.session != pi_session) {
            hb_seen_init(&seen); /* the Pi restarted; its sequence numbers start over */
            pi_session = msg->u.hello.session;
            have_pi_session = true;
        }
        break;
    case HB_LABEL_TABLE:
        /* This example needs no names; a display would copy them with hb_label_next(). */
        break;
    default: /* HEARTBEAT: nothing beyond last_heard_ms */
        break;
    }
}

void setup() {
    pinMode(LED_BUILTIN, OUTPUT);
    pinMode(BUTTON_PIN, INPUT_PULLUP);
    Serial.begin(BAUD);
    hb_decoder_init(&decoder);
    hb_seen_init(&seen);
    Serial.write((uint8_t)0); /* end any half frame the Pi holds */
    send_hello();
    last_heard_ms = millis();
}

void loop() {
    static bool button_was_down = false;
    hb_msg_t msg;
    while (Serial.available() > 0) {
        /* never blocks, never fails: bad bytes only bump decoder counters */
        if (hb_decoder_feed(&decoder, (uint8_t)Serial.read(), &msg) == HB_MSG) handle(&msg);
    }
    unsigned long now = millis();
    if (led_off_at && (long)(now - led_off_at) >= 0) {
        digitalWrite(LED_BUILTIN, LOW);
        led_off_at = 0;
    }
    if (config_len && now - config_sent_ms >= CONFIG_RETRANSMIT_MS) {
        config_sent_ms = now;
        send_frame(config_frame, config_len);
    }
    bool button_down = digitalRead(BUTTON_PIN) == LOW;
    if (button_down && !button_was_down && !config_len) send_threshold(900);
    button_was_down = button_down;
    if (now - last_heard_ms > PI_SILENT_MS) {
        /* Pi silent: blink slowly so a human notices, and keep listening */
        digitalWrite(LED_BUILTIN, (now / 1000) % 2 ? HIGH : LOW);
    }
}
