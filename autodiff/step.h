#pragma once
/// The graphs a training run executes: the forward pass for one batch size (evaluation, or
/// the loss for gradient checks) and the whole training step (forward, backward, update).
#include <functional>

#include "dagger/autodiff/optimizer.h"
#include "dagger/graph/dsl.h"

namespace dagger {

/// A model: adds its layers to a Model and maps the input batch to logits [batch, classes].
using ModelFn = std::function<Value(Model&, Value)>;

/// Forward graph for one batch size: input "x" [batch, input_shape...], output "logits"
/// [batch, classes] (the model reads `classes` from Model::classes()); in
/// train mode also input "labels" [batch] and output "loss" = softmax_xent(logits, labels);
/// in eval mode also output "probs" = softmax(logits). `label_smoothing` E > 0 makes the loss
/// (1-E) xent + E mean_k(-log softmax_k) (the op's "smoothing" attribute; absent when 0).
Graph build_forward(const ModelFn& model, int64_t batch, Mode mode, const Shape& input_shape = {1, 28, 28},
                    int64_t classes = 10, double label_smoothing = 0);

/// Training step: forward (train) + grad of "loss" wrt every parameter + optimizer updates.
/// Also outputs "loss" and "logits". Verified (verify(g)) before returning.
Graph build_training_step(const ModelFn& model, int64_t batch, const OptimizerConfig& opt,
                          const Shape& input_shape = {1, 28, 28}, int64_t classes = 10,
                          double label_smoothing = 0);

}  // namespace dagger
