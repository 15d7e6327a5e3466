#pragma once
/// A model's per-layer table, as Keras' `model.summary()` gives it: each layer's output shape,
/// its trainable parameters and the floating-point operations it spends per example.
#include <string>
#include <vector>

#include "dagger/autodiff/step.h"

namespace dagger {

/// One row: the nodes one layer added (a scope such as "conv1"), or one unscoped op ("relu").
struct LayerSummary {
  std::string name;    ///< the layer's scope, or the op's name for an op outside any layer
  std::string ops;     ///< the ops it computes, in order and without repeats ("conv2d+add")
  Shape output;        ///< shape of its last value, batch dimension first
  int64_t parameters = 0;  ///< trainable elements it declares
  int64_t state = 0;       ///< non-trainable elements it declares (running statistics)
  double flops = 0;        ///< per example, counted as graph/cost.h counts them
};

struct ModelSummary {
  Shape input;  ///< one example's shape
  std::vector<LayerSummary> layers;
  int64_t parameters = 0, state = 0;
  double flops = 0;  ///< per example, inference mode
};

/// The inference-mode graph of `model` for one example of `input_shape` in `classes` classes,
/// cut into layers in declaration order.
ModelSummary summarize(const ModelFn& model, const Shape& input_shape, int64_t classes = 10);

/// The table as text: one line per layer, then the totals.
std::string format_summary(const ModelSummary& summary);

}  // namespace dagger
