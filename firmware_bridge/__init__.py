"""hopwise firmware bridge: a robust serial protocol between the Pi and a microcontroller.

* :mod:`firmware_bridge.codec` - frames (COBS, CRC-16/CCITT-FALSE), messages, streaming decoder.
* :mod:`firmware_bridge.link` - :class:`BridgeLink`, the Pi side: queue, acks, retransmit, reconnect.
* :mod:`firmware_bridge.simulator` - an MCU stand-in (``python -m firmware_bridge.simulator``).
* ``c/`` - the C99 codec for the microcontroller; ``arduino/`` - an example sketch.
* ``PROTOCOL.md`` - the specification; ``test_vectors.json`` - bytes both codecs must agree on.
"""

from .codec import (
    Ack,
    Config,
    Decoder,
    Event,
    Heartbeat,
    Hello,
    LabelTable,
    Ping,
    Pong,
    encode,
)
from .link import BridgeLink

__all__ = ["Ack", "BridgeLink", "Config", "Decoder", "Event", "Heartbeat", "Hello", "LabelTable", "Ping", "Pong", "encode"]
