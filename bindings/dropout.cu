// kernels/dropout.cu in the extension's kernel table (see registry.h).
#include "../kernels/dropout.cu"
#include "registry.h"

PYCONVNET_KERNEL(dropout_fwd<float>)
PYCONVNET_KERNEL(dropout_fwd<double>)
PYCONVNET_KERNEL(dropout_bwd<float>)
PYCONVNET_KERNEL(dropout_bwd<double>)
PYCONVNET_KERNEL(dropout_mask<bool>)
PYCONVNET_KERNEL(dropout_fwd_ds<float>)
PYCONVNET_KERNEL(dropout_fwd_ds<double>)
PYCONVNET_KERNEL(dropout_bwd_ds<float>)
PYCONVNET_KERNEL(dropout_bwd_ds<double>)
