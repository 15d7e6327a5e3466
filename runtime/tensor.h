#pragma once
/// The runtime's dense tensor: a row-major f32 (or f64 for gradient checks) xtensor array.
#include <xtensor/xarray.hpp>

namespace dagger {

using Tensor = xt::xarray<float>;
using TensorD = xt::xarray<double>;

}  // namespace dagger
