#include "suite/profile.h"

#include <fmt/format.h>

#include "graph/error.h"

namespace dagger::suite {

const Budget& Profile::budget_for(const std::string& model) const {
  const bool convolutional = model.starts_with("cnn") || model.starts_with("rescnn");
  return convolutional ? conv : dense;
}

std::vector<std::string> profile_names() { return {"quick", "full"}; }

Profile profile(const std::string& name) {
  Profile p;
  p.name = name;
  if (name == "full") {
    // The study's protocol: 48,000 / 12,000 / 10,000 images, every run to its early stop.
    p.dense = {.max_epochs = 100};
    p.conv = {.max_epochs = 100};
    return p;
  }
  if (name == "quick") {
    // A first look in minutes. The CNN slice is small while convolutions run interpreted.
    p.dense = {.train = 6000, .val = 2000, .test = 2000, .max_epochs = 3, .fixed_epoch_cap = 10};
    // Measured on 2 shared cores with convolutions interpreted: cnn3 trains at ~28 images/s and
    // rescnn at ~6, so this slice only shows that the CNN experiments run end to end.
    p.conv = {.train = 100, .val = 50, .test = 100, .max_epochs = 1, .fixed_epoch_cap = 2};
    return p;
  }
  throw Error(fmt::format("unknown profile '{}' (valid: {})", name, fmt::join(profile_names(), ", ")));
}

}  // namespace dagger::suite
