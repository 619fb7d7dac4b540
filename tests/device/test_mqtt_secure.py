"""MQTT sink with TLS and username/password against a real mosquitto configured for both."""
import shutil
import subprocess
import time

import pytest

from benchmarks.mosquitto import free_port
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
    b = start_secure_broker(tmp_path)
    yield b, tmp_path / "ca.crt"
    b.stop()


def start_secure_broker(tmp_path) -> Broker:
    """A started mosquitto with TLS (throwaway CA in ``tmp_path/ca.crt``) and the user pi/s3cret."""
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
    return b.start()


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


def _sink_logs(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "hopwise.sinks.mqtt"]


@pytest.mark.timeout(60)
def test_every_connection_failure_is_logged_once_with_its_reason(secure_broker, tmp_path, caplog):
    """Wrong password, a TLS failure and a refused port each give one log line with the reason
    and the fix, and the health fields say it too; events stay queued, and the count is logged
    at shutdown."""
    import logging
    broker, ca = secure_broker
    event = {"type": "wake", "label": "computer", "confidence": 1.0, "t_audio_s": 1.0, "seq": 0}
    cases = {
        "password": dict(port=broker.port, username="pi", password="wrong", tls=True,
                         ca_certs=str(ca)),
        "tls": dict(port=broker.port, username="pi", password="s3cret", tls=True),  # system CAs
        "refused": dict(port=free_port()),
    }
    with caplog.at_level(logging.INFO, "hopwise.sinks.mqtt"):
        for name, kw in cases.items():
            sink = MqttSink("127.0.0.1", device_id=name, state_dir=tmp_path / name,
                            reconnect_min_s=0.1, reconnect_max_s=0.2, **kw)
            sink.send(event)
            assert _wait(lambda: sink.health()["connect_error"] is not None), name
            time.sleep(1.0)                      # several retries: still one line
            sink.close(0.2)
    logs = _sink_logs(caplog)
    refused = [m for m in logs if "refused the connection" in m]
    assert len(refused) == 1 and "username and the password" in refused[0]
    tls = [m for m in logs if "unreachable" in m and "SSL" in m]
    assert len(tls) == 1 and "ca_certs" in tls[0]
    down = [m for m in logs if "unreachable" in m and "Connection refused" in m]
    assert len(down) == 1 and "event(s) kept on disk, retrying" in down[0]
    assert sum("stay queued" in m for m in logs) == 3


def test_the_password_comes_from_the_environment_or_a_private_file(tmp_path, monkeypatch):
    from device.config import ConfigError, load_config
    from device.sinks.base import SinkSection
    from device.sinks.mqtt import resolve_password

    def section(*sets):
        cfg = load_config("default", list(sets))
        return SinkSection("mqtt", "mqtt", cfg.section("sinks.mqtt"))

    secret = tmp_path / "mqtt_password"
    secret.write_text("from-file\n")
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others .*chmod 600"):
        resolve_password(section(f"sinks.mqtt.password_file={secret}"))
    secret.chmod(0o600)
    assert resolve_password(section(f"sinks.mqtt.password_file={secret}")) == "from-file"
    monkeypatch.setenv("HOPWISE_MQTT_PASSWORD", "from-env")
    assert resolve_password(section(f"sinks.mqtt.password_file={secret}")) == "from-env"
    monkeypatch.delenv("HOPWISE_MQTT_PASSWORD")
    with pytest.raises(ConfigError, match="cannot be read"):
        resolve_password(section(f"sinks.mqtt.password_file={tmp_path / 'none'}"))
    assert resolve_password(section()) is None


@pytest.mark.timeout(60)
def test_no_queued_event_is_deleted_without_an_ack_when_the_message_id_wraps(tmp_path):
    """paho's message ids wrap at 65535. The sink's own presence messages once left their ids
    behind as 'acked early', so a queued event that later got the same id was deleted without
    the broker's ack. Forced wrap: every event arrives, and no stale id is left behind."""
    import json as _json
    import paho.mqtt.client as mqtt
    broker = Broker(tmp_path / "broker").start()
    got = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wrap-sub")
    sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe("hopwise/wrap/wake", qos=1)
    sub.on_message = lambda c, u, m: got.append(_json.loads(m.payload)["seq"])
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    sink = MqttSink("127.0.0.1", broker.port, device_id="wrap", state_dir=tmp_path / "q")
    try:
        assert _wait(lambda: sink.connected)
        assert _wait(lambda: not sink._own)          # the 'online' presence ack was claimed
        sink.client._last_mid = 65530                 # the next ids wrap through 65535 -> 1
        for seq in range(20):
            sink.send({"type": "wake", "label": "computer", "confidence": 1.0,
                       "t_audio_s": float(seq), "seq": seq})
        assert sink.flush(10)
        assert _wait(lambda: sorted(set(got)) == list(range(20)))
        assert sink.acked == 20 and not sink._early and not sink._inflight
    finally:
        sink.close(1)
        sub.loop_stop()
        sub.disconnect()
        broker.stop()
