"""Length-prefixed JSON frames over pipes: caller <-> slot host <-> zygote.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON. Pipes carry
whole frames in order, so a reader never has to guess where a message ends.
"""

from __future__ import annotations

import json
import os
import struct

MAX_FRAME = 64 * 1024 * 1024  # a sanity bound: a corrupt length must not allocate gigabytes


class ChannelClosed(EOFError):
    """The other end closed the pipe (or died) between or inside a frame."""


def encode(message: object) -> bytes:
    body = json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body


def write_frame(fd: int, message: object) -> None:
    data = memoryview(encode(message))
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            raise ChannelClosed("channel closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> object:
    (length,) = struct.unpack(">I", _read_exact(fd, 4))
    if length > MAX_FRAME:
        raise ChannelClosed(f"frame of {length} bytes exceeds {MAX_FRAME}")
    return json.loads(_read_exact(fd, length))
