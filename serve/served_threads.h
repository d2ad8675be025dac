// Served's threads, for its two source files (served.cpp, served_metrics.cpp).
#pragma once

#include <memory>

#include "rewind/history/retention.h"
#include "rewind/serve/served.h"
#include "rewind/ship/shipper.h"
#include "rewind/volume/control.h"

namespace rwd {

// What runs beside the live volume once it is started, each optional.
struct Served::Threads {
  std::unique_ptr<Shipper> shipper;
  std::unique_ptr<Retention> retention;
  std::unique_ptr<ControlServer> control;
};

}  // namespace rwd
