// kernels/sgd.cu: cuda-convnet's learning rule, SGD with momentum and L2 weight decay, fused and in place.
//
// Tensors: w (weights), inc (momentum buffer), grad (gradient summed over the minibatch's cases) are
//   C-contiguous arrays of n elements of T (float or double) in device memory, of one shape (any: conv
//   filters (C/g, R, R, K), fc weights (F_in, F_out), biases (K, 1), ...). w and inc are updated in place;
//   they must not overlap each other or grad (the wrapper checks).
// Semantics (pyconvnet/ops/sgd.py), every operation rounded to T in this order (the products use
//   __fmul_rn / __dmul_rn, so nothing is contracted into an FMA and the result matches NumPy bit for bit):
//     s   = use_n ? grad / n : grad          (IEEE division; use_n = n != 1)
//     s   = use_wc ? s + w * wc : s          (use_wc = wc != 0)
//     s   = s * eps
//     inc = inc * mom - s
//     w   = w + inc
// Constraints: n_elems >= 0, any value; pointers need only T's alignment. When all three are 16-byte
//   aligned, each thread moves 16-byte packs (4 floats or 2 doubles) and the last n_elems % pack elements
//   take the scalar loop; otherwise the whole array takes the scalar loop. One pass: reads w, inc, grad
//   once and writes w, inc once.
// Launch: 1-D grid-stride loop, any grid >= 1 and block in [1, 1024]; pyconvnet/cuda/ops/sgd.py
//   (sgd_launch_config) picks them for both launch paths.
// Versions: v1.
// Entry points: the explicit instantiations at the end of the file (also NVRTC's name expressions).
// Builds unchanged under nvcc (bindings/sgd.cu includes it) and NVRTC: no includes.

__device__ __forceinline__ float sgd_mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double sgd_mul(double a, double b) { return __dmul_rn(a, b); }

template <typename T>
__device__ __forceinline__ void sgd_one(T& w, T& inc, T g, T eps, T mom, T wc, T n, int use_wc, int use_n) {
    T s = use_n ? g / n : g;
    if (use_wc) s = s + sgd_mul(w, wc);
    s = sgd_mul(s, eps);
    inc = sgd_mul(inc, mom) - s;
    w = w + inc;
}

// 16 bytes of T: the unit of the vectorised loop.
template <typename T>
struct __align__(16) SgdPack {
    T v[16 / sizeof(T)];
};

__device__ __forceinline__ bool sgd_aligned16(const void* p) {
    return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0;
}

template <typename T>
__global__ void sgd_update(T* w, T* inc, const T* grad, long long n_elems, T eps, T mom, T wc, T n, int use_wc,
                           int use_n) {
    const int W = 16 / sizeof(T);
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long done = 0;
    if (sgd_aligned16(w) && sgd_aligned16(inc) && sgd_aligned16(grad)) {
        const long long packs = n_elems / W;
        SgdPack<T>* wp = reinterpret_cast<SgdPack<T>*>(w);
        SgdPack<T>* ip = reinterpret_cast<SgdPack<T>*>(inc);
        const SgdPack<T>* gp = reinterpret_cast<const SgdPack<T>*>(grad);
        for (long long i = tid; i < packs; i += stride) {
            SgdPack<T> a = wp[i], b = ip[i];
            const SgdPack<T> g = gp[i];
#pragma unroll
            for (int k = 0; k < W; ++k) sgd_one(a.v[k], b.v[k], g.v[k], eps, mom, wc, n, use_wc, use_n);
            wp[i] = a;
            ip[i] = b;
        }
        done = packs * W;
    }
    for (long long i = done + tid; i < n_elems; i += stride) {
        T a = w[i], b = inc[i];
        sgd_one(a, b, grad[i], eps, mom, wc, n, use_wc, use_n);
        w[i] = a;
        inc[i] = b;
    }
}

template __global__ void sgd_update<float>(float*, float*, const float*, long long, float, float, float, float,
                                           int, int);
template __global__ void sgd_update<double>(double*, double*, const double*, long long, double, double, double,
                                            double, int, int);
