"""Build script (Linux): metadata is in pyproject.toml; this builds pyconvnet._cuda through CMake.

The extension (bindings/ + kernels/, see CMakeLists.txt) is built when nvcc is found: $CUDACXX, then
PATH, then $CUDA_HOME/bin, $CUDA_PATH/bin, /usr/local/cuda/bin. Without nvcc, or with
PYCONVNET_SKIP_CUDA=1, a pure-Python package is installed (the CUDA ops then use CuPy RawModule) and
one line says why. With nvcc, a failed build fails the install. Environment:
  PYCONVNET_CUDA_ARCH  CMAKE_CUDA_ARCHITECTURES (default "80-real;90": SASS sm_80, sm_90 + PTX 90)
  CMAKE_ARGS           extra CMake arguments (space separated), applied last
  DEBUG=1              a Debug build
The kernels/*.cu sources are copied into the package (pyconvnet/_kernels/) of a regular install, so
the RawModule path works from a wheel; an editable install reads them from kernels/.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def find_nvcc():
    """Path of nvcc, or None."""
    if os.environ.get("CUDACXX"):
        return shutil.which(os.environ["CUDACXX"])
    found = shutil.which("nvcc")
    homes = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    for home in filter(None, homes):
        found = found or shutil.which(os.path.join(home, "bin", "nvcc"))
    return found


NVCC = find_nvcc()
if os.environ.get("PYCONVNET_SKIP_CUDA") == "1":
    SKIP = "PYCONVNET_SKIP_CUDA=1"
elif NVCC is None and os.environ.get("CUDACXX"):
    SKIP = f"CUDACXX={os.environ['CUDACXX']} is not an executable"
elif NVCC is None:
    SKIP = "nvcc not found on PATH, in $CUDA_HOME/bin, $CUDA_PATH/bin or /usr/local/cuda/bin"
else:
    SKIP = None


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        import pybind11

        extdir = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        build_temp = Path(self.build_temp) / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)
        # A cache from an earlier build may name tools of a deleted isolated build environment.
        (build_temp / "CMakeCache.txt").unlink(missing_ok=True)
        args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={extdir}{os.sep}",
            f"-DCMAKE_BUILD_TYPE={'Debug' if os.environ.get('DEBUG') == '1' else 'Release'}",
            f"-DCMAKE_CUDA_COMPILER={NVCC}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
        ]
        if os.environ.get("PYCONVNET_CUDA_ARCH"):
            args.append(f"-DCMAKE_CUDA_ARCHITECTURES={os.environ['PYCONVNET_CUDA_ARCH']}")
        if not os.environ.get("CMAKE_GENERATOR") and shutil.which("ninja"):
            args.append("-GNinja")
        args += os.environ.get("CMAKE_ARGS", "").split()
        print(f"pyconvnet: building the CUDA extension with {NVCC}", flush=True)
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_temp), *args], check=True)
        subprocess.run(["cmake", "--build", str(build_temp), "--parallel", str(os.cpu_count() or 1)],
                       check=True)


class BuildPy(build_py):
    """Also ship kernels/*.cu as pyconvnet/_kernels/ (regular installs; editable ones read kernels/)."""

    def run(self):
        super().run()
        if SKIP:
            print(f"pyconvnet: CUDA extension skipped ({SKIP}); CUDA ops will use CuPy RawModule",
                  flush=True)
        if not getattr(self, "editable_mode", False):
            dest = Path(self.build_lib) / "pyconvnet" / "_kernels"
            dest.mkdir(parents=True, exist_ok=True)
            for src in sorted((ROOT / "kernels").glob("*.cu")):
                self.copy_file(str(src), str(dest / src.name))


setup(
    ext_modules=[] if SKIP else [CMakeExtension("pyconvnet._cuda")],
    cmdclass={"build_ext": CMakeBuild, "build_py": BuildPy},
)
