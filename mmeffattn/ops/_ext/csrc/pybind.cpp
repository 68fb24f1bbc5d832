// The Python bindings of every CPU kernel of mmeffattn, in one module
// (mmeffattn.ops._ext builds it). Each kernel's source file defines its entry
// points; this file only declares and binds them.
#include <torch/extension.h>

#include <optional>
#include <vector>

// local_attention_cpu.cpp: SASA's 2-D local attention
at::Tensor local_attention_forward_cpu(at::Tensor q, at::Tensor k,
                                       at::Tensor v, at::Tensor rel_row,
                                       at::Tensor rel_col, int64_t kernel_size,
                                       bool mask, double scale);
std::vector<at::Tensor> local_attention_backward_cpu(
    at::Tensor gout, at::Tensor q, at::Tensor k, at::Tensor v,
    at::Tensor rel_row, at::Tensor rel_col, int64_t kernel_size, bool mask,
    double scale, at::Tensor gq, at::Tensor gk, at::Tensor gv);

// attention_stem_cpu.cpp: SASA's attention stem with BatchNorm, ReLU, pool
std::vector<at::Tensor> attention_stem_forward(at::Tensor x, at::Tensor wq,
                                               at::Tensor wk, at::Tensor wvt,
                                               at::Tensor rel_row,
                                               at::Tensor rel_col,
                                               int64_t heads, int64_t block);
std::vector<at::Tensor> attention_stem_backward(
    at::Tensor x, at::Tensor wq, at::Tensor wk, at::Tensor wvt,
    at::Tensor rel_row, at::Tensor rel_col, at::Tensor gz, at::Tensor ysel,
    at::Tensor alpha, at::Tensor beta, at::Tensor gamma, int64_t heads,
    int64_t block, bool need_dx);

// sinkhorn_cpu.cpp: SeT's Sinkhorn scaling iterations
std::vector<at::Tensor> sinkhorn_iterates_cpu(at::Tensor kern, at::Tensor a,
                                              at::Tensor b, int64_t n_updates,
                                              double tiny);
std::vector<at::Tensor> sinkhorn_iterates_backward_cpu(
    at::Tensor kern, at::Tensor U, at::Tensor S, at::Tensor V, at::Tensor D,
    at::Tensor grad_u, at::Tensor grad_v, double tiny);

// set_nystrom_cpu.cpp: SeT attention with Nystrom features
std::vector<at::Tensor> set_nystrom_forward_cpu(
    at::Tensor qkv, at::Tensor z, at::Tensor w, std::optional<at::Tensor> pos,
    std::optional<at::Tensor> pos_scale, std::optional<at::Tensor> mask,
    double sigma, int64_t num_iters);
std::vector<at::Tensor> set_nystrom_backward_cpu(
    at::Tensor grad_out, at::Tensor qkv, at::Tensor z, at::Tensor w,
    std::optional<at::Tensor> pos, std::optional<at::Tensor> pos_scale,
    std::optional<at::Tensor> mask, double sigma, at::Tensor gather,
    std::vector<at::Tensor> trace, bool need_pos, bool need_scale);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("local_attention_forward", &local_attention_forward_cpu,
        "SASA local attention forward (CPU)");
  m.def("local_attention_backward", &local_attention_backward_cpu,
        "SASA local attention backward (CPU)");
  m.def("attention_stem_forward", &attention_stem_forward,
        "attention stem: batch statistics and patch extremes (CPU)");
  m.def("attention_stem_backward", &attention_stem_backward,
        "attention stem: backward through BN, ReLU and max pool (CPU)");
  m.def("sinkhorn_iterates", &sinkhorn_iterates_cpu,
        "Sinkhorn scaling iterations, every iterate kept (CPU)");
  m.def("sinkhorn_iterates_backward", &sinkhorn_iterates_backward_cpu,
        "reverse pass of the Sinkhorn iterations: rank-1 terms (CPU)");
  m.def("set_nystrom_forward", &set_nystrom_forward_cpu,
        "SeT attention with Nystrom features, per (batch, head) (CPU)");
  m.def("set_nystrom_backward", &set_nystrom_backward_cpu,
        "SeT attention with Nystrom features: backward (CPU)");
}
