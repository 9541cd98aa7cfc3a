// Switches of libtorch that tch 0.24 does not reach: autocast with a chosen device
// type and dtype (tch's `autocast` only enables CUDA autocast with its default, fp16),
// and the deterministic-algorithms mode of `torch.use_deterministic_algorithms`.
// Compiled with the c10d shim by build.rs, against the same libtorch headers.

#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/version.h>

#include <cstring>
#include <exception>
#include <string>

namespace {
void set_error(char* err, size_t len, const std::string& msg) {
  if (err != nullptr && len > 0) {
    std::strncpy(err, msg.c_str(), len - 1);
    err[len - 1] = '\0';
  }
}

at::DeviceType device_type(int cuda) { return cuda ? at::kCUDA : at::kCPU; }
}  // namespace

extern "C" {

// Enters an autocast region on the CPU (cuda = 0) or CUDA (cuda = 1) in bfloat16
// (bf16 = 1) or float16. Returns 0, or -1 with the message in err.
int alexnet_autocast_enter(int cuda, int bf16, char* err, size_t len) {
  try {
    at::DeviceType d = device_type(cuda);
    at::autocast::set_autocast_dtype(d, bf16 ? at::kBFloat16 : at::kHalf);
    at::autocast::set_autocast_enabled(d, true);
    at::autocast::increment_nesting();
    return 0;
  } catch (const std::exception& e) {
    set_error(err, len, e.what());
    return -1;
  }
}

// Leaves the region entered last; `was_enabled` restores the state found on entry.
int alexnet_autocast_exit(int cuda, int was_enabled, char* err, size_t len) {
  try {
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(device_type(cuda), was_enabled != 0);
    return 0;
  } catch (const std::exception& e) {
    set_error(err, len, e.what());
    return -1;
  }
}

int alexnet_autocast_is_enabled(int cuda) { return at::autocast::is_autocast_enabled(device_type(cuda)) ? 1 : 0; }

// torch.use_deterministic_algorithms(on, warn_only=True) plus cuDNN's deterministic
// mode with its autotuner off: operations with a deterministic kernel use it; the few
// without one (on CUDA) warn once instead of failing the run.
int alexnet_set_deterministic(int on, char* err, size_t len) {
  try {
    auto& ctx = at::globalContext();
    ctx.setDeterministicAlgorithms(on != 0, /*warn_only=*/true);
    ctx.setDeterministicCuDNN(on != 0);
    if (on) {
      ctx.setBenchmarkCuDNN(false);
    }
    return 0;
  } catch (const std::exception& e) {
    set_error(err, len, e.what());
    return -1;
  }
}

int alexnet_deterministic_algorithms() { return at::globalContext().deterministicAlgorithms() ? 1 : 0; }

// The libtorch these headers are (TORCH_VERSION, "2.11.0"): the one the binary loads,
// as build.rs compiles against torch-sys' libtorch.
const char* alexnet_torch_version() { return TORCH_VERSION; }

// The CUDA runtime version of libtorch's CUDA build (13000 for 13.0), 0 without CUDA.
long alexnet_cuda_runtime_version() {
  try {
    const auto& hooks = at::detail::getCUDAHooks();
    return hooks.hasCUDART() ? hooks.versionCUDART() : 0;
  } catch (...) {
    return 0;
  }
}

// The cuDNN version loaded (91900 for 9.19.0; the one compiled against when the
// library cannot be asked), 0 without cuDNN.
long alexnet_cudnn_version() {
  try {
    const auto& hooks = at::detail::getCUDAHooks();
    if (!hooks.hasCuDNN()) {
      return 0;
    }
    try {
      return hooks.versionRuntimeCuDNN();
    } catch (...) {
      return hooks.versionCuDNN();
    }
  } catch (...) {
    return 0;
  }
}
}
