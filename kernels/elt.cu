// kernels/elt.cu: ops over several inputs of one shape: weighted sum and elementwise max, forward and
// backward. (Concatenation along axis 0 needs no kernel: it is one device copy per input.)
//
// Tensors: x0..x3, y, dy, dx0..dx3 are C-contiguous arrays of n elements of T (float or double) in device
//   memory, all of one shape (any: images (C, H, W, N) with the batch innermost, fully connected (F, N)).
//   One launch takes k in [1, ELT_MAXK = 4] inputs (or outputs); the slots j >= k are ignored (pass any
//   valid pointer, e.g. x0). More inputs take several launches: the later ones run with acc = 1, which
//   starts from the y written so far instead of x0, so the accumulation order is the reference's.
// Semantics (pyconvnet/ops/elt.py):
//   eltsum_fwd   y = x0 * c0 + x1 * c1 + ... in input order, every product and sum rounded to T (no FMA
//                contraction: the products use __fmul_rn / __dmul_rn), so it matches NumPy bit for bit;
//                acc = 1: y = y + x0 * c0 + ...
//   eltsum_bwd   dx_j = dy * c_j
//   eltmax_fwd   y = maximum(...maximum(x0, x1)..., x_{k-1}) with NumPy's maximum(a, b) = a > b or a is
//                NaN ? a : b (NaN propagates); acc = 1 starts from y
//   eltmax_bwd   dx_j = dy * (x_j == y ? 1 : 0) (every input equal to the max gets the gradient)
//   y may alias any input of its launch, and dx_j may alias dy or y (each element is read before it is
//   written by the same thread); the wrapper keeps aliasing across chained launches safe.
// Constraints: n >= 0, any value; pointers need only T's alignment. When every pointer a launch touches is
//   16-byte aligned, each thread moves 16-byte packs (4 floats or 2 doubles) and the last n % pack
//   elements take the scalar loop; otherwise the whole array takes the scalar loop.
// Launch: 1-D grid-stride loop, any grid >= 1 and block in [1, 1024]; pyconvnet/cuda/ops/elt.py
//   (elt_launch_config) picks them for both launch paths.
// Versions: v1.
// Entry points: the explicit instantiations at the end of the file (also NVRTC's name expressions).
// Builds unchanged under nvcc (bindings/elt.cu includes it) and NVRTC: no includes.

constexpr int ELT_MAXK = 4;  // inputs (or outputs) per launch

__device__ __forceinline__ float elt_mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double elt_mul(double a, double b) { return __dmul_rn(a, b); }

// NumPy's maximum: NaN in either argument gives NaN; otherwise the larger (b when equal).
template <typename T>
__device__ __forceinline__ T elt_max(T a, T b) {
    return (a > b || a != a) ? a : b;
}

// 16 bytes of T: the unit of the vectorised loops.
template <typename T>
struct __align__(16) EltPack {
    T v[16 / sizeof(T)];
};

__device__ __forceinline__ bool elt_aligned16(const void* p) {
    return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0;
}

// The k pointers of a launch, indexed only with constants after unrolling (so they stay in registers).
template <typename P>
struct EltPtrs {
    P p[ELT_MAXK];
    __device__ __forceinline__ bool aligned(int k) const {
        bool ok = true;
#pragma unroll
        for (int j = 0; j < ELT_MAXK; ++j)
            if (j < k) ok = ok && elt_aligned16(p[j]);
        return ok;
    }
};

// y[i] = (acc ? y[i] : 0) + sum_j x_j[i] * c_j, rounded after every operation; W elements of T per step.
template <typename T, int W, typename L>
__device__ __forceinline__ void elt_sum_range(const EltPtrs<const L*>& xs, const T* c, L* y, long long begin,
                                              long long end, int k, int acc) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = begin + (long long)blockIdx.x * blockDim.x + threadIdx.x; i < end; i += stride) {
        const L x0 = xs.p[0][i];
        L v;
        if (acc) {
            v = y[i];
#pragma unroll
            for (int e = 0; e < W; ++e) v.v[e] = v.v[e] + elt_mul(x0.v[e], c[0]);
        } else {
#pragma unroll
            for (int e = 0; e < W; ++e) v.v[e] = elt_mul(x0.v[e], c[0]);
        }
#pragma unroll
        for (int j = 1; j < ELT_MAXK; ++j) {
            if (j < k) {
                const L x = xs.p[j][i];
#pragma unroll
                for (int e = 0; e < W; ++e) v.v[e] = v.v[e] + elt_mul(x.v[e], c[j]);
            }
        }
        y[i] = v;
    }
}

// One element as a 1-element "pack", so the scalar tail shares the code of the packed loop.
template <typename T>
struct EltOne {
    T v[1];
};

template <typename T>
__global__ void eltsum_fwd(const T* x0, const T* x1, const T* x2, const T* x3, T c0, T c1, T c2, T c3, T* y,
                           long long n, int k, int acc) {
    const T c[ELT_MAXK] = {c0, c1, c2, c3};
    const int W = 16 / sizeof(T);
    EltPtrs<const T*> xs = {{x0, x1, x2, x3}};
    long long done = 0;
    if (xs.aligned(k) && elt_aligned16(y)) {
        EltPtrs<const EltPack<T>*> xp;
#pragma unroll
        for (int j = 0; j < ELT_MAXK; ++j) xp.p[j] = reinterpret_cast<const EltPack<T>*>(xs.p[j]);
        elt_sum_range<T, W>(xp, c, reinterpret_cast<EltPack<T>*>(y), 0, n / W, k, acc);
        done = n / W * W;
    }
    EltPtrs<const EltOne<T>*> xo;
#pragma unroll
    for (int j = 0; j < ELT_MAXK; ++j) xo.p[j] = reinterpret_cast<const EltOne<T>*>(xs.p[j]);
    elt_sum_range<T, 1>(xo, c, reinterpret_cast<EltOne<T>*>(y), done, n, k, acc);
}

// dx_j[i] = dy[i] * c_j for j < k.
template <typename T>
__global__ void eltsum_bwd(const T* dy, T* dx0, T* dx1, T* dx2, T* dx3, T c0, T c1, T c2, T c3, long long n,
                           int k) {
    const T c[ELT_MAXK] = {c0, c1, c2, c3};
    const int W = 16 / sizeof(T);
    EltPtrs<T*> dx = {{dx0, dx1, dx2, dx3}};
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long done = 0;
    if (dx.aligned(k) && elt_aligned16(dy)) {
        const long long packs = n / W;
        for (long long i = tid; i < packs; i += stride) {
            const EltPack<T> g = reinterpret_cast<const EltPack<T>*>(dy)[i];
#pragma unroll
            for (int j = 0; j < ELT_MAXK; ++j) {
                if (j < k) {
                    EltPack<T> o;
#pragma unroll
                    for (int e = 0; e < W; ++e) o.v[e] = elt_mul(g.v[e], c[j]);
                    reinterpret_cast<EltPack<T>*>(dx.p[j])[i] = o;
                }
            }
        }
        done = packs * W;
    }
    for (long long i = done + tid; i < n; i += stride) {
        const T g = dy[i];
#pragma unroll
        for (int j = 0; j < ELT_MAXK; ++j)
            if (j < k) dx.p[j][i] = elt_mul(g, c[j]);
    }
}

template <typename T, int W, typename L>
__device__ __forceinline__ void elt_max_range(const EltPtrs<const L*>& xs, L* y, long long begin, long long end,
                                              int k, int acc) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = begin + (long long)blockIdx.x * blockDim.x + threadIdx.x; i < end; i += stride) {
        const L x0 = xs.p[0][i];
        L v = x0;
        if (acc) {
            v = y[i];
#pragma unroll
            for (int e = 0; e < W; ++e) v.v[e] = elt_max(v.v[e], x0.v[e]);
        }
#pragma unroll
        for (int j = 1; j < ELT_MAXK; ++j) {
            if (j < k) {
                const L x = xs.p[j][i];
#pragma unroll
                for (int e = 0; e < W; ++e) v.v[e] = elt_max(v.v[e], x.v[e]);
            }
        }
        y[i] = v;
    }
}

template <typename T>
__global__ void eltmax_fwd(const T* x0, const T* x1, const T* x2, const T* x3, T* y, long long n, int k, int acc) {
    const int W = 16 / sizeof(T);
    EltPtrs<const T*> xs = {{x0, x1, x2, x3}};
    long long done = 0;
    if (xs.aligned(k) && elt_aligned16(y)) {
        EltPtrs<const EltPack<T>*> xp;
#pragma unroll
        for (int j = 0; j < ELT_MAXK; ++j) xp.p[j] = reinterpret_cast<const EltPack<T>*>(xs.p[j]);
        elt_max_range<T, W>(xp, reinterpret_cast<EltPack<T>*>(y), 0, n / W, k, acc);
        done = n / W * W;
    }
    EltPtrs<const EltOne<T>*> xo;
#pragma unroll
    for (int j = 0; j < ELT_MAXK; ++j) xo.p[j] = reinterpret_cast<const EltOne<T>*>(xs.p[j]);
    elt_max_range<T, 1>(xo, reinterpret_cast<EltOne<T>*>(y), done, n, k, acc);
}

// dx_j[i] = dy[i] * (x_j[i] == y[i]) for j < k.
template <typename T>
__global__ void eltmax_bwd(const T* dy, const T* y, const T* x0, const T* x1, const T* x2, const T* x3, T* dx0,
                           T* dx1, T* dx2, T* dx3, long long n, int k) {
    const int W = 16 / sizeof(T);
    EltPtrs<const T*> xs = {{x0, x1, x2, x3}};
    EltPtrs<T*> dx = {{dx0, dx1, dx2, dx3}};
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long done = 0;
    if (xs.aligned(k) && dx.aligned(k) && elt_aligned16(dy) && elt_aligned16(y)) {
        const long long packs = n / W;
        for (long long i = tid; i < packs; i += stride) {
            const EltPack<T> g = reinterpret_cast<const EltPack<T>*>(dy)[i];
            const EltPack<T> m = reinterpret_cast<const EltPack<T>*>(y)[i];
#pragma unroll
            for (int j = 0; j < ELT_MAXK; ++j) {
                if (j < k) {
                    EltPack<T> o = reinterpret_cast<const EltPack<T>*>(xs.p[j])[i];
#pragma unroll
                    for (int e = 0; e < W; ++e) o.v[e] = g.v[e] * (o.v[e] == m.v[e] ? T(1) : T(0));
                    reinterpret_cast<EltPack<T>*>(dx.p[j])[i] = o;
                }
            }
        }
        done = packs * W;
    }
    for (long long i = done + tid; i < n; i += stride) {
        const T g = dy[i], m = y[i];
#pragma unroll
        for (int j = 0; j < ELT_MAXK; ++j)
            if (j < k) dx.p[j][i] = g * (xs.p[j][i] == m ? T(1) : T(0));
    }
}

template __global__ void eltsum_fwd<float>(const float*, const float*, const float*, const float*, float, float,
                                           float, float, float*, long long, int, int);
template __global__ void eltsum_fwd<double>(const double*, const double*, const double*, const double*, double,
                                            double, double, double, double*, long long, int, int);
template __global__ void eltsum_bwd<float>(const float*, float*, float*, float*, float*, float, float, float, float,
                                           long long, int);
template __global__ void eltsum_bwd<double>(const double*, double*, double*, double*, double*, double, double,
                                            double, double, long long, int);
template __global__ void eltmax_fwd<float>(const float*, const float*, const float*, const float*, float*, long long,
                                           int, int);
template __global__ void eltmax_fwd<double>(const double*, const double*, const double*, const double*, double*,
                                            long long, int, int);
template __global__ void eltmax_bwd<float>(const float*, const float*, const float*, const float*, const float*,
                                           const float*, float*, float*, float*, float*, long long, int);
template __global__ void eltmax_bwd<double>(const double*, const double*, const double*, const double*,
                                            const double*, const double*, double*, double*, double*, double*,
                                            long long, int);
