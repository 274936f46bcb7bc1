"""Philox4x32-10 counter-based random numbers (Salmon et al., SC 2011; Random123), vectorised NumPy.

The generator maps a 128-bit counter (c0, c1, c2, c3) and a 64-bit key (k0, k1), all uint32 words,
to four uint32 words. One round, with products taken in 64 bits::

    p0 = 0xD2511F53 * c0          hi0 = p0 >> 32, lo0 = p0 & 0xFFFFFFFF
    p1 = 0xCD9E8D57 * c2          hi1 = p1 >> 32, lo1 = p1 & 0xFFFFFFFF
    (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)

Ten rounds; the first uses the key as given, and before each later round the key is bumped by the
Weyl constants, modulo 2**32: k0 += 0x9E3779B9, k1 += 0xBB67AE85. The output is the final
(c0, c1, c2, c3). This reproduces Random123's ``philox4x32_R(10, ctr, key)``, checked against its
published known-answer vectors (tests/test_philox.py).

Dropout bits (the exact definition the CUDA kernels re-implement)
-----------------------------------------------------------------
``dropout_bits(n, seed, layer, step)`` returns n uint32 values. Element i (0 <= i < n) is::

    q       = i // 4                       (as a 64-bit unsigned integer)
    counter = (q & 0xFFFFFFFF, q >> 32, step & 0xFFFFFFFF, step >> 32)
    key     = (seed & 0xFFFFFFFF, layer)
    bits[i] = philox4x32_10(counter, key)[i % 4]

with 0 <= layer < 2**32, 0 <= step < 2**64 and seed >= 0 (only its low 32 bits are used, so seeds
that differ by a multiple of 2**32 give the same bits). Consecutive groups of four elements share
one Philox call, so a CUDA thread can produce four elements from one evaluation. The dropout layer
uses i = the C-order flat index of the activation array (see ``pyconvnet.ops.dropout``).
"""
from __future__ import annotations

import numpy as np

from ._check import check_array, check_int, fail

M0, M1 = 0xD2511F53, 0xCD9E8D57  # round multipliers
W0, W1 = 0x9E3779B9, 0xBB67AE85  # Weyl key increments
ROUNDS = 10
_MASK32 = 0xFFFFFFFF
_U64_M0, _U64_M1, _U64_32 = np.uint64(M0), np.uint64(M1), np.uint64(32)


def _philox(c0, c1, c2, c3, k0, k1, rounds=ROUNDS):
    """Philox4x32-``rounds`` on uint32 arrays (broadcastable); k0, k1 are ints or uint32 arrays.

    Returns four new uint32 arrays. Products are formed in uint64 (exact: both factors < 2**32);
    uint32 array arithmetic wraps modulo 2**32, which is what the key schedule needs.
    """
    scalar_key = isinstance(k0, int)
    for r in range(rounds):
        if r:
            if scalar_key:
                k0, k1 = (k0 + W0) & _MASK32, (k1 + W1) & _MASK32
            else:
                k0, k1 = k0 + np.uint32(W0), k1 + np.uint32(W1)
        kk0 = np.uint32(k0) if scalar_key else k0
        kk1 = np.uint32(k1) if scalar_key else k1
        p0 = c0.astype(np.uint64) * _U64_M0
        p1 = c2.astype(np.uint64) * _U64_M1
        hi0 = (p0 >> _U64_32).astype(np.uint32)
        hi1 = (p1 >> _U64_32).astype(np.uint32)
        hi1 ^= c1
        hi1 ^= kk0
        hi0 ^= c3
        hi0 ^= kk1
        c0, c1, c2, c3 = hi1, p1.astype(np.uint32), hi0, p0.astype(np.uint32)
    return c0, c1, c2, c3


def philox4x32(counter, key):
    """Philox4x32-10 of M counters.

    counter: (4, M) uint32, column m is the counter (c0, c1, c2, c3) of draw m.
    key: (2,) uint32 (one key for all draws) or (2, M) uint32 (one per draw).
    Returns a new (4, M) uint32 array, column m the four output words of draw m.
    """
    op = "philox4x32"
    check_array(op, "counter", counter, ndim=2, dtype=np.uint32, shape=(4, None))
    m = counter.shape[1]
    if not hasattr(key, "ndim") or key.ndim == 1:
        check_array(op, "key", key, ndim=1, dtype=np.uint32, shape=(2,))
        k0, k1 = int(key[0]), int(key[1])
    else:
        check_array(op, "key", key, ndim=2, dtype=np.uint32, shape=(2, m))
        k0, k1 = key[0], key[1]
    out = np.empty((4, m), dtype=np.uint32)
    for j, w in enumerate(_philox(counter[0], counter[1], counter[2], counter[3], k0, k1)):
        out[j] = w
    return out


def dropout_bits(n: int, seed: int, layer: int, step: int):
    """n uint32 random words for a dropout mask, as defined in the module docstring; shape (n,)."""
    op = "dropout_bits"
    n = check_int(op, "n", n, lo=0)
    seed = check_int(op, "seed", seed, lo=0)
    layer = check_int(op, "layer", layer, lo=0)
    step = check_int(op, "step", step, lo=0)
    if layer > _MASK32:
        fail(op, f"layer must be < 2**32, got {layer}")
    if step >> 64:
        fail(op, f"step must be < 2**64, got {step}")
    m = (n + 3) // 4
    q = np.arange(m, dtype=np.uint64)
    c0 = q.astype(np.uint32)  # low 32 bits (astype truncates)
    c1 = (q >> np.uint64(32)).astype(np.uint32)
    c2 = np.full(m, step & _MASK32, dtype=np.uint32)
    c3 = np.full(m, step >> 32, dtype=np.uint32)
    words = _philox(c0, c1, c2, c3, seed & _MASK32, layer)
    out = np.empty((m, 4), dtype=np.uint32)
    for j, w in enumerate(words):
        out[:, j] = w
    return out.reshape(-1)[:n]
