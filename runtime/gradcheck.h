#pragma once
/// Gradient checking: compares the graphs grad() builds against central finite differences
/// of the forward graph, both run by the reference interpreter in double precision.
#include <cstdint>
#include <string>
#include <vector>

#include "dagger/autodiff/step.h"
#include "dagger/graph/graph.h"

namespace dagger {

/// The worst disagreement over the checked elements of one parameter.
struct GradcheckResult {
  std::string name;  ///< "<case>: <parameter>" for op checks, the parameter's name for model checks
  Shape shape;
  double max_rel_error = 0;
  double max_abs_error = 0;
  int64_t checked = 0;  ///< elements compared
};

struct GradcheckOptions {
  double step = 1e-6;       ///< central difference step h: (L(p + h) - L(p - h)) / 2h
  double tolerance = 1e-5;  ///< for callers: the largest acceptable max_rel_error
  /// Relative errors are |a - fd| / max(|a|, |fd|, floor). The floor actually used is the
  /// larger of this and noise / tolerance, where noise = 32 ulps of the largest value the
  /// forward graph computes, over 2h, bounds what rounding alone puts into a central
  /// difference (about 4e-9 for values of order 1 at h = 1e-6; observed: up to 2e-9):
  /// gradients that are zero in exact arithmetic (a bias followed by batch norm) would
  /// otherwise fail on pure noise. A real rule error is of the order of the gradient itself
  /// and still fails.
  double floor = 1e-8;
  int64_t max_elements = 64;  ///< larger tensors are checked on a seeded sample of this many elements
  uint64_t seed = 1;          ///< drives inputs, parameters, upstream tensors and samples
};

/// Checks d(loss)/d(each parameter) of a model in train mode (fixed dropout key): loss =
/// softmax_xent(logits, labels) + sum(logits * R) with a random, non-uniform upstream input
/// R ("upstream"), so the upstream of the logits is not uniform. Inputs are uniform in [0, 1),
/// labels random, parameters as initialize_state creates them.
std::vector<GradcheckResult> gradcheck_model(const ModelFn& model, int64_t batch, const GradcheckOptions& opts,
                                             const Shape& input_shape = {1, 28, 28});

/// Checks one op. Each operand is x * s with a random input x and a trainable s of the same
/// shape, so a wrong input gradient cannot hide; the op's own weights (filters, gamma, beta)
/// are trainable too; loss = sum(output * R) with random upstream R. Several cases per op
/// (broadcasting, transpose flags, strides, reduction axes) are derived from `shape`; see
/// gradcheck.cpp for how. Throws dagger::Error for an op without a VJP rule.
std::vector<GradcheckResult> gradcheck_op(Op op, const Shape& shape, const GradcheckOptions& opts);

/// Every op with a VJP rule, in table order.
std::vector<Op> gradcheckable_ops();

}  // namespace dagger
