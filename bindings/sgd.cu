// kernels/sgd.cu in the extension's kernel table (see registry.h).
#include "../kernels/sgd.cu"
#include "registry.h"

PYCONVNET_KERNEL(sgd_update<float>)
PYCONVNET_KERNEL(sgd_update<double>)
