"""pyconvnet.cuda.ops.dropout (kernels/dropout.cu) against the NumPy reference pyconvnet.ops.dropout.

The masks must be bit-identical to the reference's and the outputs exactly equal. Without a GPU: the
kernel's Philox4x32-10 on Random123's published known-answer vectors (a tiny test kernel appended to
the source), and the wrappers end to end on the CPU emulator (``host_device``, see test_cuda_elt.py):
masks and outputs for several shapes and keys (seed beyond 2**32, layer and step with the top bit set),
both scalings, both dtypes, aligned and misaligned arrays; plus launch configuration, kernel signatures
and argument checks. On a GPU, through both launch paths: the same over batch sizes 1, 3, 127, 128, 129
and a few million elements, outputs poisoned with NaN.
"""
from __future__ import annotations

import numpy as np
import pytest

from pyconvnet.cuda.launch import DeviceLimits
from pyconvnet.cuda.ops import dropout as dev
from pyconvnet.ops import dropout as ref

from gpu_util import PATHS, poisoned, use_path
from test_cuda_elt import KERNELS, HostArray, _at, host, host_device, kernel_signature_letters  # noqa: F401
from test_philox import KAT10

SHAPES = [(3, 5, 5, n) for n in (1, 3, 127, 128, 129)] + [(7, n) for n in (1, 3, 127, 128, 129)] + [(1, 1), ()]
KEYS = [dict(seed=1234, layer=ref.layer_id("fc4096"), step=77),
        dict(seed=(5 << 32) | 0x89ABCDEF, layer=0xDEADBEEF, step=2**64 - 1),
        dict(seed=0, layer=0, step=(1 << 63) | 12345)]
KAT_KERNEL = r"""
// Philox4x32-10 on M counter/key sets: in holds 6 words per set (c0..c3, k0, k1), out 4 words.
template <typename T>
__global__ void philox_kat(const unsigned int* in, unsigned int* out, int m) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= m) return;
    const unsigned int* c = in + 6 * t;
    const DropoutWords w = dropout_philox(c[0], c[1], c[2], c[3], c[4], c[5]);
    for (int j = 0; j < 4; ++j) out[4 * t + j] = w.w[j];
}
template __global__ void philox_kat<int>(const unsigned int*, unsigned int*, int);
"""


def _kat_arrays():
    ins = np.array([list(c) + list(k) for c, k, _ in KAT10], np.uint32)
    want = np.array([w for _, _, w in KAT10], np.uint32)
    return ins, want


def test_kernel_signatures_match_the_wrappers():
    for k in (dev.FWD, dev.BWD, dev.MASK):
        assert kernel_signature_letters("dropout", k.name) == k.args, k.name
    assert dev.MASK.instance(np.float32) == "dropout_mask<bool>"


def test_launch_config():
    lim = DeviceLimits(sm_count=132, max_block=1024, max_grid_x=2**31 - 1)
    assert dev.dropout_launch_config(1, lim) == (1, 256)
    assert dev.dropout_launch_config(4 * 256, lim) == (1, 256)
    assert dev.dropout_launch_config(4 * 256 + 1, lim) == (2, 256)  # a thread per group of 4
    assert dev.dropout_launch_config(64 * 55 * 55 * 128, lim) == (132 * 32, 256)


def test_signed_key_words():
    assert dev._signed(0x7FFFFFFF, 32) == 2**31 - 1 and dev._signed(0xDEADBEEF, 32) == 0xDEADBEEF - 2**32
    assert dev._signed(2**64 - 1, 64) == -1 and dev._signed(77, 64) == 77
    assert dev._key("op", 10, 0.5, (5 << 32) | 0xFFFFFFFF, 2**31, 2**63) == (-1, -2**31, -2**63, 2**23)


def test_argument_checks_without_a_gpu():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="dropout_fwd: x must be a CuPy array .* got numpy.ndarray"):
        dev.dropout_fwd(x, keep=0.5, **KEYS[0])
    with pytest.raises(ValueError, match="dropout_bwd: dy must be a CuPy array"):
        dev.dropout_bwd(x, keep=0.5, **KEYS[0])
    with pytest.raises(ValueError, match=r"dropout_mask: shape entry \(in \(3, -1\)\) must be >= 0"):
        dev.dropout_mask((3, -1), keep=0.5, **KEYS[0])
    with pytest.raises(ValueError, match="dropout_mask: shape must be a tuple of integers"):
        dev.dropout_mask(5, keep=0.5, **KEYS[0])
    with pytest.raises(ValueError, match="dropout_mask: keep must be > 0.0"):
        dev.dropout_mask((5,), keep=-0.5, **KEYS[0])
    assert dev.layer_id is ref.layer_id


@pytest.mark.parametrize("kw, match", [
    (dict(keep=0.0), "dropout_fwd: keep must be > 0.0, got 0.0"),
    (dict(keep=1.5), "dropout_fwd: keep must be <= 1.0, got 1.5"),
    (dict(keep=float("nan")), "dropout_fwd: keep must be finite"),
    (dict(keep=1e-9), r"dropout_fwd: keep must be >= 2\*\*-24"),
    (dict(keep=0.5, seed=-1), "dropout_fwd: seed must be >= 0, got -1"),
    (dict(keep=0.5, layer=2**32), r"dropout_fwd: layer must be < 2\*\*32"),
    (dict(keep=0.5, step=2**64), r"dropout_fwd: step must be < 2\*\*64"),
    (dict(keep=0.5, step=1.0), "dropout_fwd: step must be an integer"),
    (dict(keep=0.5, scale=1), "dropout_fwd: scale must be a bool"),
])
def test_bad_scalar_arguments(host_device, kw, match):
    args = dict(KEYS[0], **kw)
    with pytest.raises(ValueError, match=match) as got:
        dev.dropout_fwd(host(np.zeros((4, 5), np.float32)), **args)
    with pytest.raises(ValueError) as want:
        ref.dropout_fwd(np.zeros((4, 5), np.float32), **args)
    assert str(got.value) == str(want.value)
    assert not host_device  # nothing launched


@pytest.fixture(scope="module")
def kat_source(tmp_path_factory):
    path = tmp_path_factory.mktemp("dropout_kat") / "dropout_kat.cu"
    path.write_text((KERNELS / "dropout.cu").read_text() + KAT_KERNEL)
    return path


def test_host_philox_known_answers(kat_source):
    cuda_host = pytest.importorskip("cuda_host")
    ins, want = _kat_arrays()
    out = np.zeros_like(want)
    cuda_host.HostModule(kat_source).launch("philox_kat<int>", 1, 32, [ins, out, len(ins)], "ppi")
    np.testing.assert_array_equal(out, want)


def _mask_at(n, offset):
    """A bool HostArray of n elements ``offset`` bytes past a 4-byte boundary, filled with True/False noise."""
    buf = np.empty(n + 8, np.bool_).view(HostArray)
    base = (-buf.ctypes.data) % 4 + offset
    out = buf[base:base + n]
    out[...] = np.arange(n) % 3 == 0
    return out


@pytest.mark.parametrize("key", range(len(KEYS)))
def test_host_masks_are_bit_identical(host_device, key):
    for shape in [(), (1,), (3,), (5, 7), (2, 3, 3, 9), (130,)]:
        for keep in (0.5, 0.9, 1.0, 2.0**-24 * 3):
            want = ref.dropout_mask(shape, keep=keep, **KEYS[key])
            got = dev.dropout_mask(shape, keep=keep, **KEYS[key])
            assert got.dtype == np.bool_ and got.shape == want.shape
            np.testing.assert_array_equal(got.get(), want, err_msg=f"{shape} keep={keep}")
        n = int(np.prod(shape))
        for offset in (0, 1):  # 4-byte words + tail, and bytes only
            out = _mask_at(n, offset).reshape(shape)
            assert dev.dropout_mask(shape, keep=0.5, out=out, **KEYS[key]) is out
            np.testing.assert_array_equal(out.get(), ref.dropout_mask(shape, keep=0.5, **KEYS[key]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("scale", [True, False])
def test_host_forward_backward_exact(host_device, dtype, scale):
    rng = np.random.default_rng(0)
    for shape, key in [((4, 3, 3, 5), 0), ((7, 129), 1), ((2, 67), 2), ((1, 1), 0)]:
        x = rng.standard_normal(shape).astype(dtype)
        x.reshape(-1)[:3] = [np.inf, -np.inf, np.nan][:x.size]
        kw = dict(keep=0.6, scale=scale, **KEYS[key])
        with np.errstate(invalid="ignore"):
            want = ref.dropout_fwd(x, **kw)
        for offset in (0, 1):
            got = dev.dropout_fwd(_at(x, offset), out=_at(np.full(shape, np.nan, dtype), offset), **kw)
            np.testing.assert_array_equal(got.get(), want, err_msg=f"fwd {shape} offset {offset}")
            got = dev.dropout_bwd(_at(x, offset), **kw)
            np.testing.assert_array_equal(got.get(), want, err_msg=f"bwd {shape} offset {offset}")
        hx = host(x)
        assert dev.dropout_fwd(hx, out=hx, **kw) is hx  # in place
        np.testing.assert_array_equal(hx.get(), want)
    x = rng.standard_normal((5, 7)).astype(dtype)
    np.testing.assert_array_equal(dev.dropout_fwd(host(x), keep=1.0, **KEYS[0]).get(), x)


# --- the step in device memory (dropout_fwd_ds / dropout_bwd_ds) --------------------------------------

DEVICE_STEPS = [0, 77, 2**32 + 5, (0x19ABCDEF << 32) | 0x87654321]  # two >= 2**32 (and < 2**63)


def test_device_step_kernel_signatures():
    for k in (dev.FWD_DS, dev.BWD_DS):
        assert kernel_signature_letters("dropout", k.name) == k.args, k.name
    assert dev.FWD_DS.args == dev.FWD.args[:5] + "p" + dev.FWD.args[6:]


def _step_array(step, shape):
    return host(np.array(step, np.int64).reshape(shape))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_host_device_step_is_bit_identical(host_device, dtype):
    """The _ds kernels equal the by-value kernels and the reference, for steps below and above 2**32."""
    rng = np.random.default_rng(5)
    for j, step in enumerate(DEVICE_STEPS):
        shape = [(3, 3, 3, 5), (7, 129), (2, 67), (1, 1)][j]
        x = rng.standard_normal(shape).astype(dtype)
        kw = dict(keep=0.6, seed=1234 + j, layer=ref.layer_id("fc4096"), scale=j % 2 == 0)
        want = ref.dropout_fwd(x, step=step, **kw)
        by_value = dev.dropout_fwd(host(x), step=step, **kw).get()
        np.testing.assert_array_equal(by_value, want)
        for offset, sshape in ((0, ()), (1, (1,))):  # the packed and the scalar paths
            got = dev.dropout_fwd(_at(x, offset), step=_step_array(step, sshape), **kw)
            np.testing.assert_array_equal(got.get(), by_value, err_msg=f"fwd step {step} {sshape}")
            got = dev.dropout_bwd(_at(x, offset), step=_step_array(step, sshape), out=_at(x * np.nan, offset), **kw)
            np.testing.assert_array_equal(got.get(), by_value, err_msg=f"bwd step {step} {sshape}")
    names = [c[0] for c in host_device]
    t = "float" if dtype == np.float32 else "double"
    assert names.count(f"dropout_fwd<{t}>") == len(DEVICE_STEPS)
    assert names.count(f"dropout_fwd_ds<{t}>") == names.count(f"dropout_bwd_ds<{t}>") == 2 * len(DEVICE_STEPS)


@pytest.mark.parametrize("step, match", [
    (np.array([3.0]), r"dropout_fwd: step must be an int or a C-contiguous int64 device array of shape \(\) or "
                      r"\(1,\), got a float64 array of shape \(1,\)"),
    (np.array([3, 4], np.int64), r"got a int64 array of shape \(2,\)"),
    (np.array([[3]], np.int64), r"got a int64 array of shape \(1, 1\)"),
    (np.array(3, np.int32), r"got a int32 array of shape \(\)"),
])
def test_host_bad_device_step(host_device, step, match):
    with pytest.raises(ValueError, match=match):
        dev.dropout_fwd(host(np.zeros((4, 5), np.float32)), keep=0.5, seed=1, layer=2, step=host(step))
    with pytest.raises(ValueError, match=match.replace("dropout_fwd", "dropout_bwd")):
        dev.dropout_bwd(host(np.zeros((4, 5), np.float32)), keep=0.5, seed=1, layer=2, step=host(step))
    with pytest.raises(ValueError, match=r"dropout_fwd: keep must be > 0.0"):  # the other checks still run
        dev.dropout_fwd(host(np.zeros((4, 5), np.float32)), keep=0.0, seed=1, layer=2, step=_step_array(1, ()))
    with pytest.raises(ValueError, match=r"dropout_fwd: step must be an integer"):  # a host array is no step
        dev.dropout_fwd(host(np.zeros((4, 5), np.float32)), keep=0.5, seed=1, layer=2, step=np.array(1))
    assert not host_device  # nothing launched


# --- on the GPU --------------------------------------------------------------------------------------

@pytest.mark.gpu
def test_philox_known_answers_on_the_gpu(kat_source):
    import cupy as cp

    ins, want = _kat_arrays()
    mod = cp.RawModule(code=kat_source.read_text(), options=("-std=c++17",), name_expressions=["philox_kat<int>"])
    out = cp.zeros(want.shape, cp.uint32)
    mod.get_function("philox_kat<int>")((1,), (32,), (cp.asarray(ins), out, np.int32(len(ins))))
    np.testing.assert_array_equal(out.get(), want)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("path", PATHS)
def test_dropout_matches_reference_exactly(path, dtype):
    import cupy as cp

    rng = np.random.default_rng(0)
    with use_path(path):
        for i, shape in enumerate(SHAPES + [(64, 27, 27, 33)]):  # the last: 1.5M elements, several sweeps
            key = KEYS[i % len(KEYS)]
            scale = i % 2 == 0
            kw = dict(keep=0.5 if i % 3 else 0.9, scale=scale, **key)
            x = rng.standard_normal(shape).astype(dtype)
            mask = dev.dropout_mask(shape, keep=kw["keep"], **key)
            want_mask = ref.dropout_mask(shape, keep=kw["keep"], **key)
            np.testing.assert_array_equal(mask.get(), want_mask, err_msg=f"{path} mask {shape}")
            want = ref.dropout_fwd(x, **kw)
            y = dev.dropout_fwd(cp.asarray(x), out=poisoned(shape, dtype), **kw)
            np.testing.assert_array_equal(y.get(), want, err_msg=f"{path} fwd {shape}")
            dx = dev.dropout_bwd(cp.asarray(x), out=poisoned(shape, dtype), **kw)
            np.testing.assert_array_equal(dx.get(), want, err_msg=f"{path} bwd {shape}")
        buf = cp.asarray(rng.standard_normal(1 + 1001).astype(dtype))
        x = buf[1:]  # misaligned: the scalar path
        kw = dict(keep=0.7, **KEYS[1])
        np.testing.assert_array_equal(dev.dropout_fwd(x, **kw).get(), ref.dropout_fwd(x.get(), **kw))
        assert dev.dropout_fwd(cp.empty((0, 5), dtype), **kw).shape == (0, 5)


@pytest.mark.gpu
def test_dropout_argument_checks_on_the_gpu():
    import cupy as cp

    x = cp.zeros((4, 6), cp.float32)
    with pytest.raises(ValueError, match="dropout_fwd: x must be float32 or float64, got int32"):
        dev.dropout_fwd(cp.zeros((4, 6), cp.int32), keep=0.5, **KEYS[0])
    with pytest.raises(ValueError, match="dropout_bwd: dy must be C-contiguous"):
        dev.dropout_bwd(x[:, ::2], keep=0.5, **KEYS[0])
    with pytest.raises(ValueError, match=r"dropout_fwd: out must have shape \(4, 6\)"):
        dev.dropout_fwd(x, keep=0.5, out=cp.zeros((6, 4), cp.float32), **KEYS[0])
    with pytest.raises(ValueError, match=r"dropout_mask: out must be bool"):
        dev.dropout_mask((4, 6), keep=0.5, out=x, **KEYS[0])


@pytest.mark.gpu
@pytest.mark.parametrize("path", PATHS)
def test_device_step_equals_the_by_value_step(path):
    import cupy as cp

    rng = np.random.default_rng(1)
    with use_path(path):
        for j, (shape, dtype) in enumerate([((64, 27, 27, 33), np.float32), ((7, 129), np.float64),
                                            ((3, 5, 5, 127), np.float32)]):
            step = DEVICE_STEPS[j + 1]
            kw = dict(keep=0.5, seed=99, layer=j, scale=j != 1)
            x = cp.asarray(rng.standard_normal(shape).astype(dtype))
            for sshape in ((), (1,)):
                d_step = cp.full(sshape, step, cp.int64)
                want = dev.dropout_fwd(x, step=step, **kw).get()
                got = dev.dropout_fwd(x, step=d_step, out=poisoned(shape, dtype), **kw)
                np.testing.assert_array_equal(got.get(), want, err_msg=f"{path} fwd {shape} {sshape}")
                want = dev.dropout_bwd(x, step=step, **kw).get()
                got = dev.dropout_bwd(x, step=d_step, out=poisoned(shape, dtype), **kw)
                np.testing.assert_array_equal(got.get(), want, err_msg=f"{path} bwd {shape} {sshape}")
        np.testing.assert_array_equal(got.get(), ref.dropout_bwd(x.get(), step=step, **kw))


@pytest.mark.gpu
@pytest.mark.parametrize("path", PATHS)
def test_device_step_in_a_captured_graph(path):
    """One capture, replays with new steps written into the step array: each replay uses its step."""
    import cupy as cp

    kw = dict(keep=0.5, seed=7, layer=3)
    x = cp.asarray(np.random.default_rng(2).standard_normal((5, 1000)).astype(np.float32))
    y = cp.empty_like(x)
    d_step = cp.zeros((), cp.int64)
    stream = cp.cuda.Stream(non_blocking=True)
    with use_path(path), stream:
        dev.dropout_fwd(x, step=d_step, out=y, **kw)  # compiled and cached outside the capture
        stream.synchronize()
        stream.begin_capture()
        try:
            dev.dropout_fwd(x, step=d_step, out=y, **kw)
        finally:
            graph = stream.end_capture()
        for step in (5, 2**32 + 1, 6):
            d_step.fill(step)
            y.fill(cp.nan)
            graph.launch(stream)
            stream.synchronize()
            np.testing.assert_array_equal(y.get(), ref.dropout_fwd(x.get(), step=step, **kw), err_msg=f"{path} {step}")


@pytest.mark.gpu
def test_device_step_argument_checks_on_the_gpu():
    import cupy as cp

    x = cp.zeros((4, 6), cp.float32)
    with pytest.raises(ValueError, match=r"dropout_fwd: step must be an int or a C-contiguous int64 device array "
                                         r"of shape \(\) or \(1,\), got a float32 array of shape \(1,\)"):
        dev.dropout_fwd(x, keep=0.5, seed=1, layer=2, step=cp.zeros(1, cp.float32))
    with pytest.raises(ValueError, match=r"dropout_bwd: step must be .* got a int64 array of shape \(2,\)"):
        dev.dropout_bwd(x, keep=0.5, seed=1, layer=2, step=cp.zeros(2, cp.int64))
