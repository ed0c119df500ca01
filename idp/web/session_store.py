"""Where server-side sessions are kept, written as MessagePack rather than pickle.

flask-session hands its cachelib backend the session as a plain dict, and cachelib's own serializers pickle
it. Unpickling runs code chosen by whoever wrote the bytes: anyone who can write to the Redis instance or the
session directory would then run code in every IdP worker. MessagePack decodes to data only. A value it cannot
decode (a session pickled by an older version, or garbage) reads as no session: the person signs in again.
"""

from __future__ import annotations

from typing import IO, Any

import msgspec
from cachelib import FileSystemCache, RedisCache
from cachelib.serializers import FileSystemSerializer, RedisSerializer

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


def _decode(data: bytes) -> Any:
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError:
        return None


class _RedisMsgpack(RedisSerializer):
    def dumps(self, value: Any, protocol: int = 0) -> bytes:
        return _encoder.encode(value)

    def loads(self, value: bytes | None) -> Any:
        return None if value is None else _decode(value)


class _FileMsgpack(FileSystemSerializer):
    def dump(self, value: Any, f: IO[bytes], protocol: int = 0) -> None:
        f.write(_encoder.encode(value))

    def load(self, f: IO[bytes]) -> Any:
        return _decode(f.read())


class SessionRedisCache(RedisCache):
    serializer = _RedisMsgpack()


class SessionFileCache(FileSystemCache):
    serializer = _FileMsgpack()
