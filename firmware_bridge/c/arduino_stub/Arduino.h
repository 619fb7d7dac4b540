/* Minimal host stand-in for the Arduino core, enough to compile and drive
 * the example sketch in test_sketch.cpp (not a general emulator). */
#ifndef HOPWISE_ARDUINO_STUB_H
#define HOPWISE_ARDUINO_STUB_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HIGH 1
#define LOW 0
#define INPUT 0
#define OUTPUT 1
#define INPUT_PULLUP 2
#define A0 14
#define LED_BUILTIN 13

extern int stub_pins[32];
extern unsigned long stub_now_ms;

void pinMode(uint8_t pin, uint8_t mode);
void digitalWrite(uint8_t pin, int value);
int digitalRead(uint8_t pin);
int analogRead(uint8_t pin);
unsigned long millis(void);
unsigned long micros(void);

struct StubSerial {
    uint8_t rx[2048];
    size_t rx_len = 0, rx_pos = 0;
    uint8_t tx[4096];
    size_t tx_len = 0;
    void begin(unsigned long) {}
    int available() { return (int)(rx_len - rx_pos); }
    int read() { return rx_pos < rx_len ? rx[rx_pos++] : -1; }
    size_t write(uint8_t b) { return write(&b, 1); }
    size_t write(const uint8_t *data, size_t n) {
        if (tx_len + n > sizeof tx) n = sizeof tx - tx_len;
        memcpy(tx + tx_len, data, n);
        tx_len += n;
        return n;
    }
    void feed(const uint8_t *data, size_t n) {
        memcpy(rx + rx_len, data, n);
        rx_len += n;
    }
};
extern StubSerial Serial;
#endif
