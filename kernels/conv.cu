// kernels/conv.cu: convolution (cuda-convnet's filterActs, imgActs, weightActs) and the bias gradient.
//
// Tensors (C-contiguous in device memory, T = float or double, batch innermost as in cuda-convnet):
//   x    (C, H, W, N)             images; dx has x's shape
//   w    (C/g, R, R, K)           filters: the matrix (Cg*R*R, K), row t = (c*R + i)*R + j, K = all filters
//   b    (K, 1) shared, (K*OH*OW, 1) untied (row k*OH*OW + oy*OW + ox), or absent (bias_mode 0)
//   y    (K, OH, OW, N)           outputs; dy has y's shape
//   dw   w's shape;  part (S, Cg*R*R, K): the S split-reduction partial sums of dw (summed in order)
//   g = groups: group j reads channels [j*Cg, (j+1)*Cg) and owns filters [j*Kg, (j+1)*Kg), Cg = C/g,
//   Kg = K/g.
// Geometry: OH = 1 + ceil((2*pad + H - R) / stride) (likewise OW); output (oy, ox) tap (i, j) reads
//   x[c, oy*stride - pad + i, ox*stride - pad + j, n]; taps off the image (padding, or past the bottom
//   and right border when the last window overhangs) read 0.
// Math: each op is an implicit GEMM (no im2col buffer), with per group
//   conv_fwd         y[k, (q, n)]   = sum_t w[t, k] * X[t, (q, n)]         M = Kg, cols = OH*OW*N,
//                    + b (shared or untied), fused into the epilogue       reduction t over Cg*R*R
//   conv_bwd_data    dx[c, (p, n)]  = sum_{(i, j, k)} w[(c, i, j), k] * dy[k, (oy, ox), n] over the taps
//                    (i, j) whose window covers pixel p: input pixels are split into stride^2 residue
//                    classes (iy % stride, ix % stride); within a class the covering taps are the same
//                    for every pixel (i = i0 + stride*a, j = j0 + stride*b), so only those are
//                    enumerated: M = Cg, cols = the class's pixels * N, reduction over (a, b, k)
//   conv_bwd_filter  dw[t, k]       = sum_{(q, n)} X[t, (q, n)] * dy[k, (q, n)]  M = Cg*R*R, cols = Kg,
//                    reduction over OH*OW*N, split into S chunks (grid) whose partial sums a second
//                    kernel (conv_sum_splits) adds in a fixed order: deterministic, no float atomics
//   bias_bwd         out[z*rows + r] = sum of dy[r*L + z*chunk + (0..chunk-1)] (a warp per (r, z))
//   where X[t, (q, n)] is the image value tap t of output position q reads (0 off the image).
// GEMM tiles (conv_fwd, conv_bwd_data, conv_bwd_filter <T, BM, BN, MODE>): a block computes a BM x BN
//   tile of the output matrix with BM*BN/64 threads (float; double: BM*BN/16), each thread an 8 x 8
//   (double: 4 x 4) register block made of 4 x 4 quarters BM/2 rows and BN/2 columns apart; the
//   reduction advances 8 rows at a time through double-buffered shared tiles A[8][BM] and B[8][BN]
//   (rows padded by 4 elements: conflict-free transposed stores), the next step prefetched into
//   registers while the current one is multiplied with 16-byte shared loads. Grids are 1-D, decoded in
//   the kernel (see each kernel). Fast paths (float only; the caller guarantees the conditions, every
//   array of the launch 16-byte aligned and below 2^31 elements, so offsets are 32-bit):
//   MODE 2  16-byte global accesses and a block-uniform walk over the reduction, so a thread keeps one
//           base offset per operand: conv_fwd taps x channel chunks of 8 (Cg % 8 == 0, Kg % 4 == 0,
//           N % 4 == 0); conv_bwd_data taps x filter chunks of 8 (Kg % 8 == 0, N % 4 == 0);
//           conv_bwd_filter pixels x image chunks of 8 (N % 8 == 0, Kg % 4 == 0). <= 128 registers.
//   MODE 1  conv_fwd only (few channels, e.g. the 3-channel first layer): 16-byte accesses, reduction
//           rows t = (c*R + i)*R + j decoded per row (Kg % 4 == 0, N % 4 == 0).
//   MODE 0  scalar accesses, 64-bit offsets, any shape (also float64).
// conv_bwd_data_smallc <T, CG, NRMAX> (float, Cg <= CG <= 4, N % 4 == 0, aligned, ceil(R/stride) <=
//   NRMAX): the few-channel case (a first layer) as a direct convolution: a thread holds CG channels x
//   4 pixels of one column of a residue class x 4 images; for each filter k and column tap it loads
//   the 4 + nr - 1 rows of dy the 4 pixels need once and reuses them across the nr row taps; the
//   class's filter values (w[0..CG-1, i, j, k] as one float4) are staged in shared memory kc filters
//   at a time (dynamic shared memory kc * nrmax^2 * 16 bytes). 128 threads.
// Constraints: any N >= 1, C, K, R >= 1, groups dividing C and K, stride >= 1, padding >= 0; the caller
//   (pyconvnet/cuda/ops/conv.py) checks shapes and keeps C*H*W*N-sized element counts of one image
//   plane (H*W*N, OH*OW*N), Cg*R*R and K below 2^31; element offsets are 64-bit. Outputs must not
//   overlap inputs. Accumulation in T (fp32 for float, no TF32).
// Launch (pyconvnet/cuda/ops/conv.py, *_plan, for both launch paths): 1-D grids; block BM*BN/64
//   threads (float) or BM*BN/16 (double), no dynamic shared memory, except conv_bwd_data_smallc.
// Versions: v1 (this file).
// Entry points: the explicit instantiations at the end of the file (also NVRTC's name expressions).
// Builds unchanged under nvcc (bindings/conv.cu includes it) and NVRTC: no includes.

// ------------------------------------------------------------------------------------------------
// Helpers

// n / d and n % d for 0 <= n < 2^32, d >= 1, by a multiply-high and one correction step.
struct CvDiv {
    unsigned d, m;
};

__device__ __forceinline__ CvDiv cv_div(int d) {
    CvDiv f;
    f.d = (unsigned)(d > 0 ? d : 1);
    f.m = 0xffffffffu / f.d;
    return f;
}

__device__ __forceinline__ unsigned cv_divmod(const CvDiv& f, unsigned n, unsigned& rem) {
    unsigned q = (unsigned)(((unsigned long long)n * f.m) >> 32);  // q or q - 1
    unsigned r = n - q * f.d;
    if (r >= f.d) {
        ++q;
        r -= f.d;
    }
    rem = r;
    return q;
}

// Four consecutive elements of shared or global memory (16-byte aligned for float, 32 for double).
__device__ __forceinline__ void cv_ld4(float (&r)[4], const float* p) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    r[0] = v.x;
    r[1] = v.y;
    r[2] = v.z;
    r[3] = v.w;
}

__device__ __forceinline__ void cv_ld4(double (&r)[4], const double* p) {
    const double2 v0 = *reinterpret_cast<const double2*>(p);
    const double2 v1 = *reinterpret_cast<const double2*>(p + 2);
    r[0] = v0.x;
    r[1] = v0.y;
    r[2] = v1.x;
    r[3] = v1.y;
}

__device__ __forceinline__ void cv_st4(float* p, const float (&r)[4]) {
    float4 v;
    v.x = r[0];
    v.y = r[1];
    v.z = r[2];
    v.w = r[3];
    *reinterpret_cast<float4*>(p) = v;
}

__device__ __forceinline__ void cv_st4(double* p, const double (&r)[4]) {
    double2 v0, v1;
    v0.x = r[0];
    v0.y = r[1];
    v1.x = r[2];
    v1.y = r[3];
    *reinterpret_cast<double2*>(p) = v0;
    *reinterpret_cast<double2*>(p + 2) = v1;
}

template <typename T>
__device__ __forceinline__ void cv_zero4(T (&r)[4]) {
    r[0] = r[1] = r[2] = r[3] = T(0);
}

// The tile geometry of one GEMM kernel instance.
template <typename T, int BM, int BN>
struct CvTile {
    static const int TM = sizeof(T) == 4 ? 8 : 4;  // rows of a thread's register block
    static const int TN = TM;                      // columns
    static const int NTY = BM / TM, NTX = BN / TN; // threads along rows and columns
    static const int NT = NTY * NTX;               // threads of the block
    static const int BK = 8;                       // reduction rows per step
    static const int LDA = BM + 4, LDB = BN + 4;   // shared row pitches
    static const int WX = NTX < 8 ? NTX : 8;       // a warp is WY x WX threads of the NTY x NTX grid
    static const int WY = 32 / WX;
    static const int LA = BK * BM / 4 / NT;        // 4-element groups of the A tile per thread
    static const int LB = BK * BN / 4 / NT;        // ... of the B tile
    static const int RSTEP_A = NT / (BM / 4);      // direct mapping: row step between a thread's groups
    static const int RSTEP_B = NT / (BN / 4);
    static_assert(NT % 32 == 0 && NTX % WX == 0 && NTY % WY == 0, "tile: whole warps of WY x WX threads");
    static_assert(LA >= 1 && LB >= 1 && LA * NT * 4 == BK * BM && LB * NT * 4 == BK * BN, "tile: loads");
    static_assert(NT % (BM / 4) == 0 && NT % (BN / 4) == 0 && NT % 2 == 0, "tile: load mappings");
};

// The block's shared tiles and the thread's register block; the main loop of every GEMM kernel.
// Iter: the position in the reduction (step kt covers reduction rows [8*kt, 8*kt + 8)), advanced by
// next(); LoadA / LoadB: fetch(it) reads the step's rows of the operand into registers (0 past the
// ends), stash(tile) writes them into a shared tile [8][LD].
template <typename T, int BM, int BN, class Iter, class LoadA, class LoadB>
__device__ __forceinline__ void cv_mainloop(Iter& it, LoadA& la, LoadB& lb, int nk, T* As, T* Bs, int ty, int tx,
                                            T (&acc)[CvTile<T, BM, BN>::TM][CvTile<T, BM, BN>::TN]) {
    typedef CvTile<T, BM, BN> C;
#pragma unroll
    for (int i = 0; i < C::TM; ++i)
#pragma unroll
        for (int j = 0; j < C::TN; ++j) acc[i][j] = T(0);
    if (nk > 0) {
        la.fetch(it);
        lb.fetch(it);
        it.next();
        la.stash(As);
        lb.stash(Bs);
    }
    __syncthreads();
    for (int kt = 0; kt < nk; ++kt) {
        const T* a = As + (kt & 1) * (C::BK * C::LDA);
        const T* b = Bs + (kt & 1) * (C::BK * C::LDB);
        const bool more = kt + 1 < nk;
        if (more) {
            la.fetch(it);
            lb.fetch(it);
            it.next();
        }
#pragma unroll
        for (int kk = 0; kk < C::BK; ++kk) {
            T av[C::TM], bv[C::TN];
#pragma unroll
            for (int h = 0; h < C::TM / 4; ++h) {
                T q[4];
                cv_ld4(q, a + kk * C::LDA + h * (C::NTY * 4) + ty * 4);
#pragma unroll
                for (int e = 0; e < 4; ++e) av[h * 4 + e] = q[e];
            }
#pragma unroll
            for (int h = 0; h < C::TN / 4; ++h) {
                T q[4];
                cv_ld4(q, b + kk * C::LDB + h * (C::NTX * 4) + tx * 4);
#pragma unroll
                for (int e = 0; e < 4; ++e) bv[h * 4 + e] = q[e];
            }
#pragma unroll
            for (int i = 0; i < C::TM; ++i)
#pragma unroll
                for (int j = 0; j < C::TN; ++j) acc[i][j] += av[i] * bv[j];
        }
        if (more) {
            la.stash(As + ((kt + 1) & 1) * (C::BK * C::LDA));
            lb.stash(Bs + ((kt + 1) & 1) * (C::BK * C::LDB));
        }
        __syncthreads();
    }
}

// The thread's position in the NTY x NTX grid: warps are WY x WX blocks of it, so that a warp's
// 16-byte fragment loads touch WY (A) and WX (B) distinct addresses: conflict-free.
template <typename T, int BM, int BN>
__device__ __forceinline__ void cv_thread_pos(int tid, int& ty, int& tx) {
    typedef CvTile<T, BM, BN> C;
    const int lane = tid & 31, warp = tid >> 5;
    const int wpx = C::NTX / C::WX;
    ty = (warp / wpx) * C::WY + lane / C::WX;
    tx = (warp % wpx) * C::WX + lane % C::WX;
}

// Values the epilogue needs, parked in shared memory during the main loop (written by thread 0 before
// it, read back after its last barrier) so that they do not hold registers while it runs.
struct CvPark {
    int v[8];
};

__device__ __forceinline__ int cv_unpark(const CvPark& p, int i) {
    return *(volatile const int*)&p.v[i];
}

// Shared-tile stores of a thread's groups: direct (4 consecutive columns of one row) and transposed
// (4 consecutive rows of one column).
template <typename T, int LD>
__device__ __forceinline__ void cv_stash_direct(T* tile, int row, int col, const T (&v)[4]) {
    cv_st4(tile + row * LD + col, v);
}

template <typename T, int LD>
__device__ __forceinline__ void cv_stash_trans(T* tile, int row, int col, const T (&v)[4]) {
#pragma unroll
    for (int e = 0; e < 4; ++e) tile[(row + e) * LD + col] = v[e];
}

// A loader's registers into its shared tile (the stash of the loaders below). Rows: the thread fetched rows
// row0 + i*RSTEP (i < L; row0 = tid/(COLS/4) unless the loader keeps its own), 4 columns from
// (tid % (COLS/4))*4 each, stored as they are. Columns: it fetched rows (tid & 1)*4 .. +3 of columns
// (tid >> 1) + i*(NT/2), stored transposed.
template <typename T, int L, int RSTEP, int LD, int COLS>
__device__ __forceinline__ void cv_stash_rows(T* tile, const T (&v)[L][4], int row0 = threadIdx.x / (COLS / 4)) {
    const int col = (threadIdx.x % (COLS / 4)) * 4;
#pragma unroll
    for (int i = 0; i < L; ++i) cv_stash_direct<T, LD>(tile, row0 + i * RSTEP, col, v[i]);
}

template <typename T, int L, int NT, int LD>
__device__ __forceinline__ void cv_stash_cols(T* tile, const T (&v)[L][4]) {
#pragma unroll
    for (int i = 0; i < L; ++i)
        cv_stash_trans<T, LD>(tile, (threadIdx.x & 1) * 4, (threadIdx.x >> 1) + i * (NT / 2), v[i]);
}

// The problem of one launch (kernel arguments), Cg = C/groups, Kg = K/groups.
struct CvGeo {
    int C, H, W, N, K, R, OH, OW, pad, stride, groups, Cg, Kg;
};

__device__ __forceinline__ CvGeo cv_geo(int C, int H, int W, int N, int K, int R, int OH, int OW, int pad,
                                        int stride, int groups) {
    CvGeo G;
    G.C = C;
    G.H = H;
    G.W = W;
    G.N = N;
    G.K = K;
    G.R = R;
    G.OH = OH;
    G.OW = OW;
    G.pad = pad;
    G.stride = stride;
    G.groups = groups;
    G.Cg = C / groups;
    G.Kg = K / groups;
    return G;
}

// The reduction position of MODE 0 and 1 loaders: the step number.
struct CvKt {
    int kt;
    __device__ __forceinline__ void next() { ++kt; }
};

// Element offsets: 64-bit in MODE 0 (any size), 32-bit in the fast paths (the caller guarantees that
// every array of such a launch has fewer than 2^31 elements).
template <int MODE>
struct CvOff {
    typedef int type;
};
template <>
struct CvOff<0> {
    typedef long long type;
};

// Tile-type selection by MODE (no <type_traits> under NVRTC).
template <int MODE, class M01, class M2>
struct CvPick {
    typedef M01 type;
};
template <class M01, class M2>
struct CvPick<2, M01, M2> {
    typedef M2 type;
};

// ------------------------------------------------------------------------------------------------
// conv_fwd operands: A = w as (Cg*R*R, K) restricted to the group's filters (a direct tile: a thread
// group is 4 consecutive filters of one row); B = the image windows X (Cg*R*R, OH*OW*N) (a direct
// tile: a thread's 4 columns j0 + col .. + 3 are fixed, its rows vary).
// MODE 0 / 1: reduction row t = (c*R + i)*R + j, decoded per row; MODE 1 loads 16 bytes (the 4 columns
// are 4 filters / 4 images of one pixel), MODE 0 loads scalars.
template <typename T, int BM, int BN, int VEC>
struct CvFwdA {
    typedef CvTile<T, BM, BN> C;
    typedef typename CvOff<VEC>::type I;
    const T* w;  // w + first filter of the tile + col
    int K, Tred, row0, mlim;
    T v[C::LA][4];

    __device__ __forceinline__ void init(const T* w_, const CvGeo& G, int g, int m0, int tid) {
        row0 = tid / (BM / 4);
        const int col = (tid % (BM / 4)) * 4;
        w = w_ + g * G.Kg + m0 + col;
        K = G.K;
        Tred = G.Cg * G.R * G.R;
        mlim = G.Kg - m0 - col;  // columns col + e with e < mlim are filters of the group
    }
    __device__ __forceinline__ void fetch(const CvKt& it) {
#pragma unroll
        for (int i = 0; i < C::LA; ++i) {
            const int t = it.kt * C::BK + row0 + i * C::RSTEP_A;
            const T* p = w + (I)t * K;
            if (VEC) {
                if (t < Tred && mlim > 0) cv_ld4(v[i], p);
                else cv_zero4(v[i]);
            } else {
#pragma unroll
                for (int e = 0; e < 4; ++e) v[i][e] = (t < Tred && e < mlim) ? p[e] : T(0);
            }
        }
    }
    __device__ __forceinline__ void stash(T* tile) { cv_stash_rows<T, C::LA, C::RSTEP_A, C::LDA, BM>(tile, v, row0); }
};

template <typename T, int BM, int BN, int VEC>
struct CvFwdB {
    typedef CvTile<T, BM, BN> C;
    typedef typename CvOff<VEC>::type I;
    static const int NC = VEC ? 1 : 4;  // column slots decoded (VEC: the 4 columns share a pixel)
    const T* x;                         // x + first channel of the group
    int H, W, N, R, Tred, row0;
    CvDiv dRR, dR;
    int iy0[NC], ix0[NC], n[NC];  // iy0 = -2^30 for a column past the end (every tap is then off)
    T v[C::LB][4];

    __device__ __forceinline__ void init(const T* x_, const CvGeo& G, int g, int j0, int tid) {
        x = x_ + (long long)g * G.Cg * G.H * G.W * G.N;
        H = G.H;
        W = G.W;
        N = G.N;
        R = G.R;
        Tred = G.Cg * G.R * G.R;
        row0 = tid / (BN / 4);
        const int col = (tid % (BN / 4)) * 4;
        dRR = cv_div(G.R * G.R);
        dR = cv_div(G.R);
        const CvDiv dN = cv_div(G.N), dOW = cv_div(G.OW);
        const int ncols = G.OH * G.OW * G.N;
#pragma unroll
        for (int e = 0; e < NC; ++e) {
            const int j = j0 + col + e;
            unsigned nn, ox;
            const unsigned q = cv_divmod(dN, (unsigned)j, nn);
            const unsigned oy = cv_divmod(dOW, q, ox);
            iy0[e] = j < ncols ? (int)oy * G.stride - G.pad : -(1 << 30);
            ix0[e] = (int)ox * G.stride - G.pad;
            n[e] = (int)nn;
        }
    }
    __device__ __forceinline__ void fetch(const CvKt& it) {
#pragma unroll
        for (int i = 0; i < C::LB; ++i) {
            const int t = it.kt * C::BK + row0 + i * C::RSTEP_B;
            unsigned rs, s;
            const unsigned c = cv_divmod(dRR, (unsigned)t, rs);
            const unsigned r = cv_divmod(dR, rs, s);
            const bool tok = t < Tred;
            const T* xc = x + (I)c * H * W * N;
            if (VEC) {
                const int iy = iy0[0] + (int)r, ix = ix0[0] + (int)s;
                if (tok && (unsigned)iy < (unsigned)H && (unsigned)ix < (unsigned)W)
                    cv_ld4(v[i], xc + ((I)iy * W + ix) * N + n[0]);
                else
                    cv_zero4(v[i]);
            } else {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int iy = iy0[e] + (int)r, ix = ix0[e] + (int)s;
                    v[i][e] = (tok && (unsigned)iy < (unsigned)H && (unsigned)ix < (unsigned)W)
                                  ? xc[((I)iy * W + ix) * N + n[e]]
                                  : T(0);
                }
            }
        }
    }
    __device__ __forceinline__ void stash(T* tile) { cv_stash_rows<T, C::LB, C::RSTEP_B, C::LDB, BN>(tile, v, row0); }
};

// MODE 2 (Cg % 8 == 0, Kg % 4 == 0, N % 4 == 0, aligned; float): the reduction runs over taps (i, j),
// and within a tap over channel chunks c0 .. c0 + 7, so a step's tap is the same for the whole block:
// a thread keeps one base offset per operand and adds the step's (uniform) offset.
struct CvFwdIt {
    int c0, r, s, Cg, R;
    __device__ __forceinline__ void init(const CvGeo& G) {
        c0 = r = s = 0;
        Cg = G.Cg;
        R = G.R;
    }
    __device__ __forceinline__ void next() {
        c0 += 8;
        if (c0 >= Cg) {
            c0 = 0;
            if (++s >= R) {
                s = 0;
                ++r;
            }
        }
    }
};

template <typename T, int BM, int BN>
struct CvFwdA2 {  // row l of a step: w[c0 + l, r, s, kofs + m]
    typedef CvTile<T, BM, BN> C;
    const T* w;
    int base;        // offset of w[row0, 0, 0, first filter of the tile + col]
    int K, R, RR;
    bool ok;         // the 4 filters are in the group
    T v[C::LA][4];

    __device__ __forceinline__ void init(const T* w_, const CvGeo& G, int g, int m0, int tid) {
        const int row0 = tid / (BM / 4), col = (tid % (BM / 4)) * 4;
        w = w_;
        K = G.K;
        R = G.R;
        RR = G.R * G.R;
        base = row0 * RR * K + g * G.Kg + m0 + col;
        ok = m0 + col < G.Kg;
    }
    __device__ __forceinline__ void fetch(const CvFwdIt& it) {
        const int off = base + (it.c0 * RR + it.r * R + it.s) * K;
#pragma unroll
        for (int i = 0; i < C::LA; ++i) {
            if (ok) cv_ld4(v[i], w + off + i * C::RSTEP_A * RR * K);
            else cv_zero4(v[i]);
        }
    }
    __device__ __forceinline__ void stash(T* tile) { cv_stash_rows<T, C::LA, C::RSTEP_A, C::LDA, BM>(tile, v); }
};

template <typename T, int BM, int BN>
struct CvFwdB2 {  // row l of a step: x[g*Cg + c0 + l, iy0 + r, ix0 + s, n .. n + 3]
    typedef CvTile<T, BM, BN> C;
    const T* x;
    int base, HWN;  // base: offset of x[g*Cg + row0, iy0, ix0, n] (may be off the image)
    int H, W, N, iy0, ix0;  // iy0 = -2^30 for columns past the end
    T v[C::LB][4];

    __device__ __forceinline__ void init(const T* x_, const CvGeo& G, int g, int j0, int tid) {
        const int row0 = tid / (BN / 4), col = (tid % (BN / 4)) * 4;
        x = x_;
        H = G.H;
        W = G.W;
        N = G.N;
        HWN = G.H * G.W * G.N;
        const int j = j0 + col;
        const CvDiv dN = cv_div(G.N), dOW = cv_div(G.OW);
        unsigned nn, ox;
        const unsigned q = cv_divmod(dN, (unsigned)j, nn);
        const unsigned oy = cv_divmod(dOW, q, ox);
        const bool ok = j < G.OH * G.OW * G.N;
        iy0 = ok ? (int)oy * G.stride - G.pad : -(1 << 30);
        ix0 = (int)ox * G.stride - G.pad;
        base = (g * G.Cg + row0) * HWN + ((ok ? iy0 : 0) * W + ix0) * N + (int)nn;
    }
    __device__ __forceinline__ void fetch(const CvFwdIt& it) {
        const int iy = iy0 + it.r, ix = ix0 + it.s;
        const bool ok = (unsigned)iy < (unsigned)H && (unsigned)ix < (unsigned)W;
        const int off = base + it.c0 * HWN + (it.r * W + it.s) * N;
#pragma unroll
        for (int i = 0; i < C::LB; ++i) {
            if (ok) cv_ld4(v[i], x + off + i * C::RSTEP_B * HWN);
            else cv_zero4(v[i]);
        }
    }
    __device__ __forceinline__ void stash(T* tile) { cv_stash_rows<T, C::LB, C::RSTEP_B, C::LDB, BN>(tile, v); }
};

template <typename T, int BM, int BN, int MODE>
struct CvFwdOps {
    typedef typename CvPick<MODE, CvKt, CvFwdIt>::type It;
    typedef typename CvPick<MODE, CvFwdA<T, BM, BN, MODE>, CvFwdA2<T, BM, BN> >::type A;
    typedef typename CvPick<MODE, CvFwdB<T, BM, BN, MODE>, CvFwdB2<T, BM, BN> >::type B;
};

__device__ __forceinline__ void cv_it_init(CvKt& it, const CvGeo&) { it.kt = 0; }
__device__ __forceinline__ void cv_it_init(CvFwdIt& it, const CvGeo& G) { it.init(G); }

// y[k, j] = acc (+ b[k] shared, + b[k*OH*OW + j/N] untied) for the thread's register block.
// grid: mtiles * groups * ceil(OH*OW*N / BN) blocks, mtiles = ceil(Kg/BM); block b: filter tile
// b % mtiles (fastest), group (b / mtiles) % groups, column tile b / (mtiles*groups).
template <typename T, int BM, int BN, int MODE>
__global__ void __launch_bounds__(CvTile<T, BM, BN>::NT, MODE ? 512 / CvTile<T, BM, BN>::NT : 1)
conv_fwd(const T* x, const T* w, const T* b, T* y, int C, int H, int W, int N, int K, int R, int OH,
         int OW, int pad, int stride, int groups, int bias_mode) {
    typedef CvTile<T, BM, BN> Cf;
    typedef CvFwdOps<T, BM, BN, MODE> Ops;
    __shared__ __align__(16) T As[2 * Cf::BK * Cf::LDA];
    __shared__ __align__(16) T Bs[2 * Cf::BK * Cf::LDB];
    const CvGeo G = cv_geo(C, H, W, N, K, R, OH, OW, pad, stride, groups);
    const int Kg = G.Kg, Tred = G.Cg * R * R;
    const int ncols = OH * OW * N;
    const int mtiles = (Kg + BM - 1) / BM;
    const int bid = blockIdx.x;
    const int mt = bid % mtiles, g = (bid / mtiles) % groups, jt = bid / (mtiles * groups);
    const int m0 = mt * BM, j0 = jt * BN;
    const int tid = threadIdx.x;
    int ty, tx;
    cv_thread_pos<T, BM, BN>(tid, ty, tx);

    typename Ops::It it;
    cv_it_init(it, G);
    typename Ops::A la;
    la.init(w, G, g, m0, tid);
    typename Ops::B lb;
    lb.init(x, G, g, j0, tid);
    T acc[Cf::TM][Cf::TN];
    cv_mainloop<T, BM, BN>(it, la, lb, (Tred + Cf::BK - 1) / Cf::BK, As, Bs, ty, tx, acc);

    const CvDiv dN = cv_div(N);
    const long long OHW = (long long)OH * OW;
#pragma unroll
    for (int hj = 0; hj < Cf::TN / 4; ++hj) {
        const int jc = j0 + hj * (Cf::NTX * 4) + tx * 4;
        unsigned qr[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            unsigned nn;
            qr[e] = cv_divmod(dN, (unsigned)(jc + e), nn);
        }
#pragma unroll
        for (int i = 0; i < Cf::TM; ++i) {
            const int m = m0 + (i / 4) * (Cf::NTY * 4) + ty * 4 + (i % 4);
            if (m >= Kg) continue;
            const int k = g * Kg + m;
            T* yk = y + (long long)k * ncols;
            T o[4];
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                T bias = T(0);
                if (bias_mode == 1) bias = b[k];
                else if (bias_mode == 2 && jc + e < ncols) bias = b[k * OHW + qr[e]];
                o[e] = acc[i][hj * 4 + e] + bias;
            }
            if (MODE) {
                if (jc < ncols) cv_st4(yk + jc, o);
            } else {
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (jc + e < ncols) yk[jc + e] = o[e];
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// conv_bwd_data operands, for one residue class (a, bc) of input pixels: iy = a + stride*u,
// ix = bc + stride*v (u < Hc, v < Wc), whose covering taps are i = i0 + stride*ia (ia < nr) and
// j = j0 + stride*ib (ib < ns), read from output position oy = ap + u - ia, ox = bp + v - ib.
// Reduction row t = (ia*ns + ib)*Kg + k. A[t, c] = w[c, i, j, kofs + k] (a transposed tile: a thread
// group is 4 consecutive rows of one channel column); B[t, (p, n)] = dy[kofs + k, oy, ox, n], 0 off
// the output grid (a direct tile with the thread's 4 columns fixed).
struct CvClass {
    int a, bc, Hc, Wc, i0, j0, nr, ns, ap, bp;
};

// The residue class a of one dimension: pixel count, first covering tap, tap count, output offset.
__device__ __forceinline__ void cv_class1(int a, int H, int R, int pad, int stride, int& Hc, int& i0, int& nr,
                                          int& ap) {
    Hc = (H - a + stride - 1) / stride;
    i0 = (a + pad) % stride;
    nr = i0 < R ? (R - 1 - i0) / stride + 1 : 0;
    ap = (a + pad) / stride;
}

__device__ __forceinline__ CvClass cv_class(const CvGeo& G, int cls) {
    CvClass K;
    K.a = cls / G.stride;
    K.bc = cls % G.stride;
    cv_class1(K.a, G.H, G.R, G.pad, G.stride, K.Hc, K.i0, K.nr, K.ap);
    cv_class1(K.bc, G.W, G.R, G.pad, G.stride, K.Wc, K.j0, K.ns, K.bp);
    return K;
}

// MODE 0: scalar accesses, rows decoded one by one.
template <typename T, int BM, int BN>
struct CvBdA {
    typedef CvTile<T, BM, BN> C;
    const T* w;
    int R, K, kofs, Tred, i0, j0, stride, kq;
    CvDiv dKg, dns;
    long long cofs[C::LA];  // offset of w[c, 0, 0, 0] of the thread's columns; -1: outside the group
    T v[C::LA][4];

    __device__ __forceinline__ void init(const T* w_, const CvGeo& G, const CvClass& Q, int g, int m0, int tid) {
        w = w_;
        R = G.R;
        K = G.K;
        kofs = g * G.Kg;
        Tred = Q.nr * Q.ns * G.Kg;
        i0 = Q.i0;
        j0 = Q.j0;
        stride = G.stride;
        dKg = cv_div(G.Kg);
        dns = cv_div(Q.ns);
        kq = tid & 1;
#pragma unroll
        for (int i = 0; i < C::LA; ++i) {
            const int c = m0 + (tid >> 1) + i * (C::NT / 2);
            cofs[i] = c < G.Cg ? (long long)c * R * R * K : -1;
        }
    }
    __device__ __forceinline__ void fetch(const CvKt& it) {
        const int t = it.kt * C::BK + kq * 4;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const bool tok = t + e < Tred;
            unsigned k, ib;
            const unsigned tap = cv_divmod(dKg, (unsigned)(t + e), k);
            const unsigned ia = cv_divmod(dns, tap, ib);
            const long long o = ((long long)(i0 + stride * (int)ia) * R + (j0 + stride * (int)ib)) * K + kofs + (int)k;
#pragma unroll
            for (int i = 0; i < C::LA; ++i) v[i][e] = (tok && cofs[i] >= 0) ? w[cofs[i] + o] : T(0);
        }
    }
    __device__ __forceinline__ void stash(T* tile) { cv_stash_cols<T, C::LA, C::NT, C::LDA>(tile, v); }
};

template <typename T, int BM, int BN>
struct CvBdB {
    typedef CvTile<T, BM, BN> C;
    const T* dy;  // dy + first filter of the group
    int OH, OW, N, Tred, row0;
    CvDiv dKg, dns;
    int oyb[4], oxb[4], n[4];  // ap + u, bp + v, n of the 4 columns; oyb = -2^30 past the end
    T v[C::LB][4];

    __device__ __forceinline__ void init(const T* dy_, const CvGeo& G, const CvClass& Q, int g, int j0, int tid) {
        dy = dy_ + (long long)g * G.Kg * G.OH * G.OW * G.N;
        OH = G.OH;
        OW = G.OW;
        N = G.N;
        Tred = Q.nr * Q.ns * G.Kg;
        dKg = cv_div(G.Kg);
        dns = cv_div(Q.ns);
        row0 = tid / (BN / 4);
        const int col = (tid % (BN / 4)) * 4;
        const CvDiv dN = cv_div(G.N), dWc = cv_div(Q.Wc);
        const int ncols = Q.Hc * Q.Wc * G.N;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int j = j0 + col + e;
            unsigned nn, vv;
            const unsigned p = cv_divmod(dN, (unsigned)j, nn);
            const unsigned uu = cv_divmod(dWc, p, vv);
            oyb[e] = j < ncols ? Q.ap + (int)uu : -(1 << 30);
            oxb[e] = Q.bp + (int)vv;
            n[e] = (int)nn;
        }
    }
    __device__ __forceinline__ void fetch(const CvKt& it) {
#pragma unroll
        for (int i = 0; i < C::LB; ++i) {
            const int t = it.kt * C::BK + row0 + i * C::RSTEP_B;
            unsigned k, ib;
            const unsigned tap = cv_divmod(dKg, (unsigned)t, k);
            const unsigned ia = cv_divmod(dns, tap, ib);
            const bool tok = t < Tred;
            const T* dyk = dy + (long long)k * OH * OW * N;
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int oy = oyb[e] - (int)ia, ox = oxb[e] - (int)ib;
                v[i][e] = (tok && (unsigned)oy < (unsigned)OH && (unsigned)ox < (unsigned)OW)
                              ? dyk[((long long)oy * OW + ox) * N + n[e]]
                              : T(0);
            }
        }
    }
    __device__ __forceinline__ void stash(T* tile) { cv_stash_rows<T, C::LB, C::RSTEP_B, C::LDB, BN>(tile, v, row0); }
};

// MODE 2 (Kg % 8 == 0, N % 4 == 0, aligned; float): a step covers 8 filters k0 .. k0 + 7 of one tap
// (ia, ib), the same for the whole block.
struct CvBdIt {
    int k0, ia, ib, Kg, ns;
    __device__ __forceinline__ void next() {
        k0 += 8;
        if (k0 >= Kg) {
            k0 = 0;
            if (++ib >= ns) {
                ib = 0;
                ++ia;
            }
        }
    }
};

template <typename T, int BM, int BN>
struct CvBdA2 {  // column c, rows 4*kq .. 4*kq + 3 of a step: w[c, i, j, kofs + k0 + 4*kq .. + 3]
    typedef CvTile<T, BM, BN> C;
    const T* w;
    int base, cstep;  // offset of w[m0 + tid/2, 0, 0, kofs + 4*kq]; between the thread's columns
    int R, K, i0, j0, stride, cmax;  // column group i is a channel of the group when i*NT/2 < cmax
    T v[C::LA][4];

    __device__ __forceinline__ void init(const T* w_, const CvGeo& G, const CvClass& Q, int g, int m0, int tid) {
        w = w_;
        R = G.R;
        K = G.K;
        i0 = Q.i0;
        j0 = Q.j0;
        stride = G.stride;
        base = (m0 + (tid >> 1)) * R * R * K + g * G.Kg + (tid & 1) * 4;
        cstep = (C::NT / 2) * R * R * K;
        cmax = G.Cg - m0 - (tid >> 1);
    }
    __device__ __forceinline__ void fetch(const CvBdIt& it) {
        const int off = base + ((i0 + stride * it.ia) * R + (j0 + stride * it.ib)) * K + it.k0;
#pragma unroll
        for (int i = 0; i < C::LA; ++i) {
            if (i * (C::NT / 2) < cmax) cv_ld4(v[i], w + off + i * cstep);
            else cv_zero4(v[i]);
        }
    }
    __device__ __forceinline__ void stash(T* tile) { cv_stash_cols<T, C::LA, C::NT, C::LDA>(tile, v); }
};

template <typename T, int BM, int BN>
struct CvBdB2 {  // row l of a step: dy[kofs + k0 + l, oyb - ia, oxb - ib, n .. n + 3]
    typedef CvTile<T, BM, BN> C;
    const T* dy;
    int base, OHWN;  // base: offset of dy[kofs + row0, oyb, oxb, n]
    int OH, OW, N, oyb, oxb;  // oyb = -2^30 past the end
    T v[C::LB][4];

    __device__ __forceinline__ void init(const T* dy_, const CvGeo& G, const CvClass& Q, int g, int j0, int tid) {
        const int row0 = tid / (BN / 4), col = (tid % (BN / 4)) * 4;
        dy = dy_;
        OH = G.OH;
        OW = G.OW;
        N = G.N;
        OHWN = G.OH * G.OW * G.N;
        const int j = j0 + col;
        const CvDiv dN = cv_div(G.N), dWc = cv_div(Q.Wc);
        unsigned nn, vv;
        const unsigned p = cv_divmod(dN, (unsigned)j, nn);
        const unsigned uu = cv_divmod(dWc, p, vv);
        const bool ok = j < Q.Hc * Q.Wc * G.N;
        oyb = ok ? Q.ap + (int)uu : -(1 << 30);
        oxb = Q.bp + (int)vv;
        base = (g * G.Kg + row0) * OHWN + ((ok ? oyb : 0) * OW + oxb) * N + (int)nn;
    }
    __device__ __forceinline__ void fetch(const CvBdIt& it) {
        const int oy = oyb - it.ia, ox = oxb - it.ib;
        const bool ok = (unsigned)oy < (unsigned)OH && (unsigned)ox < (unsigned)OW;
        const int off = base + it.k0 * OHWN - (it.ia * OW + it.ib) * N;
#pragma unroll
        for (int i = 0; i < C::LB; ++i) {
            if (ok) cv_ld4(v[i], dy + off + i * C::RSTEP_B * OHWN);
            else cv_zero4(v[i]);
        }
    }
    __device__ __forceinline__ void stash(T* tile) { cv_stash_rows<T, C::LB, C::RSTEP_B, C::LDB, BN>(tile, v); }
};

template <typename T, int BM, int BN, int MODE>
struct CvBdOps {
    typedef typename CvPick<MODE, CvKt, CvBdIt>::type It;
    typedef typename CvPick<MODE, CvBdA<T, BM, BN>, CvBdA2<T, BM, BN> >::type A;
    typedef typename CvPick<MODE, CvBdB<T, BM, BN>, CvBdB2<T, BM, BN> >::type B;
};

__device__ __forceinline__ void cv_it_init(CvBdIt& it, const CvGeo& G, const CvClass& Q) {
    it.k0 = it.ia = it.ib = 0;
    it.Kg = G.Kg;
    it.ns = Q.ns;
}
__device__ __forceinline__ void cv_it_init(CvKt& it, const CvGeo&, const CvClass&) { it.kt = 0; }

// dx[g*Cg + c, pixel, n] for the class's pixels. grid: mtiles * stride^2 * groups * jtiles blocks,
// mtiles = ceil(Cg/BM), jtiles = ceil(ceil(H/stride)*ceil(W/stride)*N / BN) (the largest class); block b:
// channel tile b % mtiles (fastest), then the class (a, bc) = (cls / stride, cls % stride), the group,
// the column tile (blocks past a smaller class's columns return at once).
template <typename T, int BM, int BN, int MODE>
__global__ void __launch_bounds__(CvTile<T, BM, BN>::NT, MODE ? 512 / CvTile<T, BM, BN>::NT : 1)
conv_bwd_data(const T* dy, const T* w, T* dx, int C, int H, int W, int N, int K, int R, int OH, int OW,
              int pad, int stride, int groups) {
    typedef CvTile<T, BM, BN> Cf;
    typedef CvBdOps<T, BM, BN, MODE> Ops;
    __shared__ __align__(16) T As[2 * Cf::BK * Cf::LDA];
    __shared__ __align__(16) T Bs[2 * Cf::BK * Cf::LDB];
    const CvGeo G = cv_geo(C, H, W, N, K, R, OH, OW, pad, stride, groups);
    const int Cg = G.Cg;
    const int mtiles = (Cg + BM - 1) / BM;
    int bid = blockIdx.x;
    const int mt = bid % mtiles;
    bid /= mtiles;
    const int cls = bid % (stride * stride);
    bid /= stride * stride;
    const int g = bid % groups, jt = bid / groups;
    const CvClass Q = cv_class(G, cls);
    const int ncols = Q.Hc * Q.Wc * N;
    const int m0 = mt * BM, j0 = jt * BN;
    if (j0 >= ncols) return;  // the whole block
    const int Tred = Q.nr * Q.ns * G.Kg;
    const int tid = threadIdx.x;
    int ty, tx;
    cv_thread_pos<T, BM, BN>(tid, ty, tx);

    __shared__ CvPark park;
    if (tid == 0) {
        park.v[0] = Q.a;
        park.v[1] = Q.bc;
        park.v[2] = Q.Wc;
        park.v[3] = ncols;
        park.v[4] = m0;
        park.v[5] = j0;
        park.v[6] = g * Cg;
    }
    typename Ops::It it;
    cv_it_init(it, G, Q);
    typename Ops::A la;
    la.init(w, G, Q, g, m0, tid);
    typename Ops::B lb;
    lb.init(dy, G, Q, g, j0, tid);
    T acc[Cf::TM][Cf::TN];
    cv_mainloop<T, BM, BN>(it, la, lb, (Tred + Cf::BK - 1) / Cf::BK, As, Bs, ty, tx, acc);

    const int ea = cv_unpark(park, 0), ebc = cv_unpark(park, 1), eWc = cv_unpark(park, 2);
    const int encols = cv_unpark(park, 3), em0 = cv_unpark(park, 4), ej0 = cv_unpark(park, 5);
    const int ec0 = cv_unpark(park, 6);
    const CvDiv dN = cv_div(N), dWc = cv_div(eWc);
    const long long HWN = (long long)H * W * N;
#pragma unroll
    for (int hj = 0; hj < Cf::TN / 4; ++hj) {
        const int jc = ej0 + hj * (Cf::NTX * 4) + tx * 4;
        long long off[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            unsigned nn, vv;
            const unsigned p = cv_divmod(dN, (unsigned)(jc + e), nn);
            const unsigned uu = cv_divmod(dWc, p, vv);
            off[e] = ((long long)(ea + stride * (int)uu) * W + (ebc + stride * (int)vv)) * N + nn;
        }
#pragma unroll
        for (int i = 0; i < Cf::TM; ++i) {
            const int m = em0 + (i / 4) * (Cf::NTY * 4) + ty * 4 + (i % 4);
            if (m >= Cg) continue;
            T* dxc = dx + (long long)(ec0 + m) * HWN;
            T o[4];
#pragma unroll
            for (int e = 0; e < 4; ++e) o[e] = acc[i][hj * 4 + e];
            if (MODE) {
                if (jc < encols) cv_st4(dxc + off[0], o);
            } else {
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (jc + e < encols) dxc[off[e]] = o[e];
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// conv_bwd_data_smallc: few channels (see the header). grid: stride^2 * groups * iblocks blocks of 128
// threads, iblocks = ceil(ceil(ceil(H/stride)/4) * ceil(W/stride) * (N/4) / 128) (the largest class);
// block b: the class b % stride^2, the group, then 128 consecutive work items (ub, v, n4) of the
// class, n4 fastest: pixels u = 4*ub .. 4*ub + 3 of column v, images 4*n4 .. 4*n4 + 3. kc: filters
// staged per round (dynamic shared memory kc * ceil(R/stride)^2 * 16 bytes).
template <typename T, int CG, int NRMAX>
__global__ void __launch_bounds__(128)
conv_bwd_data_smallc(const T* dy, const T* w, T* dx, int C, int H, int W, int N, int K, int R, int OH,
                     int OW, int pad, int stride, int groups, int kc) {
    const int U = 4, NROWS = U + NRMAX - 1;
    extern __shared__ float4 cv_wsm[];  // [kk][ib][ia]: w[0..CG-1, i0 + stride*ia, j0 + stride*ib, k]
    const CvGeo G = cv_geo(C, H, W, N, K, R, OH, OW, pad, stride, groups);
    const int Cg = G.Cg, Kg = G.Kg;
    int bid = blockIdx.x;
    const int cls = bid % (stride * stride);
    bid /= stride * stride;
    const int g = bid % groups, ib0 = bid / groups;
    const CvClass Q = cv_class(G, cls);
    const int nr = Q.nr, ns = Q.ns;
    const int NG = N / 4, UB = (Q.Hc + U - 1) / U;
    const int items = UB * Q.Wc * NG;
    if (ib0 * 128 >= items) return;  // the whole block
    const int item = ib0 * 128 + (int)threadIdx.x;
    const bool active = item < items;
    const int ng = item % NG, rest = item / NG;
    const int v = rest % Q.Wc, u0 = (rest / Q.Wc) * U;
    const long long OHWN = (long long)OH * OW * N;
    const float* dyg = dy + (long long)g * Kg * OHWN + ng * 4;

    float acc[CG][U][4];
#pragma unroll
    for (int c = 0; c < CG; ++c)
#pragma unroll
        for (int du = 0; du < U; ++du)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[c][du][e] = 0.f;

    const int taps = nr * ns;
    for (int k0 = 0; k0 < Kg; k0 += kc) {
        const int kn = Kg - k0 < kc ? Kg - k0 : kc;
        __syncthreads();  // the previous round's readers are done
        for (int idx = threadIdx.x; idx < kn * taps; idx += 128) {
            const int kk = idx / taps, tap = idx % taps;
            const int ib = tap / nr, ia = tap % nr;
            const long long o =
                ((long long)(Q.i0 + stride * ia) * R + (Q.j0 + stride * ib)) * K + g * Kg + k0 + kk;
            float f[4];
#pragma unroll
            for (int c = 0; c < 4; ++c) f[c] = (c < CG && c < Cg) ? w[(long long)c * R * R * K + o] : 0.f;
            float4 q;
            q.x = f[0];
            q.y = f[1];
            q.z = f[2];
            q.w = f[3];
            cv_wsm[idx] = q;  // idx = (kk*ns + ib)*nr + ia
        }
        __syncthreads();
        if (!active) continue;
        for (int kk = 0; kk < kn; ++kk) {
            const float* dyk = dyg + (long long)(k0 + kk) * OHWN;
            for (int ib = 0; ib < ns; ++ib) {
                const int ox = Q.bp + v - ib;
                const bool okx = (unsigned)ox < (unsigned)OW;
                float d[NROWS][4];  // d[e]: dy row oy = ap + u0 + e - (NRMAX - 1)
#pragma unroll
                for (int e = 0; e < NROWS; ++e) {
                    const int oy = Q.ap + u0 + e - (NRMAX - 1);
                    if (okx && e >= NRMAX - nr && (unsigned)oy < (unsigned)OH)
                        cv_ld4(d[e], dyk + ((long long)oy * OW + ox) * N);
                    else
                        cv_zero4(d[e]);
                }
                const float4* wk = cv_wsm + (kk * ns + ib) * nr;
#pragma unroll
                for (int ia = 0; ia < NRMAX; ++ia) {
                    if (ia < nr) {  // pixel u0 + du reads row ap + u0 + du - ia = d[du - ia + NRMAX - 1]
                        const float4 q = wk[ia];
                        const float wc[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
                        for (int du = 0; du < U; ++du)
#pragma unroll
                            for (int c = 0; c < CG; ++c)
#pragma unroll
                                for (int e = 0; e < 4; ++e) acc[c][du][e] += wc[c] * d[du - ia + NRMAX - 1][e];
                    }
                }
            }
        }
    }
    if (!active) return;
    const long long HWN = (long long)H * W * N;
    const int ix = Q.bc + stride * v;
#pragma unroll
    for (int du = 0; du < U; ++du) {
        const int u = u0 + du;
        if (u >= Q.Hc) continue;
        const long long off = ((long long)(Q.a + stride * u) * W + ix) * N + ng * 4;
#pragma unroll
        for (int c = 0; c < CG; ++c)
            if (c < Cg) cv_st4(dx + (long long)(g * Cg + c) * HWN + off, acc[c][du]);
    }
}

// ------------------------------------------------------------------------------------------------
// conv_bwd_filter operands, reduction rows p = (oy*OW + ox)*N + n in [p0, p1).
// A[p, t] = X[t, p] = x[g*Cg + c, oy*stride - pad + i, ox*stride - pad + j, n], t = (c*R + i)*R + j
// (a transposed tile: a thread group is 4 consecutive p of one column t); B[p, k] = dy[kofs + k, p]
// (rows of dy are contiguous in p; a transposed tile).
// MODE 0: scalar accesses, p decoded one by one.
template <typename T, int BM, int BN>
struct CvBfA {
    typedef CvTile<T, BM, BN> C;
    const T* x;  // x + first channel of the group
    int H, W, N, pad, stride, p0, p1, kq;
    CvDiv dN, dOW;
    long long cofs[C::LA];  // c*H*W*N of the column's channel
    int ti[C::LA], tj[C::LA];  // the column's tap; ti = -2^30 past Cg*R*R
    T v[C::LA][4];

    __device__ __forceinline__ void init(const T* x_, const CvGeo& G, int g, int m0, int p0_, int p1_, int tid) {
        x = x_ + (long long)g * G.Cg * G.H * G.W * G.N;
        H = G.H;
        W = G.W;
        N = G.N;
        pad = G.pad;
        stride = G.stride;
        p0 = p0_;
        p1 = p1_;
        kq = tid & 1;
        dN = cv_div(G.N);
        dOW = cv_div(G.OW);
        const CvDiv dRR = cv_div(G.R * G.R), dR = cv_div(G.R);
        const int Mrows = G.Cg * G.R * G.R;
#pragma unroll
        for (int i = 0; i < C::LA; ++i) {
            const int t = m0 + (tid >> 1) + i * (C::NT / 2);
            unsigned rs, s;
            const unsigned c = cv_divmod(dRR, (unsigned)t, rs);
            const unsigned r = cv_divmod(dR, rs, s);
            cofs[i] = (long long)c * H * W * N;
            ti[i] = t < Mrows ? (int)r : -(1 << 30);
            tj[i] = (int)s;
        }
    }
    __device__ __forceinline__ void fetch(const CvKt& it) {
        const int p = p0 + it.kt * C::BK + kq * 4;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            unsigned n, ox;
            const unsigned q = cv_divmod(dN, (unsigned)(p + e), n);
            const unsigned oy = cv_divmod(dOW, q, ox);
            const int iyb = (int)oy * stride - pad, ixb = (int)ox * stride - pad;
            const bool pok = p + e < p1;
#pragma unroll
            for (int i = 0; i < C::LA; ++i) {
                const int iy = iyb + ti[i], ix = ixb + tj[i];
                v[i][e] = (pok && (unsigned)iy < (unsigned)H && (unsigned)ix < (unsigned)W)
                              ? x[cofs[i] + ((long long)iy * W + ix) * N + n]
                              : T(0);
            }
        }
    }
    __device__ __forceinline__ void stash(T* tile) { cv_stash_cols<T, C::LA, C::NT, C::LDA>(tile, v); }
};

template <typename T, int BM, int BN>
struct CvBfB {
    typedef CvTile<T, BM, BN> C;
    const T* dy;
    long long base, kstep;  // offset of dy[kofs + n0 + tid/2, 0]; between the thread's columns
    int p0, p1, kq, kmax;    // column group i is a filter of the group when i*NT/2 < kmax
    T v[C::LB][4];

    __device__ __forceinline__ void init(const T* dy_, const CvGeo& G, int g, int n0, int p0_, int p1_, int tid) {
        const long long P = (long long)G.OH * G.OW * G.N;
        dy = dy_;
        base = (long long)(g * G.Kg + n0 + (tid >> 1)) * P;
        kstep = (long long)(C::NT / 2) * P;
        kmax = G.Kg - n0 - (tid >> 1);
        p0 = p0_;
        p1 = p1_;
        kq = tid & 1;
    }
    __device__ __forceinline__ void fetch(const CvKt& it) {
        const int p = p0 + it.kt * C::BK + kq * 4;
#pragma unroll
        for (int i = 0; i < C::LB; ++i) {
            const bool ok = i * (C::NT / 2) < kmax;
#pragma unroll
            for (int e = 0; e < 4; ++e) v[i][e] = (ok && p + e < p1) ? dy[base + i * kstep + p + e] : T(0);
        }
    }
    __device__ __forceinline__ void stash(T* tile) { cv_stash_cols<T, C::LB, C::NT, C::LDB>(tile, v); }
};

// MODE 2 (N % 8 == 0, Kg % 4 == 0, aligned; float): a step covers images n0 .. n0 + 7 of one output
// pixel (oy, ox), the same for the whole block (chunks are multiples of 8, so steps never straddle).
struct CvBfIt {
    int p, n0, ox, oy, N, OW;
    __device__ __forceinline__ void next() {
        p += 8;
        n0 += 8;
        if (n0 >= N) {
            n0 = 0;
            if (++ox >= OW) {
                ox = 0;
                ++oy;
            }
        }
    }
};

template <typename T, int BM, int BN>
struct CvBfA2 {  // column t = (c, i, j), rows 4*kq .. + 3: x[g*Cg + c, oy*s - pad + i, ox*s - pad + j, n0 + 4*kq ..]
    typedef CvTile<T, BM, BN> C;
    const T* x;
    int base[C::LA];           // offset of x[g*Cg + c, i, j, 4*kq]
    int ti[C::LA], tj[C::LA];  // ti = -2^30 past Cg*R*R
    int H, W, N, pad, stride;
    T v[C::LA][4];

    __device__ __forceinline__ void init(const T* x_, const CvGeo& G, int g, int m0, int, int, int tid) {
        x = x_;
        H = G.H;
        W = G.W;
        N = G.N;
        pad = G.pad;
        stride = G.stride;
        const int HWN = G.H * G.W * G.N;
        const CvDiv dRR = cv_div(G.R * G.R), dR = cv_div(G.R);
        const int Mrows = G.Cg * G.R * G.R;
#pragma unroll
        for (int i = 0; i < C::LA; ++i) {
            const int t = m0 + (tid >> 1) + i * (C::NT / 2);
            unsigned rs, s;
            const unsigned c = cv_divmod(dRR, (unsigned)t, rs);
            const unsigned r = cv_divmod(dR, rs, s);
            base[i] = t < Mrows ? (g * G.Cg + (int)c) * HWN + ((int)r * W + (int)s) * N + (tid & 1) * 4 : 0;
            ti[i] = t < Mrows ? (int)r : -(1 << 30);
            tj[i] = (int)s;
        }
    }
    __device__ __forceinline__ void fetch(const CvBfIt& it) {
        const int iyb = it.oy * stride - pad, ixb = it.ox * stride - pad;
        const int off = (iyb * W + ixb) * N + it.n0;
#pragma unroll
        for (int i = 0; i < C::LA; ++i) {
            const int iy = iyb + ti[i], ix = ixb + tj[i];
            if ((unsigned)iy < (unsigned)H && (unsigned)ix < (unsigned)W) cv_ld4(v[i], x + base[i] + off);
            else cv_zero4(v[i]);
        }
    }
    __device__ __forceinline__ void stash(T* tile) { cv_stash_cols<T, C::LA, C::NT, C::LDA>(tile, v); }
};

template <typename T, int BM, int BN>
struct CvBfB2 {  // column k, rows 4*kq .. + 3: dy[kofs + k, p + 4*kq .. + 3]
    typedef CvTile<T, BM, BN> C;
    const T* dy;
    int base, kstep;
    int kmax;
    T v[C::LB][4];

    __device__ __forceinline__ void init(const T* dy_, const CvGeo& G, int g, int n0, int, int, int tid) {
        const int P = G.OH * G.OW * G.N;
        dy = dy_;
        base = (g * G.Kg + n0 + (tid >> 1)) * P + (tid & 1) * 4;
        kstep = (C::NT / 2) * P;
        kmax = G.Kg - n0 - (tid >> 1);
    }
    __device__ __forceinline__ void fetch(const CvBfIt& it) {
#pragma unroll
        for (int i = 0; i < C::LB; ++i) {
            if (i * (C::NT / 2) < kmax) cv_ld4(v[i], dy + base + i * kstep + it.p);
            else cv_zero4(v[i]);
        }
    }
    __device__ __forceinline__ void stash(T* tile) { cv_stash_cols<T, C::LB, C::NT, C::LDB>(tile, v); }
};

template <typename T, int BM, int BN, int MODE>
struct CvBfOps {
    typedef typename CvPick<MODE, CvKt, CvBfIt>::type It;
    typedef typename CvPick<MODE, CvBfA<T, BM, BN>, CvBfA2<T, BM, BN> >::type A;
    typedef typename CvPick<MODE, CvBfB<T, BM, BN>, CvBfB2<T, BM, BN> >::type B;
};

__device__ __forceinline__ void cv_it_init(CvKt& it, const CvGeo&, int) { it.kt = 0; }
__device__ __forceinline__ void cv_it_init(CvBfIt& it, const CvGeo& G, int p0) {
    const CvDiv dN = cv_div(G.N), dOW = cv_div(G.OW);
    unsigned n, ox;
    const unsigned q = cv_divmod(dN, (unsigned)p0, n);
    it.oy = (int)cv_divmod(dOW, q, ox);
    it.ox = (int)ox;
    it.n0 = (int)n;
    it.p = p0;
    it.N = G.N;
    it.OW = G.OW;
}

// out[z, t, kofs + k] = sum over the chunk p in [z*chunk, min(P, (z+1)*chunk)) of X[t, p] * dy[k, p]
// (out = dw itself when there is one chunk). chunk: a multiple of 8. grid: ntiles * mtiles * groups *
// splits blocks, ntiles = ceil(Kg/BN), mtiles = ceil(Cg*R*R/BM); block b: filter tile b % ntiles
// (fastest), then the row tile, the group, the split z (slowest).
template <typename T, int BM, int BN, int MODE>
__global__ void __launch_bounds__(CvTile<T, BM, BN>::NT, MODE ? 512 / CvTile<T, BM, BN>::NT : 1)
conv_bwd_filter(const T* x, const T* dy, T* out, int C, int H, int W, int N, int K, int R, int OH, int OW,
                int pad, int stride, int groups, int chunk) {
    typedef CvTile<T, BM, BN> Cf;
    typedef CvBfOps<T, BM, BN, MODE> Ops;
    __shared__ __align__(16) T As[2 * Cf::BK * Cf::LDA];
    __shared__ __align__(16) T Bs[2 * Cf::BK * Cf::LDB];
    const CvGeo G = cv_geo(C, H, W, N, K, R, OH, OW, pad, stride, groups);
    const int Kg = G.Kg, Mrows = G.Cg * R * R;
    const int P = OH * OW * N;
    const int mtiles = (Mrows + BM - 1) / BM, ntiles = (Kg + BN - 1) / BN;
    int bid = blockIdx.x;
    const int nt = bid % ntiles;
    bid /= ntiles;
    const int mt = bid % mtiles;
    bid /= mtiles;
    const int g = bid % groups, z = bid / groups;
    const int m0 = mt * BM, n0 = nt * BN;
    const int p0 = z * chunk, p1 = P - p0 < chunk ? P : p0 + chunk;
    const int tid = threadIdx.x;
    int ty, tx;
    cv_thread_pos<T, BM, BN>(tid, ty, tx);

    __shared__ CvPark park;
    if (tid == 0) {
        park.v[0] = z;
        park.v[1] = g * Kg;
        park.v[2] = m0;
        park.v[3] = n0;
    }
    typename Ops::It it;
    cv_it_init(it, G, p0);
    typename Ops::A la;
    la.init(x, G, g, m0, p0, p1, tid);
    typename Ops::B lb;
    lb.init(dy, G, g, n0, p0, p1, tid);
    T acc[Cf::TM][Cf::TN];
    cv_mainloop<T, BM, BN>(it, la, lb, p1 > p0 ? (p1 - p0 + Cf::BK - 1) / Cf::BK : 0, As, Bs, ty, tx, acc);

    const int ez = cv_unpark(park, 0), ek0 = cv_unpark(park, 1), em0 = cv_unpark(park, 2);
    const int en0 = cv_unpark(park, 3);
    T* o = out + (long long)ez * Mrows * K + ek0;
#pragma unroll
    for (int i = 0; i < Cf::TM; ++i) {
        const int m = em0 + (i / 4) * (Cf::NTY * 4) + ty * 4 + (i % 4);
        if (m >= Mrows) continue;
        T* om = o + (long long)m * K;
#pragma unroll
        for (int hj = 0; hj < Cf::TN / 4; ++hj) {
            const int kc = en0 + hj * (Cf::NTX * 4) + tx * 4;
            T r4[4];
#pragma unroll
            for (int e = 0; e < 4; ++e) r4[e] = acc[i][hj * 4 + e];
            if (MODE) {
                if (kc < Kg) cv_st4(om + kc, r4);
            } else {
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (kc + e < Kg) om[kc + e] = r4[e];
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Split-K sum and bias gradient.

// out[i] = sum_{z < splits} part[z*n + i], z in order (deterministic). 1-D grid-stride loop, any grid;
// 16-byte accesses when part and out are 16-byte aligned and n is a multiple of 16/sizeof(T).
template <typename T>
__global__ void conv_sum_splits(const T* part, T* out, long long n, int splits) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const int PK = 16 / sizeof(T);
    long long done = 0;
    if (((reinterpret_cast<unsigned long long>(part) | reinterpret_cast<unsigned long long>(out)) & 15ull) == 0 &&
        n % PK == 0) {
        for (long long i = tid * PK; i < n; i += stride * PK) {
            T s[4], q[4];
            cv_zero4(s);
            for (int z = 0; z < splits; ++z) {
                if (PK == 4) {
                    cv_ld4(q, part + z * n + i);
                } else {
                    q[0] = part[z * n + i];
                    q[1] = part[z * n + i + 1];
                }
#pragma unroll
                for (int e = 0; e < PK; ++e) s[e] += q[e];
            }
#pragma unroll
            for (int e = 0; e < PK; ++e) out[i + e] = s[e];
        }
        done = n;
    }
    for (long long i = done + tid; i < n; i += stride) {
        T s = T(0);
        for (int z = 0; z < splits; ++z) s += part[z * n + i];
        out[i] = s;
    }
}

// ------------------------------------------------------------------------------------------------
// bias_bwd: dy as rows x L (row r contiguous); out[z*rows + r] = sum of row r's elements
// [z*chunk, min(L, (z+1)*chunk)) (splits = ceil(L/chunk); with splits > 1 conv_sum_splits adds them).
// One warp per (r, z), item = z*rows + r; grid-stride over items; any grid, block a multiple of 32.
// 16-byte loads when dy is 16-byte aligned and L and chunk are multiples of 4 (float) / 2 (double).
template <typename T>
__global__ void bias_bwd(const T* dy, T* out, long long rows, long long L, long long chunk, int splits) {
    const int lane = threadIdx.x & 31;
    const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
    const long long items = rows * splits;
    const int PK = 16 / sizeof(T);
    const bool vec = (reinterpret_cast<unsigned long long>(dy) & 15ull) == 0 && L % PK == 0 && chunk % PK == 0;
    for (long long it = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); it < items; it += warps) {
        const long long r = it % rows, z = it / rows;
        const long long b = z * chunk, e = L - b < chunk ? L : b + chunk;
        const T* row = dy + r * L;
        T s = T(0);
        if (vec) {
            for (long long i = b + lane * PK; i < e; i += 32 * PK) {
                if (PK == 4) {
                    T q[4];
                    cv_ld4(q, row + i);
                    s += (q[0] + q[1]) + (q[2] + q[3]);
                } else {
                    s += row[i] + row[i + 1];
                }
            }
        } else {
            for (long long i = b + lane; i < e; i += 32) s += row[i];
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) out[it] = s;
    }
}

// ------------------------------------------------------------------------------------------------
// Entry points (pyconvnet/cuda/ops/conv.py picks among them with one table).

template __global__ void conv_fwd<float, 128, 128, 2>(const float*, const float*, const float*, float*, int, int,
                                                      int, int, int, int, int, int, int, int, int, int);
template __global__ void conv_fwd<float, 64, 128, 2>(const float*, const float*, const float*, float*, int, int,
                                                     int, int, int, int, int, int, int, int, int, int);
template __global__ void conv_fwd<float, 32, 128, 2>(const float*, const float*, const float*, float*, int, int,
                                                     int, int, int, int, int, int, int, int, int, int);
template __global__ void conv_fwd<float, 64, 128, 1>(const float*, const float*, const float*, float*, int, int,
                                                     int, int, int, int, int, int, int, int, int, int);
template __global__ void conv_fwd<float, 64, 128, 0>(const float*, const float*, const float*, float*, int, int,
                                                     int, int, int, int, int, int, int, int, int, int);
template __global__ void conv_fwd<double, 32, 32, 0>(const double*, const double*, const double*, double*, int,
                                                     int, int, int, int, int, int, int, int, int, int, int);
template __global__ void conv_bwd_data<float, 128, 128, 2>(const float*, const float*, float*, int, int, int, int,
                                                           int, int, int, int, int, int, int);
template __global__ void conv_bwd_data<float, 64, 128, 2>(const float*, const float*, float*, int, int, int, int,
                                                          int, int, int, int, int, int, int);
template __global__ void conv_bwd_data<float, 32, 128, 2>(const float*, const float*, float*, int, int, int, int,
                                                          int, int, int, int, int, int, int);
template __global__ void conv_bwd_data<float, 64, 128, 0>(const float*, const float*, float*, int, int, int, int,
                                                          int, int, int, int, int, int, int);
template __global__ void conv_bwd_data<double, 32, 32, 0>(const double*, const double*, double*, int, int, int,
                                                          int, int, int, int, int, int, int, int);
template __global__ void conv_bwd_data_smallc<float, 3, 3>(const float*, const float*, float*, int, int, int, int,
                                                           int, int, int, int, int, int, int, int);
template __global__ void conv_bwd_data_smallc<float, 3, 11>(const float*, const float*, float*, int, int, int,
                                                            int, int, int, int, int, int, int, int, int);
template __global__ void conv_bwd_data_smallc<float, 4, 11>(const float*, const float*, float*, int, int, int,
                                                            int, int, int, int, int, int, int, int, int);
template __global__ void conv_bwd_filter<float, 128, 128, 2>(const float*, const float*, float*, int, int, int,
                                                             int, int, int, int, int, int, int, int, int);
template __global__ void conv_bwd_filter<float, 128, 64, 2>(const float*, const float*, float*, int, int, int,
                                                            int, int, int, int, int, int, int, int, int);
template __global__ void conv_bwd_filter<float, 128, 32, 2>(const float*, const float*, float*, int, int, int,
                                                            int, int, int, int, int, int, int, int, int);
template __global__ void conv_bwd_filter<float, 64, 64, 0>(const float*, const float*, float*, int, int, int,
                                                           int, int, int, int, int, int, int, int, int);
template __global__ void conv_bwd_filter<double, 32, 32, 0>(const double*, const double*, double*, int, int, int,
                                                            int, int, int, int, int, int, int, int, int);
template __global__ void conv_sum_splits<float>(const float*, float*, long long, int);
template __global__ void conv_sum_splits<double>(const double*, double*, long long, int);
template __global__ void bias_bwd<float>(const float*, float*, long long, long long, long long, int);
template __global__ void bias_bwd<double>(const double*, double*, long long, long long, long long, int);
