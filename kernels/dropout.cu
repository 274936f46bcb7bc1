// kernels/dropout.cu: dropout with a stateless Philox4x32-10 mask, forward, backward and the mask.
//
// Tensors: x, y (dropout_fwd), dy, dx (dropout_bwd) are C-contiguous arrays of n elements of T (float or
//   double) in device memory; any shape (images (C, H, W, N) with the batch innermost, fully connected
//   activations (F, N)): element i is the i-th of the C-order flattening. y may alias x and dx may alias
//   dy (in place). mask (dropout_mask) is n bytes of bool (1 = kept), C order.
// Mask: element i is kept iff (bits[i] >> 8) < thr, thr = floor(keep * 2^24) in [1, 2^24], where
//   bits[i] = word i % 4 of Philox4x32-10(counter, key) with q = i / 4 (64-bit),
//   counter = (q & 0xFFFFFFFF, q >> 32, step & 0xFFFFFFFF, step >> 32), key = (seed, layer): exactly
//   pyconvnet/ops/philox.py (dropout_bits) and pyconvnet/ops/dropout.py, so masks are bit-identical to
//   the NumPy reference. seed is the low 32 bits of the run's seed, layer < 2^32, step < 2^64: they
//   arrive as int / int / long long holding those bit patterns (the wrapper wraps them to signed).
// Values: y = keep ? x * s : 0 with s = T(1/keep) (layer type dropout) or s = 1 (dropout2, x * 1 == x
//   exactly); a dropped element is exactly 0 even when x is inf or NaN. The backward is the same map on dy.
// Constraints: n >= 0, any value. Pointers need only T's alignment: when they are 16-byte aligned, a
//   group of 4 elements moves as 16-byte packs (one float4-sized pack of floats, two of doubles; the mask
//   as one 4-byte word) and only the last, partial group takes the scalar path; otherwise every group
//   takes the scalar path.
// Device step: dropout_fwd_ds / dropout_bwd_ds are dropout_fwd / dropout_bwd with the step read from
//   device memory (*step, one long long, read when the kernel runs), so a captured CUDA graph can take a
//   new step on every replay; the same body (dropout_apply), so their output is bit-identical to the
//   by-value kernels' for the same step. *step holds step's bit pattern (steps >= 0 as they are).
// Launch: 1-D grid-stride loop over the ceil(n / 4) groups, one Philox evaluation per group per thread;
//   any grid >= 1 and block in [1, 1024]; pyconvnet/cuda/ops/dropout.py (dropout_launch_config) picks
//   them for both launch paths.
// Versions: v1; v1.1 adds the device-step variants.
// Entry points: the explicit instantiations at the end of the file (also NVRTC's name expressions).
// Builds unchanged under nvcc (bindings/dropout.cu includes it) and NVRTC: no includes.

// The four output words of one Philox4x32-10 evaluation.
struct DropoutWords {
    unsigned int w[4];
};

// Philox4x32-10 (Salmon et al. 2011; Random123's philox4x32_R(10, ctr, key)), products in 64 bits.
__device__ __forceinline__ DropoutWords dropout_philox(unsigned int c0, unsigned int c1, unsigned int c2,
                                                       unsigned int c3, unsigned int k0, unsigned int k1) {
#pragma unroll
    for (int r = 0; r < 10; ++r) {
        if (r) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        const unsigned long long p0 = 0xD2511F53ull * c0;
        const unsigned long long p1 = 0xCD9E8D57ull * c2;
        const unsigned int n0 = (unsigned int)(p1 >> 32) ^ c1 ^ k0;
        const unsigned int n2 = (unsigned int)(p0 >> 32) ^ c3 ^ k1;
        c1 = (unsigned int)p1;
        c3 = (unsigned int)p0;
        c0 = n0;
        c2 = n2;
    }
    DropoutWords out;
    out.w[0] = c0;
    out.w[1] = c1;
    out.w[2] = c2;
    out.w[3] = c3;
    return out;
}

// The keep decisions of group q (elements 4q .. 4q+3): bit j set iff element 4q+j is kept.
__device__ __forceinline__ unsigned int dropout_group_keep(unsigned long long q, unsigned long long step,
                                                           unsigned int seed, unsigned int layer,
                                                           unsigned int thr) {
    const DropoutWords b = dropout_philox((unsigned int)q, (unsigned int)(q >> 32), (unsigned int)step,
                                          (unsigned int)(step >> 32), seed, layer);
    unsigned int keep = 0;
#pragma unroll
    for (int j = 0; j < 4; ++j) keep |= ((b.w[j] >> 8) < thr ? 1u : 0u) << j;
    return keep;
}

// 4 elements of T, 16-byte aligned (one 16-byte pack of floats, two of doubles).
template <typename T>
struct __align__(16) DropoutPack {
    T v[4];
};

struct __align__(4) DropoutMaskWord {
    bool v[4];
};

__device__ __forceinline__ bool dropout_aligned(const void* p, unsigned long long bytes) {
    return (reinterpret_cast<unsigned long long>(p) & (bytes - 1)) == 0;
}

template <typename T>
__device__ __forceinline__ T dropout_one(T x, bool kept, T s) {
    return kept ? x * s : T(0);
}

// y[i] = kept(i) ? x[i] * s : 0 for i < n (the body of dropout_fwd and dropout_bwd).
template <typename T>
__device__ __forceinline__ void dropout_apply(const T* x, T* y, long long n, int seed, int layer,
                                              long long step, int thr, T s) {
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    const unsigned long long groups = ((unsigned long long)n + 3) / 4;
    const unsigned long long full = (unsigned long long)n / 4;  // groups with 4 elements
    const bool vec = dropout_aligned(x, 16) && dropout_aligned(y, 16);
    for (unsigned long long q = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; q < groups;
         q += stride) {
        const unsigned int keep = dropout_group_keep(q, (unsigned long long)step, (unsigned int)seed,
                                                     (unsigned int)layer, (unsigned int)thr);
        if (vec && q < full) {
            DropoutPack<T> p = reinterpret_cast<const DropoutPack<T>*>(x)[q];
#pragma unroll
            for (int j = 0; j < 4; ++j) p.v[j] = dropout_one(p.v[j], (keep >> j) & 1u, s);
            reinterpret_cast<DropoutPack<T>*>(y)[q] = p;
        } else {
            const unsigned long long i0 = q * 4;
#pragma unroll
            for (int j = 0; j < 4; ++j)
                if (i0 + j < (unsigned long long)n) y[i0 + j] = dropout_one(x[i0 + j], (keep >> j) & 1u, s);
        }
    }
}

// Forward: y = x * mask * s (see the header).
template <typename T>
__global__ void dropout_fwd(const T* x, T* y, long long n, int seed, int layer, long long step, int thr, T s) {
    dropout_apply(x, y, n, seed, layer, step, thr, s);
}

// Backward: dx = dy * mask * s, the mask regenerated from the same seed, layer and step.
template <typename T>
__global__ void dropout_bwd(const T* dy, T* dx, long long n, int seed, int layer, long long step, int thr,
                            T s) {
    dropout_apply(dy, dx, n, seed, layer, step, thr, s);
}

// Forward and backward with the step read from device memory (see the header): the same body.
template <typename T>
__global__ void dropout_fwd_ds(const T* x, T* y, long long n, int seed, int layer, const long long* step,
                               int thr, T s) {
    dropout_apply(x, y, n, seed, layer, *step, thr, s);
}

template <typename T>
__global__ void dropout_bwd_ds(const T* dy, T* dx, long long n, int seed, int layer, const long long* step,
                               int thr, T s) {
    dropout_apply(dy, dx, n, seed, layer, *step, thr, s);
}

// mask[i] = kept(i) for i < n; M is bool (one byte per element).
template <typename M>
__global__ void dropout_mask(M* mask, long long n, int seed, int layer, long long step, int thr) {
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    const unsigned long long groups = ((unsigned long long)n + 3) / 4;
    const unsigned long long full = (unsigned long long)n / 4;
    const bool vec = dropout_aligned(mask, 4);
    for (unsigned long long q = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; q < groups;
         q += stride) {
        const unsigned int keep = dropout_group_keep(q, (unsigned long long)step, (unsigned int)seed,
                                                     (unsigned int)layer, (unsigned int)thr);
        if (vec && q < full) {
            DropoutMaskWord m;
#pragma unroll
            for (int j = 0; j < 4; ++j) m.v[j] = (keep >> j) & 1u;
            reinterpret_cast<DropoutMaskWord*>(mask)[q] = m;
        } else {
            const unsigned long long i0 = q * 4;
#pragma unroll
            for (int j = 0; j < 4; ++j)
                if (i0 + j < (unsigned long long)n) mask[i0 + j] = (keep >> j) & 1u;
        }
    }
}

template __global__ void dropout_fwd<float>(const float*, float*, long long, int, int, long long, int, float);
template __global__ void dropout_fwd<double>(const double*, double*, long long, int, int, long long, int,
                                             double);
template __global__ void dropout_bwd<float>(const float*, float*, long long, int, int, long long, int, float);
template __global__ void dropout_bwd<double>(const double*, double*, long long, int, int, long long, int,
                                             double);
template __global__ void dropout_mask<bool>(bool*, long long, int, int, long long, int);
template __global__ void dropout_fwd_ds<float>(const float*, float*, long long, int, int, const long long*, int,
                                                float);
template __global__ void dropout_fwd_ds<double>(const double*, double*, long long, int, int, const long long*,
                                                 int, double);
template __global__ void dropout_bwd_ds<float>(const float*, float*, long long, int, int, const long long*, int,
                                                float);
template __global__ void dropout_bwd_ds<double>(const double*, double*, long long, int, int, const long long*,
                                                 int, double);
