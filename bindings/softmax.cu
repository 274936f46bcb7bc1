// kernels/softmax.cu in the extension's kernel table (see registry.h).
#include "../kernels/softmax.cu"
#include "registry.h"

PYCONVNET_KERNEL(softmax_fwd<float>)
PYCONVNET_KERNEL(softmax_fwd<double>)
PYCONVNET_KERNEL(softmax_bwd<float>)
PYCONVNET_KERNEL(softmax_bwd<double>)
PYCONVNET_KERNEL(logreg_cost<float>)
PYCONVNET_KERNEL(logreg_cost<double>)
PYCONVNET_KERNEL(logreg_bwd<float>)
PYCONVNET_KERNEL(logreg_bwd<double>)
PYCONVNET_KERNEL(softmax_logreg_bwd<float>)
PYCONVNET_KERNEL(softmax_logreg_bwd<double>)
PYCONVNET_KERNEL(sum2_cost<float>)
PYCONVNET_KERNEL(sum2_cost<double>)
PYCONVNET_KERNEL(sum2_bwd<float>)
PYCONVNET_KERNEL(sum2_bwd<double>)
