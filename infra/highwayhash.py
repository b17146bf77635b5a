"""HighwayHash-64 (Google's keyed hash, as github.com/minio/highwayhash computes it), in plain Python.

nats-server checks every stream's ``meta.inf`` against ``meta.sum``: the hex HighwayHash-64 of the file, keyed
with the SHA-256 of the stream's name. ``infra.backup.pin_created`` rewrites a restored stream's ``meta.inf``
and needs it; files of a few hundred bytes, so speed does not matter. Pinned by the checksums nats-server
writes itself (tests/test_backup.py).
"""

from __future__ import annotations

import struct

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
INIT0 = (0xDBE6D5D5FE4CCE2F, 0xA4093822299F31D0, 0x13198A2E03707344, 0x243F6A8885A308D3)
INIT1 = (0x3BD39E10CB0EF593, 0xC0ACF169B5F18A8C, 0xBE5466CF34E90C6C, 0x452821E638D01377)


def _swap32(x: int) -> int:
    return ((x >> 32) | (x << 32)) & M64


def _zipper(v1: int, v0: int) -> tuple[int, int]:
    """ZipperMergeAndAdd's two addends: (for add1, for add0)."""
    add0 = (
        (((v0 & 0xFF000000) | (v1 & 0xFF00000000)) >> 24)
        | (((v0 & 0xFF0000000000) | (v1 & 0xFF000000000000)) >> 16)
        | (v0 & 0xFF0000)
        | ((v0 & 0xFF00) << 32)
        | ((v1 & 0xFF00000000000000) >> 8)
        | ((v0 << 56) & M64)
    )
    add1 = (
        (((v1 & 0xFF000000) | (v0 & 0xFF00000000)) >> 24)
        | (v1 & 0xFF0000)
        | ((v1 & 0xFF0000000000) >> 16)
        | ((v1 & 0xFF00) << 24)
        | ((v0 & 0xFF000000000000) >> 8)
        | ((v1 & 0xFF) << 48)
        | (v0 & 0xFF00000000000000)
    )
    return add1 & M64, add0 & M64


class _State:
    __slots__ = ("mul0", "mul1", "v0", "v1")

    def __init__(self, key: bytes) -> None:
        lanes: tuple[int, ...] = struct.unpack("<4Q", key)
        self.mul0 = list(INIT0)
        self.mul1 = list(INIT1)
        self.v0 = [INIT0[i] ^ lanes[i] for i in range(4)]
        self.v1 = [INIT1[i] ^ _swap32(lanes[i]) for i in range(4)]

    def update(self, lanes: tuple[int, ...] | list[int]) -> None:
        v0, v1, mul0, mul1 = self.v0, self.v1, self.mul0, self.mul1
        for i in range(4):
            v1[i] = (v1[i] + mul0[i] + lanes[i]) & M64
            mul0[i] ^= ((v1[i] & M32) * (v0[i] >> 32)) & M64
            v0[i] = (v0[i] + mul1[i]) & M64
            mul1[i] ^= ((v0[i] & M32) * (v1[i] >> 32)) & M64
        for hi, lo, src, dst in ((1, 0, v1, v0), (3, 2, v1, v0), (1, 0, v0, v1), (3, 2, v0, v1)):
            add1, add0 = _zipper(src[hi], src[lo])
            dst[hi] = (dst[hi] + add1) & M64
            dst[lo] = (dst[lo] + add0) & M64

    def update_packet(self, packet: bytes) -> None:
        self.update(struct.unpack("<4Q", packet))

    def update_remainder(self, rest: bytes) -> None:
        size = len(rest)
        size_mod4 = size & 3
        whole = size & ~3
        remainder = rest[whole:]
        for i in range(4):
            self.v0[i] = (self.v0[i] + (size << 32) + size) & M64
        for i in range(4):
            half0, half1 = self.v1[i] & M32, self.v1[i] >> 32
            half0 = ((half0 << size) | (half0 >> (32 - size))) & M32
            half1 = ((half1 << size) | (half1 >> (32 - size))) & M32
            self.v1[i] = half0 | (half1 << 32)
        packet = bytearray(32)
        packet[:whole] = rest[:whole]
        if size & 16:
            for i in range(4):
                packet[28 + i] = rest[whole + i + size_mod4 - 4]
        elif size_mod4:
            packet[16] = remainder[0]
            packet[17] = remainder[size_mod4 >> 1]
            packet[18] = remainder[size_mod4 - 1]
        self.update_packet(bytes(packet))

    def finalize64(self) -> int:
        for _ in range(4):
            v0 = self.v0
            self.update([_swap32(v0[2]), _swap32(v0[3]), _swap32(v0[0]), _swap32(v0[1])])
        return (self.v0[0] + self.v1[0] + self.mul0[0] + self.mul1[0]) & M64


def highwayhash64(key: bytes, data: bytes) -> bytes:
    """The 8-byte digest of ``data`` under a 32-byte ``key``, in the byte order Go's ``hash.Hash.Sum`` gives."""
    if len(key) != 32:
        raise ValueError("HighwayHash takes a 32-byte key")
    state = _State(key)
    whole = len(data) - len(data) % 32
    for offset in range(0, whole, 32):
        state.update_packet(data[offset : offset + 32])
    if len(data) % 32:
        state.update_remainder(data[whole:])
    return struct.pack("<Q", state.finalize64())
