"""Tests for pyconvnet.ops.philox: Random123 known answers, a scalar reference, dropout_bits."""
import numpy as np
import pytest

from pyconvnet.ops.philox import _philox, dropout_bits, philox4x32

# Random123 tests/kat_vectors, "philox4x32 R" lines: counter (4 words), key (2), result (4)
KAT10 = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff), (0xffffffff, 0xffffffff),
     (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
]
KAT7 = [
    ((0, 0, 0, 0), (0, 0), (0x5f6fb709, 0x0d893f64, 0x4f121f81, 0x4f730a48)),
    ((0xffffffff,) * 4, (0xffffffff,) * 2, (0x5207ddc2, 0x45165e59, 0x4d8ee751, 0x8c52f662)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0x4dfccaba, 0x190a87f0, 0xc47362ba, 0xb6b5242a)),
]
MASK = 0xFFFFFFFF


def _scalar_philox(ctr, key, rounds=10):
    """Plain-Python Philox4x32 on ints, from the paper's description (key bumped before rounds)."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(rounds):
        if r > 0:
            k0, k1 = (k0 + 0x9E3779B9) & MASK, (k1 + 0xBB67AE85) & MASK
        a, b = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (b >> 32) ^ c1 ^ k0, b & MASK, (a >> 32) ^ c3 ^ k1, a & MASK
    return c0, c1, c2, c3


@pytest.mark.parametrize("ctr, key, want", KAT10)
def test_known_answers_single_key(ctr, key, want):
    out = philox4x32(np.array(ctr, np.uint32).reshape(4, 1), np.array(key, np.uint32))
    assert out.dtype == np.uint32 and out.shape == (4, 1)
    assert [int(v) for v in out[:, 0]] == list(want)
    assert _scalar_philox(ctr, key) == want


def test_known_answers_per_column_keys():
    ctr = np.array([c for c, _, _ in KAT10], np.uint32).T.copy()
    key = np.array([k for _, k, _ in KAT10], np.uint32).T.copy()
    out = philox4x32(ctr, key)
    np.testing.assert_array_equal(out, np.array([w for _, _, w in KAT10], np.uint32).T)


@pytest.mark.parametrize("ctr, key, want", KAT7)
def test_known_answers_seven_rounds(ctr, key, want):
    """The round count matters: the 7-round vectors differ and are also reproduced."""
    c = [np.array([v], np.uint32) for v in ctr]
    assert [int(w[0]) for w in _philox(*c, key[0], key[1], rounds=7)] == list(want)
    assert _scalar_philox(ctr, key, rounds=7) == want


def test_matches_scalar_reference_on_random_inputs():
    rng = np.random.default_rng(0)
    ctr = rng.integers(0, 2**32, size=(4, 50), dtype=np.uint32)
    keys = rng.integers(0, 2**32, size=(2, 50), dtype=np.uint32)
    keys[:, :5] = MASK  # key words that wrap around in the schedule
    out = philox4x32(ctr, keys)
    one = philox4x32(ctr, keys[:, 7].copy())
    def col(a, m):
        return tuple(int(v) for v in a[:, m])

    for m in range(50):
        assert col(out, m) == _scalar_philox(col(ctr, m), col(keys, m))
        assert col(one, m) == _scalar_philox(col(ctr, m), col(keys, 7))


def test_dropout_bits_layout():
    n, seed, layer, step = 23, (5 << 32) | 0x12345678, 0xDEADBEEF, (3 << 32) | 17
    bits = dropout_bits(n, seed, layer, step)
    assert bits.dtype == np.uint32 and bits.shape == (n,)
    for i in range(n):
        q = i // 4
        ctr = (q & MASK, q >> 32, step & MASK, step >> 32)
        assert int(bits[i]) == _scalar_philox(ctr, (seed & MASK, layer))[i % 4]
    # only the low 32 bits of the seed count; a longer draw extends a shorter one
    np.testing.assert_array_equal(bits, dropout_bits(n, seed & MASK, layer, step))
    np.testing.assert_array_equal(bits, dropout_bits(100, seed, layer, step)[:n])
    assert dropout_bits(0, 1, 2, 3).shape == (0,)


def test_dropout_bits_high_counter_word():
    """Counters past 2**32 quads use the second word: checked through the internal generator."""
    q = np.array([2**32 + 5], np.uint64)
    c = [q.astype(np.uint32), (q >> np.uint64(32)).astype(np.uint32),
         np.array([9], np.uint32), np.array([0], np.uint32)]
    got = tuple(int(w[0]) for w in _philox(*c, 1, 2))
    assert got == _scalar_philox((5, 1, 9, 0), (1, 2))


def test_dropout_bits_look_uniform():
    bits = dropout_bits(1 << 18, 7, 3, 11)
    n = bits.size
    u = bits / 2.0**32
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)
    ones = np.unpackbits(bits.view(np.uint8)).mean()
    assert abs(ones - 0.5) < 5 * 0.5 / np.sqrt(32 * n)
    # successive steps, layers and seeds are unrelated streams
    for other in (dropout_bits(n, 7, 3, 12), dropout_bits(n, 7, 4, 11), dropout_bits(n, 8, 3, 11)):
        assert np.mean(other == bits) < 1e-3
        assert abs(np.corrcoef(u, other / 2.0**32)[0, 1]) < 5 / np.sqrt(n)


@pytest.mark.parametrize("args, match", [
    ((np.zeros((3, 2), np.uint32), np.zeros(2, np.uint32)),
     r"philox4x32: counter must have shape \(4, \*\), got \(3, 2\)"),
    ((np.zeros((4, 2), np.int32), np.zeros(2, np.uint32)), "philox4x32: counter must be uint32"),
    ((np.zeros((4, 2), np.uint32), np.zeros(3, np.uint32)),
     r"philox4x32: key must have shape \(2\), got \(3,\)"),
    ((np.zeros((4, 2), np.uint32), np.zeros((2, 3), np.uint32)),
     r"philox4x32: key must have shape \(2, 2\), got \(2, 3\)"),
    ((np.zeros((4, 2), np.uint32), np.zeros(2, np.uint64)), "philox4x32: key must be uint32"),
    ((np.zeros((4, 4), np.uint32)[:, ::2], np.zeros(2, np.uint32)),
     "philox4x32: counter must be C-contiguous"),
])
def test_philox_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        philox4x32(*args)


@pytest.mark.parametrize("args, match", [
    ((-1, 0, 0, 0), "dropout_bits: n must be >= 0, got -1"),
    ((4, -2, 0, 0), "dropout_bits: seed must be >= 0"),
    ((4, 0, 2**32, 0), "dropout_bits: layer must be < 2\\*\\*32"),
    ((4, 0, 0, 2**64), "dropout_bits: step must be < 2\\*\\*64"),
    ((4.0, 0, 0, 0), "dropout_bits: n must be an integer"),
    ((4, 0, 0, True), "dropout_bits: step must be an integer"),
])
def test_dropout_bits_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        dropout_bits(*args)
