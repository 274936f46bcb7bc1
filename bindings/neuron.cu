// kernels/neuron.cu in the extension's kernel table (see registry.h).
#include "../kernels/neuron.cu"
#include "registry.h"

PYCONVNET_KERNEL(neuron_fwd<float>)
PYCONVNET_KERNEL(neuron_fwd<double>)
PYCONVNET_KERNEL(neuron_bwd<float>)
PYCONVNET_KERNEL(neuron_bwd<double>)
