// kernels/softmax.cu: softmax over classes, its backward, and the cost layers (logistic regression on
// probabilities, sum of squares).
//
// Tensors (C-contiguous, device memory, T = float or double):
//   x, y, dy, dx, probs, dprobs: (F, N) -- F classes, N cases, the batch innermost (cuda-convnet's
//     layout): case n is column n, element (f, n) at f * N + n. F >= 1, N >= 1, each < 2^31; offsets are
//     formed in 64 bits, so F * N may pass 2^31.
//   labels: (N,) class indices of one of four element types, label_kind 0 int32, 1 int64, 2 float32,
//     3 float64 (the wrapper converts other integer types to int64, float16 to float32). A label is valid
//     when it is an integral value in [0, F); an invalid one never causes an out-of-range access:
//     logreg_cost counts it (partial[3]), logreg_bwd and softmax_logreg_bwd write NaN over its column.
//   sum2_cost / sum2_bwd: x, dx of n elements, any shape.
//   partial (logreg_cost, sum2_cost): double per-block results the wrapper copies to the host and sums.
// Semantics: pyconvnet/ops/softmax.py. softmax_fwd: y = exp(x - max) / sum exp(x - max) per column, by an
//   online max/sum (no overflow for any finite logits; NaN or +inf in a column gives NaN over it, as the
//   reference). softmax_bwd: dx = (dy - sum_f dy*y) * y. logreg_cost: per block, sum of log(max(p_label,
//   tiny)) (log in T, summed in double), number of cases wrong at top-1 and at top-k, where a case is
//   wrong at top-k iff at least k other classes j have !(p_j < p_label) (ties and NaN count against the
//   label), and the number of invalid labels. logreg_bwd: -coeff / max(p, tiny) at the label, 0
//   elsewhere. softmax_logreg_bwd: (p - onehot) * coeff (the multiply only when coeff != 1). sum2_cost:
//   per block sum of double(x)^2; sum2_bwd: dx = x * coeff. max(p, tiny) keeps NaN (p < tiny ? tiny : p).
//
// Column kernels (softmax_fwd, softmax_bwd, logreg_cost): block (C, R), C consecutive cases (threadIdx.x,
//   so a warp's loads of one row are contiguous) times R row slices (threadIdx.y takes rows ty, ty + R,
//   ...); grid ceil(N / C) blocks, each owning its C columns. Any C, R with C * R <= 1024 is right
//   (__launch_bounds__(1024)). The first pass loads 32 bytes of rows per thread and array (8 floats or 4
//   doubles, the last batch predicated) before using them, to keep loads in flight. The per-thread
//   partial results (max and sum, or counts) meet in a tree over R in shared memory. The softmax kernels
//   read their inputs twice (statistics, then output); rows f < cache_rows are kept in shared memory in
//   the first pass, so only the rows beyond come back from global memory. Dynamic shared memory, in units
//   of T: softmax_fwd 2*C*R + cache_rows*C; softmax_bwd C*R + 2*cache_rows*C; logreg_cost (no cache):
//   4*C doubles, then C*R ints. cache_rows in [0, F]. The wrapper uses them for small arrays (one launch)
//   and for arrays whose rows all fit the cache with enough blocks; else the split kernels below.
// Split kernels (softmax_fwd_part/_apply, softmax_bwd_part/_apply): tiles of C columns by `rows` rows,
//   grid (ceil(ncols / C), S) over the column range [col0, col0 + ncols), block (C, R) with any C * R <=
//   256; see the comment above softmax_fwd_part. Two launches per column range (wave); the wrapper sizes
//   the waves so each one's inputs stay in L2 between its two passes.
// Elementwise kernels (logreg_bwd, softmax_logreg_bwd, sum2_cost, sum2_bwd): 1-D grid-stride loops over
//   16-byte packs (4 floats or 2 doubles; for the (F, N) kernels only when N is a multiple of the pack,
//   so a pack stays in one row) when all pointers are 16-byte aligned, else over single elements; any
//   grid >= 1 and block in [1, 1024] (sum2_cost's tree uses blockDim.x doubles of dynamic shared memory).
// pyconvnet/cuda/ops/softmax.py picks every launch configuration for both launch paths.
// Versions: v1 column kernels only; v2 (issue 4) adds the split kernels and predicated load batches.
// Entry points: the explicit instantiations at the end of the file (also NVRTC's name expressions).
// Builds unchanged under nvcc (bindings/softmax.cu includes it) and NVRTC: no includes.

__device__ __forceinline__ float softmax_exp(float v) { return expf(v); }
__device__ __forceinline__ double softmax_exp(double v) { return exp(v); }
__device__ __forceinline__ float softmax_log(float v) { return logf(v); }
__device__ __forceinline__ double softmax_log(double v) { return log(v); }
// Smallest positive normal number (np.finfo(T).tiny) and the most negative finite number.
__device__ __forceinline__ float softmax_tiny(float) { return 1.17549435082228750797e-38f; }
__device__ __forceinline__ double softmax_tiny(double) { return 2.22507385850720138309e-308; }
__device__ __forceinline__ float softmax_lowest(float) { return -3.40282346638528859812e+38f; }
__device__ __forceinline__ double softmax_lowest(double) { return -1.79769313486231570815e+308; }
__device__ __forceinline__ float softmax_nan(float) { return __int_as_float(0x7fffffff); }
__device__ __forceinline__ double softmax_nan(double) { return __longlong_as_double(0x7fffffffffffffffll); }

template <typename T>
__device__ __forceinline__ T softmax_clip_tiny(T p) {
    return p < softmax_tiny(p) ? softmax_tiny(p) : p;  // NaN stays NaN
}

// Label of case n as an int in [0, F), or -1 when it is not an integral value in that range.
__device__ __forceinline__ int softmax_label(const void* labels, int kind, long long n, int F) {
    double v;
    switch (kind) {
    case 0: {
        const int l = static_cast<const int*>(labels)[n];
        return l >= 0 && l < F ? l : -1;
    }
    case 1: {
        const long long l = static_cast<const long long*>(labels)[n];
        return l >= 0 && l < F ? (int)l : -1;
    }
    case 2: v = static_cast<const float*>(labels)[n]; break;
    default: v = static_cast<const double*>(labels)[n]; break;
    }
    return v >= 0.0 && v < (double)F && floor(v) == v ? (int)v : -1;  // NaN fails every test
}

// Online softmax statistics: (m, s) = (running max, sum of exp(v - m)); m starts at the lowest finite
// value with s = 0, so -inf inputs add exp(-inf) = 0 and need no special case. A NaN input makes s NaN
// (exp(NaN)), and so does a new +inf maximum through (v - v), as the reference's exp(inf - inf).
// Branch-free: one exp per input.
template <typename T>
__device__ __forceinline__ void softmax_push(T& m, T& s, T v) {
    const bool up = v > m;
    const T e = softmax_exp(up ? m - v : v - m);
    s = up ? s * e + ((v - v) + T(1)) : s + e;
    m = up ? v : m;
}

template <typename T>
__device__ __forceinline__ void softmax_merge(T& m, T& s, T m2, T s2) {
    const T mm = m > m2 ? m : m2;
    s = (m == mm ? s : s * softmax_exp(m - mm)) + (m2 == mm ? s2 : s2 * softmax_exp(m2 - mm));
    m = mm;
}

// Smallest power of two >= v (v >= 1).
__device__ __forceinline__ int softmax_pow2(int v) {
    int p = 1;
    while (p < v) p <<= 1;
    return p;
}

// Block trees over threadIdx.y: red (and red_s) hold one value per thread at [ty * C + tx]; after the
// call row 0 holds each column's result (max/sum merged, or the plain sum). Both start with the barrier
// that publishes the callers' writes and end with one, so row 0 may be read right after.
template <typename T>
__device__ __forceinline__ void softmax_tree_ms(T* red_m, T* red_s, int C, int R, int tx, int ty) {
    __syncthreads();
    for (int h = softmax_pow2(R) / 2; h > 0; h >>= 1) {
        if (ty < h && ty + h < R) {
            T a = red_m[ty * C + tx], b = red_s[ty * C + tx];
            softmax_merge(a, b, red_m[(ty + h) * C + tx], red_s[(ty + h) * C + tx]);
            red_m[ty * C + tx] = a;
            red_s[ty * C + tx] = b;
        }
        __syncthreads();
    }
}

template <typename T>
__device__ __forceinline__ void softmax_tree_sum(T* red, int C, int R, int tx, int ty) {
    __syncthreads();
    for (int h = softmax_pow2(R) / 2; h > 0; h >>= 1) {
        if (ty < h && ty + h < R) red[ty * C + tx] += red[(ty + h) * C + tx];
        __syncthreads();
    }
}

// End of the row range [r0, r0 + rows) clipped to F, without int overflow.
__device__ __forceinline__ int softmax_row_end(int r0, int rows, int F) { return rows > F - r0 ? F : r0 + rows; }

template <typename T>
__global__ void __launch_bounds__(1024) softmax_fwd(const T* x, T* y, int F, int N, int cache_rows) {
    const int B = 32 / sizeof(T);  // rows a thread loads before using them (32 bytes in flight)
    extern __shared__ __align__(16) unsigned char softmax_smem[];
    const int C = blockDim.x, R = blockDim.y, tx = threadIdx.x, ty = threadIdx.y;
    T* red_m = reinterpret_cast<T*>(softmax_smem);
    T* red_s = red_m + C * R;
    T* cache = red_s + C * R;
    const long long n = (long long)blockIdx.x * C + tx;
    const bool valid = n < N;
    T m = softmax_lowest(T(0)), s = T(0);
    if (valid) {
        for (int f = ty; f < F; f += B * R) {
            T v[B];
#pragma unroll
            for (int u = 0; u < B; ++u) v[u] = f + u * R < F ? x[(long long)(f + u * R) * N + n] : T(0);
#pragma unroll
            for (int u = 0; u < B; ++u) {
                if (f + u * R >= F) break;
                if (f + u * R < cache_rows) cache[(f + u * R) * C + tx] = v[u];
                softmax_push(m, s, v[u]);
            }
        }
    }
    red_m[ty * C + tx] = m;
    red_s[ty * C + tx] = s;
    softmax_tree_ms(red_m, red_s, C, R, tx, ty);
    if (!valid) return;
    const T mx = red_m[tx], sum = red_s[tx];
    for (int f = ty; f < F; f += 4 * R) {
        T v[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const int g = f + u * R;
            v[u] = g < cache_rows ? cache[g * C + tx] : g < F ? x[(long long)g * N + n] : T(0);
        }
#pragma unroll
        for (int u = 0; u < 4; ++u)
            if (f + u * R < F) y[(long long)(f + u * R) * N + n] = softmax_exp(v[u] - mx) / sum;
    }
}

template <typename T>
__global__ void __launch_bounds__(1024) softmax_bwd(const T* dy, const T* y, T* dx, int F, int N, int cache_rows) {
    const int B = 32 / sizeof(T);  // rows a thread loads before using them (32 bytes in flight)
    extern __shared__ __align__(16) unsigned char softmax_smem[];
    const int C = blockDim.x, R = blockDim.y, tx = threadIdx.x, ty = threadIdx.y;
    T* red = reinterpret_cast<T*>(softmax_smem);
    T* cache_dy = red + C * R;
    T* cache_y = cache_dy + cache_rows * C;
    const long long n = (long long)blockIdx.x * C + tx;
    const bool valid = n < N;
    T s = T(0);
    if (valid) {
        for (int f = ty; f < F; f += B * R) {
            T g[B], p[B];
#pragma unroll
            for (int u = 0; u < B; ++u) {
                const bool in = f + u * R < F;
                const long long i = (long long)(f + u * R) * N + n;
                g[u] = in ? dy[i] : T(0);
                p[u] = in ? y[i] : T(0);
            }
#pragma unroll
            for (int u = 0; u < B; ++u) {
                if (f + u * R >= F) break;
                if (f + u * R < cache_rows) {
                    cache_dy[(f + u * R) * C + tx] = g[u];
                    cache_y[(f + u * R) * C + tx] = p[u];
                }
                s += g[u] * p[u];
            }
        }
    }
    red[ty * C + tx] = s;
    softmax_tree_sum(red, C, R, tx, ty);
    if (!valid) return;
    const T sum = red[tx];
    for (int f = ty; f < F; f += 4 * R) {
        T g[4], p[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const int r = f + u * R;
            const long long i = (long long)r * N + n;
            const bool c = r < cache_rows, in = r < F;
            g[u] = c ? cache_dy[r * C + tx] : in ? dy[i] : T(0);
            p[u] = c ? cache_y[r * C + tx] : in ? y[i] : T(0);
        }
#pragma unroll
        for (int u = 0; u < 4; ++u)
            if (f + u * R < F) dx[(long long)(f + u * R) * N + n] = (g[u] - sum) * p[u];
    }
}

// Split kernels (large F): the (F, N) array is cut into tiles of C columns (threadIdx.x) by `rows` rows,
// tile (blockIdx.x, blockIdx.y) = columns col0 + blockIdx.x * C + [0, C) (only those < col0 + ncols)
// and rows blockIdx.y * rows + [0, rows) (clipped to F); S = gridDim.y splits cover every row. Pass 1
// (*_part) writes each tile's per-column statistics to part; pass 2 (*_apply, the same grid) merges the
// S statistics of its columns and writes its tile, walking the tiles in the reverse order of pass 1 so
// that it starts with the ones pass 1 read last (still in L2), with streaming loads and stores (__ldcs,
// __stcs: evict-first) so the outputs do not push the inputs out of L2. part: softmax_fwd 2 * S rows of
// N (max, then sum of exp), softmax_bwd S rows of N (sum of dy * y); only the columns of the tile range
// are written and read. Dynamic shared memory, in units of T: fwd 2 * C * R, bwd C * R.
template <typename T>
__global__ void __launch_bounds__(256) softmax_fwd_part(const T* x, T* part, int F, int N, int col0, int ncols,
                                                        int rows) {
    const int B = 32 / sizeof(T);  // rows a thread loads before using them (32 bytes in flight)
    extern __shared__ __align__(16) unsigned char softmax_smem[];
    const int C = blockDim.x, R = blockDim.y, tx = threadIdx.x, ty = threadIdx.y;
    T* red_m = reinterpret_cast<T*>(softmax_smem);
    T* red_s = red_m + C * R;
    const int c = blockIdx.x * C + tx;
    const bool valid = c < ncols;
    const long long n = (long long)col0 + c;
    const int r0 = blockIdx.y * rows, r1 = softmax_row_end(r0, rows, F);
    T m = softmax_lowest(T(0)), s = T(0);
    if (valid) {
        for (int f = r0 + ty; f < r1; f += B * R) {
            T v[B];
#pragma unroll
            for (int u = 0; u < B; ++u) v[u] = f + u * R < r1 ? x[(long long)(f + u * R) * N + n] : T(0);
#pragma unroll
            for (int u = 0; u < B; ++u)
                if (f + u * R < r1) softmax_push(m, s, v[u]);
        }
    }
    red_m[ty * C + tx] = m;
    red_s[ty * C + tx] = s;
    softmax_tree_ms(red_m, red_s, C, R, tx, ty);
    if (valid && ty == 0) {
        part[(long long)blockIdx.y * N + n] = red_m[tx];
        part[(long long)(gridDim.y + blockIdx.y) * N + n] = red_s[tx];
    }
}

template <typename T>
__global__ void __launch_bounds__(256) softmax_fwd_apply(const T* x, T* y, const T* part, int F, int N, int col0,
                                                         int ncols, int rows) {
    extern __shared__ __align__(16) unsigned char softmax_smem[];
    const int C = blockDim.x, R = blockDim.y, tx = threadIdx.x, ty = threadIdx.y;
    const int S = gridDim.y, bx = gridDim.x - 1 - blockIdx.x, by = S - 1 - blockIdx.y;  // reverse order
    T* red_m = reinterpret_cast<T*>(softmax_smem);
    T* red_s = red_m + C * R;
    const int c = bx * C + tx;
    const bool valid = c < ncols;
    const long long n = (long long)col0 + c;
    T m = softmax_lowest(T(0)), s = T(0);
    if (valid)
        for (int k = ty; k < S; k += R)
            softmax_merge(m, s, part[(long long)k * N + n], part[(long long)(S + k) * N + n]);
    red_m[ty * C + tx] = m;
    red_s[ty * C + tx] = s;
    softmax_tree_ms(red_m, red_s, C, R, tx, ty);
    if (!valid) return;
    const T mx = red_m[tx], sum = red_s[tx];
    const int r0 = by * rows, r1 = softmax_row_end(r0, rows, F);
    for (int f = r0 + ty; f < r1; f += 4 * R) {
        T v[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) v[u] = f + u * R < r1 ? __ldcs(x + (long long)(f + u * R) * N + n) : T(0);
#pragma unroll
        for (int u = 0; u < 4; ++u)
            if (f + u * R < r1) __stcs(y + (long long)(f + u * R) * N + n, softmax_exp(v[u] - mx) / sum);
    }
}

template <typename T>
__global__ void __launch_bounds__(256) softmax_bwd_part(const T* dy, const T* y, T* part, int F, int N, int col0,
                                                        int ncols, int rows) {
    const int B = 32 / sizeof(T);  // rows a thread loads before using them (32 bytes in flight)
    extern __shared__ __align__(16) unsigned char softmax_smem[];
    const int C = blockDim.x, R = blockDim.y, tx = threadIdx.x, ty = threadIdx.y;
    T* red = reinterpret_cast<T*>(softmax_smem);
    const int c = blockIdx.x * C + tx;
    const bool valid = c < ncols;
    const long long n = (long long)col0 + c;
    const int r0 = blockIdx.y * rows, r1 = softmax_row_end(r0, rows, F);
    T s = T(0);
    if (valid) {
        for (int f = r0 + ty; f < r1; f += B * R) {
            T g[B], p[B];
#pragma unroll
            for (int u = 0; u < B; ++u) {
                const bool in = f + u * R < r1;
                const long long i = (long long)(f + u * R) * N + n;
                g[u] = in ? dy[i] : T(0);
                p[u] = in ? y[i] : T(0);
            }
#pragma unroll
            for (int u = 0; u < B; ++u)
                if (f + u * R < r1) s += g[u] * p[u];
        }
    }
    red[ty * C + tx] = s;
    softmax_tree_sum(red, C, R, tx, ty);
    if (valid && ty == 0) part[(long long)blockIdx.y * N + n] = red[tx];
}

template <typename T>
__global__ void __launch_bounds__(256) softmax_bwd_apply(const T* dy, const T* y, T* dx, const T* part, int F, int N,
                                                         int col0, int ncols, int rows) {
    extern __shared__ __align__(16) unsigned char softmax_smem[];
    const int C = blockDim.x, R = blockDim.y, tx = threadIdx.x, ty = threadIdx.y;
    const int S = gridDim.y, bx = gridDim.x - 1 - blockIdx.x, by = S - 1 - blockIdx.y;  // reverse order
    T* red = reinterpret_cast<T*>(softmax_smem);
    const int c = bx * C + tx;
    const bool valid = c < ncols;
    const long long n = (long long)col0 + c;
    T s = T(0);
    if (valid)
        for (int k = ty; k < S; k += R) s += part[(long long)k * N + n];
    red[ty * C + tx] = s;
    softmax_tree_sum(red, C, R, tx, ty);
    if (!valid) return;
    const T sum = red[tx];
    const int r0 = by * rows, r1 = softmax_row_end(r0, rows, F);
    for (int f = r0 + ty; f < r1; f += 4 * R) {
        T g[4], p[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const bool in = f + u * R < r1;
            const long long i = (long long)(f + u * R) * N + n;
            g[u] = in ? __ldcs(dy + i) : T(0);
            p[u] = in ? __ldcs(y + i) : T(0);
        }
#pragma unroll
        for (int u = 0; u < 4; ++u)
            if (f + u * R < r1) __stcs(dx + (long long)(f + u * R) * N + n, (g[u] - sum) * p[u]);
    }
}

// partial[4 * blockIdx.x + k], k = 0: sum over the block's valid cases of log(max(p_label, tiny));
// 1: cases wrong at top-1; 2: wrong at top-k; 3: invalid labels.
template <typename T>
__global__ void __launch_bounds__(1024) logreg_cost(const T* probs, const void* labels, int label_kind, int F,
                                                    int N, int topk, double* partial) {
    const int B = 32 / sizeof(T);  // rows a thread loads before using them (32 bytes in flight)
    extern __shared__ __align__(16) unsigned char softmax_smem[];
    const int C = blockDim.x, R = blockDim.y, tx = threadIdx.x, ty = threadIdx.y;
    double* acc = reinterpret_cast<double*>(softmax_smem);  // 4 * C
    int* cnt = reinterpret_cast<int*>(acc + 4 * C);         // C * R
    const long long n = (long long)blockIdx.x * C + tx;
    const bool valid = n < N;
    const int lab = valid ? softmax_label(labels, label_kind, n, F) : -1;
    int c = 0;
    T pl = T(0);
    if (lab >= 0) {
        pl = probs[(long long)lab * N + n];
        int f = ty;
        for (; f < F - (B - 1) * R; f += B * R) {
            T p[B];
#pragma unroll
            for (int u = 0; u < B; ++u) p[u] = probs[(long long)(f + u * R) * N + n];
#pragma unroll
            for (int u = 0; u < B; ++u) c += !(p[u] < pl);
        }
        for (; f < F; f += R) c += !(probs[(long long)f * N + n] < pl);
    }
    cnt[ty * C + tx] = c;
    __syncthreads();
    for (int h = softmax_pow2(R) / 2; h > 0; h >>= 1) {
        if (ty < h && ty + h < R) cnt[ty * C + tx] += cnt[(ty + h) * C + tx];
        __syncthreads();
    }
    if (ty == 0) {
        double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
        if (lab >= 0) {
            const int beat = cnt[tx] - 1;  // the label's own row always counts
            a0 = (double)softmax_log(softmax_clip_tiny(pl));
            a1 = beat >= 1 ? 1.0 : 0.0;
            a2 = beat >= topk ? 1.0 : 0.0;
        } else if (valid) {
            a3 = 1.0;
        }
        acc[4 * tx] = a0;
        acc[4 * tx + 1] = a1;
        acc[4 * tx + 2] = a2;
        acc[4 * tx + 3] = a3;
    }
    __syncthreads();
    if (tx == 0 && ty == 0) {
        double r0 = 0.0, r1 = 0.0, r2 = 0.0, r3 = 0.0;
        for (int j = 0; j < C; ++j) {
            r0 += acc[4 * j];
            r1 += acc[4 * j + 1];
            r2 += acc[4 * j + 2];
            r3 += acc[4 * j + 3];
        }
        double* out = partial + 4 * (long long)blockIdx.x;
        out[0] = r0;
        out[1] = r1;
        out[2] = r2;
        out[3] = r3;
    }
}

// 16 bytes of T: the unit of the vectorised loops.
template <typename T>
struct __align__(16) SoftmaxPack {
    T v[16 / sizeof(T)];
};

__device__ __forceinline__ bool softmax_aligned16(const void* p) {
    return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0;
}

// Walks the (F, N) elements in units of W (1 or the pack) with a grid-stride loop, keeping the row f
// and the column n of the current unit without a division per step.
struct SoftmaxWalk {
    long long f, c, row, df, dc;  // row: units per row; (df, dc): the grid stride in rows and units
    __device__ __forceinline__ SoftmaxWalk(long long units_per_row) : row(units_per_row) {
        const long long stride = (long long)gridDim.x * blockDim.x;
        const long long start = (long long)blockIdx.x * blockDim.x + threadIdx.x;
        f = start / row;
        c = start - f * row;
        df = stride / row;
        dc = stride - df * row;
    }
    __device__ __forceinline__ void next() {
        f += df;
        c += dc;
        if (c >= row) {
            c -= row;
            ++f;
        }
    }
};

// Element (f, n) of logreg_bwd (SOFTMAX = false) or softmax_logreg_bwd (true), given the label of column n
// and p = probs(f, n) (logreg_bwd reads it only at the label's row; p is 0 elsewhere).
template <bool SOFTMAX, typename T>
__device__ __forceinline__ T softmax_cost_grad(T p, int f, int lab, T coeff) {
    if (lab < 0) return softmax_nan(p);
    if (SOFTMAX) {
        T d = f == lab ? p - T(1) : p;
        return coeff != T(1) ? d * coeff : d;
    }
    return f == lab ? -coeff / softmax_clip_tiny(p) : T(0);
}

template <bool SOFTMAX, typename T>
__device__ __forceinline__ void softmax_cost_grad_all(const T* probs, const void* labels, int label_kind, T* d,
                                                      int F, int N, T coeff) {
    const int W = 16 / sizeof(T);
    if (N % W == 0 && softmax_aligned16(probs) && softmax_aligned16(d)) {
        const SoftmaxPack<T>* pp = reinterpret_cast<const SoftmaxPack<T>*>(probs);
        SoftmaxPack<T>* dp = reinterpret_cast<SoftmaxPack<T>*>(d);
        const long long row = N / W;
        for (SoftmaxWalk w(row); w.f < F; w.next()) {
            const long long u = w.f * row + w.c;
            SoftmaxPack<T> o;
            if (SOFTMAX) o = pp[u];
#pragma unroll
            for (int k = 0; k < W; ++k) {
                const long long n = w.c * W + k;
                const int lab = softmax_label(labels, label_kind, n, F);
                const T p = SOFTMAX ? o.v[k] : (lab == w.f ? probs[u * W + k] : T(0));
                o.v[k] = softmax_cost_grad<SOFTMAX>(p, (int)w.f, lab, coeff);
            }
            dp[u] = o;
        }
    } else {
        for (SoftmaxWalk w(N); w.f < F; w.next()) {
            const long long i = w.f * N + w.c;
            const int lab = softmax_label(labels, label_kind, w.c, F);
            const T p = (SOFTMAX || lab == w.f) ? probs[i] : T(0);
            d[i] = softmax_cost_grad<SOFTMAX>(p, (int)w.f, lab, coeff);
        }
    }
}

template <typename T>
__global__ void logreg_bwd(const T* probs, const void* labels, int label_kind, T* dprobs, int F, int N,
                           T coeff) {
    softmax_cost_grad_all<false>(probs, labels, label_kind, dprobs, F, N, coeff);
}

template <typename T>
__global__ void softmax_logreg_bwd(const T* probs, const void* labels, int label_kind, T* dx, int F, int N,
                                   T coeff) {
    softmax_cost_grad_all<true>(probs, labels, label_kind, dx, F, N, coeff);
}

// partial[blockIdx.x] = sum over the block's elements of double(x)^2; blockDim.x doubles of shared memory.
template <typename T>
__global__ void sum2_cost(const T* x, long long n, double* partial) {
    extern __shared__ __align__(16) unsigned char softmax_smem[];
    double* red = reinterpret_cast<double*>(softmax_smem);
    const int W = 16 / sizeof(T);
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    double s = 0.0;
    long long done = 0;
    if (softmax_aligned16(x)) {
        const long long packs = n / W;
        const SoftmaxPack<T>* xp = reinterpret_cast<const SoftmaxPack<T>*>(x);
        for (long long i = tid; i < packs; i += stride) {
            const SoftmaxPack<T> p = xp[i];
#pragma unroll
            for (int k = 0; k < W; ++k) s += (double)p.v[k] * (double)p.v[k];
        }
        done = packs * W;
    }
    for (long long i = done + tid; i < n; i += stride) s += (double)x[i] * (double)x[i];
    const int t = threadIdx.x;
    red[t] = s;
    __syncthreads();
    for (int h = softmax_pow2(blockDim.x) / 2; h > 0; h >>= 1) {
        if (t < h && t + h < (int)blockDim.x) red[t] += red[t + h];
        __syncthreads();
    }
    if (t == 0) partial[blockIdx.x] = red[0];
}

// dx[i] = x[i] * coeff.
template <typename T>
__global__ void sum2_bwd(const T* x, T* dx, long long n, T coeff) {
    const int W = 16 / sizeof(T);
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long done = 0;
    if (softmax_aligned16(x) && softmax_aligned16(dx)) {
        const long long packs = n / W;
        const SoftmaxPack<T>* xp = reinterpret_cast<const SoftmaxPack<T>*>(x);
        SoftmaxPack<T>* dp = reinterpret_cast<SoftmaxPack<T>*>(dx);
        for (long long i = tid; i < packs; i += stride) {
            SoftmaxPack<T> p = xp[i];
#pragma unroll
            for (int k = 0; k < W; ++k) p.v[k] = p.v[k] * coeff;
            dp[i] = p;
        }
        done = packs * W;
    }
    for (long long i = done + tid; i < n; i += stride) dx[i] = x[i] * coeff;
}

template __global__ void softmax_fwd<float>(const float*, float*, int, int, int);
template __global__ void softmax_fwd<double>(const double*, double*, int, int, int);
template __global__ void softmax_bwd<float>(const float*, const float*, float*, int, int, int);
template __global__ void softmax_bwd<double>(const double*, const double*, double*, int, int, int);
template __global__ void softmax_fwd_part<float>(const float*, float*, int, int, int, int, int);
template __global__ void softmax_fwd_part<double>(const double*, double*, int, int, int, int, int);
template __global__ void softmax_fwd_apply<float>(const float*, float*, const float*, int, int, int, int, int);
template __global__ void softmax_fwd_apply<double>(const double*, double*, const double*, int, int, int, int, int);
template __global__ void softmax_bwd_part<float>(const float*, const float*, float*, int, int, int, int, int);
template __global__ void softmax_bwd_part<double>(const double*, const double*, double*, int, int, int, int, int);
template __global__ void softmax_bwd_apply<float>(const float*, const float*, float*, const float*, int, int, int,
                                                  int, int);
template __global__ void softmax_bwd_apply<double>(const double*, const double*, double*, const double*, int, int,
                                                   int, int, int);
template __global__ void logreg_cost<float>(const float*, const void*, int, int, int, int, double*);
template __global__ void logreg_cost<double>(const double*, const void*, int, int, int, int, double*);
template __global__ void logreg_bwd<float>(const float*, const void*, int, float*, int, int, float);
template __global__ void logreg_bwd<double>(const double*, const void*, int, double*, int, int, double);
template __global__ void softmax_logreg_bwd<float>(const float*, const void*, int, float*, int, int, float);
template __global__ void softmax_logreg_bwd<double>(const double*, const void*, int, double*, int, int,
                                                    double);
template __global__ void sum2_cost<float>(const float*, long long, double*);
template __global__ void sum2_cost<double>(const double*, long long, double*);
template __global__ void sum2_bwd<float>(const float*, float*, long long, float);
template __global__ void sum2_bwd<double>(const double*, double*, long long, double);
