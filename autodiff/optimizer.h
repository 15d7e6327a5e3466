#pragma once
/// Optimizers as graph transforms: the update rule becomes nodes of the training step, with
/// its moments as state and its writes as assigns, so a step is one graph run.
#include <string>
#include <vector>

#include "dagger/graph/graph.h"

namespace dagger {

struct OptimizerConfig {
  enum class Kind { sgd, momentum, adam, adamw };
  Kind kind = Kind::adam;
  /// The default value for the "lr" runtime input; the graph itself reads lr at run time.
  double lr = 1e-3;
  double momentum = 0.9;
  bool nesterov = false;  ///< momentum only: look ahead along the velocity
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-7;
  /// sgd, momentum, adam: L2, adds weight_decay * p to each gradient; adamw: decoupled decay,
  /// p -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * p) (Loshchilov & Hutter).
  double weight_decay = 0;
};

/// "sgd" | "momentum" | "adam" | "adamw"; throws dagger::Error listing the valid names otherwise.
OptimizerConfig::Kind optimizer_kind(const std::string& name);
std::string optimizer_name(OptimizerConfig::Kind kind);

/// Name of the scalar runtime input holding the learning rate.
inline constexpr const char* kLearningRateInput = "lr";
/// Name of the scalar state counting finished steps (starts at 0, +1 per step).
inline constexpr const char* kStepState = "step";

/// Appends, for each parameter p with gradient g, its optimizer state and the update nodes
/// ending in assign(p_new) -> p; also the "lr" input (if missing) and the "step" counter with
/// its increment. Slots are states named "<slot>.<param name>" ("adam.m.dense1.w",
/// "adam.v.dense1.w", "momentum.v.dense1.w"; adamw uses the adam slots), initialized to zeros. Nodes are in scope
/// "optimizer" at the parameter's source line.
void append_optimizer(Graph& g, const std::vector<NodeId>& params, const std::vector<NodeId>& grads,
                      const OptimizerConfig& cfg);

}  // namespace dagger
