// kernels/winograd.cu in the extension's kernel table (see registry.h).
#include "../kernels/winograd.cu"
#include "registry.h"

PYCONVNET_KERNEL(winograd_filter_transform<float, 4>)
PYCONVNET_KERNEL(winograd_filter_transform<float, 6>)
PYCONVNET_KERNEL(winograd_filter_transform<double, 4>)
PYCONVNET_KERNEL(winograd_filter_transform<double, 6>)
PYCONVNET_KERNEL(winograd_input_transform<float, 4>)
PYCONVNET_KERNEL(winograd_input_transform<float, 6>)
PYCONVNET_KERNEL(winograd_input_transform<double, 4>)
PYCONVNET_KERNEL(winograd_input_transform<double, 6>)
PYCONVNET_KERNEL(winograd_output_transform<float, 4>)
PYCONVNET_KERNEL(winograd_output_transform<float, 6>)
PYCONVNET_KERNEL(winograd_output_transform<double, 4>)
PYCONVNET_KERNEL(winograd_output_transform<double, 6>)
PYCONVNET_KERNEL(winograd_dy_transform<float, 4>)
PYCONVNET_KERNEL(winograd_dy_transform<float, 6>)
PYCONVNET_KERNEL(winograd_dy_transform<double, 4>)
PYCONVNET_KERNEL(winograd_dy_transform<double, 6>)
PYCONVNET_KERNEL(winograd_dw_transform<float, 4>)
PYCONVNET_KERNEL(winograd_dw_transform<float, 6>)
PYCONVNET_KERNEL(winograd_dw_transform<double, 4>)
PYCONVNET_KERNEL(winograd_dw_transform<double, 6>)
