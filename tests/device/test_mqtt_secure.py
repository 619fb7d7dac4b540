"""MQTT sink with TLS and username/password against a real mosquitto configured for both."""
import shutil
import subprocess
import time

import pytest

from device.sinks.mqtt import MqttSink
from helpers import Broker


def _certs(d):
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl CLI)."""
    def ssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=30)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=hopwise-test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
        "-out", "server.csr")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "1", "-extfile", "ext.cnf", "-out", "server.crt")


@pytest.fixture
def secure_broker(tmp_path):
    for tool in ("mosquitto", "mosquitto_passwd", "openssl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    _certs(tmp_path)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwd"), "pi", "s3cret"],
                   check=True, capture_output=True, timeout=30)
    b = Broker(tmp_path / "broker")
    b.conf.write_text(
        f"listener {b.port} 127.0.0.1\nallow_anonymous false\n{b.user_line()}"
        f"password_file {tmp_path / 'passwd'}\ncafile {tmp_path / 'ca.crt'}\n"
        f"certfile {tmp_path / 'server.crt'}\nkeyfile {tmp_path / 'server.key'}\n"
        f"log_dest file {b.root / 'mosquitto.log'}\n")
    b.start()
    yield b, tmp_path / "ca.crt"
    b.stop()


def _wait(pred, timeout=8):
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.02)
    return pred()


@pytest.mark.timeout(40)
def test_tls_with_password_delivers_and_wrong_password_is_reported(secure_broker, tmp_path):
    import paho.mqtt.client as mqtt
    broker, ca = secure_broker
    got = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="secure-sub")
    sub.username_pw_set("pi", "s3cret")
    sub.tls_set(ca_certs=str(ca))
    sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe("hopwise/#", qos=1)
    sub.on_message = lambda c, u, m: got.append(m.topic)
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    good = MqttSink("127.0.0.1", broker.port, device_id="sec", state_dir=tmp_path / "a",
                    username="pi", password="s3cret", tls=True, ca_certs=str(ca))
    bad = MqttSink("127.0.0.1", broker.port, device_id="bad", state_dir=tmp_path / "b",
                   username="pi", password="wrong", tls=True, ca_certs=str(ca))
    try:
        time.sleep(0.3)
        good.send({"type": "wake", "label": "computer", "confidence": 1.0, "t_audio_s": 1.0, "seq": 0})
        bad.send({"type": "wake", "label": "computer", "confidence": 1.0, "t_audio_s": 1.0, "seq": 0})
        assert good.flush(8) and _wait(lambda: "hopwise/sec/wake" in got)
        assert _wait(lambda: bad.health()["connect_error"] is not None)
        h = bad.health()
        assert not h["connected"] and not h["ok"] and h["queued"] == 1      # kept, not lost
        assert "hopwise/bad/wake" not in got
    finally:
        good.close(1)
        bad.close(0.2)
        sub.loop_stop()
        sub.disconnect()
