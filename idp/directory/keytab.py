"""What a keytab file holds, without its keys: each entry's principal, key version number (the console
compares the version with the account's msDS-KeyVersionNumber in AD) and encryption type (start-up wants an
AES key). The MIT keytab layout, version 2, as written by ktpass and samba-tool."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

ENCTYPE_NAMES: dict[int, str] = {
    1: "des-cbc-crc",
    3: "des-cbc-md5",
    17: "aes128-cts-hmac-sha1-96",
    18: "aes256-cts-hmac-sha1-96",
    19: "aes128-cts-hmac-sha256-128",
    20: "aes256-cts-hmac-sha384-192",
    23: "arcfour-hmac",
}
"""The names MIT krb5 gives the encryption types (``klist -k -e``), by their RFC 3961 / RFC 8009 numbers."""

AES_ENCTYPES = frozenset({17, 18, 19, 20})


class KeytabUnreadable(Exception):
    """Not a keytab this reader knows (or cut short); the message says where."""


@dataclass(frozen=True)
class KeytabEntry:
    principal: str
    """``HTTP/sso.corp.example.com@CORP.EXAMPLE.COM``."""
    kvno: int
    enctype: int

    @property
    def enctype_name(self) -> str:
        return ENCTYPE_NAMES.get(self.enctype, f"enctype {self.enctype}")

    @property
    def is_aes(self) -> bool:
        return self.enctype in AES_ENCTYPES


def keys_of(path: Path, principal: str) -> list[KeytabEntry]:
    """The keytab's entries for ``principal`` (``HTTP/host@REALM``), compared as Kerberos does, ignoring case."""
    return [e for e in read_keytab(path) if e.principal.casefold() == principal.casefold()]


def read_keytab(path: Path) -> list[KeytabEntry]:
    data = path.read_bytes()
    if data[:2] != b"\x05\x02":
        raise KeytabUnreadable(f"{path}: not a version 2 keytab")
    entries: list[KeytabEntry] = []
    at = 2
    try:
        while at + 4 <= len(data):
            (size,) = struct.unpack_from(">i", data, at)
            at += 4
            if size < 0:  # a hole left by a removed entry
                at -= size
                continue
            if size == 0:
                break
            entries.append(_entry(data[at : at + size]))
            at += size
    except struct.error:
        raise KeytabUnreadable(f"{path}: cut short at byte {at}") from None
    return entries


def _entry(record: bytes) -> KeytabEntry:
    at = 0

    def octets() -> bytes:
        nonlocal at
        (length,) = struct.unpack_from(">H", record, at)
        value = record[at + 2 : at + 2 + length]
        at += 2 + length
        return value

    (count,) = struct.unpack_from(">H", record, at)
    at += 2
    realm = octets().decode("utf-8", "replace")
    name = "/".join(octets().decode("utf-8", "replace") for _ in range(count))
    _name_type, _timestamp, kvno8, enctype = struct.unpack_from(">IIBH", record, at)
    at += 11
    octets()  # the key itself: never kept
    # A 32-bit version follows when the 8-bit one has wrapped; 0 there means "use the 8-bit one".
    kvno32 = struct.unpack_from(">I", record, at)[0] if len(record) - at >= 4 else 0
    return KeytabEntry(f"{name}@{realm}", kvno32 or kvno8, enctype)
