"""MQTT framing: the fixed header every control packet starts with, written and read in one place.

A packet is one type/flags byte, then the remaining length as a varint of at
most four bytes (MQTT 3.1.1 and 5 agree on this), then the body. The broker's
readiness probe writes packets with it; the testnet's fault relay splits a
byte stream into whole packets with it, so a dropped PUBLISH is never cut in half.
Only the fixed header (and a PUBLISH's QoS and packet id) is interpreted.
"""

from __future__ import annotations

CONNECT, PUBLISH, PUBACK = 1, 3, 4


class FramingError(ValueError):
    """Bytes that are not MQTT: the relay closes the connection rather than guess."""


def remaining_length(n: int) -> bytes:
    """The remaining-length varint for a body of `n` bytes: seven bits a byte, the high bit says more follow."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_packet(first_byte: int, body: bytes) -> bytes:
    """A whole MQTT packet: type/flags byte, remaining-length varint, body."""
    return bytes([first_byte]) + remaining_length(len(body)) + body


def mqtt_string(text: str) -> bytes:
    """An MQTT UTF-8 string: two bytes of length, then the bytes."""
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def packet_length(buf: memoryview | bytes, start: int, size: int) -> int | None:
    """Total length of the packet at `start` (header included), or None if its header is incomplete."""
    length, multiplier, index = 0, 1, start + 1
    for _ in range(4):
        if index >= size:
            return None
        byte = buf[index]
        index += 1
        length += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            return index - start + length
        multiplier *= 128
    raise FramingError("MQTT remaining length longer than four bytes")


class MqttFramer:
    """Split a byte stream into whole MQTT control packets, whatever the chunking.

    Bytes of an incomplete packet wait for the next chunk.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back because their packet is not complete yet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """The packets that `data` completes, in order."""
        self._buffer += data
        packets: list[bytes] = []
        start, size = 0, len(self._buffer)
        view = memoryview(self._buffer)
        try:
            while True:
                header = packet_length(view, start, size)
                if header is None:
                    break
                end = start + header
                if end > size:
                    break
                packets.append(bytes(view[start:end]))
                start = end
        finally:
            view.release()
        del self._buffer[:start]
        return packets


def publish_qos(packet: bytes) -> tuple[int, int | None] | None:
    """(QoS, packet id) of a PUBLISH packet, or None for any other packet type.

    The packet id follows the topic name in both MQTT versions (MQTT 5's
    properties come after it), so no protocol version is needed.
    """
    if packet[0] >> 4 != PUBLISH:
        return None
    qos = (packet[0] >> 1) & 0x03
    if qos == 0:
        return 0, None
    index = 1
    while packet[index] & 0x80:
        index += 1
    index += 1
    topic_len = int.from_bytes(packet[index : index + 2], "big")
    at = index + 2 + topic_len
    if at + 2 > len(packet):
        raise FramingError("PUBLISH too short for its packet identifier")
    return qos, int.from_bytes(packet[at : at + 2], "big")


def puback(packet_id: int) -> bytes:
    """PUBACK for `packet_id`: valid in MQTT 3.1.1 and (success, no properties) in MQTT 5."""
    return encode_packet(PUBACK << 4, packet_id.to_bytes(2, "big"))
