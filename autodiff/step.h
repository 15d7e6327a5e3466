#pragma once
/// The graphs a training run executes: the forward pass for one batch size (evaluation, or
/// the loss for gradient checks) and the whole training step (forward, backward, update).
#include <functional>
#include <string>

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

/// The forward graph in eval mode as an inference plan computes it: build_forward's, with each
/// 1x1 convolution over one channel written as the product it is (the same values; build_forward's
/// own graph is the model as declared, which summaries and saved models describe).
Graph build_inference(const ModelFn& model, int64_t batch, const Shape& input_shape = {1, 28, 28},
                      int64_t classes = 10);

/// Training step: forward (train) + grad of "loss" wrt every parameter + optimizer updates.
/// Also outputs "loss" and "logits". Verified (verify(g)) before returning.
Graph build_training_step(const ModelFn& model, int64_t batch, const OptimizerConfig& opt,
                          const Shape& input_shape = {1, 28, 28}, int64_t classes = 10, double label_smoothing = 0);

/// The name of a parameter's gradient in the split step: "grad:" + the parameter's name.
inline std::string gradient_name(const std::string& parameter) {
  std::string name = "grad:";
  return name += parameter;
}

/// The first half of a data-parallel step: forward (train) and the gradient of "loss" (the mean
/// over this batch) wrt every parameter, output as gradient_name(parameter name), with "loss" and
/// "logits"; batchnorm running statistics are assigned as in build_training_step, parameters
/// are not. `first_example` > 0 makes the batch a shard, examples [first_example, first_example
/// + batch) of a larger batch, whose dropout masks are that part of the larger batch's masks
/// (Model::shard_of_batch). Verified before returning.
Graph build_gradient_step(const ModelFn& model, int64_t batch, const Shape& input_shape = {1, 28, 28},
                          int64_t classes = 10, double label_smoothing = 0, int64_t first_example = 0);

/// The second half: the optimizer's update of every parameter of `model` from the gradients fed
/// as inputs gradient_name(parameter name), with the same nodes build_training_step appends (its
/// states, "lr" and the step counter). Verified before returning.
Graph build_update_step(const ModelFn& model, const OptimizerConfig& opt, const Shape& input_shape = {1, 28, 28},
                        int64_t classes = 10);

}  // namespace dagger
