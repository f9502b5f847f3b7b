// The one interface every attention mechanism implements: what it is (name, paper, family), what
// it takes (parameters, input tensors), what it produces (output tensors), what it costs (an exact
// analytic model), and two forwards: a plain reference and a fast, BLAS-backed path.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "kittention/params.hpp"
#include "kittention/tensor.hpp"
#include "kittention/workspace.hpp"

namespace kt {

struct PaperInfo {
  std::string title;
  std::string authors;
  int year = 0;
  std::string arxiv;  // e.g. "1706.03762"
  std::string url() const { return arxiv.empty() ? "" : "https://arxiv.org/abs/" + arxiv; }
};

struct TensorSpec {
  std::string name;
  Shape shape;
  std::string description;  // what it is, with its layout, e.g. "queries [B,H,L,d]"
};

enum class Path { Reference, Fast };
const char* path_name(Path p);  // "reference" | "fast"

// The analytic model of one forward pass at one configuration (all slices, all heads).
struct CostModel {
  double flops = 0;            // matmul FLOPs the algorithm needs, multiply-add = 2 (pairs visited)
  double issued_flops = 0;     // matmul FLOPs the fast path issues to BLAS (tile granularity)
  double elementwise = 0;      // adds, multiplies, compares outside the contractions
  double transcendentals = 0;  // exp, log, sqrt, ... evaluations
  double workspace_bytes = 0;  // scratch of the path (excludes inputs, outputs and KV state)
  double io_bytes = 0;         // inputs + outputs
  double kv_bytes_per_token = 0;  // KV cache (or recurrent state growth) per token per layer
  std::string time_complexity;    // big-O, e.g. "O(B·H·L²·d)"
  std::string space_complexity;   // big-O of the workspace, e.g. "O(T·Br·Bc)"
  std::vector<std::pair<std::string, double>>
      flops_parts;   // e.g. {"projections", ..}, {"core", ..}
  std::string form;  // which algorithmic form the flops describe, e.g. "tiled online softmax"
};

class Mechanism {
 public:
  virtual ~Mechanism() = default;

  virtual std::string name() const = 0;
  virtual std::vector<std::string> aliases() const { return {}; }
  virtual std::string family() const = 0;   // "exact", "sparse", "latent", "linear", ...
  virtual std::string summary() const = 0;  // one line for `list`
  virtual PaperInfo paper() const = 0;

  virtual std::vector<ParamSpec> params() const = 0;
  // Fills derived defaults (kv_heads, scale, ...) and checks cross-field constraints (InputError).
  virtual void resolve(Params& p) const = 0;

  virtual std::vector<TensorSpec> inputs(const Params& p) const = 0;
  virtual std::vector<TensorSpec> outputs(const Params& p) const = 0;
  // Deterministic inputs from p.seed: every input tensor, weights and noise included. The default
  // fills each input with N(0, 1) from a stream keyed by (seed, tensor name); weights should be
  // scaled by the mechanism (e.g. 1/sqrt(fan_in)).
  virtual void generate_inputs(const Params& p, TensorMap& in) const;

  virtual CostModel cost(const Params& p, Path path) const = 0;

  // Forwards. `out` holds zero-filled tensors of outputs(p)'s shapes; scratch comes from `ws`.
  virtual void reference(const Params& p, const TensorMap& in, TensorMap& out,
                         Workspace& ws) const = 0;
  virtual void fast(const Params& p, const TensorMap& in, TensorMap& out, Workspace& ws) const = 0;

  // Budget for max|fast - reference| / max|reference| over every output, with its reason.
  virtual double tolerance(const Params& p) const;
  // A cheaper configuration on which to check the fast path when p itself is too expensive for
  // the reference (default: seq_len reduced to at most 1024, everything else kept).
  virtual Params check_params(const Params& p) const;
};

// Runs one forward of `path`: allocates the outputs, then calls reference() or fast().
TensorMap run_forward(const Mechanism& m, const Params& p, const TensorMap& in, Path path,
                      Workspace& ws);
// Validates that `in` holds every input of m with its declared shape (InputError otherwise).
void check_inputs(const Mechanism& m, const Params& p, const TensorMap& in);
// max|a - b| / max|b| over the finite values of the outputs both maps hold; equal infinities
// match (lse = -inf of an empty row), any other non-finite value gives +inf.
double max_rel_error(const TensorMap& got, const TensorMap& want);

}  // namespace kt
