// tuning.cpp: tuning.h's limits for Python (lstmkit/kernels/tuning.py measures and sets them).
#include <torch/extension.h>

#include <map>
#include <string>

#include "entries.h"
#include "tuning.h"

namespace lstmkit {

static Limit limit_named(const std::string& name) {
  for (int i = 0; i < kLimits; ++i)
    if (name == kLimitNames[i]) return static_cast<Limit>(i);
  std::string known;
  for (const char* n : kLimitNames) known += (known.empty() ? "" : ", ") + std::string(n);
  TORCH_CHECK_VALUE(false, "tuning: the limit should be one of ", known, "; got '", name, "'");
}

static void check_threads(int64_t threads) {
  TORCH_CHECK_VALUE(threads >= 1, "tuning: threads should be >= 1, got ", threads);
}

std::map<std::string, int64_t> get_tuning(int64_t threads) {
  check_threads(threads);
  std::map<std::string, int64_t> out;
  for (int i = 0; i < kLimits; ++i) out[kLimitNames[i]] = limit(static_cast<Limit>(i), static_cast<int>(threads));
  return out;
}

void set_tuning(int64_t threads, const std::string& name, int64_t value) {
  check_threads(threads);
  const Limit which = limit_named(name);
  TORCH_CHECK_VALUE(value >= 0, "tuning: ", name, " should be >= 0, got ", value);
  tuning_table().v[tuning_row(static_cast<int>(threads))][which].store(value, std::memory_order_relaxed);
}

std::map<std::string, int64_t> default_tuning() {
  std::map<std::string, int64_t> out;
  for (int i = 0; i < kLimits; ++i) out[kLimitNames[i]] = kLimitDefaults[i];
  return out;
}

}  // namespace lstmkit
