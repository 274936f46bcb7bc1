// CUDA runtime queries for the pybind11 module (see launchers.h). With the runtime linked
// statically these work on a machine without a driver or device: they return an error code.
#include <cuda_runtime.h>

#include "launchers.h"

namespace pyconvnet {

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
