// kernels/augment.cu in the extension's kernel table (see registry.h).
#include "../kernels/augment.cu"
#include "registry.h"

PYCONVNET_KERNEL(augment_fwd<float>)
PYCONVNET_KERNEL(augment_fwd<double>)
