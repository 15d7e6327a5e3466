#pragma once
/// The model zoo: every architecture of the Fashion-MNIST study as a function of its
/// hyperparameters, plus the named configurations the CLI and the suite refer to. Every
/// family takes its input shape from the input and its class count from Model::classes().
#include <string>
#include <vector>

#include "dagger/autodiff/step.h"
#include "dagger/graph/dsl.h"

namespace dagger::zoo {

/// Flatten -> Dense(classes).
ModelFn shallow();
/// Dense(units) -> act -> Dropout(p) -> Dense(classes).
ModelFn mlp1(int64_t units, Act act, float p);
/// Dense(h1) -> [BatchNorm] -> ReLU -> Dropout(p1) -> Dense(h2) -> [BatchNorm] -> ReLU -> Dropout(p2) ->
/// Dense(classes).
ModelFn mlp2(int64_t h1, int64_t h2, float p1, float p2, bool bn);
/// `blocks` x [Conv3x3(32*2^i) -> [BatchNorm] -> ReLU -> MaxPool2 -> Dropout(q)] -> Flatten -> Dense(h) -> ReLU ->
/// Dropout(p) -> Dense(classes). Throws Error when the images are smaller than 2^blocks on a side.
ModelFn cnn(int blocks, bool bn, float p, float q = 0, int64_t h = 128);
/// Three stages of two 3x3 convolutions with batch norm, joined by a skip connection (a 1x1
/// projection where the channel count changes) when `residual`; filters 32/64/128; cnn3's head.
/// Throws Error when the images are smaller than 8x8.
ModelFn rescnn(bool residual, float q = 0.25f, int64_t h = 256, float p = 0.5f);

/// A pre-activation residual network (He et al.'s v2 blocks, widened as Zagoruyko and
/// Komodakis's WRN): a 3x3 convolution to `width` channels, then three stages of `blocks`
/// blocks at widths width, 2 width and 4 width on the full, half and quarter image (2x2 max
/// pooling between stages), each block BatchNorm -> ReLU -> Conv3x3 -> BatchNorm -> ReLU ->
/// Conv3x3 plus the block's input (projected by a 1x1 convolution where the width changes);
/// then BatchNorm -> ReLU -> global average pooling -> Dropout(p) -> Dense(classes).
/// Throws Error when the images are smaller than 4x4.
ModelFn resnet(int blocks, int64_t width, float p = 0);

struct Entry {
  std::string name;
  std::string description;
  ModelFn build;
};

/// The named models, in the order `dagger models` lists them.
const std::vector<Entry>& entries();

/// Resolves a model by name ("mlp512") or by call syntax ("cnn(3,bn,0.5,0.25,256)",
/// "mlp1(128,tanh,0)", "mlp2(1024,512,0.2,0.4,bn)", "rescnn(plain)"). Throws dagger::Error
/// listing the valid names when nothing matches.
Entry find(const std::string& spec);

/// The call a spec stands for, every argument given and spelled one way, so that two specs of
/// the same model compare equal: "rescnn", "rescnn(residual)" and "rescnn(1,0.250,256)" are all
/// "rescnn(residual,0.25,256)". Throws like find() for an unknown spec.
std::string canonical_call(const std::string& spec);

/// Trainable parameter count of a model for images of `input_shape` in `classes` classes.
int64_t parameter_count(const ModelFn& model, const Shape& input_shape = {1, 28, 28}, int64_t classes = 10);

}  // namespace dagger::zoo
