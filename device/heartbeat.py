"""Wait for the service's first heartbeat on its MQTT status topic (``python -m device heartbeat``).

Deploy runs this on the Pi, from the release's own environment, right after it restarts the
service: the broker address, TLS files and password are the profile's and the Pi's own
(``/etc/hopwise/...``), seen from the Pi, so nothing about the broker travels to the build
machine and a broker that only listens on the Pi's loopback works too.

    python -m device heartbeat --profile profile.toml --since 1764720000 --timeout-s 60

It subscribes to ``<topic_prefix>/<device_id>/status`` of the profile's ``[sinks.mqtt]`` (or
the section named by ``--sink``), prints the first heartbeat of a run (``"first": true``, sent
after its first hop) whose ``t_wall`` is at or after ``--since`` (a Unix time; the sink retains
heartbeats, so one published before the subscription still counts) as one JSON line, and exits
0. A periodic heartbeat of the process being replaced, sent between ``--since`` and its stop,
does not count. Exit 1 when none comes within ``--timeout-s``, or
when the broker refuses or cannot be reached: the reason is printed on stderr, and an ``offline``
presence (the service's last will, or its clean stop) after ``--since`` is named in it.
"""
from __future__ import annotations

import json
import sys
import threading
import time
import uuid

from .config import ConfigError
from .sinks.base import SinkSection


class HeartbeatTimeout(RuntimeError):
    """No heartbeat in time; the message says what was seen instead."""


def mqtt_section(cfg, name: str = "mqtt") -> SinkSection:
    """The profile's ``[sinks.<name>]`` (an MQTT section, with ``[sinks.mqtt]``'s keys inherited
    when its kind is mqtt and its name another), enabled or not."""
    sec = (cfg.get("sinks", {}) or {}).get(name)
    if not isinstance(sec, dict):
        raise ConfigError(f"no [sinks.{name}] in the profile: deploy.heartbeat_via = \"mqtt\" "
                          f"needs the MQTT sink the service publishes its status on")
    kind = sec.get("kind", name)
    if kind != "mqtt":
        raise ConfigError(f"[sinks.{name}] is a {kind!r} sink, not mqtt")
    inherited = (cfg.get("sinks.mqtt", {}) or {}) if name != "mqtt" else {}
    return SinkSection(name, kind, {**inherited, **sec})


def wait_for_heartbeat(cfg, since_wall: float, timeout_s: float, sink: str = "mqtt") -> dict:
    """Subscribe to the service's status topic and return the first heartbeat event with
    ``t_wall >= since_wall``; raise `HeartbeatTimeout` after ``timeout_s`` (saying whether the
    broker was reached and what the topic last said)."""
    import paho.mqtt.client as mqtt

    from .sinks.mqtt import resolve_password
    sec = mqtt_section(cfg, sink)
    topic = f"{sec['topic_prefix']}/{cfg['project.device_id']}/status"
    found: list[dict] = []
    seen: list[str] = []          # labels seen on the topic since `since_wall`, for the error
    state = {"connect": "not connected yet"}
    done = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            state["connect"] = f"the broker refused the connection ({reason_code})"
            done.set()
            return
        state["connect"] = "connected"
        client.subscribe(topic, qos=1)

    def on_connect_fail(client, userdata):
        state["connect"] = "the broker could not be reached"

    def on_message(client, userdata, msg):
        try:
            ev = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(ev, dict) or float(ev.get("t_wall", 0)) < since_wall:
            return   # a retained message from before this start
        seen.append(str(ev.get("label")))
        if ev.get("label") == "heartbeat" and ev.get("first"):
            found.append(ev)
            done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"hopwise-deploy-{uuid.uuid4().hex[:8]}", clean_session=True)
    if sec["username"]:
        client.username_pw_set(sec["username"], resolve_password(sec))
    if sec["tls"] or sec["ca_certs"]:
        client.tls_set(ca_certs=sec["ca_certs"] or None, certfile=sec["certfile"] or None,
                       keyfile=sec["keyfile"] or None)
        if sec["tls_insecure"]:
            client.tls_insecure_set(True)
    client.on_connect, client.on_connect_fail, client.on_message = on_connect, on_connect_fail, on_message
    client.reconnect_delay_set(0.2, 2.0)   # the broker may be restarting with the service
    client.connect_async(sec["host"], int(sec["port"]), keepalive=30)
    client.loop_start()
    try:
        done.wait(timeout_s)
    finally:
        client.loop_stop()
        client.disconnect()
    if found:
        return found[0]
    where = f"{sec['host']}:{sec['port']} topic {topic}"
    after = f"; seen since then: {', '.join(seen)}" if seen else ""
    raise HeartbeatTimeout(f"no heartbeat on MQTT {where} within {timeout_s:g} s "
                           f"({state['connect']}{after})")


def add_arguments(parser) -> None:
    parser.add_argument("--since", type=float, default=None, metavar="UNIX_TIME",
                        help="only a heartbeat published at or after this time counts "
                             "(default: now)")
    parser.add_argument("--timeout-s", type=float, default=60.0,
                        help="give up after this long (default: %(default)s)")
    parser.add_argument("--sink", default="mqtt",
                        help="the [sinks.NAME] section whose broker and topic to watch "
                             "(default: %(default)s)")


def cmd_heartbeat(cfg, args) -> int:
    since = time.time() if args.since is None else args.since
    try:
        ev = wait_for_heartbeat(cfg, since, args.timeout_s, args.sink)
    except HeartbeatTimeout as exc:
        print(f"heartbeat: {exc}", flush=True, file=sys.stderr)
        return 1
    print(json.dumps(ev), flush=True)
    return 0
