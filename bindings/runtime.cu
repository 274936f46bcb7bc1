// The kernel table, the generic launcher and CUDA runtime queries (see registry.h). With the runtime
// linked statically these work on a machine without a driver or device: they return an error code.
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "registry.h"

namespace pyconvnet {
namespace {

struct Entry {
    std::string name;
    const void* func;
};

std::vector<Entry>& table() {
    static std::vector<Entry> entries;  // filled by static initialisers before the module is used
    return entries;
}

}  // namespace

int register_kernel(const char* name, const void* func) {
    std::string clean;
    for (const char* c = name; *c; ++c)
        if (*c != ' ' && *c != '\t' && *c != '\n') clean += *c;
    table().push_back(Entry{clean, func});
    return static_cast<int>(table().size());
}

int kernel_count() { return static_cast<int>(table().size()); }
const char* kernel_name(int i) { return table()[i].name.c_str(); }
const void* kernel_func(int i) { return table()[i].func; }

int launch_kernel(const void* func, const unsigned grid[3], const unsigned block[3], void** args,
                  std::size_t shmem, std::uintptr_t stream) {
    cudaError_t err = cudaLaunchKernel(func, dim3(grid[0], grid[1], grid[2]), dim3(block[0], block[1], block[2]),
                                       args, shmem, reinterpret_cast<cudaStream_t>(stream));
    if (err != cudaSuccess) {
        cudaGetLastError();  // do not leave a launch error for the next launch's check
        return static_cast<int>(err);
    }
    return static_cast<int>(cudaGetLastError());
}

int set_max_dynamic_shared(const void* func, int bytes) {
    cudaError_t err = cudaFuncSetAttribute(func, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (err != cudaSuccess) cudaGetLastError();
    return static_cast<int>(err);
}

int runtime_version(int* out) { return static_cast<int>(cudaRuntimeGetVersion(out)); }
int driver_version(int* out) { return static_cast<int>(cudaDriverGetVersion(out)); }

int device_count(int* out) {
    cudaError_t err = cudaGetDeviceCount(out);
    if (err != cudaSuccess) cudaGetLastError();  // do not leave the error for the next launch check
    return static_cast<int>(err);
}

const char* error_name(int code) { return cudaGetErrorName(static_cast<cudaError_t>(code)); }
const char* error_string(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

}  // namespace pyconvnet
