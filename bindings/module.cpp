// pyconvnet._cuda: pybind11 module with host launchers for the kernels/ sources.
//
// Launchers take device pointers as Python ints (CuPy's a.data.ptr), sizes, scalars, the launch
// configuration (grid, block: pyconvnet/cuda computes them) and a stream (int, CuPy's stream.ptr).
// They check their arguments (ValueError), launch, check the launch (cudaGetLastError) and raise
// RuntimeError with the CUDA error on failure; they never assert or exit. Launches are asynchronous:
// errors raised while the kernel runs surface at the next synchronising call.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "launchers.h"

namespace py = pybind11;
using pyconvnet::LaunchConfig;

#ifndef PYCONVNET_CUDA_ARCHITECTURES
#define PYCONVNET_CUDA_ARCHITECTURES "unknown"
#endif

namespace {

std::vector<std::string>& launcher_names() {
    static std::vector<std::string> names;
    return names;
}

std::string cuda_error(int code) {
    return std::string(pyconvnet::error_name(code)) + ": " + pyconvnet::error_string(code);
}

void check_launch(const char* op, int code) {
    if (code != 0) throw std::runtime_error(std::string(op) + ": kernel launch failed: " + cuda_error(code));
}

LaunchConfig config(const char* op, long long n, long long grid, long long block, std::uintptr_t stream) {
    if (n < 0) throw std::invalid_argument(std::string(op) + ": n must be >= 0, got " + std::to_string(n));
    if (grid < 1 || grid > 2147483647LL)
        throw std::invalid_argument(std::string(op) + ": grid must be in [1, 2^31-1], got " + std::to_string(grid));
    if (block < 1 || block > 1024)
        throw std::invalid_argument(std::string(op) + ": block must be in [1, 1024], got " + std::to_string(block));
    return LaunchConfig{static_cast<unsigned>(grid), static_cast<unsigned>(block), stream};
}

template <typename T>
void def_neuron(py::module_& m, const char* suffix) {
    std::string fwd = std::string("neuron_fwd_") + suffix, bwd = std::string("neuron_bwd_") + suffix;
    const char* ctype = sizeof(T) == 4 ? "float32" : "float64";
    m.def(fwd.c_str(),
          [](std::uintptr_t x, std::uintptr_t y, long long n, int kind, T a, T b, long long grid,
             long long block, std::uintptr_t stream) {
              LaunchConfig cfg = config("neuron_fwd", n, grid, block, stream);
              check_launch("neuron_fwd", pyconvnet::neuron_fwd<T>(reinterpret_cast<const T*>(x),
                                                                 reinterpret_cast<T*>(y), n, kind, a, b, cfg));
          },
          (std::string("Launch kernels/neuron.cu neuron_fwd on ") + ctype +
           " device arrays: y[i] = neuron(x[i]) for i < n.\n\n"
           "x, y: device pointers (ints) to n elements; kind: NeuronKind code (pyconvnet.cuda.ops.neuron.KINDS);"
           " a, b: the neuron's parameters (0 when unused); grid, block: launch configuration;"
           " stream: cudaStream_t as an int. Raises ValueError on a bad configuration and RuntimeError"
           " when the launch fails.").c_str(),
          py::arg("x"), py::arg("y"), py::arg("n"), py::arg("kind"), py::arg("a"), py::arg("b"),
          py::arg("grid"), py::arg("block"), py::arg("stream") = 0);
    m.def(bwd.c_str(),
          [](std::uintptr_t dy, std::uintptr_t x, std::uintptr_t y, std::uintptr_t dx, long long n, int kind,
             T a, T b, long long grid, long long block, std::uintptr_t stream) {
              LaunchConfig cfg = config("neuron_bwd", n, grid, block, stream);
              check_launch("neuron_bwd", pyconvnet::neuron_bwd<T>(
                                             reinterpret_cast<const T*>(dy), reinterpret_cast<const T*>(x),
                                             reinterpret_cast<const T*>(y), reinterpret_cast<T*>(dx), n,
                                             kind, a, b, cfg));
          },
          (std::string("Launch kernels/neuron.cu neuron_bwd on ") + ctype +
           " device arrays: dx[i] = dy[i] * neuron'(x[i], y[i]) for i < n.\n\n"
           "dy, x, y, dx: device pointers (ints) to n elements; kind, a, b, grid, block, stream: as neuron_fwd_" +
           suffix + ". Raises ValueError on a bad configuration and RuntimeError when the launch fails.")
              .c_str(),
          py::arg("dy"), py::arg("x"), py::arg("y"), py::arg("dx"), py::arg("n"), py::arg("kind"), py::arg("a"),
          py::arg("b"), py::arg("grid"), py::arg("block"), py::arg("stream") = 0);
    launcher_names().push_back(fwd);
    launcher_names().push_back(bwd);
}

py::dict runtime_info() {
    py::dict d;
    int v = 0, code = pyconvnet::runtime_version(&v);
    d["runtime_version"] = code == 0 ? v : 0;
    v = 0;
    code = pyconvnet::driver_version(&v);
    d["driver_version"] = code == 0 ? v : 0;
    v = 0;
    code = pyconvnet::device_count(&v);
    d["device_count"] = code == 0 ? v : 0;
    d["error"] = code == 0 ? std::string() : cuda_error(code);
    return d;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "pyconvnet._cuda: nvcc-built host launchers for the kernels/*.cu sources "
              "(device pointers as ints, sizes, scalars, grid, block, stream).";
    m.attr("cuda_architectures") = PYCONVNET_CUDA_ARCHITECTURES;
    def_neuron<float>(m, "f32");
    def_neuron<double>(m, "f64");
    m.def("launchers", []() { return launcher_names(); },
          "Names of the kernel launchers in this module, e.g. ['neuron_fwd_f32', ...].");
    m.def("runtime_info", &runtime_info,
          "CUDA facts as a dict, never raising: runtime_version and driver_version (1000*major + 10*minor,"
          " 0 if unknown), device_count (0 without a usable device) and error (the CUDA error of the"
          " device query, '' if none).");
}
