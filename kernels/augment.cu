// kernels/augment.cu: minibatch preparation on the device: crop, mean subtraction, mirror, colour shift.
//
// Tensors (all C-contiguous, device memory):
//   img   unsigned char (n, C, H, W): the raw cases, case-major as data sources store them;
//   mean  T (C, H, W): the mean image (T is float or double, the output type);
//   geom  int (n, 3): per case (oy, ox, flip): the crop's top-left corner and 1 to mirror left-right
//         (0 not to; any nonzero value mirrors). The kernel trusts it: 0 <= oy <= H-S and 0 <= ox <= W-S
//         are checked on the host (pyconvnet.data.augment.pack_geometry);
//   shift T (n, C) or nullptr: a per-case, per-channel constant (PCA lighting) added last;
//   out   T (C, S, S, n): cuda-convnet's layout, batch innermost.
// Semantics (exactly pyconvnet.data.augment.prepare, bit for bit in float32):
//   out[((c*S + y)*S + x)*n + i] = (T(img[((i*C + c)*H + oy+y)*W + ox+xs]) - mean[(c*H + oy+y)*W + ox+xs])
//                                  + shift[i*C + c]
//   with xs = flip ? S-1-x : x (the mirror comes after the subtraction, so the mean is mirrored with its
//   pixels). One subtraction then one addition, each rounded to T (no multiply, so nothing to contract
//   into an FMA); with shift == nullptr nothing is added (not even +0, which would turn -0 into +0).
// Constraints: n >= 1, C >= 1, 1 <= S <= min(H, W), any values (nothing needs to be a multiple of 4 or
//   32); n, C, H, W < 2^31; element indices are computed in 64 bits. Pointers need only their type's
//   alignment (no vector accesses). out must not overlap the inputs.
// Launch: block (32, 8) (AUG_TILE x AUG_ROWS threads); grid (ceil(S/32), min(ceil(n/32), 65535),
//   min(C*S, 65535)); blocks loop over the image tiles (grid y) and the output rows (c, y) (grid z)
//   beyond those caps. pyconvnet/cuda/ops/augment.py (augment_launch_config) picks them for both launch
//   paths.
// Versions: v1, a shared-memory tiled transpose per output row (c, y): a 32 (cases) x 32 (x) tile; each
//   warp reads 32 consecutive x of one case's image row (bytes) and of the mean's row, coalesced, and
//   writes 32 consecutive cases of one x, coalesced (the tile is padded to 33 columns: no bank conflicts
//   for float on the transposed read).
// Entry points: the explicit instantiations at the end of the file (also NVRTC's name expressions).
// Builds unchanged under nvcc (bindings/augment.cu includes it) and NVRTC: no includes.

#define AUG_TILE 32
#define AUG_ROWS 8

template <typename T>
__global__ void __launch_bounds__(AUG_TILE * AUG_ROWS)
    augment_fwd(const unsigned char* img, const T* mean, const int* geom, const T* shift, T* out, int n,
                int C, int H, int W, int S) {
    __shared__ T tile[AUG_TILE][AUG_TILE + 1];  // [case in tile][x in tile]
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int x0 = blockIdx.x * AUG_TILE;
    const long long rows = (long long)C * S;
    for (long long cy = blockIdx.z; cy < rows; cy += gridDim.z) {
        const int c = (int)(cy / S);
        const int y = (int)(cy - (long long)c * S);
        T* const orow = out + cy * S * (long long)n;  // out[c, y, 0, 0]
        for (long long i0 = (long long)blockIdx.y * AUG_TILE; i0 < n; i0 += (long long)gridDim.y * AUG_TILE) {
            // Load: thread (tx, ty) takes x = x0 + tx of cases i0 + ty + 8j.
            const int x = x0 + tx;
#pragma unroll
            for (int j = 0; j < AUG_TILE; j += AUG_ROWS) {
                const long long i = i0 + ty + j;
                if (i < n && x < S) {
                    const int oy = geom[3 * i], ox = geom[3 * i + 1], flip = geom[3 * i + 2];
                    const int xs = ox + (flip ? S - 1 - x : x);  // column in the full image
                    const long long r = (long long)oy + y;       // row in the full image
                    T v = T(img[((i * C + c) * H + r) * W + xs]) - mean[((long long)c * H + r) * W + xs];
                    if (shift != nullptr) v = v + shift[i * C + c];
                    tile[ty + j][tx] = v;
                }
            }
            __syncthreads();
            // Store: thread (tx, ty) writes case i0 + tx of x = x0 + ty + 8j.
            const long long i = i0 + tx;
#pragma unroll
            for (int j = 0; j < AUG_TILE; j += AUG_ROWS) {
                const int xo = x0 + ty + j;
                if (i < n && xo < S) orow[(long long)xo * n + i] = tile[tx][ty + j];
            }
            __syncthreads();  // the tile is refilled by the next iteration
        }
    }
}

template __global__ void augment_fwd<float>(const unsigned char*, const float*, const int*, const float*, float*,
                                            int, int, int, int, int);
template __global__ void augment_fwd<double>(const unsigned char*, const double*, const int*, const double*,
                                             double*, int, int, int, int, int);
