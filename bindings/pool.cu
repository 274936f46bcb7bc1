// kernels/pool.cu in the extension's kernel table (see registry.h).
#include "../kernels/pool.cu"
#include "registry.h"

PYCONVNET_KERNEL(pool_fwd<float>)
PYCONVNET_KERNEL(pool_fwd<double>)
PYCONVNET_KERNEL(pool_bwd<float>)
PYCONVNET_KERNEL(pool_bwd<double>)
