#include "dagger/suite/profile.h"

#include <fmt/format.h>

#include "dagger/graph/error.h"

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
    // A first look in minutes, the whole quick suite under 10 minutes on 2 cores.
    p.dense = {.train = 6000, .val = 2000, .test = 2000, .max_epochs = 3, .fixed_epoch_cap = 10};
    // The CNNs see the MLPs' slice; they train at about 1,500 images/s (cnn3, 2 threads) and
    // rescnn at about 400, so they get two epochs, and E19 four.
    p.conv = {.train = 6000, .val = 2000, .test = 2000, .max_epochs = 2, .fixed_epoch_cap = 4};
    return p;
  }
  throw Error(fmt::format("unknown profile '{}' (valid: {})", name, fmt::join(profile_names(), ", ")));
}

}  // namespace dagger::suite
