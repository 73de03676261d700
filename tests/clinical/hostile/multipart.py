"""multipart/form-data bodies that are streamed, never held whole: a 100 MB upload costs the test a few KB.

The same body goes to Django's test client (as a WSGI input stream) and to a real server over a socket.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Payload:
    """File content generated on demand: ``pattern`` repeated up to ``size`` bytes."""

    size: int
    pattern: bytes = b"\x00\x01"

    def __len__(self) -> int:
        return self.size

    def chunks(self, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        block = self.pattern * max(1, chunk_size // len(self.pattern))
        left = self.size
        while left > 0:
            piece = block[: min(left, len(block))]
            left -= len(piece)
            yield piece


Content = bytes | Payload


def _quote(name: str) -> str:
    # What browsers do with a file name in Content-Disposition (WHATWG "multipart/form-data encoding").
    return name.replace("\n", "%0A").replace("\r", "%0D").replace('"', "%22")


@dataclass(frozen=True)
class MultipartBody:
    content_type: str
    length: int
    parts: tuple[bytes | Payload, ...]

    def chunks(self) -> Iterator[bytes]:
        for part in self.parts:
            if isinstance(part, Payload):
                yield from part.chunks()
            else:
                yield part


def multipart(fields: dict[str, str], files: Iterable[tuple[str, str, Content]]) -> MultipartBody:
    """Encode form fields and (field, file name, content) triples."""
    boundary = f"----hostile{uuid.uuid4().hex}"
    parts: list[bytes | Payload] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                     + value.encode() + b"\r\n")
    for field, file_name, content in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
                     f'filename="{_quote(file_name)}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode())
        parts.append(content)
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    length = sum(len(p) for p in parts)
    return MultipartBody(f"multipart/form-data; boundary={boundary}", length, tuple(parts))


class BodyStream:
    """A file-like view of a MultipartBody for a WSGI environ's wsgi.input."""

    def __init__(self, body: MultipartBody) -> None:
        self._chunks = body.chunks()
        self._buffer = memoryview(b"")  # the unread rest of the current chunk: reads slice it without copying it

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            return bytes(self._buffer) + b"".join(self._chunks)
        out = []
        while size > 0:
            if not self._buffer:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._buffer = memoryview(chunk)
            piece, self._buffer = self._buffer[:size], self._buffer[size:]
            out.append(piece)
            size -= len(piece)
        return b"".join(out)

    def readline(self, size: int = -1) -> bytes:  # WSGI requires it; Django's parser does not use it
        return self.read(size)
