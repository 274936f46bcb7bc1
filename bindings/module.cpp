// pyconvnet._cuda: the nvcc-built kernels of kernels/*.cu and one generic launcher for them.
//
//     h = _cuda.kernel("pool_fwd<float>")                    # handle (int) of a registered kernel
//     _cuda.launch(h, (gx, gy, gz), (bx, by, bz), shmem, stream, "ppif", (x_ptr, y_ptr, n, 0.5))
//
// The signature string has one letter per kernel parameter: p a device pointer (int, CuPy's
// a.data.ptr), i int32, l int64, f float32, d float64. Values are converted to exactly that type
// before cudaLaunchKernel, so a wrong letter cannot pass a mistyped value silently: pyconvnet/cuda/
// launch.py builds the string from each kernel's declared arguments. Bad arguments raise ValueError,
// a failed launch RuntimeError with the CUDA error; nothing asserts or exits. Launches are
// asynchronous: errors raised while a kernel runs surface at the next synchronising call.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "registry.h"

namespace py = pybind11;

#ifndef PYCONVNET_CUDA_ARCHITECTURES
#define PYCONVNET_CUDA_ARCHITECTURES "unknown"
#endif

namespace {

constexpr int kMaxArgs = 32;

union Slot {
    std::uintptr_t p;
    std::int32_t i;
    std::int64_t l;
    float f;
    double d;
};

std::string cuda_error(int code) {
    return std::string(pyconvnet::error_name(code)) + ": " + pyconvnet::error_string(code);
}

const void* func_of(int handle) {
    if (handle < 0 || handle >= pyconvnet::kernel_count())
        throw std::invalid_argument("no kernel with handle " + std::to_string(handle) + " (there are " +
                                    std::to_string(pyconvnet::kernel_count()) + ")");
    return pyconvnet::kernel_func(handle);
}

int kernel_handle(const std::string& name) {
    std::string clean;
    for (char c : name)
        if (c != ' ' && c != '\t' && c != '\n') clean += c;
    for (int i = 0; i < pyconvnet::kernel_count(); ++i)
        if (clean == pyconvnet::kernel_name(i)) return i;
    throw std::invalid_argument("pyconvnet._cuda has no kernel " + clean +
                                " (is it registered in bindings/ and instantiated in kernels/?)");
}

void launch(int handle, std::array<long long, 3> grid, std::array<long long, 3> block, long long shmem,
            std::uintptr_t stream, const std::string& sig, const py::tuple& args) {
    const void* func = func_of(handle);
    const char* name = pyconvnet::kernel_name(handle);
    auto bad = [&](const std::string& what) { return std::invalid_argument(std::string(name) + ": " + what); };
    long long threads = 1;
    for (int d = 0; d < 3; ++d) {
        if (grid[d] < 1 || grid[d] > (d == 0 ? 2147483647LL : 65535LL))
            throw bad("grid " + std::to_string(grid[0]) + "x" + std::to_string(grid[1]) + "x" +
                      std::to_string(grid[2]) + " out of range");
        if (block[d] < 1) throw bad("block dimensions must be >= 1");
        threads *= block[d];
    }
    if (threads > 1024) throw bad("block of " + std::to_string(threads) + " threads (at most 1024)");
    if (shmem < 0) throw bad("negative dynamic shared memory");
    if (sig.size() != args.size())
        throw bad("signature '" + sig + "' has " + std::to_string(sig.size()) + " letters for " +
                  std::to_string(args.size()) + " arguments");
    if (sig.size() > static_cast<size_t>(kMaxArgs)) throw bad("more than 32 kernel arguments");
    Slot slots[kMaxArgs];
    void* ptrs[kMaxArgs];
    for (size_t k = 0; k < sig.size(); ++k) {
        py::handle v = args[k];
        switch (sig[k]) {
        case 'p': slots[k].p = v.cast<std::uintptr_t>(); break;
        case 'i': {
            long long x = v.cast<long long>();
            if (x < INT32_MIN || x > INT32_MAX)
                throw bad("argument " + std::to_string(k) + " = " + std::to_string(x) + " does not fit int32");
            slots[k].i = static_cast<std::int32_t>(x);
            break;
        }
        case 'l': slots[k].l = v.cast<std::int64_t>(); break;
        case 'f': slots[k].f = v.cast<float>(); break;
        case 'd': slots[k].d = v.cast<double>(); break;
        default: throw bad(std::string("unknown signature letter '") + sig[k] + "'");
        }
        ptrs[k] = &slots[k];
    }
    const unsigned g[3] = {unsigned(grid[0]), unsigned(grid[1]), unsigned(grid[2])};
    const unsigned b[3] = {unsigned(block[0]), unsigned(block[1]), unsigned(block[2])};
    int code = pyconvnet::launch_kernel(func, g, b, ptrs, static_cast<size_t>(shmem), stream);
    if (code != 0) throw std::runtime_error(std::string(name) + ": kernel launch failed: " + cuda_error(code));
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
    m.doc() = "pyconvnet._cuda: the kernels/*.cu sources built by nvcc, launched through one generic "
              "launcher (kernel handle, grid, block, shared memory, stream, signature, arguments).";
    m.attr("cuda_architectures") = PYCONVNET_CUDA_ARCHITECTURES;
    m.def("kernels", []() {
              std::vector<std::string> names;
              for (int i = 0; i < pyconvnet::kernel_count(); ++i) names.emplace_back(pyconvnet::kernel_name(i));
              return names;
          },
          "Names of the registered kernels, e.g. ['neuron_fwd<float>', ...]:\n"
          "the explicit instantiations of kernels/*.cu, spelled as NVRTC name expressions.");
    m.def("kernel", &kernel_handle, py::arg("name"),
          "Handle (int) of the registered kernel ``name`` (e.g. 'neuron_fwd<float>').\n"
          "Raises ValueError when no such kernel is registered.");
    m.def("launch", &launch, py::arg("handle"), py::arg("grid"), py::arg("block"), py::arg("shmem"),
          py::arg("stream"), py::arg("sig"), py::arg("args"),
          "Launch kernel ``handle`` with grid and block (3 ints each), dynamic shared memory bytes and a\n"
          "stream (cudaStream_t as an int). ``sig`` has one letter per argument: p device pointer (int),\n"
          "i int32, l int64, f float32, d float64. Raises ValueError on bad arguments and RuntimeError\n"
          "when the launch fails.");
    m.def("set_max_dynamic_shared", [](int handle, int bytes) {
              int code = pyconvnet::set_max_dynamic_shared(func_of(handle), bytes);
              if (code != 0)
                  throw std::runtime_error(std::string(pyconvnet::kernel_name(handle)) +
                                           ": cannot allow " + std::to_string(bytes) +
                                           " bytes of dynamic shared memory: " + cuda_error(code));
          },
          py::arg("handle"), py::arg("bytes"),
          "Allow kernel ``handle`` up to ``bytes`` of dynamic shared memory (needed above 48 KiB).\n"
          "Raises RuntimeError with the CUDA error when the device refuses.");
    m.def("runtime_info", &runtime_info,
          "CUDA facts as a dict, never raising: runtime_version and driver_version (1000*major + 10*minor,\n"
          "0 if unknown), device_count (0 without a usable device) and error (the CUDA error of the\n"
          "device query, '' if none).");
}
