// Host launchers for the kernels/ sources, compiled by nvcc (bindings/*.cu) and called from the
// plain C++ pybind11 module (bindings/module.cpp), which therefore needs no CUDA headers.
//
// Every launcher takes device pointers, sizes, scalars and a LaunchConfig, launches, and returns the
// CUDA error code of the launch (0 = success; cudaGetLastError after the launch). Callers turn a
// non-zero code into an exception with error_string(); nothing here asserts or exits.
#pragma once

#include <cstdint>

namespace pyconvnet {

struct LaunchConfig {
    unsigned grid;         // blocks in x, >= 1
    unsigned block;        // threads per block in x, 1..1024
    std::uintptr_t stream; // cudaStream_t as an integer (0 = the legacy default stream)
};

// CUDA runtime facts, without throwing: each returns a CUDA error code and writes *out on success.
int runtime_version(int* out);
int driver_version(int* out);
int device_count(int* out);
const char* error_name(int code);
const char* error_string(int code);

// kernels/neuron.cu (T = float or double)
template <typename T>
int neuron_fwd(const T* x, T* y, long long n, int kind, T a, T b, LaunchConfig cfg);
template <typename T>
int neuron_bwd(const T* dy, const T* x, const T* y, T* dx, long long n, int kind, T a, T b,
               LaunchConfig cfg);

}  // namespace pyconvnet
