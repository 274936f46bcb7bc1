// kernels/norm.cu: response and contrast normalisation (cmrnorm, rnorm, cnorm), forward and backward.
//
// Tensors: x, y, denom, dy, dx, m are C-contiguous (C, H, W, N) arrays of T (float or double) in device
//   memory, batch innermost: element (c, h, w, n) sits at ((c*H + h)*W + w)*N + n. All arrays of one
//   launch have the same shape. Outputs must not overlap inputs (the windows read other threads'
//   inputs); pyconvnet/cuda/ops/norm.py checks this.
// Semantics (the NumPy reference pyconvnet/ops/norm.py defines them): with b = size/2 and
//   a = size-1-b, the window of index i along an axis is [i-b, i+a] clipped to the axis, and the
//   transposed window (the outputs whose window covers input i) is [i-a, i+b].
//   cmrnorm (channels):  denom = min_div + alpha * sum_window x^2,  y = x * denom^-beta
//   rnorm (size x size rows x columns, same channel): the same
//   cnorm: the same on sum_{q in window(p)} (x_q - m_p)^2, m_p the mean of x over the in-image window
//   of p; y = x * denom^-beta (x itself, not x - m).
//   alpha is the caller's scale/size (cmrnorm) or scale/size^2 (rnorm, cnorm), beta the reference's
//   pow. Backward, with g = dy*y/denom (summed over the transposed window) and k = 2*beta*alpha:
//   cmrnorm, rnorm:  dx = dy*denom^-beta - k * x * sum_T g
//   cnorm:           dx = dy*denom^-beta - k * (x * sum_T g - sum_T g*m), m recomputed from x by
//                    cnorm_bwd_mean into a scratch array first (two launches).
//   Terms outside the tensor are absent (zero), never clamped copies.
//   cmrnorm without stored denominators: cmrnorm_fwd_y writes y alone; cmrnorm_bwd_x takes dy and x
//   alone and recomputes denom (with min_div) from x, g = dy*y/denom = dy*x*denom^(-beta-1).
// Constraints: any C, H, W, N >= 1, any size >= 1; offsets are 64-bit. SIZE (template) is the window
//   size with the window held in registers (3, 5, 9), or 0 for the general path taking `size` at
//   run time (direct window sums reread from global memory/L1: right for any size, slower).
//   Each thread handles PW consecutive images of one column: 16-byte packs (4 floats / 2 doubles) for
//   cmrnorm, rnorm_fwd and cnorm_bwd_mean, 8-byte packs for rnorm_bwd, single values for cnorm_fwd and
//   cnorm_bwd (their windows are wider). Packs are loaded as one vector access when N % PW == 0 and
//   every pointer of the launch is PW*sizeof(T)-aligned, else element by element (images >= N skipped).
// Method: every kernel streams along one axis (channels for cmrnorm, rows for the others) with the
//   window in registers: each step loads the entries entering the window (U at a time, so several
//   loads are in flight; U = 4 in cmrnorm_fwd(_y) and cmrnorm_bwd_x with SIZE <= 5, 2 in cmrnorm_bwd,
//   cmrnorm_bwd_x with SIZE 9 and cnorm_fwd, 1 in the others, whose row entries already load `size`
//   columns each), emits U outputs, and shifts the window. One pass:
//   cmrnorm_fwd reads x once and writes y and denom once; cmrnorm_bwd reads dy, x, y, denom once and
//   writes dx once (plus size-1 halo channels per chunk when the channels are split); cmrnorm_fwd_y
//   reads x and writes y; cmrnorm_bwd_x reads dy and x and writes dx, two windows sliding together
//   (x over 2*(size-1) halo channels per chunk, dy over size-1: see cmr_bwdx_window). The spatial
//   kernels load each row entry as `size` neighbouring columns (other threads' columns, served by
//   L1/L2), so DRAM still sees each input about once. The window sums are recomputed from the register
//   window (no running sum), so there is no cancellation drift along the axis.
// Launch (pyconvnet/cuda/ops/norm.py, cmrnorm_launch_config and spatial_launch_config, for both paths):
//   cmrnorm_*: grid (gx, chunks), block (B): thread items (pixel h*W+w, image pack) over a grid-stride
//     loop in x; blockIdx.y takes channels [y*chunk, min(C, (y+1)*chunk)).
//   rnorm_*, cnorm_*: grid (gx, chunks), block (BX, BY): threadIdx.x picks the image pack, threadIdx.y
//     the column; blocks (grid-stride in x) run over (channel, column tile, image tile), image tiles
//     fastest; blockIdx.y takes rows [y*chunk, min(H, (y+1)*chunk)). No shared memory, no barriers.
// Versions: v1 (this file); cmrnorm_fwd_y and cmrnorm_bwd_x (no stored denominators) added in v1.
// Entry points: the explicit instantiations at the end of the file (also NVRTC's name expressions).
// Builds unchanged under nvcc (bindings/norm.cu includes it) and NVRTC: no includes.

// ---- helpers ---------------------------------------------------------------------------------------

template <typename T, int PW>
struct NmVec {
    T v[PW];
};

template <typename T, int PW>
struct alignas(PW * sizeof(T)) NmPack {
    T v[PW];
};

__device__ __forceinline__ int nm_min(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int nm_max(int a, int b) { return a > b ? a : b; }

template <int BYTES>
__device__ __forceinline__ bool nm_aligned(const void* p) {
    return (reinterpret_cast<unsigned long long>(p) & (unsigned long long)(BYTES - 1)) == 0;
}

// d^-beta for d > 0: exp2/log2 in single precision (a few ulp; powf costs about twice the
// instructions), pow in double.
__device__ __forceinline__ float nm_powneg(float d, float beta) { return exp2f(-beta * log2f(d)); }
__device__ __forceinline__ double nm_powneg(double d, double beta) { return pow(d, -beta); }

// PW values of T at p: one vector access when `vec`, else the first cnt values and zeros.
template <typename T, int PW>
__device__ __forceinline__ NmVec<T, PW> nm_ld(const T* p, int cnt, bool vec) {
    NmVec<T, PW> r;
    if (vec) {
        const NmPack<T, PW> q = *reinterpret_cast<const NmPack<T, PW>*>(p);
#pragma unroll
        for (int k = 0; k < PW; ++k) r.v[k] = q.v[k];
    } else {
#pragma unroll
        for (int k = 0; k < PW; ++k) r.v[k] = k < cnt ? p[k] : T(0);
    }
    return r;
}

template <typename T, int PW>
__device__ __forceinline__ void nm_st(T* p, const NmVec<T, PW>& r, int cnt, bool vec) {
    if (vec) {
        NmPack<T, PW> q;
#pragma unroll
        for (int k = 0; k < PW; ++k) q.v[k] = r.v[k];
        *reinterpret_cast<NmPack<T, PW>*>(p) = q;
    } else {
#pragma unroll
        for (int k = 0; k < PW; ++k)
            if (k < cnt) p[k] = r.v[k];
    }
}

// Streams outputs o in [o0, o1) along an axis of length L with a register window of SIZE entries:
// when output o is emitted, win[0..SIZE-1] hold the entries of axis indices o-BACK .. o-BACK+SIZE-1
// (value-initialised E{} outside [0, L)), win[BACK] being o's own. load(i) builds the entry of index
// i; emit(o, win) writes output o. U outputs per step: the U entering entries are loaded first.
template <int SIZE, int BACK, int U, class E, class Load, class Emit>
__device__ __forceinline__ void nm_stream(int L, int o0, int o1, Load load, Emit emit) {
    constexpr int FWD = SIZE - 1 - BACK;
    const int iend = nm_min(L, o1 + FWD);  // entries from here on are never needed
    E win[SIZE - 1 + U];
#pragma unroll
    for (int k = 0; k < SIZE - 1; ++k) {
        const int i = o0 - BACK + k;
        win[k] = (i >= 0 && i < iend) ? load(i) : E{};
    }
    for (int o = o0; o < o1; o += U) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int i = o + FWD + u;
            win[SIZE - 1 + u] = i < iend ? load(i) : E{};
        }
#pragma unroll
        for (int u = 0; u < U; ++u)
            if (o + u < o1) emit(o + u, win + u);
#pragma unroll
        for (int k = 0; k < SIZE - 1; ++k) win[k] = win[k + U];
    }
}

// Spatial kernels: the item (channel c, column w, first image n0) of this thread in block number blk;
// false when the thread's column or image pack is past the edge.
template <int PW>
__device__ __forceinline__ bool nm_spatial_item(long long blk, int W, int N, int& c, int& w, int& n0) {
    const int G = (N + PW - 1) / PW;
    const int gt_count = (G + (int)blockDim.x - 1) / (int)blockDim.x;
    const int wt_count = (W + (int)blockDim.y - 1) / (int)blockDim.y;
    const int gt = (int)(blk % gt_count);
    const long long rest = blk / gt_count;
    const int wt = (int)(rest % wt_count);
    c = (int)(rest / wt_count);
    const int g = gt * (int)blockDim.x + (int)threadIdx.x;
    w = wt * (int)blockDim.y + (int)threadIdx.y;
    n0 = g * PW;
    return g < G && w < W;
}

template <int PW>
__device__ __forceinline__ long long nm_spatial_blocks(int C, int W, int N) {
    const int G = (N + PW - 1) / PW;
    return (long long)C * ((W + (int)blockDim.y - 1) / (int)blockDim.y) *
           ((G + (int)blockDim.x - 1) / (int)blockDim.x);
}

// ---- per-output arithmetic shared by cmrnorm and rnorm ---------------------------------------------

// The forward outputs of PW images from their own x and the window sum of x^2 (image k's is sum(k)):
// denom = min_div + alpha*sum, y = x*denom^-beta, stored at y + off (and d + off when STORE_D; else d is
// unused).
template <typename T, int PW, bool STORE_D, class Sum>
__device__ __forceinline__ void nm_fwd_store(T* y, T* d, long long off, const NmVec<T, PW>& xc, Sum sum, int cnt,
                                             bool vec, T alpha, T beta, T min_div) {
    NmVec<T, PW> yo, dd;
#pragma unroll
    for (int k = 0; k < PW; ++k) {
        dd.v[k] = min_div + alpha * sum(k);
        yo.v[k] = xc.v[k] * nm_powneg(dd.v[k], beta);
    }
    nm_st<T, PW>(y + off, yo, cnt, vec);
    if (STORE_D) nm_st<T, PW>(d + off, dd, cnt, vec);
}

// The register-window backward's entry of one axis index: g = dy*y/denom (rnorm: summed over the row's
// transposed-window columns), t = dy*denom^-beta and x at the own position.
template <typename T, int PW>
struct NmBwdEntry {
    NmVec<T, PW> g, t, x;
};

// dx of PW images from the window of entries win[0..SIZE-1], win[A] the own: dx = t - coef*x*sum g.
template <typename T, int PW, int SIZE, int A>
__device__ __forceinline__ void nm_bwd_store(T* dx, const NmBwdEntry<T, PW>* win, int cnt, bool vec, T coef) {
    NmVec<T, PW> r;
#pragma unroll
    for (int k = 0; k < PW; ++k) {
        T s = T(0);
#pragma unroll
        for (int j = 0; j < SIZE; ++j) s += win[j].g.v[k];
        r.v[k] = win[A].t.v[k] - coef * win[A].x.v[k] * s;
    }
    nm_st<T, PW>(dx, r, cnt, vec);
}

// Spatial general paths: the window visitor of rows [h0, h1) x columns [w0, w1), offsets relative to
// the pointer of column w (rows rs apart, columns N apart).
__device__ __forceinline__ auto nm_rect(long long rs, int N, int w, int h0, int h1, int w0, int w1) {
    return [=](auto f) {
        for (int i = h0; i < h1; ++i)
            for (int col = w0; col < w1; ++col) f(i * rs + (long long)(col - w) * N);
    };
}

// The general (any size) paths, one output at offset `off`: for_window(f) calls f(offset) for every
// position of the output's window (forward) or transposed window (backward), clipped to the tensor.
template <typename T, int PW, bool STORE_D, class ForWindow>
__device__ __forceinline__ void nm_fwd_general_out(const T* x, T* y, T* d, long long off, ForWindow for_window,
                                                   int cnt, bool vec, T alpha, T beta, T min_div) {
    typedef NmVec<T, PW> V;
    V s = {};
    for_window([&](long long j) {
        const V v = nm_ld<T, PW>(x + j, cnt, vec);
#pragma unroll
        for (int k = 0; k < PW; ++k) s.v[k] += v.v[k] * v.v[k];
    });
    nm_fwd_store<T, PW, STORE_D>(y, d, off, nm_ld<T, PW>(x + off, cnt, vec), [&](int k) { return s.v[k]; }, cnt,
                                 vec, alpha, beta, min_div);
}

template <typename T, int PW, class ForWindow>
__device__ __forceinline__ void nm_bwd_general_out(const T* dy, const T* x, const T* y, const T* d, T* dx,
                                                   long long off, ForWindow for_window, int cnt, bool vec, T coef,
                                                   T beta) {
    typedef NmVec<T, PW> V;
    V s = {};
    for_window([&](long long j) {
        const V dyv = nm_ld<T, PW>(dy + j, cnt, vec), yv = nm_ld<T, PW>(y + j, cnt, vec);
        const V dv = nm_ld<T, PW>(d + j, cnt, vec);
#pragma unroll
        for (int k = 0; k < PW; ++k)
            if (k < cnt) s.v[k] += dyv.v[k] * yv.v[k] / dv.v[k];
    });
    const V dyv = nm_ld<T, PW>(dy + off, cnt, vec), xv = nm_ld<T, PW>(x + off, cnt, vec);
    const V dv = nm_ld<T, PW>(d + off, cnt, vec);
    V r;
#pragma unroll
    for (int k = 0; k < PW; ++k) {
        const T den = k < cnt ? dv.v[k] : T(1);
        r.v[k] = dyv.v[k] * nm_powneg(den, beta) - coef * xv.v[k] * s.v[k];
    }
    nm_st<T, PW>(dx + off, r, cnt, vec);
}

// ---- cmrnorm: window over channels -----------------------------------------------------------------

// The grid-stride loop of the cmrnorm kernels: body(base, cnt, c0, c1) for each (pixel, image pack)
// item of this thread, base the offset of its channel 0, cnt its images (< PW at the end of a row
// of N), [c0, c1) the channel chunk of blockIdx.y.
template <int PW, class Body>
__device__ __forceinline__ void nm_cmr_loop(long long P, int N, int C, int chunk, Body body) {
    const long long G = (N + PW - 1) / PW, items = P * G;
    const int c0 = (int)blockIdx.y * chunk, c1 = nm_min(C, c0 + chunk);
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long it = (long long)blockIdx.x * blockDim.x + threadIdx.x; it < items; it += stride) {
        const long long p = it / G;
        const int n0 = (int)(it - p * G) * PW;
        body(p * N + n0, nm_min(PW, N - n0), c0, c1);
    }
}

// x, y, d point at channel 0 of this thread's (pixel, image pack); channels are `plane` apart.
// STORE_D: also write the denominators to d (else d is unused and may be null).
template <typename T, int PW, int SIZE, bool STORE_D>
__device__ __forceinline__ void cmr_fwd_window(const T* x, T* y, T* d, long long plane, int C, int c0,
                                               int c1, int cnt, bool vec, T alpha, T beta, T min_div) {
    typedef NmVec<T, PW> V;
    constexpr int B = SIZE / 2;
    nm_stream<SIZE, B, 4, V>(
        C, c0, c1, [&](int i) { return nm_ld<T, PW>(x + i * plane, cnt, vec); },
        [&](int c, const V* win) {
            nm_fwd_store<T, PW, STORE_D>(
                y, d, c * plane, win[B],
                [&](int k) {
                    T s = T(0);
#pragma unroll
                    for (int j = 0; j < SIZE; ++j) s += win[j].v[k] * win[j].v[k];
                    return s;
                },
                cnt, vec, alpha, beta, min_div);
        });
}

template <typename T, int PW, bool STORE_D>
__device__ __forceinline__ void cmr_fwd_general(const T* x, T* y, T* d, long long plane, int C, int c0,
                                                int c1, int cnt, bool vec, int size, T alpha, T beta,
                                                T min_div) {
    const int b = size / 2;
    for (int c = c0; c < c1; ++c) {
        const int lo = nm_max(0, c - b), hi = nm_min(C, c - b + size);
        nm_fwd_general_out<T, PW, STORE_D>(
            x, y, d, c * plane,
            [&](auto f) {
                for (int j = lo; j < hi; ++j) f(j * plane);
            },
            cnt, vec, alpha, beta, min_div);
    }
}

template <typename T, int PW, int SIZE>
__device__ __forceinline__ void cmr_bwd_window(const T* dy, const T* x, const T* y, const T* d, T* dx,
                                               long long plane, int C, int c0, int c1, int cnt, bool vec,
                                               T coef, T beta) {
    typedef NmVec<T, PW> V;
    typedef NmBwdEntry<T, PW> E;
    constexpr int A = SIZE - 1 - SIZE / 2;
    nm_stream<SIZE, A, 2, E>(
        C, c0, c1,
        [&](int i) {
            const long long off = i * plane;
            const V dyv = nm_ld<T, PW>(dy + off, cnt, vec), yv = nm_ld<T, PW>(y + off, cnt, vec);
            const V dv = nm_ld<T, PW>(d + off, cnt, vec);
            E e;
            e.x = nm_ld<T, PW>(x + off, cnt, vec);
#pragma unroll
            for (int k = 0; k < PW; ++k) {
                // images past N (element-wise path) have denom 0 here: keep them finite
                const T den = k < cnt ? dv.v[k] : T(1);
                e.g.v[k] = dyv.v[k] * yv.v[k] / den;
                e.t.v[k] = dyv.v[k] * nm_powneg(den, beta);
            }
            return e;
        },
        [&](int c, const E* win) { nm_bwd_store<T, PW, SIZE, A>(dx + c * plane, win, cnt, vec, coef); });
}

template <typename T, int PW>
__device__ __forceinline__ void cmr_bwd_general(const T* dy, const T* x, const T* y, const T* d, T* dx,
                                                long long plane, int C, int c0, int c1, int cnt, bool vec,
                                                int size, T coef, T beta) {
    const int b = size / 2, a = size - 1 - b;
    for (int c = c0; c < c1; ++c) {
        const int lo = nm_max(0, c - a), hi = nm_min(C, c + b + 1);
        nm_bwd_general_out<T, PW>(
            dy, x, y, d, dx, c * plane,
            [&](auto f) {
                for (int j = lo; j < hi; ++j) f(j * plane);
            },
            cnt, vec, coef, beta);
    }
}

// p = d^-beta and q = d^(-beta-1) = p/d for d > 0 (beta1 = beta + 1): two exp2 of one log2 in single
// precision (no division), pow and a division in double.
__device__ __forceinline__ void nm_powneg2(float d, float beta, float beta1, float& p, float& q) {
    const float l = log2f(d);
    p = exp2f(-beta * l);
    q = exp2f(-beta1 * l);
}
__device__ __forceinline__ void nm_powneg2(double d, double beta, double, double& p, double& q) {
    p = pow(d, -beta);
    q = p / d;
}

template <typename T, int PW>
struct NmCmrGT {
    NmVec<T, PW> g, t;  // dy*x*denom^(-beta-1) (= dy*y/denom), dy*denom^-beta
};

// cmrnorm gradient from dy and x alone (the denominators recomputed). Channel c needs the entries
// (g, t) of channels c-A .. c+B (A = SIZE-1-SIZE/2, B = SIZE/2: the outputs whose window covers c), and
// entry i needs x over its window i-B .. i+A, so x is read over c0-(SIZE-1) .. c1+SIZE-2 and dy over
// c0-A .. c1-1+B (clipped to [0, C)). Two register windows slide together, U channels per step:
// before the loads of step o, xw[k] = x of channel o+k (k < SIZE-1) and ew[k] = entry o-A+k; the step
// loads x of o+SIZE-1 .. o+SIZE-2+U and dy of o+B .. o+B+U-1, forms the U entries o+B+u from
// xw[u .. u+SIZE-1], emits outputs o .. o+U-1 (those inside [c0, c1)) and shifts both windows by U.
// The loop starts SIZE-1 channels early (steps before c0 only fill the windows; their outputs are
// dropped), so the entries start as zeros that are shifted out before any output reads them. Channels
// outside [0, C) load as zeros, which makes their entries zero: the absent terms.
template <typename T, int PW, int SIZE, int U>
__device__ __forceinline__ void cmr_bwdx_window(const T* dy, const T* x, T* dx, long long plane, int C, int c0,
                                                int c1, int cnt, bool vec, T alpha, T beta, T min_div, T coef) {
    typedef NmVec<T, PW> V;
    typedef NmCmrGT<T, PW> E;
    constexpr int B = SIZE / 2, A = SIZE - 1 - B;
    const int xend = nm_min(C, c1 + SIZE - 1), eend = nm_min(C, c1 + B);  // nothing needed from there on
    const T beta1 = beta + T(1);
    const int os = c0 - (SIZE - 1);
    V xw[SIZE - 1 + U];
    E ew[SIZE - 1 + U];
#pragma unroll
    for (int k = 0; k < SIZE - 1; ++k) {
        const int i = os + k;
        xw[k] = (i >= 0 && i < xend) ? nm_ld<T, PW>(x + i * plane, cnt, vec) : V{};
        ew[k] = E{};
    }
    for (int o = os; o < c1; o += U) {
        V dyn[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int i = o + SIZE - 1 + u, j = o + B + u;
            xw[SIZE - 1 + u] = (i >= 0 && i < xend) ? nm_ld<T, PW>(x + i * plane, cnt, vec) : V{};
            dyn[u] = (j >= 0 && j < eend) ? nm_ld<T, PW>(dy + j * plane, cnt, vec) : V{};
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
#pragma unroll
            for (int k = 0; k < PW; ++k) {
                T s = T(0);
#pragma unroll
                for (int j = 0; j < SIZE; ++j) s += xw[u + j].v[k] * xw[u + j].v[k];
                T p, q;
                nm_powneg2(min_div + alpha * s, beta, beta1, p, q);
                ew[SIZE - 1 + u].g.v[k] = dyn[u].v[k] * xw[u + B].v[k] * q;
                ew[SIZE - 1 + u].t.v[k] = dyn[u].v[k] * p;
            }
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int c = o + u;
            if (c >= c0 && c < c1) {
                V r;
#pragma unroll
                for (int k = 0; k < PW; ++k) {
                    T s = T(0);
#pragma unroll
                    for (int j = 0; j < SIZE; ++j) s += ew[u + j].g.v[k];
                    r.v[k] = ew[u + A].t.v[k] - coef * xw[u].v[k] * s;
                }
                nm_st<T, PW>(dx + c * plane, r, cnt, vec);
            }
        }
#pragma unroll
        for (int k = 0; k < SIZE - 1; ++k) {
            xw[k] = xw[k + U];
            ew[k] = ew[k + U];
        }
    }
}

// The same for any size: every entry's denominator summed directly from x (size^2 loads per output,
// mostly from L1).
template <typename T, int PW>
__device__ __forceinline__ void cmr_bwdx_general(const T* dy, const T* x, T* dx, long long plane, int C, int c0,
                                                 int c1, int cnt, bool vec, int size, T alpha, T beta, T min_div,
                                                 T coef) {
    typedef NmVec<T, PW> V;
    const int b = size / 2, a = size - 1 - b;
    const T beta1 = beta + T(1);
    for (int c = c0; c < c1; ++c) {
        V s = {}, t = {};
        for (int j = nm_max(0, c - a); j < nm_min(C, c + b + 1); ++j) {
            V q2 = {};
            for (int i = nm_max(0, j - b); i < nm_min(C, j - b + size); ++i) {
                const V v = nm_ld<T, PW>(x + i * plane, cnt, vec);
#pragma unroll
                for (int k = 0; k < PW; ++k) q2.v[k] += v.v[k] * v.v[k];
            }
            const V xj = nm_ld<T, PW>(x + j * plane, cnt, vec), dyj = nm_ld<T, PW>(dy + j * plane, cnt, vec);
#pragma unroll
            for (int k = 0; k < PW; ++k) {
                T p, q;
                nm_powneg2(min_div + alpha * q2.v[k], beta, beta1, p, q);
                s.v[k] += dyj.v[k] * xj.v[k] * q;
                if (j == c) t.v[k] = dyj.v[k] * p;
            }
        }
        const V xc = nm_ld<T, PW>(x + c * plane, cnt, vec);
        V r;
#pragma unroll
        for (int k = 0; k < PW; ++k) r.v[k] = t.v[k] - coef * xc.v[k] * s.v[k];
        nm_st<T, PW>(dx + c * plane, r, cnt, vec);
    }
}

// y, denom = cmrnorm(x). alpha = scale/size, beta = pow; size == SIZE unless SIZE == 0.
template <typename T, int SIZE>
__global__ void cmrnorm_fwd(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ denom, int C,
                            long long P, int N, int size, int chunk, T alpha, T beta, T min_div) {
    constexpr int PW = 16 / sizeof(T);
    const long long plane = P * N;
    const bool vec = N % PW == 0 && nm_aligned<16>(x) && nm_aligned<16>(y) && nm_aligned<16>(denom);
    nm_cmr_loop<PW>(P, N, C, chunk, [&](long long base, int cnt, int c0, int c1) {
        if (SIZE > 0)
            cmr_fwd_window<T, PW, (SIZE > 0 ? SIZE : 1), true>(x + base, y + base, denom + base, plane, C, c0,
                                                              c1, cnt, vec, alpha, beta, min_div);
        else
            cmr_fwd_general<T, PW, true>(x + base, y + base, denom + base, plane, C, c0, c1, cnt, vec, size,
                                         alpha, beta, min_div);
    });
}

// y = cmrnorm(x) without the denominators (cmrnorm_bwd_x recomputes them). As cmrnorm_fwd.
template <typename T, int SIZE>
__global__ void cmrnorm_fwd_y(const T* __restrict__ x, T* __restrict__ y, int C, long long P, int N, int size,
                              int chunk, T alpha, T beta, T min_div) {
    constexpr int PW = 16 / sizeof(T);
    const long long plane = P * N;
    const bool vec = N % PW == 0 && nm_aligned<16>(x) && nm_aligned<16>(y);
    nm_cmr_loop<PW>(P, N, C, chunk, [&](long long base, int cnt, int c0, int c1) {
        if (SIZE > 0)
            cmr_fwd_window<T, PW, (SIZE > 0 ? SIZE : 1), false>(x + base, y + base, nullptr, plane, C, c0, c1,
                                                               cnt, vec, alpha, beta, min_div);
        else
            cmr_fwd_general<T, PW, false>(x + base, y + base, nullptr, plane, C, c0, c1, cnt, vec, size, alpha,
                                          beta, min_div);
    });
}

// dx = cmrnorm gradient; coef = 2*beta*alpha.
template <typename T, int SIZE>
__global__ void cmrnorm_bwd(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ y,
                            const T* __restrict__ denom, T* __restrict__ dx, int C, long long P, int N, int size,
                            int chunk, T coef, T beta) {
    constexpr int PW = 16 / sizeof(T);
    const long long plane = P * N;
    const bool vec = N % PW == 0 && nm_aligned<16>(dy) && nm_aligned<16>(x) && nm_aligned<16>(y) &&
                     nm_aligned<16>(denom) && nm_aligned<16>(dx);
    nm_cmr_loop<PW>(P, N, C, chunk, [&](long long base, int cnt, int c0, int c1) {
        if (SIZE > 0)
            cmr_bwd_window<T, PW, (SIZE > 0 ? SIZE : 1)>(dy + base, x + base, y + base, denom + base, dx + base,
                                                        plane, C, c0, c1, cnt, vec, coef, beta);
        else
            cmr_bwd_general<T, PW>(dy + base, x + base, y + base, denom + base, dx + base, plane, C, c0, c1, cnt,
                                   vec, size, coef, beta);
    });
}

// dx = cmrnorm gradient from dy and x only, the denominators recomputed (alpha, beta, min_div as in the
// forward); coef = 2*beta*alpha. U = 4 channels per step for sizes up to 5, 2 for larger windows.
template <typename T, int SIZE>
__global__ void cmrnorm_bwd_x(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx, int C,
                              long long P, int N, int size, int chunk, T alpha, T beta, T min_div, T coef) {
    constexpr int PW = 16 / sizeof(T);
    constexpr int U = SIZE <= 5 ? 4 : 2;
    const long long plane = P * N;
    const bool vec = N % PW == 0 && nm_aligned<16>(dy) && nm_aligned<16>(x) && nm_aligned<16>(dx);
    nm_cmr_loop<PW>(P, N, C, chunk, [&](long long base, int cnt, int c0, int c1) {
        if (SIZE > 0)
            cmr_bwdx_window<T, PW, (SIZE > 0 ? SIZE : 1), U>(dy + base, x + base, dx + base, plane, C, c0, c1,
                                                            cnt, vec, alpha, beta, min_div, coef);
        else
            cmr_bwdx_general<T, PW>(dy + base, x + base, dx + base, plane, C, c0, c1, cnt, vec, size, alpha, beta,
                                    min_div, coef);
    });
}

// ---- rnorm and cnorm: size x size window over rows and columns ---------------------------------------
// Pointers point at row 0 of this thread's (channel, column w, image pack); rows are `rs` = W*N apart,
// columns N apart.

template <typename T, int PW>
struct NmRnFwdEntry {
    NmVec<T, PW> hs, xc;  // sum over the row's window columns of x^2; x at the own column
};

template <typename T, int PW, int SIZE>
__device__ __forceinline__ void rn_fwd_window(const T* x, T* y, T* d, long long rs, int N, int H, int W, int w,
                                              int o0, int o1, int cnt, bool vec, T alpha, T beta, T min_div) {
    typedef NmVec<T, PW> V;
    typedef NmRnFwdEntry<T, PW> E;
    constexpr int B = SIZE / 2;
    nm_stream<SIZE, B, 1, E>(
        H, o0, o1,
        [&](int i) {
            E e = {};
            const T* row = x + i * rs;
#pragma unroll
            for (int j = 0; j < SIZE; ++j) {
                const int col = w - B + j;
                if (col >= 0 && col < W) {
                    const V v = nm_ld<T, PW>(row + (long long)(j - B) * N, cnt, vec);
#pragma unroll
                    for (int k = 0; k < PW; ++k) e.hs.v[k] += v.v[k] * v.v[k];
                    if (j == B) e.xc = v;
                }
            }
            return e;
        },
        [&](int o, const E* win) {
            nm_fwd_store<T, PW, true>(
                y, d, o * rs, win[B].xc,
                [&](int k) {
                    T s = T(0);
#pragma unroll
                    for (int j = 0; j < SIZE; ++j) s += win[j].hs.v[k];
                    return s;
                },
                cnt, vec, alpha, beta, min_div);
        });
}

template <typename T, int PW>
__device__ __forceinline__ void rn_fwd_general(const T* x, T* y, T* d, long long rs, int N, int H, int W, int w,
                                               int o0, int o1, int cnt, bool vec, int size, T alpha, T beta,
                                               T min_div) {
    const int b = size / 2;
    const int w0 = nm_max(0, w - b), w1 = nm_min(W, w - b + size);
    for (int o = o0; o < o1; ++o) {
        const int h0 = nm_max(0, o - b), h1 = nm_min(H, o - b + size);
        nm_fwd_general_out<T, PW, true>(x, y, d, o * rs, nm_rect(rs, N, w, h0, h1, w0, w1), cnt, vec, alpha, beta,
                                        min_div);
    }
}

template <typename T, int PW, int SIZE>
__device__ __forceinline__ void rn_bwd_window(const T* dy, const T* x, const T* y, const T* d, T* dx, long long rs,
                                              int N, int H, int W, int w, int o0, int o1, int cnt, bool vec, T coef,
                                              T beta) {
    typedef NmVec<T, PW> V;
    typedef NmBwdEntry<T, PW> E;
    constexpr int A = SIZE - 1 - SIZE / 2;
    nm_stream<SIZE, A, 1, E>(
        H, o0, o1,
        [&](int i) {
            E e = {};
#pragma unroll
            for (int j = 0; j < SIZE; ++j) {
                const int col = w - A + j;
                if (col >= 0 && col < W) {
                    const long long off = i * rs + (long long)(j - A) * N;
                    const V dyv = nm_ld<T, PW>(dy + off, cnt, vec), yv = nm_ld<T, PW>(y + off, cnt, vec);
                    const V dv = nm_ld<T, PW>(d + off, cnt, vec);
#pragma unroll
                    for (int k = 0; k < PW; ++k) {
                        const T den = k < cnt ? dv.v[k] : T(1);
                        e.g.v[k] += dyv.v[k] * yv.v[k] / den;
                        if (j == A) e.t.v[k] = dyv.v[k] * nm_powneg(den, beta);
                    }
                    if (j == A) e.x = nm_ld<T, PW>(x + off, cnt, vec);
                }
            }
            return e;
        },
        [&](int o, const E* win) { nm_bwd_store<T, PW, SIZE, A>(dx + o * rs, win, cnt, vec, coef); });
}

template <typename T, int PW>
__device__ __forceinline__ void rn_bwd_general(const T* dy, const T* x, const T* y, const T* d, T* dx,
                                               long long rs, int N, int H, int W, int w, int o0, int o1, int cnt,
                                               bool vec, int size, T coef, T beta) {
    const int b = size / 2, a = size - 1 - b;
    const int w0 = nm_max(0, w - a), w1 = nm_min(W, w + b + 1);
    for (int o = o0; o < o1; ++o) {
        const int h0 = nm_max(0, o - a), h1 = nm_min(H, o + b + 1);
        nm_bwd_general_out<T, PW>(dy, x, y, d, dx, o * rs, nm_rect(rs, N, w, h0, h1, w0, w1), cnt, vec, coef, beta);
    }
}

// cnorm forward, one image per thread: the entry of a row keeps the row's SIZE window values.
template <typename T, int SIZE>
struct NmCnFwdEntry {
    T v[SIZE];  // x at columns w-B .. w-B+SIZE-1 (0 outside the image)
    T sum;      // their sum
};

template <typename T, int SIZE>
__device__ __forceinline__ void cn_fwd_window(const T* x, T* y, T* d, long long rs, int N, int H, int W, int w,
                                              int o0, int o1, T alpha, T beta, T min_div) {
    typedef NmCnFwdEntry<T, SIZE> E;
    constexpr int B = SIZE / 2;
    const int ncols = nm_min(W, w - B + SIZE) - nm_max(0, w - B);
    nm_stream<SIZE, B, 2, E>(
        H, o0, o1,
        [&](int i) {
            E e = {};
            const T* row = x + i * rs;
#pragma unroll
            for (int j = 0; j < SIZE; ++j) {
                const int col = w - B + j;
                if (col >= 0 && col < W) e.v[j] = row[(long long)(j - B) * N];
                e.sum += e.v[j];
            }
            return e;
        },
        [&](int o, const E* win) {
            const int nrows = nm_min(H, o - B + SIZE) - nm_max(0, o - B);
            T s1 = T(0);
#pragma unroll
            for (int r = 0; r < SIZE; ++r) s1 += win[r].sum;
            const T m = s1 / T(nrows * ncols);
            T s = T(0);
#pragma unroll
            for (int r = 0; r < SIZE; ++r) {
                const int i = o - B + r;
                if (i >= 0 && i < H) {
#pragma unroll
                    for (int j = 0; j < SIZE; ++j) {
                        const int col = w - B + j;
                        if (col >= 0 && col < W) {
                            const T dv = win[r].v[j] - m;
                            s += dv * dv;
                        }
                    }
                }
            }
            const T den = min_div + alpha * s;
            d[o * rs] = den;
            y[o * rs] = win[B].v[B] * nm_powneg(den, beta);
        });
}

template <typename T>
__device__ __forceinline__ void cn_fwd_general(const T* x, T* y, T* d, long long rs, int N, int H, int W, int w,
                                               int o0, int o1, int size, T alpha, T beta, T min_div) {
    const int b = size / 2;
    const int w0 = nm_max(0, w - b), w1 = nm_min(W, w - b + size);
    for (int o = o0; o < o1; ++o) {
        const int h0 = nm_max(0, o - b), h1 = nm_min(H, o - b + size);
        const auto window = nm_rect(rs, N, w, h0, h1, w0, w1);
        T s1 = T(0);
        window([&](long long j) { s1 += x[j]; });
        const T m = s1 / T((h1 - h0) * (w1 - w0));
        T s = T(0);
        window([&](long long j) {
            const T dv = x[j] - m;
            s += dv * dv;
        });
        const T den = min_div + alpha * s;
        d[o * rs] = den;
        y[o * rs] = x[o * rs] * nm_powneg(den, beta);
    }
}

// m = mean of x over each position's in-image window (cnorm backward, first launch).
template <typename T, int PW, int SIZE>
__device__ __forceinline__ void cn_mean_window(const T* x, T* m, long long rs, int N, int H, int W, int w, int o0,
                                               int o1, int cnt, bool vec) {
    typedef NmVec<T, PW> V;
    constexpr int B = SIZE / 2;
    const int ncols = nm_min(W, w - B + SIZE) - nm_max(0, w - B);
    nm_stream<SIZE, B, 1, V>(
        H, o0, o1,
        [&](int i) {
            V e = {};
#pragma unroll
            for (int j = 0; j < SIZE; ++j) {
                const int col = w - B + j;
                if (col >= 0 && col < W) {
                    const V v = nm_ld<T, PW>(x + i * rs + (long long)(j - B) * N, cnt, vec);
#pragma unroll
                    for (int k = 0; k < PW; ++k) e.v[k] += v.v[k];
                }
            }
            return e;
        },
        [&](int o, const V* win) {
            const T n = T((nm_min(H, o - B + SIZE) - nm_max(0, o - B)) * ncols);
            V r;
#pragma unroll
            for (int k = 0; k < PW; ++k) {
                T s = T(0);
#pragma unroll
                for (int j = 0; j < SIZE; ++j) s += win[j].v[k];
                r.v[k] = s / n;
            }
            nm_st<T, PW>(m + o * rs, r, cnt, vec);
        });
}

template <typename T, int PW>
__device__ __forceinline__ void cn_mean_general(const T* x, T* m, long long rs, int N, int H, int W, int w, int o0,
                                                int o1, int cnt, bool vec, int size) {
    typedef NmVec<T, PW> V;
    const int b = size / 2;
    const int w0 = nm_max(0, w - b), w1 = nm_min(W, w - b + size);
    for (int o = o0; o < o1; ++o) {
        const int h0 = nm_max(0, o - b), h1 = nm_min(H, o - b + size);
        V s = {};
        nm_rect(rs, N, w, h0, h1, w0, w1)([&](long long j) {
            const V v = nm_ld<T, PW>(x + j, cnt, vec);
#pragma unroll
            for (int k = 0; k < PW; ++k) s.v[k] += v.v[k];
        });
        const T n = T((h1 - h0) * (w1 - w0));
#pragma unroll
        for (int k = 0; k < PW; ++k) s.v[k] = s.v[k] / n;
        nm_st<T, PW>(m + o * rs, s, cnt, vec);
    }
}

template <typename T>
struct NmCnBwdEntry {
    T hu, hv, t, x;  // row sums over the transposed-window columns of g and g*m; own dy*denom^-beta, x
};

// cnorm backward, second launch, one image per thread: m from cnorm_bwd_mean.
template <typename T, int SIZE>
__device__ __forceinline__ void cn_bwd_window(const T* dy, const T* x, const T* y, const T* d, const T* m, T* dx,
                                              long long rs, int N, int H, int W, int w, int o0, int o1, T coef,
                                              T beta) {
    typedef NmCnBwdEntry<T> E;
    constexpr int A = SIZE - 1 - SIZE / 2;
    nm_stream<SIZE, A, 1, E>(
        H, o0, o1,
        [&](int i) {
            E e = {};
#pragma unroll
            for (int j = 0; j < SIZE; ++j) {
                const int col = w - A + j;
                if (col >= 0 && col < W) {
                    const long long off = i * rs + (long long)(j - A) * N;
                    const T dyv = dy[off], den = d[off];
                    const T g = dyv * y[off] / den;
                    e.hu += g;
                    e.hv += g * m[off];
                    if (j == A) {
                        e.t = dyv * nm_powneg(den, beta);
                        e.x = x[off];
                    }
                }
            }
            return e;
        },
        [&](int o, const E* win) {
            T su = T(0), sv = T(0);
#pragma unroll
            for (int j = 0; j < SIZE; ++j) {
                su += win[j].hu;
                sv += win[j].hv;
            }
            dx[o * rs] = win[A].t - coef * (win[A].x * su - sv);
        });
}

template <typename T>
__device__ __forceinline__ void cn_bwd_general(const T* dy, const T* x, const T* y, const T* d, const T* m, T* dx,
                                               long long rs, int N, int H, int W, int w, int o0, int o1, int size,
                                               T coef, T beta) {
    const int b = size / 2, a = size - 1 - b;
    const int w0 = nm_max(0, w - a), w1 = nm_min(W, w + b + 1);
    for (int o = o0; o < o1; ++o) {
        const int h0 = nm_max(0, o - a), h1 = nm_min(H, o + b + 1);
        T su = T(0), sv = T(0);
        nm_rect(rs, N, w, h0, h1, w0, w1)([&](long long j) {
            const T g = dy[j] * y[j] / d[j];
            su += g;
            sv += g * m[j];
        });
        const long long off = o * rs;
        dx[off] = dy[off] * nm_powneg(d[off], beta) - coef * (x[off] * su - sv);
    }
}

// The spatial kernels' frame: for each thread item (channel c, column w, images n0..n0+cnt-1) calls
// body(base, w, cnt, h0, h1, rs): base = offset of (c, 0, w, n0), rows [h0, h1) of this block's chunk.
template <int PW, class Body>
__device__ __forceinline__ void nm_spatial_loop(int C, int H, int W, int N, int chunk, Body body) {
    const int h0 = (int)blockIdx.y * chunk, h1 = nm_min(H, h0 + chunk);
    const long long rs = (long long)W * N, nblk = nm_spatial_blocks<PW>(C, W, N);
    for (long long blk = blockIdx.x; blk < nblk; blk += gridDim.x) {
        int c, w, n0;
        if (!nm_spatial_item<PW>(blk, W, N, c, w, n0)) continue;
        const long long base = ((long long)c * H * W + w) * N + n0;
        body(base, w, nm_min(PW, N - n0), h0, h1, rs);
    }
}

// y, denom = rnorm(x). alpha = scale/size^2.
template <typename T, int SIZE>
__global__ void rnorm_fwd(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ denom, int C, int H, int W,
                          int N, int size, int chunk, T alpha, T beta, T min_div) {
    constexpr int PW = 16 / sizeof(T);
    const bool vec = N % PW == 0 && nm_aligned<16>(x) && nm_aligned<16>(y) && nm_aligned<16>(denom);
    nm_spatial_loop<PW>(C, H, W, N, chunk, [&](long long base, int w, int cnt, int h0, int h1, long long rs) {
        if (SIZE > 0)
            rn_fwd_window<T, PW, (SIZE > 0 ? SIZE : 1)>(x + base, y + base, denom + base, rs, N, H, W, w, h0, h1, cnt,
                                                       vec, alpha, beta, min_div);
        else
            rn_fwd_general<T, PW>(x + base, y + base, denom + base, rs, N, H, W, w, h0, h1, cnt, vec, size, alpha,
                                  beta, min_div);
    });
}

// dx = rnorm gradient; coef = 2*beta*alpha.
template <typename T, int SIZE>
__global__ void rnorm_bwd(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ y,
                          const T* __restrict__ denom, T* __restrict__ dx, int C, int H, int W, int N, int size,
                          int chunk, T coef, T beta) {
    constexpr int PW = 8 / sizeof(T);
    const bool vec = N % PW == 0 && nm_aligned<8>(dy) && nm_aligned<8>(x) && nm_aligned<8>(y) &&
                     nm_aligned<8>(denom) && nm_aligned<8>(dx);
    nm_spatial_loop<PW>(C, H, W, N, chunk, [&](long long base, int w, int cnt, int h0, int h1, long long rs) {
        if (SIZE > 0)
            rn_bwd_window<T, PW, (SIZE > 0 ? SIZE : 1)>(dy + base, x + base, y + base, denom + base, dx + base, rs, N,
                                                       H, W, w, h0, h1, cnt, vec, coef, beta);
        else
            rn_bwd_general<T, PW>(dy + base, x + base, y + base, denom + base, dx + base, rs, N, H, W, w, h0, h1, cnt,
                                  vec, size, coef, beta);
    });
}

// y, denom = cnorm(x). alpha = scale/size^2.
template <typename T, int SIZE>
__global__ void cnorm_fwd(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ denom, int C, int H, int W,
                          int N, int size, int chunk, T alpha, T beta, T min_div) {
    nm_spatial_loop<1>(C, H, W, N, chunk, [&](long long base, int w, int, int h0, int h1, long long rs) {
        if (SIZE > 0)
            cn_fwd_window<T, (SIZE > 0 ? SIZE : 1)>(x + base, y + base, denom + base, rs, N, H, W, w, h0, h1, alpha,
                                                   beta, min_div);
        else
            cn_fwd_general<T>(x + base, y + base, denom + base, rs, N, H, W, w, h0, h1, size, alpha, beta, min_div);
    });
}

// m = window mean of x (scratch for cnorm_bwd).
template <typename T, int SIZE>
__global__ void cnorm_bwd_mean(const T* __restrict__ x, T* __restrict__ m, int C, int H, int W, int N, int size,
                               int chunk) {
    constexpr int PW = 16 / sizeof(T);
    const bool vec = N % PW == 0 && nm_aligned<16>(x) && nm_aligned<16>(m);
    nm_spatial_loop<PW>(C, H, W, N, chunk, [&](long long base, int w, int cnt, int h0, int h1, long long rs) {
        if (SIZE > 0)
            cn_mean_window<T, PW, (SIZE > 0 ? SIZE : 1)>(x + base, m + base, rs, N, H, W, w, h0, h1, cnt, vec);
        else
            cn_mean_general<T, PW>(x + base, m + base, rs, N, H, W, w, h0, h1, cnt, vec, size);
    });
}

// dx = cnorm gradient given m = cnorm_bwd_mean(x); coef = 2*beta*alpha.
template <typename T, int SIZE>
__global__ void cnorm_bwd(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ y,
                          const T* __restrict__ denom, const T* __restrict__ m, T* __restrict__ dx, int C, int H,
                          int W, int N, int size, int chunk, T coef, T beta) {
    nm_spatial_loop<1>(C, H, W, N, chunk, [&](long long base, int w, int, int h0, int h1, long long rs) {
        if (SIZE > 0)
            cn_bwd_window<T, (SIZE > 0 ? SIZE : 1)>(dy + base, x + base, y + base, denom + base, m + base, dx + base,
                                                   rs, N, H, W, w, h0, h1, coef, beta);
        else
            cn_bwd_general<T>(dy + base, x + base, y + base, denom + base, m + base, dx + base, rs, N, H, W, w, h0, h1,
                              size, coef, beta);
    });
}

// ---- entry points: SIZE in {0 (any size), 3, 5, 9}, T in {float, double} ------------------------------
template __global__ void cmrnorm_fwd<float, 0>(const float*, float*, float*, int, long long, int, int, int, float,
                                               float, float);
template __global__ void cmrnorm_fwd<float, 3>(const float*, float*, float*, int, long long, int, int, int, float,
                                               float, float);
template __global__ void cmrnorm_fwd<float, 5>(const float*, float*, float*, int, long long, int, int, int, float,
                                               float, float);
template __global__ void cmrnorm_fwd<float, 9>(const float*, float*, float*, int, long long, int, int, int, float,
                                               float, float);
template __global__ void cmrnorm_fwd<double, 0>(const double*, double*, double*, int, long long, int, int, int,
                                                double, double, double);
template __global__ void cmrnorm_fwd<double, 3>(const double*, double*, double*, int, long long, int, int, int,
                                                double, double, double);
template __global__ void cmrnorm_fwd<double, 5>(const double*, double*, double*, int, long long, int, int, int,
                                                double, double, double);
template __global__ void cmrnorm_fwd<double, 9>(const double*, double*, double*, int, long long, int, int, int,
                                                double, double, double);
template __global__ void cmrnorm_bwd<float, 0>(const float*, const float*, const float*, const float*, float*, int,
                                               long long, int, int, int, float, float);
template __global__ void cmrnorm_bwd<float, 3>(const float*, const float*, const float*, const float*, float*, int,
                                               long long, int, int, int, float, float);
template __global__ void cmrnorm_bwd<float, 5>(const float*, const float*, const float*, const float*, float*, int,
                                               long long, int, int, int, float, float);
template __global__ void cmrnorm_bwd<float, 9>(const float*, const float*, const float*, const float*, float*, int,
                                               long long, int, int, int, float, float);
template __global__ void cmrnorm_bwd<double, 0>(const double*, const double*, const double*, const double*, double*,
                                                int, long long, int, int, int, double, double);
template __global__ void cmrnorm_bwd<double, 3>(const double*, const double*, const double*, const double*, double*,
                                                int, long long, int, int, int, double, double);
template __global__ void cmrnorm_bwd<double, 5>(const double*, const double*, const double*, const double*, double*,
                                                int, long long, int, int, int, double, double);
template __global__ void cmrnorm_bwd<double, 9>(const double*, const double*, const double*, const double*, double*,
                                                int, long long, int, int, int, double, double);
template __global__ void cmrnorm_fwd_y<float, 0>(const float*, float*, int, long long, int, int, int, float, float,
                                                 float);
template __global__ void cmrnorm_fwd_y<float, 3>(const float*, float*, int, long long, int, int, int, float, float,
                                                 float);
template __global__ void cmrnorm_fwd_y<float, 5>(const float*, float*, int, long long, int, int, int, float, float,
                                                 float);
template __global__ void cmrnorm_fwd_y<float, 9>(const float*, float*, int, long long, int, int, int, float, float,
                                                 float);
template __global__ void cmrnorm_fwd_y<double, 0>(const double*, double*, int, long long, int, int, int, double, double,
                                                  double);
template __global__ void cmrnorm_fwd_y<double, 3>(const double*, double*, int, long long, int, int, int, double, double,
                                                  double);
template __global__ void cmrnorm_fwd_y<double, 5>(const double*, double*, int, long long, int, int, int, double, double,
                                                  double);
template __global__ void cmrnorm_fwd_y<double, 9>(const double*, double*, int, long long, int, int, int, double, double,
                                                  double);
template __global__ void cmrnorm_bwd_x<float, 0>(const float*, const float*, float*, int, long long, int, int, int,
                                                 float, float, float, float);
template __global__ void cmrnorm_bwd_x<float, 3>(const float*, const float*, float*, int, long long, int, int, int,
                                                 float, float, float, float);
template __global__ void cmrnorm_bwd_x<float, 5>(const float*, const float*, float*, int, long long, int, int, int,
                                                 float, float, float, float);
template __global__ void cmrnorm_bwd_x<float, 9>(const float*, const float*, float*, int, long long, int, int, int,
                                                 float, float, float, float);
template __global__ void cmrnorm_bwd_x<double, 0>(const double*, const double*, double*, int, long long, int, int, int,
                                                  double, double, double, double);
template __global__ void cmrnorm_bwd_x<double, 3>(const double*, const double*, double*, int, long long, int, int, int,
                                                  double, double, double, double);
template __global__ void cmrnorm_bwd_x<double, 5>(const double*, const double*, double*, int, long long, int, int, int,
                                                  double, double, double, double);
template __global__ void cmrnorm_bwd_x<double, 9>(const double*, const double*, double*, int, long long, int, int, int,
                                                  double, double, double, double);
template __global__ void rnorm_fwd<float, 0>(const float*, float*, float*, int, int, int, int, int, int, float,
                                             float, float);
template __global__ void rnorm_fwd<float, 3>(const float*, float*, float*, int, int, int, int, int, int, float,
                                             float, float);
template __global__ void rnorm_fwd<float, 5>(const float*, float*, float*, int, int, int, int, int, int, float,
                                             float, float);
template __global__ void rnorm_fwd<float, 9>(const float*, float*, float*, int, int, int, int, int, int, float,
                                             float, float);
template __global__ void rnorm_fwd<double, 0>(const double*, double*, double*, int, int, int, int, int, int, double,
                                              double, double);
template __global__ void rnorm_fwd<double, 3>(const double*, double*, double*, int, int, int, int, int, int, double,
                                              double, double);
template __global__ void rnorm_fwd<double, 5>(const double*, double*, double*, int, int, int, int, int, int, double,
                                              double, double);
template __global__ void rnorm_fwd<double, 9>(const double*, double*, double*, int, int, int, int, int, int, double,
                                              double, double);
template __global__ void rnorm_bwd<float, 0>(const float*, const float*, const float*, const float*, float*, int,
                                             int, int, int, int, int, float, float);
template __global__ void rnorm_bwd<float, 3>(const float*, const float*, const float*, const float*, float*, int,
                                             int, int, int, int, int, float, float);
template __global__ void rnorm_bwd<float, 5>(const float*, const float*, const float*, const float*, float*, int,
                                             int, int, int, int, int, float, float);
template __global__ void rnorm_bwd<float, 9>(const float*, const float*, const float*, const float*, float*, int,
                                             int, int, int, int, int, float, float);
template __global__ void rnorm_bwd<double, 0>(const double*, const double*, const double*, const double*, double*,
                                              int, int, int, int, int, int, double, double);
template __global__ void rnorm_bwd<double, 3>(const double*, const double*, const double*, const double*, double*,
                                              int, int, int, int, int, int, double, double);
template __global__ void rnorm_bwd<double, 5>(const double*, const double*, const double*, const double*, double*,
                                              int, int, int, int, int, int, double, double);
template __global__ void rnorm_bwd<double, 9>(const double*, const double*, const double*, const double*, double*,
                                              int, int, int, int, int, int, double, double);
template __global__ void cnorm_fwd<float, 0>(const float*, float*, float*, int, int, int, int, int, int, float,
                                             float, float);
template __global__ void cnorm_fwd<float, 3>(const float*, float*, float*, int, int, int, int, int, int, float,
                                             float, float);
template __global__ void cnorm_fwd<float, 5>(const float*, float*, float*, int, int, int, int, int, int, float,
                                             float, float);
template __global__ void cnorm_fwd<float, 9>(const float*, float*, float*, int, int, int, int, int, int, float,
                                             float, float);
template __global__ void cnorm_fwd<double, 0>(const double*, double*, double*, int, int, int, int, int, int, double,
                                              double, double);
template __global__ void cnorm_fwd<double, 3>(const double*, double*, double*, int, int, int, int, int, int, double,
                                              double, double);
template __global__ void cnorm_fwd<double, 5>(const double*, double*, double*, int, int, int, int, int, int, double,
                                              double, double);
template __global__ void cnorm_fwd<double, 9>(const double*, double*, double*, int, int, int, int, int, int, double,
                                              double, double);
template __global__ void cnorm_bwd_mean<float, 0>(const float*, float*, int, int, int, int, int, int);
template __global__ void cnorm_bwd_mean<float, 3>(const float*, float*, int, int, int, int, int, int);
template __global__ void cnorm_bwd_mean<float, 5>(const float*, float*, int, int, int, int, int, int);
template __global__ void cnorm_bwd_mean<float, 9>(const float*, float*, int, int, int, int, int, int);
template __global__ void cnorm_bwd_mean<double, 0>(const double*, double*, int, int, int, int, int, int);
template __global__ void cnorm_bwd_mean<double, 3>(const double*, double*, int, int, int, int, int, int);
template __global__ void cnorm_bwd_mean<double, 5>(const double*, double*, int, int, int, int, int, int);
template __global__ void cnorm_bwd_mean<double, 9>(const double*, double*, int, int, int, int, int, int);
template __global__ void cnorm_bwd<float, 0>(const float*, const float*, const float*, const float*, const float*,
                                             float*, int, int, int, int, int, int, float, float);
template __global__ void cnorm_bwd<float, 3>(const float*, const float*, const float*, const float*, const float*,
                                             float*, int, int, int, int, int, int, float, float);
template __global__ void cnorm_bwd<float, 5>(const float*, const float*, const float*, const float*, const float*,
                                             float*, int, int, int, int, int, int, float, float);
template __global__ void cnorm_bwd<float, 9>(const float*, const float*, const float*, const float*, const float*,
                                             float*, int, int, int, int, int, int, float, float);
template __global__ void cnorm_bwd<double, 0>(const double*, const double*, const double*, const double*,
                                              const double*, double*, int, int, int, int, int, int, double, double);
template __global__ void cnorm_bwd<double, 3>(const double*, const double*, const double*, const double*,
                                              const double*, double*, int, int, int, int, int, int, double, double);
template __global__ void cnorm_bwd<double, 5>(const double*, const double*, const double*, const double*,
                                              const double*, double*, int, int, int, int, int, int, double, double);
template __global__ void cnorm_bwd<double, 9>(const double*, const double*, const double*, const double*,
                                              const double*, double*, int, int, int, int, int, int, double, double);
