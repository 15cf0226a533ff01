// watchers.cpp: whether anything of this thread watches or reroutes the dispatcher now, in one call
// (a cell called step by step asks on every step, a short module call on every call).
//
// What it is: the C++ states behind the Python checks of lstmkit/functional/ops.py's plain_eager and
// use_composite and behind torch.is_autocast_enabled("cpu"), read together: the JIT tracer, a
// torch-function mode, a torch-dispatch mode (any on the stack, or a fake or proxy mode), CPU
// autocast. The six Python calls cost ~3 us with what they slowed in the kernel call after them
// (measured, 2026-12-02); this one ~1 us.
// What it is not: the flags that live in Python (torch.compile, export, the profiler, forward-mode
// AD's level) and torch.func's interpreter stack (its header is not among those PyTorch installs),
// which ops.py reads itself.
#include <ATen/PythonTorchFunctionTLS.h>
#include <ATen/autocast_mode.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/extension.h>

#include "entries.h"

namespace lstmkit {

bool dispatch_unwatched() {
  using c10::impl::TorchDispatchModeKey;
  using c10::impl::TorchDispatchModeTLS;
  return !torch::jit::tracer::isTracing() && !at::impl::torch_function_mode_enabled() &&
         TorchDispatchModeTLS::stack_len() == 0 && !TorchDispatchModeTLS::get_mode(TorchDispatchModeKey::FAKE) &&
         !TorchDispatchModeTLS::get_mode(TorchDispatchModeKey::PROXY) &&
         !at::autocast::is_autocast_enabled(at::kCPU);
}

}  // namespace lstmkit
