// kernels/local.cu: locally connected (unshared-filter) layer, forward, backward-data, backward-filter.
//
// Tensors (C-contiguous, T = float or double, batch innermost as in cuda-convnet):
//   x   (C, H, W, N)              images
//   w   (P, C/g, R, R, K)         one filter bank per output position q = oy*OW + ox, P = OH*OW,
//                                 read as the matrix W_q (CRR, K), CRR = (C/g)*R*R, row c*R*R + i*R + j
//   b   (K*P, 1) or absent        untied biases, row k*P + q (has_bias = 0: b is never read)
//   y   (K, OH, OW, N)            outputs;  dy has y's shape, dx has x's, dw has w's
//   g = groups: group j reads channels [j*C/g, (j+1)*C/g) and owns filters [j*K/g, (j+1)*K/g).
// Geometry: OH = 1 + ceil((2*padding + H - R) / stride) (likewise OW); output (oy, ox) tap (i, j) reads
//   x[c, oy*stride - padding + i, ox*stride - padding + j, n], and taps off the image read 0.
// Math (per output position q and group; X_q (CRR, N) the window of q, zero off the image):
//   local_fwd          y[:, q, :] = W_q^T X_q (+ b)                     GEMM  Kg x CRR x N
//   local_bwd_filter   dW_q = X_q dY_q^T, dY_q = dy[:, q, :]            GEMM  CRR x N x Kg, per q (no sum
//                                                                         over positions)
//   local_bwd_data     dx[:, pixel, :] = sum over the taps (q, i, j) whose window covers the pixel of
//                      W_q[(c, i, j), :] dY_q                          gather, no atomics, deterministic
// Constraints: any N >= 1, C, K, R >= 1, groups dividing C and K, stride >= 1, padding >= 0 (the caller,
//   pyconvnet/cuda/ops/local.py, checks shapes). Element offsets are 64-bit; each of C*H*W, K*P, CRR,
//   N stays below 2^31. Pointers need only T's alignment: 16-byte loads and stores are used for the
//   batch dimension when the arrays are 16-byte aligned and N is a multiple of 16/sizeof(T), and for
//   the filter dimension when they are aligned and K/groups is; otherwise scalar accesses. Outputs must
//   not overlap inputs. All accumulation is in T (fp32 for float).
// Launch (pyconvnet/cuda/ops/local.py, local_*_config, for both launch paths): 128 threads, no dynamic
//   shared memory;
//   local_fwd         grid (P, ceil(N/64), g*ceil(Kg/32)); block tile 32 filters x 64 images, reduction
//                     in chunks of 16 rows of CRR, each thread 4 filters x 4 images in registers;
//   local_bwd_filter  grid (P, ceil(CRR/64), g*ceil(Kg/32)); tile 64 rows of CRR x 32 filters,
//                     reduction over the batch in chunks of 32, each thread 4 x 4;
//   local_bwd_data    grid (H*W, ceil(N/64), g*ceil(Cg/32)); tile 32 channels x 64 images of one input
//                     pixel, reduction over the covering taps and Kg in chunks of 16, each thread 4 x 4.
//   All three stage one chunk of both operands in shared memory and prefetch the next chunk into
//   registers while the current one is multiplied. Every output element is written exactly once.
// Versions: v1 (this file).
// Entry points: the explicit instantiations at the end of the file (also NVRTC's name expressions).
// Builds unchanged under nvcc (bindings/local.cu includes it) and NVRTC: no includes.

// 16 bytes of T: the unit of the vectorised accesses.
template <typename T>
struct __align__(16) LcPack {
    T v[16 / sizeof(T)];
};

__device__ __forceinline__ bool lc_aligned16(const void* p) {
    return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0;
}

// One thread's share of a tile row held in registers: elements (lane + LANES*h)*PACK + e of the row,
// h < Q/PACK, e < PACK, in r[h*PACK + e] (PACK = 16/sizeof(T)). A row is LANES*Q elements wide.
// src is the row's first tile element (nullptr: the row is all zeros); elements at or past lim read 0.
// vec: 16-byte loads; the caller guarantees src is then 16-byte aligned and lim a multiple of PACK, so
// that a pack is wholly inside or wholly outside.
template <typename T, int LANES, int Q>
__device__ __forceinline__ void lc_load_row(T (&r)[Q], const T* src, int lim, bool vec, int lane) {
    const int PACK = 16 / sizeof(T);
#pragma unroll
    for (int h = 0; h < Q / PACK; ++h) {
        const int col = (lane + LANES * h) * PACK;
        if (vec) {
            LcPack<T> pk;
            if (src != nullptr && col < lim) {
                pk = *reinterpret_cast<const LcPack<T>*>(src + col);
            } else {
#pragma unroll
                for (int e = 0; e < PACK; ++e) pk.v[e] = T(0);
            }
#pragma unroll
            for (int e = 0; e < PACK; ++e) r[h * PACK + e] = pk.v[e];
        } else {
#pragma unroll
            for (int e = 0; e < PACK; ++e)
                r[h * PACK + e] = (src != nullptr && col + e < lim) ? src[col + e] : T(0);
        }
    }
}

// Stores what lc_load_row loaded into the same columns of a shared-memory row, or, with a column
// stride cs != 1, down a shared-memory column (a transposed tile).
template <typename T, int LANES, int Q>
__device__ __forceinline__ void lc_store_row(T* dst, const T (&r)[Q], int lane, int cs) {
    const int PACK = 16 / sizeof(T);
#pragma unroll
    for (int h = 0; h < Q / PACK; ++h) {
#pragma unroll
        for (int e = 0; e < PACK; ++e) dst[((lane + LANES * h) * PACK + e) * cs] = r[h * PACK + e];
    }
}

// Writes v[0..3] (+ add) to dst[0..3], only the first lim (may be <= 0) of them; vec: 16-byte stores
// (dst 16-byte aligned and lim a multiple of 16/sizeof(T) when positive).
template <typename T>
__device__ __forceinline__ void lc_store4(T* dst, const T (&v)[4], T add, int lim, bool vec) {
    const int PACK = 16 / sizeof(T);
    if (vec) {
#pragma unroll
        for (int h = 0; h < 4 / PACK; ++h) {
            if (h * PACK < lim) {
                LcPack<T> pk;
#pragma unroll
                for (int e = 0; e < PACK; ++e) pk.v[e] = v[h * PACK + e] + add;
                *reinterpret_cast<LcPack<T>*>(dst + h * PACK) = pk;
            }
        }
    } else {
#pragma unroll
        for (int e = 0; e < 4; ++e)
            if (e < lim) dst[e] = v[e] + add;
    }
}

// acc[a][b] += sum over the BL rows l of A[l][ta*4 + a] * B[l][tb*4 + b] (row strides SA, SB).
template <typename T, int BL, int SA, int SB>
__device__ __forceinline__ void lc_mma_rows(T (&acc)[4][4], const T* A, const T* B, int ta, int tb) {
#pragma unroll
    for (int l = 0; l < BL; ++l) {
        T a[4], bv[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) a[u] = A[l * SA + ta * 4 + u];
#pragma unroll
        for (int u = 0; u < 4; ++u) bv[u] = B[l * SB + tb * 4 + u];
#pragma unroll
        for (int u = 0; u < 4; ++u)
#pragma unroll
            for (int v = 0; v < 4; ++v) acc[u][v] += a[u] * bv[v];
    }
}

template <typename T>
__device__ __forceinline__ void lc_zero(T (&acc)[4][4]) {
#pragma unroll
    for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int v = 0; v < 4; ++v) acc[u][v] = T(0);
}

// The block of local_fwd and local_bwd_filter: output position q = blockIdx.x (oy, ox), group g and
// first filter k0 of its tile of BK filters (blockIdx.z), X_q's rows l = (c, i, j) < CRR of the group.
struct LcQ {
    int q, Kg, Cg, g, k0, R, RR, CRR, iy0, ix0;
    long long P;
    template <int BK>
    __device__ __forceinline__ void init(int C, int R_, int K, int OH, int OW, int padding, int stride, int groups) {
        q = blockIdx.x;
        const int oy = q / OW, ox = q - oy * OW;
        Kg = K / groups;
        Cg = C / groups;
        const int ktiles = (Kg + BK - 1) / BK;
        g = blockIdx.z / ktiles;
        k0 = (blockIdx.z - g * ktiles) * BK;
        R = R_;
        RR = R * R;
        CRR = Cg * RR;
        P = (long long)OH * OW;
        iy0 = oy * stride - padding;
        ix0 = ox * stride - padding;
    }
    // Row l < CRR of X_q: x at channel c of xg (the group's channel 0) and tap (i, j), or nullptr where the
    // tap falls off the image.
    template <typename T>
    __device__ __forceinline__ const T* x_row(const T* xg, int l, int H, int W, int N) const {
        const int c = l / RR, ij = l - c * RR;
        const int i = ij / R, j = ij - i * R;
        const int iy = iy0 + i, ix = ix0 + j;
        return iy >= 0 && iy < H && ix >= 0 && ix < W ? xg + (((long long)c * H + iy) * W + ix) * N : nullptr;
    }
};

// ---------------------------------------------------------------------------------------------------
// local_fwd: block (q, image tile, group x filter tile). Shared: ws[l][k] (16 x 32), xs[l][n] (16 x 64).
// Loads: thread row tid/8 of both tiles (8 lanes per row). Compute: filters (tid/16)*4.., images
// (tid%16)*4...
template <typename T>
__global__ void __launch_bounds__(128) local_fwd(const T* __restrict__ x, const T* __restrict__ w,
                                                 const T* __restrict__ b, T* __restrict__ y, int C, int H,
                                                 int W, int N, int R, int K, int OH, int OW, int padding,
                                                 int stride, int groups, int has_bias) {
    const int BK = 32, BN = 64, BL = 16;
    __align__(16) __shared__ T ws[BL * BK];
    __align__(16) __shared__ T xs[BL * BN];

    const int tid = threadIdx.x;
    LcQ Q;
    Q.init<BK>(C, R, K, OH, OW, padding, stride, groups);
    const int q = Q.q, Kg = Q.Kg, Cg = Q.Cg, g = Q.g, k0 = Q.k0, CRR = Q.CRR;
    const long long P = Q.P;
    const int n0 = blockIdx.y * BN;
    const int PACK = 16 / sizeof(T);
    const bool vx = N % PACK == 0 && lc_aligned16(x);
    const bool vw = Kg % PACK == 0 && lc_aligned16(w);
    const int lrow = tid / 8, lane = tid % 8;
    const T* wq = w + (long long)q * CRR * K + (long long)g * Kg + k0;  // W_q, this block's filters
    const T* xg = x + (long long)g * Cg * H * W * N + n0;               // group's channels, image tile

    T wr[4], xr[8];
    auto load = [&](int l0) {
        const int l = l0 + lrow;
        const T* wsrc = nullptr;
        const T* xsrc = nullptr;
        if (l < CRR) {
            wsrc = wq + (long long)l * K;
            xsrc = Q.x_row(xg, l, H, W, N);
        }
        lc_load_row<T, 8, 4>(wr, wsrc, Kg - k0, vw, lane);
        lc_load_row<T, 8, 8>(xr, xsrc, N - n0, vx, lane);
    };

    T acc[4][4];
    lc_zero(acc);

    const int tn = tid % 16, tk = tid / 16;
    if (CRR > 0) load(0);
    for (int l0 = 0; l0 < CRR; l0 += BL) {
        lc_store_row<T, 8, 4>(ws + lrow * BK, wr, lane, 1);
        lc_store_row<T, 8, 8>(xs + lrow * BN, xr, lane, 1);
        __syncthreads();
        if (l0 + BL < CRR) load(l0 + BL);
        lc_mma_rows<T, BL, BK, BN>(acc, ws, xs, tk, tn);
        __syncthreads();
    }

    const bool vy = N % PACK == 0 && lc_aligned16(y);
#pragma unroll
    for (int u = 0; u < 4; ++u) {
        const int k = k0 + tk * 4 + u;
        if (k < Kg) {
            const long long row = (long long)(g * Kg + k) * P + q;  // row of y as (K*P, N), of b
            const T add = has_bias ? b[row] : T(0);
            lc_store4(y + row * N + n0 + tn * 4, acc[u], add, N - n0 - tn * 4, vy);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// local_bwd_filter: block (q, CRR tile, group x filter tile). Shared: xs[m][l] (64 x 32, padded to 33),
// ds[k][l] (32 x 32, padded to 33). Loads: rows tid/8 + 16*s (8 lanes per row, 4 images each), fixed
// for the whole reduction. Compute: CRR rows (tid/8)*4.., filters (tid%8)*4...
template <typename T>
__global__ void __launch_bounds__(128) local_bwd_filter(const T* __restrict__ dy, const T* __restrict__ x,
                                                        T* __restrict__ dw, int C, int H, int W, int N,
                                                        int R, int K, int OH, int OW, int padding,
                                                        int stride, int groups) {
    const int BM = 64, BK = 32, BL = 32, S = BL + 1;
    __shared__ T xs[BM * S];
    __shared__ T ds[BK * S];

    const int tid = threadIdx.x;
    LcQ Q;
    Q.init<BK>(C, R, K, OH, OW, padding, stride, groups);
    const int q = Q.q, Kg = Q.Kg, g = Q.g, k0 = Q.k0, CRR = Q.CRR;
    const long long P = Q.P;
    const int m0 = blockIdx.y * BM;
    const int PACK = 16 / sizeof(T);
    const bool vec = N % PACK == 0 && lc_aligned16(x) && lc_aligned16(dy);
    const int lrow = tid / 8, lane = tid % 8;

    const T* xrow[4];  // rows m0 + lrow + 16*s of X_q (nullptr: off the image or past CRR)
#pragma unroll
    for (int s = 0; s < 4; ++s) {
        const int m = m0 + lrow + 16 * s;
        xrow[s] = m < CRR ? Q.x_row(x + (long long)g * Q.Cg * H * W * N, m, H, W, N) : nullptr;
    }
    const T* drow[2];  // rows k0 + lrow + 16*s of dY_q
#pragma unroll
    for (int s = 0; s < 2; ++s) {
        const int k = k0 + lrow + 16 * s;
        drow[s] = k < Kg ? dy + ((long long)(g * Kg + k) * P + q) * N : nullptr;
    }

    T xr[4][4], dr[2][4];
    auto load = [&](int n0) {
#pragma unroll
        for (int s = 0; s < 4; ++s)
            lc_load_row<T, 8, 4>(xr[s], xrow[s] != nullptr ? xrow[s] + n0 : nullptr, N - n0, vec, lane);
#pragma unroll
        for (int s = 0; s < 2; ++s)
            lc_load_row<T, 8, 4>(dr[s], drow[s] != nullptr ? drow[s] + n0 : nullptr, N - n0, vec, lane);
    };

    T acc[4][4];
    lc_zero(acc);

    const int tk = tid % 8, tm = tid / 8;
    if (N > 0) load(0);
    for (int n0 = 0; n0 < N; n0 += BL) {
#pragma unroll
        for (int s = 0; s < 4; ++s) lc_store_row<T, 8, 4>(xs + (lrow + 16 * s) * S, xr[s], lane, 1);
#pragma unroll
        for (int s = 0; s < 2; ++s) lc_store_row<T, 8, 4>(ds + (lrow + 16 * s) * S, dr[s], lane, 1);
        __syncthreads();
        if (n0 + BL < N) load(n0 + BL);
        // acc[u][v] += sum_l xs[tm*4 + u][l] * ds[tk*4 + v][l]: the tiles are read down their columns.
#pragma unroll 8
        for (int l = 0; l < BL; ++l) {
            T a[4], d[4];
#pragma unroll
            for (int u = 0; u < 4; ++u) a[u] = xs[(tm * 4 + u) * S + l];
#pragma unroll
            for (int v = 0; v < 4; ++v) d[v] = ds[(tk * 4 + v) * S + l];
#pragma unroll
            for (int u = 0; u < 4; ++u)
#pragma unroll
                for (int v = 0; v < 4; ++v) acc[u][v] += a[u] * d[v];
        }
        __syncthreads();
    }

    const bool vo = Kg % PACK == 0 && lc_aligned16(dw);
#pragma unroll
    for (int u = 0; u < 4; ++u) {
        const int m = m0 + tm * 4 + u;
        if (m < CRR)
            lc_store4(dw + ((long long)q * CRR + m) * K + g * Kg + k0 + tk * 4, acc[u], T(0),
                      Kg - k0 - tk * 4, vo);
    }
}

// ---------------------------------------------------------------------------------------------------
// local_bwd_data: block (input pixel, image tile, group x channel tile). The output positions whose
// window covers pixel (iy, ix) are oy in [oy_lo, oy_hi] (tap row i = iy + padding - oy*stride in
// [0, R)), likewise ox; the reduction runs over those taps and, within each, over Kg in chunks of 16.
// Shared: ws[l][c] (16 x 32, padded to 34; W_q's tap rows, loaded along k and stored transposed),
// ds[l][n] (16 x 64). Loads: dY row tid/8 (8 lanes); W channel row tid/4 (4 lanes, 4 k each).
// Compute: channels (tid/16)*4.., images (tid%16)*4...
template <typename T>
__global__ void __launch_bounds__(128) local_bwd_data(const T* __restrict__ dy, const T* __restrict__ w,
                                                      T* __restrict__ dx, int C, int H, int W, int N,
                                                      int R, int K, int OH, int OW, int padding,
                                                      int stride, int groups) {
    const int BM = 32, BN = 64, BL = 16, SW = BM + 2;
    __align__(16) __shared__ T ws[BL * SW];
    __align__(16) __shared__ T ds[BL * BN];

    const int tid = threadIdx.x;
    const int pix = blockIdx.x;
    const int iy = pix / W, ix = pix - iy * W;
    const int n0 = blockIdx.y * BN;
    const int Kg = K / groups, Cg = C / groups;
    const int ctiles = (Cg + BM - 1) / BM;
    const int g = blockIdx.z / ctiles;
    const int c0 = (blockIdx.z - g * ctiles) * BM;
    const long long P = (long long)OH * OW;
    const int PACK = 16 / sizeof(T);
    const bool vd = N % PACK == 0 && lc_aligned16(dy);
    const bool vw = Kg % PACK == 0 && lc_aligned16(w);

    // Covering output rows: 0 <= iy + padding - oy*stride < R and 0 <= oy < OH; likewise columns.
    const int ty = iy + padding, tx = ix + padding;
    const int oy_lo = ty - R + 1 <= 0 ? 0 : (ty - R + stride) / stride;
    const int ox_lo = tx - R + 1 <= 0 ? 0 : (tx - R + stride) / stride;
    const int oy_hi = ty / stride < OH - 1 ? ty / stride : OH - 1;
    const int ox_hi = tx / stride < OW - 1 ? tx / stride : OW - 1;
    const int ny = oy_hi >= oy_lo ? oy_hi - oy_lo + 1 : 0, nx = ox_hi >= ox_lo ? ox_hi - ox_lo + 1 : 0;
    const int kchunks = (Kg + BL - 1) / BL;
    const int steps = ny * nx * kchunks;

    const int drow = tid / 8, dlane = tid % 8;  // dY tile row (k) and lane
    const int wrow = tid / 4, wlane = tid % 4;  // W tile channel row and lane
    const T* dyg = dy + (long long)g * Kg * P * N + n0;
    const T* wc = (c0 + wrow < Cg) ? w + (long long)(c0 + wrow) * R * R * K + (long long)g * Kg : nullptr;
    const long long wq_stride = (long long)Cg * R * R * K;  // from W_q to W_{q+1}

    T dr[8], wr[4];
    auto load = [&](int t) {
        const int tap = t / kchunks, kb = (t - tap * kchunks) * BL;
        const int a = tap / nx, oy = oy_lo + a, ox = ox_lo + (tap - a * nx);
        const int i = ty - oy * stride, j = tx - ox * stride;
        const long long qq = (long long)oy * OW + ox;
        const int k = kb + drow;
        lc_load_row<T, 8, 8>(dr, k < Kg ? dyg + ((long long)k * P + qq) * N : nullptr, N - n0, vd, dlane);
        lc_load_row<T, 4, 4>(wr, wc != nullptr ? wc + qq * wq_stride + (long long)(i * R + j) * K + kb : nullptr,
                             Kg - kb, vw, wlane);
    };

    T acc[4][4];
    lc_zero(acc);

    const int tn = tid % 16, tc = tid / 16;
    if (steps > 0) load(0);
    for (int t = 0; t < steps; ++t) {
        lc_store_row<T, 8, 8>(ds + drow * BN, dr, dlane, 1);
        lc_store_row<T, 4, 4>(ws + wrow, wr, wlane, SW);  // transposed: ws[k][c]
        __syncthreads();
        if (t + 1 < steps) load(t + 1);
        lc_mma_rows<T, BL, SW, BN>(acc, ws, ds, tc, tn);
        __syncthreads();
    }

    const bool vo = N % PACK == 0 && lc_aligned16(dx);
#pragma unroll
    for (int u = 0; u < 4; ++u) {
        const int c = c0 + tc * 4 + u;
        if (c < Cg)
            lc_store4(dx + (((long long)(g * Cg + c) * H + iy) * W + ix) * N + n0 + tn * 4, acc[u], T(0),
                      N - n0 - tn * 4, vo);
    }
}

template __global__ void local_fwd<float>(const float*, const float*, const float*, float*, int, int, int, int,
                                          int, int, int, int, int, int, int, int);
template __global__ void local_fwd<double>(const double*, const double*, const double*, double*, int, int, int,
                                           int, int, int, int, int, int, int, int, int);
template __global__ void local_bwd_data<float>(const float*, const float*, float*, int, int, int, int, int, int,
                                               int, int, int, int, int);
template __global__ void local_bwd_data<double>(const double*, const double*, double*, int, int, int, int, int,
                                                int, int, int, int, int, int);
template __global__ void local_bwd_filter<float>(const float*, const float*, float*, int, int, int, int, int,
                                                 int, int, int, int, int, int);
template __global__ void local_bwd_filter<double>(const double*, const double*, double*, int, int, int, int,
                                                  int, int, int, int, int, int, int);
