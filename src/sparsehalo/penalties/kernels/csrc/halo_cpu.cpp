// HALO's value and both gradients in one pass over memory (CPU, float32, contiguous tensors).
//
//   P = xi * sum_i |w_i| / (lambda_i^2 + eps2) + psi * R(lambda)
//   dP/dw_i      = xi * sign(w_i) / (lambda_i^2 + eps2)
//   dP/dlambda_i = -2 xi |w_i| lambda_i / (lambda_i^2 + eps2)^2 + psi * R'(S) * sign(lambda_i)
//
// with S = sum |lambda| and R(S) = S (hyper 0, "l1"), |S - budget| (1, "budget") or (S - budget)^2
// (2, "budget_sq"): the forms and codes of sparsehalo/penalties/hyper.py (HYPER), which is their
// definition; the tests check this pass against it.  Built on first use by
// sparsehalo/penalties/kernels/native.py; also registered as the operator sparsehalo::halo (at the end).
// The loop is written so that the compiler vectorizes it (blocks of float partial sums, folded into
// double totals).
#include <torch/extension.h>

#include <cmath>
#include <vector>

namespace {

constexpr int64_t kBlock = 2048;

inline float sgn(float x) { return static_cast<float>(x > 0.f) - static_cast<float>(x < 0.f); }

double abs_sum(const float* p, int64_t n) {
  double total = 0.0;
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t end = std::min(n, start + kBlock);
    float acc = 0.f;
#pragma omp simd reduction(+ : acc)
    for (int64_t j = start; j < end; ++j) acc += std::fabs(p[j]);
    total += acc;
  }
  return total;
}

// The hot loop, compiled for AVX-512, AVX2 and baseline x86-64; the loader picks one at run time.
#if defined(__x86_64__) && defined(__GNUC__)
#define SPARSEHALO_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SPARSEHALO_CLONES
#endif

SPARSEHALO_CLONES
void halo_pass(const float* __restrict__ w, const float* __restrict__ lam, float* __restrict__ pgw,
               float* __restrict__ pgl, int64_t n, float xf, float ef, float m2xi, float pdr, double& weighted,
               double& l1) {
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t end = std::min(n, start + kBlock);
    float acc_w = 0.f, acc_l = 0.f;
#pragma omp simd reduction(+ : acc_w, acc_l)
    for (int64_t j = start; j < end; ++j) {
      const float x = w[j], l = lam[j];
      const float inv = 1.f / (l * l + ef);
      const float a = std::fabs(x);
      pgw[j] = xf * sgn(x) * inv;
      pgl[j] = m2xi * a * l * inv * inv + pdr * sgn(l);
      acc_w += a * inv;
      acc_l += std::fabs(l);
    }
    weighted += acc_w;
    l1 += acc_l;
  }
}

void check(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(),
              "halo_cpu: ", what, " must be a contiguous float32 CPU tensor");
}

}  // namespace

std::vector<at::Tensor> halo_forward(const std::vector<at::Tensor>& ws, const std::vector<at::Tensor>& lams, double xi,
                                     double psi, double eps2, int64_t hyper, double budget,
                                     const std::vector<at::Tensor>& gw_out) {
  TORCH_CHECK(ws.size() == lams.size(), "halo_cpu: one scale tensor per weight tensor");
  TORCH_CHECK(gw_out.empty() || gw_out.size() == ws.size(), "halo_cpu: one output buffer per weight tensor");
  for (size_t i = 0; i < ws.size(); ++i) {
    check(ws[i], "weights");
    check(lams[i], "scales");
    TORCH_CHECK(ws[i].numel() == lams[i].numel(), "halo_cpu: weights and scales differ in size");
    if (!gw_out.empty()) {
      check(gw_out[i], "output buffers");
      TORCH_CHECK(gw_out[i].numel() == ws[i].numel(), "halo_cpu: output buffer of the wrong size");
    }
  }
  double s_total = 0.0, dr = 1.0;
  if (hyper != 0) {  // the budget forms need S before any gradient
    for (const auto& lam : lams) s_total += abs_sum(lam.data_ptr<float>(), lam.numel());
    dr = hyper == 1 ? static_cast<double>((s_total > budget) - (s_total < budget)) : 2.0 * (s_total - budget);
  }
  const float xf = static_cast<float>(xi), ef = static_cast<float>(eps2);
  const float m2xi = -2.f * xf, pdr = static_cast<float>(psi * dr);
  std::vector<at::Tensor> out;
  out.reserve(1 + 2 * ws.size());
  out.emplace_back();  // the value, filled in below
  std::vector<at::Tensor> gls;
  double weighted = 0.0, l1 = 0.0;
  for (size_t i = 0; i < ws.size(); ++i) {
    // The weights' gradients may go to caller-owned buffers (reused every step: no allocation).
    at::Tensor gw = gw_out.empty() ? at::empty_like(ws[i]) : gw_out[i];
    at::Tensor gl = at::empty_like(lams[i]);
    halo_pass(ws[i].data_ptr<float>(), lams[i].data_ptr<float>(), gw.data_ptr<float>(), gl.data_ptr<float>(),
              ws[i].numel(), xf, ef, m2xi, pdr, weighted, l1);
    out.push_back(gw);
    gls.push_back(gl);
  }
  double r = l1;
  if (hyper == 1) r = std::fabs(s_total - budget);
  if (hyper == 2) r = (s_total - budget) * (s_total - budget);
  out[0] = at::scalar_tensor(xi * weighted + psi * r, at::kFloat);
  for (auto& gl : gls) out.push_back(gl);
  return out;
}

// The same pass as an autograd function, entirely in C++ (no Python in the forward or the backward):
// the forward keeps the gradients it computed and the backward hands them over, scaled by the incoming
// gradient unless that is exactly 1.  A second backward through the same graph recomputes them.
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct HaloFunction : public torch::autograd::Function<HaloFunction> {
  static at::Tensor forward(AutogradContext* ctx, at::TensorList ws, at::TensorList lams, double xi, double psi,
                            double eps2, int64_t hyper, double budget) {
    std::vector<at::Tensor> wv(ws.begin(), ws.end()), lv(lams.begin(), lams.end());
    auto out = halo_forward(wv, lv, xi, psi, eps2, hyper, budget, {});
    std::vector<at::Tensor> all(wv);
    all.insert(all.end(), lv.begin(), lv.end());
    ctx->save_for_backward(all);
    ctx->saved_data["grads"] = c10::List<at::Tensor>(std::vector<at::Tensor>(out.begin() + 1, out.end()));
    ctx->saved_data["consts"] = c10::List<double>({xi, psi, eps2, static_cast<double>(hyper), budget});
    return out[0];
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    std::vector<at::Tensor> grads;
    auto it = ctx->saved_data.find("grads");
    if (it != ctx->saved_data.end()) {
      for (const at::Tensor& g : it->second.toTensorList()) grads.push_back(g);
      ctx->saved_data.erase("grads");  // drop our references: autograd may then take the tensors over
    } else {                           // a second backward through the same graph
      auto saved = ctx->get_saved_variables();
      const size_t n = saved.size() / 2;
      std::vector<at::Tensor> wv(saved.begin(), saved.begin() + n), lv(saved.begin() + n, saved.end());
      auto c = ctx->saved_data["consts"].toDoubleList();
      auto out = halo_forward(wv, lv, c[0], c[1], c[2], static_cast<int64_t>(c[3]), c[4], {});
      grads.assign(out.begin() + 1, out.end());
    }
    const at::Tensor& g = grad_outputs[0];
    if (g.defined() && g.item<double>() != 1.0) {
      for (auto& t : grads) t.mul_(g);
    }
    variable_list result(grads.begin(), grads.end());
    for (int i = 0; i < 5; ++i) result.emplace_back();  // xi, psi, eps2, hyper, budget
    return result;
  }
};

at::Tensor halo_apply(const std::vector<at::Tensor>& ws, const std::vector<at::Tensor>& lams, double xi, double psi,
                      double eps2, int64_t hyper, double budget) {
  return HaloFunction::apply(at::TensorList(ws), at::TensorList(lams), xi, psi, eps2, hyper, budget);
}

}  // namespace

// The pass as the PyTorch operator sparsehalo::halo(ws, lams, xi, psi, eps2, hyper, budget) -> [P, dP/dw...,
// dP/dlambda...], so that torch.compile can put it in a graph: native.py registers its fake (shape-only)
// implementation and its autograd formula (grad_in = grad_P * the returned gradients) with torch.library.
std::vector<at::Tensor> halo_op(at::TensorList ws, at::TensorList lams, double xi, double psi, double eps2,
                                int64_t hyper, double budget) {
  return halo_forward(ws.vec(), lams.vec(), xi, psi, eps2, hyper, budget, {});
}

TORCH_LIBRARY(sparsehalo, m) {
  m.def("halo(Tensor[] ws, Tensor[] lams, float xi, float psi, float eps2, int hyper, float budget) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(sparsehalo, CPU, m) { m.impl("halo", &halo_op); }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("halo_forward", &halo_forward, "HALO value and gradients (CPU), no autograd");
  m.def("halo_apply", &halo_apply, "HALO value with its gradients attached for autograd (CPU)");
}
