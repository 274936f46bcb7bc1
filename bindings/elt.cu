// kernels/elt.cu in the extension's kernel table (see registry.h).
#include "../kernels/elt.cu"
#include "registry.h"

PYCONVNET_KERNEL(eltsum_fwd<float>)
PYCONVNET_KERNEL(eltsum_fwd<double>)
PYCONVNET_KERNEL(eltsum_bwd<float>)
PYCONVNET_KERNEL(eltsum_bwd<double>)
PYCONVNET_KERNEL(eltmax_fwd<float>)
PYCONVNET_KERNEL(eltmax_fwd<double>)
PYCONVNET_KERNEL(eltmax_bwd<float>)
PYCONVNET_KERNEL(eltmax_bwd<double>)
