// The trainer's C++ shim to libtorch's c10d: a TCPStore rendezvous, a process group
// (ProcessGroupGloo on the CPU, ProcessGroupNCCL on CUDA when built with
// ALEXNET_NCCL), all-reduce, broadcast, barrier and shutdown, as plain C functions for
// trainer/src/dist/ffi.rs. And c10d's Reducer (the engine of PyTorch's DDP): gradients
// averaged bucket by bucket during the backward pass, overlapping it.
//
// Tensors arrive as `at::Tensor*`: torch-sys's own C wrapper (libtch/torch_api.h)
// represents every tch `Tensor` as a heap `torch::Tensor*` (`typedef torch::Tensor
// *tensor`), which is what tch's `Tensor::as_ptr` returns. The shim never takes
// ownership of them.
//
// Errors: every function catches every C++ exception and returns its message as a
// malloc'ed string (NULL on success) that Rust frees with alexnet_dist_free_string.
// c10::Error's message is taken without its C++ backtrace, so it reads as one line.
//
// Build (trainer/build.rs): -DUSE_C10D_GLOO -DUSE_DISTRIBUTED against the headers of
// the libtorch that torch-sys links, plus gloo's headers (header use only: gloo's code
// is inside libtorch_cpu).

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <algorithm>

#include <c10/util/Exception.h>
#include <c10/util/Logging.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#ifdef ALEXNET_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace {

struct Store {
  c10::intrusive_ptr<c10d::Store> store;
};

struct Group {
  c10::intrusive_ptr<c10d::Backend> backend;
  bool nccl;
  // The same backend as a ProcessGroup (what torch.distributed makes of it): the
  // Reducer's collectives go through c10d's dispatcher, which routes by device type.
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
};

c10::intrusive_ptr<c10d::ProcessGroup> wrap(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world,
                                            const c10::intrusive_ptr<c10d::Backend>& backend, bool nccl,
                                            std::optional<at::Device> device) {
  auto pg = c10::make_intrusive<c10d::ProcessGroup>(store, rank, world);
  auto type = nccl ? c10d::ProcessGroup::BackendType::NCCL : c10d::ProcessGroup::BackendType::GLOO;
  // Before setBackend, which gives the backend the group's bound device.
  if (device.has_value()) pg->setBoundDeviceId(device);
  pg->setDefaultBackend(type);
  pg->setBackend(nccl ? c10::DeviceType::CUDA : c10::DeviceType::CPU, type, backend);
  return pg;
}

struct Overlap {
  std::unique_ptr<c10d::Reducer> reducer;
};

char* message(const std::string& s) {
  // One line: a C++ message may hold newlines (gloo's, the store's).
  std::string m = s;
  for (auto& ch : m) {
    if (ch == '\n' || ch == '\r') ch = ' ';
  }
  while (!m.empty() && m.back() == ' ') m.pop_back();
  if (m.empty()) m = "unknown C++ error";
  char* out = static_cast<char*>(std::malloc(m.size() + 1));
  if (out != nullptr) std::memcpy(out, m.c_str(), m.size() + 1);
  return out;
}

template <typename F>
char* guarded(F&& f) {
  try {
    f();
    return nullptr;
  } catch (const c10::Error& e) {
    return message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return message(e.what());
  } catch (...) {
    return message("unknown C++ exception");
  }
}

// While the store connects, a client that waits for a server not yet up logs every
// retry with a C++ backtrace; the outcome is reported once, as our error. Quiet below
// FATAL for that time, unless the user chose a level (TORCH_CPP_LOG_LEVEL).
struct QuietLogs {
  bool active = std::getenv("TORCH_CPP_LOG_LEVEL") == nullptr;
  int saved = FLAGS_caffe2_log_level;
  QuietLogs() {
    if (active) {
      FLAGS_caffe2_log_level = 3;
      c10::UpdateLoggingLevelsFromFlags();
    }
  }
  ~QuietLogs() {
    if (active) {
      FLAGS_caffe2_log_level = saved;
      c10::UpdateLoggingLevelsFromFlags();
    }
  }
};

std::chrono::milliseconds ms(int64_t v) {
  return std::chrono::milliseconds(v);
}

std::vector<at::Tensor> tensors_of(at::Tensor* const* ts, size_t n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    TORCH_CHECK(ts[i] != nullptr && ts[i]->defined(), "tensor ", i, " is undefined");
    v.push_back(*ts[i]);
  }
  return v;
}

// Waits for every work item; the first failure is rethrown after all were waited for
// (or timed out), so no collective is left running on a tensor Rust may free.
void wait_all(std::vector<c10::intrusive_ptr<c10d::Work>>& works, int64_t timeout_ms) {
  std::string first;
  for (auto& w : works) {
    try {
      w->wait(ms(timeout_ms));
    } catch (const c10::Error& e) {
      if (first.empty()) first = e.what_without_backtrace();
    } catch (const std::exception& e) {
      if (first.empty()) first = e.what();
    }
  }
  if (!first.empty()) throw std::runtime_error(first);
}

}  // namespace

extern "C" {

void alexnet_dist_free_string(char* s) {
  std::free(s);
}

int alexnet_dist_has_nccl() {
#ifdef ALEXNET_NCCL
  return 1;
#else
  return 0;
#endif
}

// A TCPStore at host:port: the server when `is_server` (it waits up to `timeout_ms`
// for `world` ranks to join), a client otherwise (it retries until `timeout_ms`). Keys go
// under `prefix` (a PrefixStore), as torch.distributed does per restart attempt. The
// server takes over `listen_fd` (>= 0: a socket the caller bound to host's address and
// listens on) instead of binding every interface itself, as TCPStore does by default.
char* alexnet_dist_store_new(const char* host, uint16_t port, int is_server, int world, int64_t timeout_ms,
                             const char* prefix, int listen_fd, Store** out) {
  *out = nullptr;
  return guarded([&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server != 0;
    if (opts.isServer && listen_fd >= 0) {
      opts.masterListenFd = listen_fd;
    }
    opts.numWorkers = static_cast<size_t>(world);
    // Every rank, the server's own client included, counts itself in; the server
    // then waits for all `world` of them (as torch.distributed's TCPStore does).
    opts.waitWorkers = true;
    opts.timeout = ms(timeout_ms);
    QuietLogs quiet;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    auto s = std::make_unique<Store>();
    s->store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
    *out = s.release();
  });
}

void alexnet_dist_store_free(Store* s) {
  delete s;
}

// ProcessGroupGloo over `store`. Devices: one per interface in GLOO_SOCKET_IFNAME
// (comma separated) when set, else this host's default (its hostname's address, or
// loopback), as torch.distributed chooses them.
char* alexnet_dist_gloo_new(Store* store, int rank, int world, int64_t timeout_ms, int threads, Group** out) {
  *out = nullptr;
  return guarded([&] {
    auto opts = c10d::ProcessGroupGloo::Options::create(ms(timeout_ms));
    const char* ifnames = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifnames != nullptr && ifnames[0] != '\0') {
      std::string all(ifnames);
      size_t start = 0;
      while (start <= all.size()) {
        size_t end = all.find(',', start);
        if (end == std::string::npos) end = all.size();
        if (end > start) {
          opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(all.substr(start, end - start)));
        }
        start = end + 1;
      }
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    if (threads > 0) opts->threads = threads;
    c10::intrusive_ptr<c10d::Backend> pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store->store, rank, world, opts);
    *out = new Group{pg, false, wrap(store->store, rank, world, pg, false, std::nullopt)};
  });
}

// ProcessGroupNCCL over `store`, bound to CUDA device `device` (made the current one),
// as torch.distributed.init_process_group(device_id=...) does.
char* alexnet_dist_nccl_new(Store* store, int rank, int world, int64_t timeout_ms, int device, Group** out) {
  *out = nullptr;
#ifdef ALEXNET_NCCL
  return guarded([&] {
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = ms(timeout_ms);
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store->store, rank, world, opts);
    auto dev = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device));
    pg->setBoundDeviceId(dev);
    c10::intrusive_ptr<c10d::Backend> backend = pg;
    *out = new Group{backend, true, wrap(store->store, rank, world, backend, true, dev)};
  });
#else
  (void)store;
  (void)rank;
  (void)world;
  (void)timeout_ms;
  (void)device;
  return message(
      "this train binary was built without NCCL (no CUDA/NCCL headers at build time: see README, "
      "\"Data-parallel training\")");
#endif
}

// Ends the group: `abort` drops pending work at once (after a failure), otherwise
// shutdown waits for it. The group is freed either way.
char* alexnet_dist_group_free(Group* g, int abort) {
  if (g == nullptr) return nullptr;
  char* err = guarded([&] {
    if (abort != 0) {
      g->backend->abort();
    } else {
      g->backend->shutdown();
    }
  });
  delete g;
  return err;
}

// In-place reduction of each tensor across ranks: op 0 sum, 1 average (NCCL only:
// Gloo has none), 2 max. One collective per tensor, all started before any is waited
// for, so Gloo's worker threads overlap them.
char* alexnet_dist_all_reduce(Group* g, at::Tensor* const* ts, size_t n, int op, int64_t timeout_ms) {
  return guarded([&] {
    c10d::AllreduceOptions opts;
    switch (op) {
      case 0:
        opts.reduceOp = c10d::ReduceOp::SUM;
        break;
      case 1:
        TORCH_CHECK(g->nccl, "average is not a Gloo reduction: sum, then divide");
        opts.reduceOp = c10d::ReduceOp::AVG;
        break;
      case 2:
        opts.reduceOp = c10d::ReduceOp::MAX;
        break;
      default:
        TORCH_CHECK(false, "unknown reduce op ", op);
    }
    opts.timeout = ms(timeout_ms);
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (auto& t : tensors_of(ts, n)) {
      std::vector<at::Tensor> one{t};
      works.push_back(g->backend->allreduce(one, opts));
    }
    wait_all(works, timeout_ms);
  });
}

// Each tensor overwritten with rank `root`'s.
char* alexnet_dist_broadcast(Group* g, at::Tensor* const* ts, size_t n, int root, int64_t timeout_ms) {
  return guarded([&] {
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = ms(timeout_ms);
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (auto& t : tensors_of(ts, n)) {
      std::vector<at::Tensor> one{t};
      works.push_back(g->backend->broadcast(one, opts));
    }
    wait_all(works, timeout_ms);
  });
}

char* alexnet_dist_barrier(Group* g, int64_t timeout_ms) {
  return guarded([&] {
    c10d::BarrierOptions opts;
    opts.timeout = ms(timeout_ms);
    std::vector<c10::intrusive_ptr<c10d::Work>> works{g->backend->barrier(opts)};
    wait_all(works, timeout_ms);
  });
}

// A Reducer over `params` (the model's, in order), as DistributedDataParallel builds
// it: buckets by size (a bucket closes once it holds at least its limit; the first
// limit is small, so that communication starts early),
// listed last-parameter-first, the order the backward pass produces gradients. Every
// parameter must get a gradient in every step (no unused-parameter search).
char* alexnet_dist_reducer_new(Group* g, at::Tensor* const* ts, size_t n, int64_t bucket_bytes,
                               int64_t first_bucket_bytes, Overlap** out) {
  *out = nullptr;
  return guarded([&] {
    auto params = tensors_of(ts, n);
    TORCH_CHECK(!params.empty(), "no parameters to reduce");
    std::vector<bool> sparse(params.size(), false);
    std::vector<size_t> caps{static_cast<size_t>(first_bucket_bytes), static_cast<size_t>(bucket_bytes)};
    auto buckets = std::get<0>(c10d::compute_bucket_assignment_by_size(params, caps, sparse));
    std::reverse(buckets.begin(), buckets.end());
    auto o = std::make_unique<Overlap>();
    o->reducer = std::make_unique<c10d::Reducer>(params, std::move(buckets), g->pg, sparse, bucket_bytes,
                                                 /*find_unused_parameters=*/false,
                                                 /*gradient_as_bucket_view=*/false,
                                                 std::unordered_map<size_t, std::string>{}, first_bucket_bytes,
                                                 /*skip_all_reduce_unused_params=*/false,
                                                 /*use_python_reducer=*/false,
                                                 // empty: the rebuild after the first step
                                                 // sizes by {first_bucket_bytes, bucket_bytes}
                                                 std::vector<int64_t>{});
    *out = o.release();
  });
}

// Before a training step's forward pass: what DDP's forward does (the one-time bucket
// rebuild in gradient order, agreed with rank 0) and what it does after it (arm the
// hooks). The next backward pass then leaves every gradient averaged over the ranks.
char* alexnet_dist_reducer_prepare(Overlap* o) {
  return guarded([&] {
    o->reducer->rebuild_buckets();
    o->reducer->prepare_for_forward();
    o->reducer->prepare_for_backward({});
  });
}

// The number of buckets (after the rebuild, the ones in use).
size_t alexnet_dist_reducer_buckets(Overlap* o) {
  try {
    return o->reducer->get_grad_buckets(/*return_zero_tensors=*/false).size();
  } catch (...) {
    return 0;
  }
}

// Removes the hooks from the parameters and frees the Reducer.
char* alexnet_dist_reducer_free(Overlap* o) {
  if (o == nullptr) return nullptr;
  // ~Reducer() may throw (noexcept(false)); unique_ptr::reset would terminate on it.
  char* err = guarded([&] { delete o->reducer.release(); });
  delete o;
  return err;
}

}  // extern "C"
