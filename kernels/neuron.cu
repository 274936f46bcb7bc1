// kernels/neuron.cu: elementwise activations ("neurons"), forward and backward.
//
// Tensors: x, y, dy, dx are C-contiguous arrays of n elements of T (float or double) in device memory.
//   The op is elementwise, so any shape works: images (C, H, W, N) with the batch innermost, fully
//   connected activations (F, N); all arrays of one launch have the same n. y may alias x (in place)
//   in neuron_fwd, and dx may alias dy in neuron_bwd.
// Constraints: n >= 0, any value (not a multiple of anything). Pointers need only T's alignment: when
//   all of a launch's pointers are 16-byte aligned, each thread moves 16 bytes per access (float4-sized
//   packs of 4 floats or 2 doubles) and the last n % pack elements take the scalar loop; otherwise the
//   whole array takes the scalar loop.
// Launch: 1-D grid-stride loop, any grid >= 1 and block in [1, 1024]; pyconvnet/cuda/ops/neuron.py
//   (neuron_launch_config) picks them for both launch paths.
// Semantics (the NumPy reference pyconvnet/ops/neuron.py defines them; a and b are the neuron's params):
//   kind       forward y                        backward dx
//   ident      x                                dy
//   relu       max(0, x)                        dy * (y > 0)
//   logistic   1 / (1 + exp(-x))                dy * y * (1 - y)
//   tanh       a * tanh(b * x)                  dy * b * (a - y*y/a)
//   brelu      min(max(0, x), a)                dy * (0 < y < a)
//   softrelu   max(x, 0) + log1p(exp(-|x|))     dy * logistic(x)
//   abs        |x|                              dy * sign(x)   (sign(0) = 0)
//   square     x * x                            dy * 2 * x
//   sqrt       sqrt(x)                          dy / (2 * y)
//   linear     a * x + b                        dy * a
//   Masks multiply (a NaN dy stays NaN where masked off); NaN inputs give NaN outputs, as in NumPy.
//   The backward reads x only for softrelu, abs and square, and y only for the kinds that use it.
// Versions: v1, one kernel per direction with the kind as a run-time (warp-uniform) argument.
// Entry points: the explicit instantiations at the end of the file (also NVRTC's name expressions).
// Builds unchanged under nvcc (bindings/neuron.cu includes it) and NVRTC: no includes.

enum NeuronKind {
    NEURON_IDENT = 0,
    NEURON_RELU = 1,
    NEURON_LOGISTIC = 2,
    NEURON_TANH = 3,
    NEURON_BRELU = 4,
    NEURON_SOFTRELU = 5,
    NEURON_ABS = 6,
    NEURON_SQUARE = 7,
    NEURON_SQRT = 8,
    NEURON_LINEAR = 9,
};

// Single and double precision spellings of the math functions used here.
__device__ __forceinline__ float nr_exp(float v) { return expf(v); }
__device__ __forceinline__ double nr_exp(double v) { return exp(v); }
__device__ __forceinline__ float nr_log1p(float v) { return log1pf(v); }
__device__ __forceinline__ double nr_log1p(double v) { return log1p(v); }
__device__ __forceinline__ float nr_tanh(float v) { return tanhf(v); }
__device__ __forceinline__ double nr_tanh(double v) { return tanh(v); }
__device__ __forceinline__ float nr_sqrt(float v) { return sqrtf(v); }
__device__ __forceinline__ double nr_sqrt(double v) { return sqrt(v); }
__device__ __forceinline__ float nr_abs(float v) { return fabsf(v); }
__device__ __forceinline__ double nr_abs(double v) { return fabs(v); }

template <typename T>
__device__ __forceinline__ T nr_logistic(T x) {
    return T(1) / (T(1) + nr_exp(-x));
}

template <typename T>
__device__ __forceinline__ T neuron_fwd_one(int kind, T x, T a, T b) {
    switch (kind) {
    case NEURON_RELU: return x < T(0) ? T(0) : x;  // written so that NaN passes through
    case NEURON_LOGISTIC: return nr_logistic(x);
    case NEURON_TANH: return a * nr_tanh(b * x);
    case NEURON_BRELU: return x < T(0) ? T(0) : (x > a ? a : x);
    case NEURON_SOFTRELU: return (x > T(0) ? x : T(0)) + nr_log1p(nr_exp(-nr_abs(x)));
    case NEURON_ABS: return nr_abs(x);
    case NEURON_SQUARE: return x * x;
    case NEURON_SQRT: return nr_sqrt(x);
    case NEURON_LINEAR: return a * x + b;
    default: return x;  // NEURON_IDENT
    }
}

template <typename T>
__device__ __forceinline__ T neuron_bwd_one(int kind, T dy, T x, T y, T a, T b) {
    switch (kind) {
    case NEURON_RELU: return dy * (y > T(0) ? T(1) : T(0));
    case NEURON_LOGISTIC: return dy * (y * (T(1) - y));
    case NEURON_TANH: return dy * (b * (a - y * y / a));
    case NEURON_BRELU: return dy * ((y > T(0) && y < a) ? T(1) : T(0));
    case NEURON_SOFTRELU: return dy * nr_logistic(x);
    case NEURON_ABS: return dy * (x > T(0) ? T(1) : (x < T(0) ? T(-1) : x * T(0)));  // NaN stays NaN
    case NEURON_SQUARE: return dy * (T(2) * x);
    case NEURON_SQRT: return dy / (T(2) * y);
    case NEURON_LINEAR: return dy * a;
    default: return dy;  // NEURON_IDENT
    }
}

// 16 bytes of T: the unit of the vectorised loops.
template <typename T>
struct __align__(16) NeuronPack {
    T v[16 / sizeof(T)];
};

__device__ __forceinline__ bool nr_aligned16(const void* p) {
    return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0;
}

// y[i] = f(x[i]) for i < n.
template <typename T>
__global__ void neuron_fwd(const T* x, T* y, long long n, int kind, T a, T b) {
    const int W = 16 / sizeof(T);
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long done = 0;
    if (nr_aligned16(x) && nr_aligned16(y)) {
        const long long packs = n / W;
        const NeuronPack<T>* xp = reinterpret_cast<const NeuronPack<T>*>(x);
        NeuronPack<T>* yp = reinterpret_cast<NeuronPack<T>*>(y);
        for (long long i = tid; i < packs; i += stride) {
            NeuronPack<T> p = xp[i];
#pragma unroll
            for (int k = 0; k < W; ++k) p.v[k] = neuron_fwd_one(kind, p.v[k], a, b);
            yp[i] = p;
        }
        done = packs * W;
    }
    for (long long i = done + tid; i < n; i += stride) y[i] = neuron_fwd_one(kind, x[i], a, b);
}

// dx[i] = dy[i] * f'(x[i]) for i < n, f' written in terms of x or y as the table above says.
template <typename T>
__global__ void neuron_bwd(const T* dy, const T* x, const T* y, T* dx, long long n, int kind, T a, T b) {
    const int W = 16 / sizeof(T);
    const bool use_x = kind == NEURON_SOFTRELU || kind == NEURON_ABS || kind == NEURON_SQUARE;
    const bool use_y = kind == NEURON_RELU || kind == NEURON_LOGISTIC || kind == NEURON_TANH ||
                       kind == NEURON_BRELU || kind == NEURON_SQRT;
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long done = 0;
    if (nr_aligned16(dy) && nr_aligned16(x) && nr_aligned16(y) && nr_aligned16(dx)) {
        const long long packs = n / W;
        const NeuronPack<T>* dyp = reinterpret_cast<const NeuronPack<T>*>(dy);
        const NeuronPack<T>* xp = reinterpret_cast<const NeuronPack<T>*>(x);
        const NeuronPack<T>* yp = reinterpret_cast<const NeuronPack<T>*>(y);
        NeuronPack<T>* dxp = reinterpret_cast<NeuronPack<T>*>(dx);
        for (long long i = tid; i < packs; i += stride) {
            NeuronPack<T> g = dyp[i], xv = {}, yv = {};
            if (use_x) xv = xp[i];
            if (use_y) yv = yp[i];
#pragma unroll
            for (int k = 0; k < W; ++k) g.v[k] = neuron_bwd_one(kind, g.v[k], xv.v[k], yv.v[k], a, b);
            dxp[i] = g;
        }
        done = packs * W;
    }
    for (long long i = done + tid; i < n; i += stride) {
        const T xv = use_x ? x[i] : T(0);
        const T yv = use_y ? y[i] : T(0);
        dx[i] = neuron_bwd_one(kind, dy[i], xv, yv, a, b);
    }
}

template __global__ void neuron_fwd<float>(const float*, float*, long long, int, float, float);
template __global__ void neuron_fwd<double>(const double*, double*, long long, int, double, double);
template __global__ void neuron_bwd<float>(const float*, const float*, const float*, float*, long long,
                                           int, float, float);
template __global__ void neuron_bwd<double>(const double*, const double*, const double*, double*,
                                            long long, int, double, double);
