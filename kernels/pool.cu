// kernels/pool.cu: max and average pooling (cuda-convnet's pool layer), forward and backward.
//
// Tensors (C-contiguous, T = float or double, batch innermost as everywhere in pyconvnet):
//   x, dx  (C, H, W, N)    the layer's input and its gradient
//   y, dy  (C, OH, OW, N)  the layer's output and its gradient
// Geometry (one set for both spatial directions; pyconvnet/ops/pool.py defines it): output i covers
//   inputs [start + i*stride, start + i*stride + size) clipped to the image; start may be negative,
//   windows may overlap (stride < size), leave gaps (stride > size) and fall off either border, but
//   each holds at least one in-image element (the Python wrapper checks that, and computes OH, OW).
// Semantics (the NumPy reference pyconvnet/ops/pool.py; mode 0 = max, 1 = avg):
//   fwd  max: the max over the window's in-image elements (NaN propagates, as np.maximum);
//        avg: their sum (by columns of rows, in the reference's order) / their count.
//   bwd  a gather, no atomics, deterministic: each input pixel sums over the windows that cover it;
//        max: dy * (x == y) (every input equal to its window's max gets the window's gradient: ties
//        all receive it); avg: dy / count. x and y are read only by max.
// Constraints: C, H, W, N, OH, OW >= 1 (the wrapper skips empty tensors); size, stride >= 1; any N
//   and C. Element offsets are 64-bit. Vectorisation: `pack` is 1 or P = 16 / sizeof(T) (4 floats,
//   2 doubles); the wrapper passes P only when N % P == 0 and every pointer the kernel touches is
//   16-byte aligned, and then each thread moves P consecutive images with 16-byte accesses.
// Launch (both kernels): grid (rows, chunks), block (B); each of the C*rows_per_plane rows has
//   width*N/pack items (a pixel or tile and an image pack; the pack innermost, so a warp reads
//   consecutive images of one pixel), split over `chunks` blocks of B threads. Both grid dimensions
//   are grid-stride loops, so any grid >= 1 and B in [1, 1024] are correct.
//   fwd: rows of output pixels, rows_per_plane = OH, width = OW.
//   bwd: rows of tiles of stride x stride input pixels (tile t covers [start + t*stride,
//        start + (t+1)*stride) in each direction; the tiles meeting the image hold each input pixel
//        once), rows_per_plane and width = pl_tiles(H or W, stride, start).
//   pyconvnet/cuda/ops/pool.py (pool_fwd_config, pool_bwd_config, pool_tiles) picks them for both
//   launch paths: fwd blocks of up to 256 threads, bwd of up to 128 (its ~95 registers leave room
//   for 5 blocks of 128 per multiprocessor but only 2 of 256).
// Versions: v1. Size 3 / stride 2 (the nets' pooling) runs specialisations with compile-time loops:
//   fwd, one output per thread, every tap loaded from its coordinate clamped into the clipped window
//   (so all loads issue at once) and border taps masked off; bwd, one 2 x 2 tile per thread, whose
//   four pixels share the 2 x 2 windows covering them (each loaded once). Other geometries take
//   runtime loops over the clipped window (fwd) or, per pixel of the tile, over the covering
//   windows (bwd). H100, 64x55x55x128 and 192x27x27x128, kernel time: fwd 87-89% of the copy
//   ceiling; bwd 74-79% (max 104 / 78 us, avg 52 / 40 us). Tried and dropped: two outputs per fwd
//   thread (slower: 82%); __launch_bounds__ to fit more bwd blocks (up to 83%, but ptxas spills);
//   keeping the fwd runtime loops rolled (44 instead of 72 registers, more blocks per
//   multiprocessor, and the 3/2 fwd fell to 77%).
// Entry points: the explicit instantiations at the end of the file (also NVRTC's name expressions).
// Builds unchanged under nvcc (bindings/pool.cu includes it) and NVRTC: no includes.

enum PoolMode {
    POOL_MAX = 0,
    POOL_AVG = 1,
};

// P consecutive images of one pixel; P = 16 / sizeof(T) is one 16-byte access.
template <typename T, int P>
struct alignas(P * sizeof(T)) PoolPack {
    T v[P];
};

template <typename T, int P>
__device__ __forceinline__ PoolPack<T, P> pl_load(const T* p, long long off) {
    return *reinterpret_cast<const PoolPack<T, P>*>(p + off);
}

template <typename T, int P>
__device__ __forceinline__ void pl_store(T* p, long long off, const PoolPack<T, P>& v) {
    *reinterpret_cast<PoolPack<T, P>*>(p + off) = v;
}

// max that propagates NaN as np.maximum does (once m is NaN it stays NaN).
template <typename T>
__device__ __forceinline__ T pl_max(T m, T v) {
    return (v > m || v != v) ? v : m;
}

__device__ __forceinline__ int pl_min(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int pl_max_int(int a, int b) { return a > b ? a : b; }

// floor(a / b) for b > 0 and any a (C++ division truncates toward zero).
__device__ __forceinline__ int pl_floor_div(int a, int b) {
    const int q = a / b;
    return q * b > a ? q - 1 : q;
}

// Number of in-image elements of the window starting at `lo` (one direction).
__device__ __forceinline__ int pl_count(int lo, int size, int img) {
    return pl_min(lo + size, img) - pl_max_int(lo, 0);
}

__device__ __forceinline__ int pl_clamp(int v, int lo, int hi) { return pl_min(pl_max_int(v, lo), hi); }

// A launch's arguments. out is y (forward) or dx (backward); dy is unused by the forward.
template <typename T>
struct PoolArgs {
    const T* x;
    const T* y;
    const T* dy;
    T* out;
    int C, H, W, N, OH, OW, size, stride, start;
};

// Offset of pixel (row, col) of plane `plane` (c, in an array of rows x W pixels), image n0.
__device__ __forceinline__ long long pl_off(long long plane, int rows, int row, int W, int col, int N, int n0) {
    return ((plane * rows + row) * W + col) * (long long)N + n0;
}

// Forward of one output pixel (oy, ox) of channel c for the images [n0, n0 + P). SZ, ST > 0:
// compile-time size and stride; 0: the runtime values.
template <typename T, int P, int MODE, int SZ, int ST>
__device__ __forceinline__ void pool_fwd_pixel(const PoolArgs<T>& a, int c, int oy, int ox, int n0) {
    const int size = SZ > 0 ? SZ : a.size;
    const int stride = ST > 0 ? ST : a.stride;
    const int y0 = a.start + oy * stride, x0 = a.start + ox * stride;
    const int h_lo = pl_max_int(y0, 0), h_hi = pl_min(y0 + size, a.H);  // clipped window [lo, hi)
    const int w_lo = pl_max_int(x0, 0), w_hi = pl_min(x0 + size, a.W);
    PoolPack<T, P> acc;
    if constexpr (SZ > 0) {
        // Every tap loads from its coordinate clamped into the clipped window: the loads do not
        // depend on the masks, and a clamped tap repeats an in-window element (harmless for max).
        PoolPack<T, P> v[SZ][SZ];
#pragma unroll
        for (int kw = 0; kw < SZ; ++kw) {
            const int w = pl_clamp(x0 + kw, w_lo, w_hi - 1);
#pragma unroll
            for (int kh = 0; kh < SZ; ++kh)
                v[kw][kh] = pl_load<T, P>(a.x, pl_off(c, a.H, pl_clamp(y0 + kh, h_lo, h_hi - 1), a.W, w, a.N, n0));
        }
#pragma unroll
        for (int i = 0; i < P; ++i) {
            T s = MODE == POOL_MAX ? v[0][0].v[i] : T(0);
#pragma unroll
            for (int kw = 0; kw < SZ; ++kw) {
                T col = T(0);
#pragma unroll
                for (int kh = 0; kh < SZ; ++kh) {
                    if (MODE == POOL_MAX) s = pl_max(s, v[kw][kh].v[i]);
                    else col += (y0 + kh >= 0 && y0 + kh < a.H) ? v[kw][kh].v[i] : T(0);
                }
                if (MODE == POOL_AVG) s += (x0 + kw >= 0 && x0 + kw < a.W) ? col : T(0);
            }
            acc.v[i] = s;
        }
    } else {
        if (MODE == POOL_MAX) acc = pl_load<T, P>(a.x, pl_off(c, a.H, h_lo, a.W, w_lo, a.N, n0));
        else {
#pragma unroll
            for (int i = 0; i < P; ++i) acc.v[i] = T(0);
        }
        for (int w = w_lo; w < w_hi; ++w) {
            PoolPack<T, P> col;
#pragma unroll
            for (int i = 0; i < P; ++i) col.v[i] = T(0);
            for (int h = h_lo; h < h_hi; ++h) {
                const PoolPack<T, P> v = pl_load<T, P>(a.x, pl_off(c, a.H, h, a.W, w, a.N, n0));
#pragma unroll
                for (int i = 0; i < P; ++i) {
                    if (MODE == POOL_MAX) acc.v[i] = pl_max(acc.v[i], v.v[i]);
                    else col.v[i] += v.v[i];
                }
            }
            if (MODE == POOL_AVG) {
#pragma unroll
                for (int i = 0; i < P; ++i) acc.v[i] += col.v[i];
            }
        }
    }
    if (MODE == POOL_AVG) {
        const T cnt = T((h_hi - h_lo) * (w_hi - w_lo));
#pragma unroll
        for (int i = 0; i < P; ++i) acc.v[i] /= cnt;
    }
    pl_store<T, P>(a.out, pl_off(c, a.OH, oy, a.OW, ox, a.N, n0), acc);
}

// Backward of one input pixel (h, w) of channel c for the images [n0, n0 + P), runtime geometry:
// sums over the covering windows start + o*stride <= pos < start + o*stride + size, o in [0, O), by
// descending output row (outer, with a partial sum per row) and column (inner), as the reference.
template <typename T, int P, int MODE>
__device__ __forceinline__ void pool_bwd_pixel(const PoolArgs<T>& a, int c, int h, int w, int n0) {
    const int oy_hi = pl_min(pl_floor_div(h - a.start, a.stride), a.OH - 1);
    const int ox_hi = pl_min(pl_floor_div(w - a.start, a.stride), a.OW - 1);
    const int oy_lo = pl_max_int(pl_floor_div(h - a.start - a.size, a.stride) + 1, 0);
    const int ox_lo = pl_max_int(pl_floor_div(w - a.start - a.size, a.stride) + 1, 0);
    const long long xoff = pl_off(c, a.H, h, a.W, w, a.N, n0);
    PoolPack<T, P> xv, acc;
    if (MODE == POOL_MAX) xv = pl_load<T, P>(a.x, xoff);
#pragma unroll
    for (int i = 0; i < P; ++i) acc.v[i] = T(0);
    // Counted loops kept rolled: a runtime-unrolled descending loop ran past its bound on the H100
    // test machine's compilers (NVRTC and nvcc alike), though not in the emulator.
#pragma unroll 1
    for (int ky = 0; ky <= oy_hi - oy_lo; ++ky) {
        const int oy = oy_hi - ky;
        const int cnt_y = pl_count(a.start + oy * a.stride, a.size, a.H);
        PoolPack<T, P> row;
#pragma unroll
        for (int i = 0; i < P; ++i) row.v[i] = T(0);
#pragma unroll 1
        for (int kx = 0; kx <= ox_hi - ox_lo; ++kx) {
            const int ox = ox_hi - kx;
            const long long off = pl_off(c, a.OH, oy, a.OW, ox, a.N, n0);
            const PoolPack<T, P> g = pl_load<T, P>(a.dy, off);
            if (MODE == POOL_MAX) {
                const PoolPack<T, P> m = pl_load<T, P>(a.y, off);
#pragma unroll
                for (int i = 0; i < P; ++i) row.v[i] += g.v[i] * T(xv.v[i] == m.v[i] ? 1 : 0);
            } else {
                const T r = T(1) / T(cnt_y * pl_count(a.start + ox * a.stride, a.size, a.W));
#pragma unroll
                for (int i = 0; i < P; ++i) row.v[i] += g.v[i] * r;
            }
        }
#pragma unroll
        for (int i = 0; i < P; ++i) acc.v[i] += row.v[i];
    }
    pl_store<T, P>(a.out, xoff, acc);
}

// Backward of the ST x ST input pixels (h0 + i, w0 + j), h0 = start + ty*ST, w0 = start + tx*ST
// ("tile (ty, tx)"), compile-time geometry. Pixel offset i is covered by window ty - ky exactly when
// i + ky*ST < SZ, so the tile's pixels share the K x K windows (ty - ky, tx - kx), K = ceil(SZ/ST):
// each is loaded once, from an address clamped into the output (masked off when it does not exist).
// Per pixel the sum runs in the same order as pool_bwd_pixel's.
template <typename T, int P, int MODE, int SZ, int ST>
__device__ __forceinline__ void pool_bwd_tile(const PoolArgs<T>& a, int c, int ty, int tx, int n0) {
    constexpr int K = (SZ + ST - 1) / ST;
    PoolPack<T, P> g[K][K], m[K][K];
    T r[K][K];
    bool ok[K][K];
#pragma unroll
    for (int ky = 0; ky < K; ++ky) {
        const int oy = ty - ky, oyc = pl_clamp(oy, 0, a.OH - 1);
#pragma unroll
        for (int kx = 0; kx < K; ++kx) {
            const int ox = tx - kx, oxc = pl_clamp(ox, 0, a.OW - 1);
            ok[ky][kx] = oy == oyc && ox == oxc;
            const long long off = pl_off(c, a.OH, oyc, a.OW, oxc, a.N, n0);
            g[ky][kx] = pl_load<T, P>(a.dy, off);
            if (MODE == POOL_MAX) m[ky][kx] = pl_load<T, P>(a.y, off);
            else r[ky][kx] = T(1) / T(pl_count(a.start + oyc * ST, SZ, a.H) * pl_count(a.start + oxc * ST, SZ, a.W));
        }
    }
#pragma unroll
    for (int i = 0; i < ST; ++i) {
        const int h = a.start + ty * ST + i;
#pragma unroll
        for (int j = 0; j < ST; ++j) {
            const int w = a.start + tx * ST + j;
            const long long xoff = pl_off(c, a.H, pl_clamp(h, 0, a.H - 1), a.W, pl_clamp(w, 0, a.W - 1), a.N, n0);
            PoolPack<T, P> xv, acc;
            if (MODE == POOL_MAX) xv = pl_load<T, P>(a.x, xoff);
#pragma unroll
            for (int q = 0; q < P; ++q) {
                T s = T(0);
#pragma unroll
                for (int ky = 0; ky < K; ++ky) {
                    if (i + ky * ST >= SZ) continue;
                    T row = T(0);
#pragma unroll
                    for (int kx = 0; kx < K; ++kx) {
                        if (j + kx * ST >= SZ) continue;
                        const T v = MODE == POOL_MAX ? g[ky][kx].v[q] * T(xv.v[q] == m[ky][kx].v[q] ? 1 : 0)
                                                     : g[ky][kx].v[q] * r[ky][kx];
                        row += ok[ky][kx] ? v : T(0);
                    }
                    s += row;
                }
                acc.v[q] = s;
            }
            if (h >= 0 && h < a.H && w >= 0 && w < a.W) pl_store<T, P>(a.out, xoff, acc);
        }
    }
}

// Tiles (ST x ST pixel blocks, see pool_bwd_tile) along one direction: tile t covers positions
// [start + t*stride, start + (t+1)*stride); the tiles [pl_first_tile, pl_first_tile + pl_tiles)
// hold every position of [0, img) exactly once.
__device__ __forceinline__ int pl_first_tile(int stride, int start) { return pl_floor_div(-start, stride); }
__device__ __forceinline__ int pl_tiles(int img, int stride, int start) {
    return pl_floor_div(img - 1 - start, stride) - pl_first_tile(stride, start) + 1;
}

// The walk of both kernels over C * rows_per_plane rows of `width` items times N / P image packs
// (image pack innermost): Op::item(a, c, row in the plane, item, first image) for each. Both grid
// dimensions are grid-stride loops.
template <typename Op, typename T, int P, int MODE, int SZ, int ST>
__device__ __forceinline__ void pool_walk(const PoolArgs<T>& a, int rows_per_plane, int width) {
    const int packs = a.N / P;
    const int items = width * packs;
    const long long rows = (long long)a.C * rows_per_plane;
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const int c = row <= 0x7fffffff ? (int)((unsigned)row / (unsigned)rows_per_plane)
                                        : (int)(row / rows_per_plane);
        const int r = (int)(row - (long long)c * rows_per_plane);
        for (int item = blockIdx.y * blockDim.x + threadIdx.x; item < items; item += gridDim.y * blockDim.x) {
            const int col = (int)((unsigned)item / (unsigned)packs);
            Op::template item<T, P, MODE, SZ, ST>(a, c, r, col, (item - col * packs) * P);
        }
    }
}

// Forward: one item per output pixel, rows of output pixels.
struct PoolFwd {
    template <typename T, int P, int MODE, int SZ, int ST>
    static __device__ __forceinline__ void run(const PoolArgs<T>& a) {
        pool_walk<PoolFwd, T, P, MODE, SZ, ST>(a, a.OH, a.OW);
    }
    template <typename T, int P, int MODE, int SZ, int ST>
    static __device__ __forceinline__ void item(const PoolArgs<T>& a, int c, int oy, int ox, int n0) {
        pool_fwd_pixel<T, P, MODE, SZ, ST>(a, c, oy, ox, n0);
    }
};

// Backward: one item per tile, rows of tiles.
struct PoolBwd {
    template <typename T, int P, int MODE, int SZ, int ST>
    static __device__ __forceinline__ void run(const PoolArgs<T>& a) {
        pool_walk<PoolBwd, T, P, MODE, SZ, ST>(a, pl_tiles(a.H, a.stride, a.start), pl_tiles(a.W, a.stride, a.start));
    }
    template <typename T, int P, int MODE, int SZ, int ST>
    static __device__ __forceinline__ void item(const PoolArgs<T>& a, int c, int row, int col, int n0) {
        const int t0 = pl_first_tile(a.stride, a.start);
        if constexpr (SZ > 0) {
            pool_bwd_tile<T, P, MODE, SZ, ST>(a, c, t0 + row, t0 + col, n0);
        } else {
            const int h0 = a.start + (t0 + row) * a.stride, w0 = a.start + (t0 + col) * a.stride;
#pragma unroll 1
            for (int h = pl_max_int(h0, 0); h < pl_min(h0 + a.stride, a.H); ++h)
#pragma unroll 1
                for (int w = pl_max_int(w0, 0); w < pl_min(w0 + a.stride, a.W); ++w)
                    pool_bwd_pixel<T, P, MODE>(a, c, h, w, n0);
        }
    }
};

// Op::run for the run-time pack, mode and geometry: the one place that picks among the instances
// (size 3 / stride 2 is specialised at compile time; everything else takes the runtime loops).
template <typename Op, typename T, int P, int MODE>
__device__ __forceinline__ void pool_by_geometry(const PoolArgs<T>& a) {
    if (a.size == 3 && a.stride == 2) Op::template run<T, P, MODE, 3, 2>(a);
    else Op::template run<T, P, MODE, 0, 0>(a);
}

template <typename Op, typename T, int P>
__device__ __forceinline__ void pool_by_mode(const PoolArgs<T>& a, int mode) {
    if (mode == POOL_MAX) pool_by_geometry<Op, T, P, POOL_MAX>(a);
    else pool_by_geometry<Op, T, P, POOL_AVG>(a);
}

template <typename Op, typename T>
__device__ __forceinline__ void pool_dispatch(const PoolArgs<T>& a, int mode, int pack) {
    constexpr int P16 = 16 / sizeof(T);
    if (pack == P16) pool_by_mode<Op, T, P16>(a, mode);
    else pool_by_mode<Op, T, 1>(a, mode);
}

// y = pool(x); mode POOL_MAX or POOL_AVG; pack 1 or 16 / sizeof(T) (see the header).
template <typename T>
__global__ void pool_fwd(const T* x, T* y, int C, int H, int W, int N, int OH, int OW, int size, int stride,
                         int start, int mode, int pack) {
    const PoolArgs<T> a = {x, nullptr, nullptr, y, C, H, W, N, OH, OW, size, stride, start};
    pool_dispatch<PoolFwd>(a, mode, pack);
}

// dx = gradient of pool at x given dy (and, for max, y = pool_fwd(x)); every element of dx is written.
template <typename T>
__global__ void pool_bwd(const T* dy, const T* x, const T* y, T* dx, int C, int H, int W, int N, int OH,
                         int OW, int size, int stride, int start, int mode, int pack) {
    const PoolArgs<T> a = {x, y, dy, dx, C, H, W, N, OH, OW, size, stride, start};
    pool_dispatch<PoolBwd>(a, mode, pack);
}

template __global__ void pool_fwd<float>(const float*, float*, int, int, int, int, int, int, int, int, int,
                                         int, int);
template __global__ void pool_fwd<double>(const double*, double*, int, int, int, int, int, int, int, int,
                                          int, int, int);
template __global__ void pool_bwd<float>(const float*, const float*, const float*, float*, int, int, int,
                                         int, int, int, int, int, int, int, int);
template __global__ void pool_bwd<double>(const double*, const double*, const double*, double*, int, int,
                                          int, int, int, int, int, int, int, int, int);
