// Host launchers for kernels/neuron.cu (see launchers.h for the calling convention).
#include <cuda_runtime.h>

#include "../kernels/neuron.cu"
#include "launchers.h"

namespace pyconvnet {

template <typename T>
int neuron_fwd(const T* x, T* y, long long n, int kind, T a, T b, LaunchConfig cfg) {
    ::neuron_fwd<T><<<cfg.grid, cfg.block, 0, reinterpret_cast<cudaStream_t>(cfg.stream)>>>(
        x, y, n, kind, a, b);
    return static_cast<int>(cudaGetLastError());
}

template <typename T>
int neuron_bwd(const T* dy, const T* x, const T* y, T* dx, long long n, int kind, T a, T b,
               LaunchConfig cfg) {
    ::neuron_bwd<T><<<cfg.grid, cfg.block, 0, reinterpret_cast<cudaStream_t>(cfg.stream)>>>(
        dy, x, y, dx, n, kind, a, b);
    return static_cast<int>(cudaGetLastError());
}

template int neuron_fwd<float>(const float*, float*, long long, int, float, float, LaunchConfig);
template int neuron_fwd<double>(const double*, double*, long long, int, double, double, LaunchConfig);
template int neuron_bwd<float>(const float*, const float*, const float*, float*, long long, int, float,
                               float, LaunchConfig);
template int neuron_bwd<double>(const double*, const double*, const double*, double*, long long, int,
                                double, double, LaunchConfig);

}  // namespace pyconvnet
