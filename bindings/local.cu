// kernels/local.cu in the extension's kernel table (see registry.h).
#include "../kernels/local.cu"
#include "registry.h"

PYCONVNET_KERNEL(local_fwd<float>)
PYCONVNET_KERNEL(local_fwd<double>)
PYCONVNET_KERNEL(local_bwd_data<float>)
PYCONVNET_KERNEL(local_bwd_data<double>)
PYCONVNET_KERNEL(local_bwd_filter<float>)
PYCONVNET_KERNEL(local_bwd_filter<double>)
