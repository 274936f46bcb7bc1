// The extension's kernel table and its one generic launcher.
//
// Each bindings/<family>.cu includes kernels/<family>.cu and registers the same explicit template
// instantiations that NVRTC's name expressions name (e.g. "pool_fwd<float>"), so a kernel has one name
// on both launch paths:
//
//     PYCONVNET_KERNEL(pool_fwd<float>)
//
// Launches go through cudaLaunchKernel with an argument array (void* per kernel parameter, each
// pointing at a value of the parameter's exact type), built by bindings/module.cpp from a signature
// string. tests/test_build.py checks that the table holds exactly the entry points of kernels/*.cu.
// Nothing here asserts or exits: functions return CUDA error codes (0 = success).
#pragma once

#include <cstddef>
#include <cstdint>

namespace pyconvnet {

// Adds ``func`` (the host stub of a __global__ function) under ``name`` (whitespace is dropped).
// Returns a dummy int so registration can initialise a static.
int register_kernel(const char* name, const void* func);

// Registered kernels, in registration order: count, then name and function of entry i.
int kernel_count();
const char* kernel_name(int i);
const void* kernel_func(int i);

// cudaLaunchKernel(func, grid, block, args, shmem, stream), then cudaGetLastError.
int launch_kernel(const void* func, const unsigned grid[3], const unsigned block[3], void** args,
                  std::size_t shmem, std::uintptr_t stream);
// cudaFuncSetAttribute(func, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes).
int set_max_dynamic_shared(const void* func, int bytes);

// CUDA runtime facts, without throwing: each returns a CUDA error code and writes *out on success.
int runtime_version(int* out);
int driver_version(int* out);
int device_count(int* out);
const char* error_name(int code);
const char* error_string(int code);

}  // namespace pyconvnet

#define PYCONVNET_CAT2(a, b) a##b
#define PYCONVNET_CAT(a, b) PYCONVNET_CAT2(a, b)
// PYCONVNET_KERNEL(name<args>): register one instantiation (the variadic form keeps commas).
#define PYCONVNET_KERNEL(...)                                                                   \
    static const int PYCONVNET_CAT(pyconvnet_registered_, __COUNTER__) =                       \
        ::pyconvnet::register_kernel(#__VA_ARGS__, reinterpret_cast<const void*>(&__VA_ARGS__));
