#pragma once
/// Models as text: the "dagger-model" format a checkpoint carries, so that any model (one of the
/// zoo or one declared in a user's own C++) can be rebuilt from the checkpoint alone.
///
///   dagger-model 1
///   input [1,28,28]
///   mode train
///   %0 = input() {name="x", shape=[N,1,28,28]} : [N,1,28,28]
///   %1 = reshape(%0) {shape=[N,-1]} : [N,784]
///   %2 = parameter() {name="dense1.w", shape=[784,10], init="glorot_uniform", ...} : [784,10]  # dense1
///   ...
///   output logits = %6
///   mode eval
///   ...
///
/// Each mode's section is the model's forward graph from the input "x" to its logits, in the
/// print_text form (graph/parser.h) without source locations: the loss or softmax that
/// build_forward adds is left out, and N stands for the batch size wherever it appears (shapes
/// and shape attributes such as reshape's). Parameters keep their names, shapes and initializer
/// attributes, so a model rebuilt from its text trains to the same bits as the C++ that printed it.
#include <string>
#include <string_view>

#include "dagger/autodiff/step.h"

namespace dagger {

inline constexpr const char* kModelTextFormat = "dagger-model";
inline constexpr int kModelTextVersion = 1;

/// The text of `model` for inputs [batch, input_shape...] in `classes` classes. Throws Error when the model's graph
/// depends on the batch size other than through dimensions equal to it (for instance, a
/// different layer structure per batch size), which a single text cannot describe.
std::string print_model(const ModelFn& model, const Shape& input_shape = {1, 28, 28}, int64_t classes = 10);

/// A model read back from its text.
struct ParsedModel {
  ModelFn build;      ///< replays the text's nodes for the batch size and mode it is asked for
  Shape input_shape;  ///< one example's shape, without the batch axis
  int64_t classes = 0;  ///< the width of the logits
};

/// Parses and checks a model text (every section is built once at a probe batch size). Throws
/// Error "SOURCE:LINE: ..." for a bad version line, a missing or repeated section, and any error
/// of graph/parser.h; "SOURCE: ..." when the sections do not describe one model.
ParsedModel parse_model(std::string_view text, const std::string& source = "<model text>");

/// Where two texts first differ, as "line 7 is 'A' in NAME_A but 'B' in NAME_B"; "" when they are equal.
std::string first_difference(std::string_view a, std::string_view b, std::string_view name_a,
                             std::string_view name_b);

/// "" when two model texts describe the same model: the same input shape and, in each mode, the
/// same nodes computing the same things from the same named sources, in whatever order the nodes
/// are listed (an equivalent declaration, or a text printed by a build that orders a layer's nodes
/// otherwise). Scopes (the "# layer" comments) are not compared. Otherwise, where they differ: the
/// first line of either text whose node has no equal in the other, or, where the texts do not
/// parse, their first_difference.
std::string model_difference(std::string_view a, std::string_view b, std::string_view name_a,
                             std::string_view name_b);

}  // namespace dagger
