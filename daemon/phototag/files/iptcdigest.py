"""Keep a JPEG's Photoshop IPTCDigest current after its IPTC-IIM block changed.

MWG readers compare the digest (Photoshop IRB 0x0425, the MD5 of the IRB 0x0404 IPTC block)
with the IPTC they find: a stale digest says "an old program edited IPTC after XMP", so they
prefer IPTC and drop XMP-only keywords. exiv2 0.28 rewrites 0x0404 but leaves 0x0425 as it was.
The digest is rewritten in place (same 16 bytes), so no segment length changes; a file without
a digest is left without one (MWG then reads XMP first).
"""

from __future__ import annotations

import hashlib
import struct

_PHOTOSHOP = b"Photoshop 3.0\x00"
_IPTC, _DIGEST = 0x0404, 0x0425


def _resources(irb: bytes, start: int) -> dict[int, tuple[int, int]]:
    """IRB resource id -> (offset, length) of its data in `irb`, from `start`."""
    found: dict[int, tuple[int, int]] = {}
    pos = start
    while pos + 12 <= len(irb) and irb[pos : pos + 4] == b"8BIM":
        rid = struct.unpack(">H", irb[pos + 4 : pos + 6])[0]
        name_len = irb[pos + 6]
        pos += 6 + name_len + 1 + (name_len + 1) % 2  # Pascal name, padded to even
        if pos + 4 > len(irb):
            break
        size = struct.unpack(">I", irb[pos : pos + 4])[0]
        found.setdefault(rid, (pos + 4, size))
        pos += 4 + size + size % 2
    return found


def refresh(jpeg: bytes) -> bytes:
    """`jpeg` with its IPTCDigest matching its IPTC block; unchanged when there is nothing to do."""
    if jpeg[:2] != b"\xff\xd8":
        return jpeg
    pos = 2
    while pos + 4 <= len(jpeg) and jpeg[pos] == 0xFF:
        marker = jpeg[pos + 1]
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no more metadata
            break
        length = struct.unpack(">H", jpeg[pos + 2 : pos + 4])[0]
        body = pos + 4
        if marker == 0xED and jpeg[body : body + len(_PHOTOSHOP)] == _PHOTOSHOP:
            res = _resources(jpeg, body + len(_PHOTOSHOP))
            if _IPTC in res and _DIGEST in res and res[_DIGEST][1] == 16:
                off, size = res[_IPTC]
                digest = hashlib.md5(jpeg[off : off + size], usedforsecurity=False).digest()
                at = res[_DIGEST][0]
                return jpeg[:at] + digest + jpeg[at + 16 :]
        pos += 2 + length
    return jpeg
