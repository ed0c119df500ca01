"""Where server-side sessions are kept, written as MessagePack rather than pickle.

flask-session hands its cachelib backend the session as a plain dict, and cachelib's own serializers pickle
it. Unpickling runs code chosen by whoever wrote the bytes: anyone who can write to the Redis instance or the
session directory would then run code in every IdP worker. MessagePack decodes to data only. A value it cannot
decode (a session pickled by an older version, or garbage) reads as no session: the person signs in again.

Both stores forget what expired. Redis does it itself: flask-session and idp.web.pending write every key with
a timeout, which cachelib turns into SETEX. cachelib's file store does not: it removes expired files only
when over its threshold, and never with threshold 0, so SessionFileCache sweeps them itself.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time
from collections.abc import Callable
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


PRUNE_INTERVAL = 60.0
"""Seconds between two sweeps of expired files by one process; a sweep reads 4 bytes of each file."""

MAX_FILES = 100_000
"""How many files (sessions and parked requests) the directory may hold before the oldest-expiring are
evicted to make room. Only a signed-in person has a session file (8 hours by default), and a parked request
lives 5 minutes after its SP's signature and registration were checked: 100,000 is several sign-ins per
employee per session lifetime for a company of 10,000, so eviction means an attack or a far larger company,
never ordinary load. At about 4 KB a session, the directory stays under half a gigabyte."""


class SessionFileCache(FileSystemCache):
    """cachelib's file store without its shared file count: cachelib reads a count file before every write and
    rewrites it after every new file and every delete, which tripled the file-system work of a sign-in. This
    store counts at its sweeps instead, and between two sweeps by what this process wrote, so the bound holds
    to within what the other workers wrote since their last sweep."""

    serializer = _FileMsgpack()

    def __init__(
        self,
        cache_dir: str,
        *,
        default_timeout: int,
        max_files: int = MAX_FILES,
        now: Callable[[], float] = time.time,
    ) -> None:
        """``now`` is the clock sweeps are scheduled and judged by; tests pass one they can move."""
        # threshold 0: cachelib neither counts nor evicts; _prune below does both.
        super().__init__(cache_dir, threshold=0, default_timeout=default_timeout, mode=0o600)
        self._max_files = max_files
        self._now = now
        self._next_sweep = now()
        self._sweeping = threading.Lock()
        self._counted = 0
        self._written = 0

    def _prune(self) -> None:
        """cachelib calls this before every write: sweep once per PRUNE_INTERVAL, or sooner when this write
        could take the directory past ``max_files``."""
        now = self._now()
        self._written += 1
        due = now >= self._next_sweep or self._counted + self._written > self._max_files
        if due and self._sweeping.acquire(blocking=False):
            try:
                self._next_sweep = now + PRUNE_INTERVAL
                self._counted = self._sweep(now)
                self._written = 1
            finally:
                self._sweeping.release()

    def _sweep(self, now: float) -> int:
        """Remove expired files, then, if the directory is still full, those expiring first, leaving room for
        the write that is coming; return how many files remain."""
        kept: list[tuple[int, str]] = []
        for name in self._list_dir():
            try:
                with open(name, "rb") as f:
                    expires = struct.unpack("I", f.read(4))[0]
                if expires != 0 and expires < now:
                    os.remove(name)
                    continue
            except FileNotFoundError:  # another worker's sweep, or a session that ended
                continue
            except (OSError, struct.error):  # half-written by a writer that died: cachelib reads it as missing
                continue
            kept.append((expires, name))
        excess = len(kept) - (self._max_files - 1)
        if excess > 0:
            for _, name in sorted(kept)[:excess]:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(name)
        return min(len(kept), self._max_files - 1)
