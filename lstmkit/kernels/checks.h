// checks.h: the argument checks of the compiled entry points (the functions bindings.cpp exposes).
//
// What it is: what every entry point runs before it reads a byte, so that no call from Python,
// whatever it passes, reads or writes out of bounds. Each tensor: defined, dense (strided, not
// nested, no lazy negation bit), on the CPU, of the call's dtype (float32 or float64, the first
// tensor's; lengths int64), of exactly the shape the kernel indexes it with, contiguous, and held
// by its storage (a storage shrunk under a view, as FSDP does with untyped_storage().resize_(0),
// is refused). Lengths' values lie in [1, T]; a buffer the kernel writes must not overlap what it
// reads.
// A failed check raises RuntimeError (TORCH_CHECK), as torch.nn does for a shape mismatch; the
// message names the entry point, the argument, what was expected and what came, e.g.
// "lstm_forward: w_hh should have shape (4H, P) = (512, 128), got (512, 64)".
// Cost: a few branches per tensor, messages built only on failure, nothing allocated: measured
// +0.1 us on the raw streaming step (lstm_layer_forward, T = B = 1, H = 128: 11.3 us).
// What it is not: the public checks (lstmkit/modules/checks.py), which speak the modules' language.
#pragma once

#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>

#include <algorithm>
#include <initializer_list>
#include <sstream>
#include <string>

namespace lstmkit {

// "(3, 8)": a shape as the messages write it (only called on failure).
template <typename Sizes>
inline std::string shape_str(const Sizes& sizes) {
  std::ostringstream s;
  s << "(";
  int64_t k = 0;
  for (const int64_t n : sizes) s << (k++ ? ", " : "") << n;
  s << (k == 1 ? ",)" : ")");
  return s.str();
}

inline bool same_sizes(at::IntArrayRef got, std::initializer_list<int64_t> want) {
  return got.size() == want.size() && std::equal(want.begin(), want.end(), got.begin());
}

// One entry point's checks: its name opens every message; its dtype is its first tensor's.
struct Checks {
  const char* fn;
  const char* first;                   // the tensor whose dtype all others share
  at::ScalarType dtype;

  Checks(const char* fn_, const char* name, const at::Tensor& t) : fn(fn_), first(name) {
    dense(name, t);
    dtype = t.scalar_type();
    TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, fn, ": ", name,
                " should be float32 or float64, got ", dtype, " (convert with .float() or .double())");
  }

  // defined, strided and not nested (what sizes() and dim() may be asked of), and without a lazy
  // negation (torch._neg_view: the kernel reads the stored values as they are)
  void dense(const char* name, const at::Tensor& t) const {
    TORCH_CHECK(t.defined(), fn, ": ", name, " should be a tensor, got an undefined one");
    TORCH_CHECK(t.layout() == at::kStrided && !t.is_nested(), fn, ": ", name,
                " should be a dense (strided) tensor, got layout ", t.layout(), t.is_nested() ? " (nested)" : "");
    TORCH_CHECK(!t.is_neg() && !t.is_conj(), fn, ": ", name, " should hold its values, got a lazy negation or "
                "conjugation; pass ", name, ".resolve_neg()");
  }

  // t has `dims` dimensions (named e.g. "(T, B, 4H)"), so that its sizes can be read.
  void rank(const char* name, const at::Tensor& t, int64_t dims, const char* names) const {
    dense(name, t);
    TORCH_CHECK(t.dim() == dims, fn, ": ", name, " should have ", dims, " dimensions ", names, ", got shape ",
                shape_str(t.sizes()));
  }

  // Everything about one tensor; sizes named as in `names`, e.g. "(4H, P)" with {G, P}.
  void tensor(const char* name, const at::Tensor& t, const char* names, std::initializer_list<int64_t> sizes,
              at::ScalarType want = at::ScalarType::Undefined) const {
    dense(name, t);
    TORCH_CHECK(t.device().is_cpu(), fn, ": ", name, " should be on the CPU, got device ", t.device());
    if (want == at::ScalarType::Undefined) {
      TORCH_CHECK(t.scalar_type() == dtype, fn, ": ", name, " should have dtype ", dtype, " (as ", first, "), got ",
                  t.scalar_type(), "; convert with ", name, ".to(", first, ".dtype)");
    } else {
      TORCH_CHECK(t.scalar_type() == want, fn, ": ", name, " should have dtype ", want, ", got ", t.scalar_type());
    }
    TORCH_CHECK(same_sizes(t.sizes(), sizes), fn, ": ", name, " should have shape ", names, " = ", shape_str(sizes),
                ", got ", shape_str(t.sizes()));
    TORCH_CHECK(t.is_contiguous(), fn, ": ", name, " should be contiguous, got strides ", shape_str(t.strides()),
                "; pass ", name, ".contiguous()");
    const uint64_t need = (static_cast<uint64_t>(t.storage_offset()) + t.numel()) * t.element_size();
    TORCH_CHECK(t.numel() == 0 || t.storage().nbytes() >= need, fn, ": ", name, " needs ", need,
                " bytes of its storage (offset and shape), which holds ", t.storage().nbytes(),
                " (was the storage resized under it?)");
  }

  void optional(const char* name, const c10::optional<at::Tensor>& t, const char* names,
                std::initializer_list<int64_t> sizes) const {
    if (t.has_value()) tensor(name, *t, names, sizes);
  }

  // lengths (B,) int64, every value in [1, T]; the kernel's pointer, or nullptr without lengths.
  // (Values outside could not index out of bounds, but a sequence of length 0 would get a wrong
  // gradient: backward assumes step 0 runs. lstmkit.modules refuses them the same way.)
  const int64_t* lengths(const c10::optional<at::Tensor>& lengths, int64_t T, int64_t B) const {
    if (!lengths.has_value()) return nullptr;
    tensor("lengths", *lengths, "(B,)", {B}, at::kLong);
    const int64_t* len = lengths->data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b)
      TORCH_CHECK(len[b] >= 1 && len[b] <= T, fn, ": lengths should lie in [1, T] = [1, ", T, "], got lengths[", b,
                  "] = ", len[b]);
    return len;
  }

  // The sizes an entry point derives: T >= 1 (torch.nn: "Expected sequence length to be larger
  // than 0"), and n = gates * H with H >= 1 (sym names it, e.g. "4H").
  void steps(const char* name, int64_t T) const {
    TORCH_CHECK(T >= 1, fn, ": ", name, " should have at least one step, T >= 1, got T = ", T);
  }
  void hidden(const char* name, const char* dim, int64_t n, int64_t gates, const char* sym) const {
    TORCH_CHECK(n >= gates && n % gates == 0, fn, ": ", name, "'s ", dim, " should be ", sym, " with H >= 1, got ", n);
  }

  // An output the kernel writes (out) must share no memory with an input it reads.
  void apart(const char* out_name, const at::Tensor& out, const char* name, const at::Tensor& t) const {
    const auto s = at::get_overlap_status(out, t);
    TORCH_CHECK(s == at::MemOverlapStatus::No, fn, ": ", out_name,
                " (written) should not share memory with ", name, " (read)");
  }
  void apart(const char* out_name, const at::Tensor& out, const char* name, const c10::optional<at::Tensor>& t) const {
    if (t.has_value()) apart(out_name, out, name, *t);
  }
};

}  // namespace lstmkit
