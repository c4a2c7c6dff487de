// embedding_server: flags -> ServerOptions -> Server, until SIGINT/SIGTERM;
// SIGHUP re-reads the token file.
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/process.h"
#include "server/log_format.h"
#include "server/service/server.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, listen_address, "127.0.0.1:50051",
          "host:port to listen on (port 0 picks a free one). Loopback by "
          "default; to serve other machines (0.0.0.0:50051), add the TLS "
          "flags, or --allow_insecure for plaintext.");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM server certificate (chain) for TLS; needs --tls_key_file. "
          "Re-read every --tls_refresh_seconds: replace the files to rotate.");
ABSL_FLAG(std::string, tls_key_file, "",
          "PEM private key of --tls_cert_file (unencrypted).");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA certificates: with it, mutual TLS (every client must "
          "present a certificate signed by one of them).");
ABSL_FLAG(int, tls_refresh_seconds, 60,
          "Seconds between re-reads of the TLS files (rotation without a "
          "restart).");
ABSL_FLAG(bool, allow_insecure, false,
          "Serve plaintext on a non-loopback --listen_address (without TLS "
          "flags the server refuses to, since anyone on the network could "
          "read and change the traffic).");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "Bearer tokens with roles, one \"ROLE TOKEN\" per line (roles "
          "reader, trainer, admin; \"ROLE cn:NAME\" gives a verified mTLS "
          "client certificate with common name NAME that role; # comments). "
          "Re-read on SIGHUP. Empty: no authentication.");
ABSL_FLAG(bool, enable_reflection, false,
          "Register gRPC server reflection (lists the services to anyone who "
          "can connect).");
ABSL_FLAG(std::string, log_format, "text",
          "text, or json: one JSON object per line (time, level, logger, "
          "message).");
ABSL_FLAG(std::string, metrics_address, "",
          "HOST:PORT of the Prometheus endpoint (plain HTTP, GET /metrics; "
          "port 0 picks a free one). HOST is an IPv4 address or a host name; "
          "keep it on loopback or a private network (the metrics name the "
          "tables). Empty: no metrics.");
ABSL_FLAG(std::string, metrics_port_file, "",
          "If set, the metrics endpoint's bound port is written to this file "
          "(before --port_file is). Needs --metrics_address.");
ABSL_FLAG(std::string, port_file, "",
          "If set, the bound port is written to this file once listening. "
          "With --checkpoint_dir that is before the tables are restored: "
          "poll grpc.health.v1.Health until it reports SERVING.");
ABSL_FLAG(int, worker_threads, 64,
          "Most threads running calls; must exceed --max_open_streams (each "
          "open stream holds one). A call finding none free gets "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(int64_t, max_inflight_bytes, 0,
          "Most bytes all calls in flight may hold outside the tables "
          "(parsed requests, responses, stream backlogs, push scratch); a "
          "call that would pass it gets RESOURCE_EXHAUSTED. 0 means 1/8 of "
          "physical memory.");
ABSL_FLAG(int, max_open_streams, 32,
          "Most LookupStream and ReadRows calls open at once; more get "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(double, stream_idle_timeout_s, 600,
          "A stream that waits this long for its client (a LookupStream "
          "for its next request, any stream for the client to take data) is "
          "ended with UNAVAILABLE; every request sent before was answered.");
ABSL_FLAG(int, max_streams_per_connection, 128,
          "Most calls open at once on one client connection.");
ABSL_FLAG(double, exactly_once_idle_seconds, 3600,
          "A client_id with no push for this long is forgotten; a retry of "
          "its pushes after that is refused (FAILED_PRECONDITION), never "
          "applied twice.");
ABSL_FLAG(std::string, log_level, "info",
          "trace, debug, info, warn, error or off.");
ABSL_FLAG(int64_t, max_indices_per_request, int64_t{1} << 22,
          "Most indices one request may carry.");
ABSL_FLAG(int64_t, memory_budget_bytes, 0,
          "Bytes all tables (weights + optimizer state) may take; 0 means 3/4 "
          "of physical memory.");
ABSL_FLAG(int64_t, max_message_bytes, int64_t{64} << 20,
          "Largest gRPC message received or sent.");
ABSL_FLAG(int, shard_index, 0, "This server's shard (0-based).");
ABSL_FLAG(int, shard_count, 1, "Servers that hold each table.");
ABSL_FLAG(double, shutdown_grace_seconds, 10,
          "On SIGTERM, how long in-flight calls and then the final "
          "checkpoint may take; a final checkpoint still running then is "
          "abandoned (the previous one stays).");
ABSL_FLAG(std::string, checkpoint_dir, "",
          "Existing directory for checkpoints. The server restores every "
          "table found there before it reports SERVING, and saves every "
          "table in full on SIGTERM/SIGINT. Empty: no checkpoints.");
ABSL_FLAG(double, checkpoint_interval_s, 0,
          "Seconds between periodic incremental checkpoints of every table "
          "(needs --checkpoint_dir); 0: none.");
ABSL_FLAG(int, checkpoint_keep, 2,
          "Complete full checkpoints kept per table (with their deltas).");
ABSL_FLAG(int, full_checkpoint_every, 8,
          "Incremental checkpoints between two full ones; 0: always full.");

namespace {

// `eighths` of physical memory (0 when unknown).
int64_t PhysicalMemoryEighths(int64_t eighths) {
  const int64_t pages = sysconf(_SC_PHYS_PAGES);
  const int64_t page_size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page_size > 0 ? pages / 8 * eighths * page_size : 0;
}

// The flags as options, unchecked: Server::Start validates them.
embedding::ServerOptions ServerOptionsFromFlags() {
  embedding::ServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen_address);
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  options.tls.refresh_seconds = absl::GetFlag(FLAGS_tls_refresh_seconds);
  options.allow_insecure = absl::GetFlag(FLAGS_allow_insecure);
  options.auth_tokens_file = absl::GetFlag(FLAGS_auth_tokens_file);
  options.enable_reflection = absl::GetFlag(FLAGS_enable_reflection);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  options.worker_threads = absl::GetFlag(FLAGS_worker_threads);
  options.max_inflight_bytes = absl::GetFlag(FLAGS_max_inflight_bytes);
  if (options.max_inflight_bytes == 0) {
    options.max_inflight_bytes = PhysicalMemoryEighths(1);
  }
  options.max_streams_per_connection =
      absl::GetFlag(FLAGS_max_streams_per_connection);
  options.registry.memory_budget_bytes =
      absl::GetFlag(FLAGS_memory_budget_bytes);
  if (options.registry.memory_budget_bytes == 0) {
    options.registry.memory_budget_bytes = PhysicalMemoryEighths(6);
  }
  options.registry.exactly_once_idle =
      absl::Seconds(absl::GetFlag(FLAGS_exactly_once_idle_seconds));
  options.registry.shard_index = absl::GetFlag(FLAGS_shard_index);
  options.registry.shard_count = absl::GetFlag(FLAGS_shard_count);
  options.service.max_indices_per_request =
      absl::GetFlag(FLAGS_max_indices_per_request);
  options.service.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.service.max_open_streams = absl::GetFlag(FLAGS_max_open_streams);
  options.service.stream_idle_timeout =
      absl::Seconds(absl::GetFlag(FLAGS_stream_idle_timeout_s));
  options.checkpoint_dir = absl::GetFlag(FLAGS_checkpoint_dir);
  options.checkpoint_interval_s = absl::GetFlag(FLAGS_checkpoint_interval_s);
  options.checkpoint_keep = absl::GetFlag(FLAGS_checkpoint_keep);
  options.full_checkpoint_every = absl::GetFlag(FLAGS_full_checkpoint_every);
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Serves torch.nn.Embedding tables over gRPC.\n"
      "usage: embedding_server [--listen_address=127.0.0.1:50051] [flags]");
  // --help lists this file's flags (absl matches the binary's name against
  // the file's by default, and main.cc is not embedding_server).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "server/main.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);
  // gRPC locks absl::Mutex on every call; Debian's Abseil checks each lock
  // for deadlock cycles, which shows up in profiles of small requests.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Responses of a few MiB would otherwise be mmapped and unmapped on every
  // request, page faults and all.
  embedding::KeepLargeBuffersOnHeap();

  auto logger = spdlog::stderr_color_mt("embedding_server");
  spdlog::set_default_logger(logger);
  const spdlog::level::level_enum level =
      spdlog::level::from_str(absl::GetFlag(FLAGS_log_level));
  if (level == spdlog::level::off && absl::GetFlag(FLAGS_log_level) != "off") {
    spdlog::error("unknown --log_level \"{}\"", absl::GetFlag(FLAGS_log_level));
    return 2;
  }
  spdlog::set_level(level);
  if (const absl::Status format =
          embedding::SetLogFormat(*logger, absl::GetFlag(FLAGS_log_format));
      !format.ok()) {
    spdlog::error("{}", std::string(format.message()));
    return 2;
  }

  // Block the shutdown signals in every thread (gRPC's threads inherit the
  // mask); the main thread waits for them below.
  const embedding::ShutdownSignals signals = embedding::BlockShutdownSignals();
  // A file-size limit (RLIMIT_FSIZE) reached by a checkpoint write must fail
  // that save with EFBIG, not kill the server.
  signal(SIGXFSZ, SIG_IGN);

  const embedding::ServerOptions options = ServerOptionsFromFlags();
  if (!absl::GetFlag(FLAGS_metrics_port_file).empty() &&
      options.metrics_address.empty()) {
    spdlog::error("--metrics_port_file needs --metrics_address");
    return 2;
  }
  absl::StatusOr<std::unique_ptr<embedding::Server>> server =
      embedding::Server::Start(options);
  if (!server.ok()) {
    spdlog::error("{}", server.status().ToString());
    // A bad flag is a usage error, like one absl::ParseCommandLine rejects.
    return absl::IsInvalidArgument(server.status()) ? 2 : 1;
  }
  spdlog::info(
      "listening on port {} (listen address {}, shard {} of {}, memory budget "
      "{} bytes, checkpoints {})",
      (*server)->port(), options.listen_address, options.registry.shard_index,
      options.registry.shard_count, options.registry.memory_budget_bytes,
      options.checkpoint_dir.empty() ? "off" : options.checkpoint_dir);
  // Before --port_file: whoever waits for that one may scrape at once.
  const std::string metrics_port_file = absl::GetFlag(FLAGS_metrics_port_file);
  if (!metrics_port_file.empty() &&
      !embedding::WritePortFile(metrics_port_file, (*server)->metrics_port())) {
    spdlog::error("cannot write --metrics_port_file {}", metrics_port_file);
    return 1;
  }
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  if (!port_file.empty() &&
      !embedding::WritePortFile(port_file, (*server)->port())) {
    spdlog::error("cannot write --port_file {}", port_file);
    return 1;
  }

  int signal_number;
  while ((signal_number = embedding::WaitForSignal(signals)) == SIGHUP) {
    if (const absl::Status reloaded = (*server)->ReloadAuthTokens();
        reloaded.ok()) {
      spdlog::info("SIGHUP: authentication {}",
                   (*server)->authenticator().Summary());
    } else {
      spdlog::error("SIGHUP: keeping the previous tokens: {}",
                    std::string(reloaded.message()));
    }
  }
  spdlog::info("received {}, shutting down", strsignal(signal_number));
  (*server)->Shutdown(
      absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds)));
  (*server)->Wait();
  spdlog::info("stopped");
  spdlog::shutdown();
  // Everything is saved and every connection closed. Skip the destructors:
  // gRPC's library shutdown in ~Server could wait ~10 s more for an idle
  // executor thread's epoll timeout, past the grace period.
  std::fflush(nullptr);
  _exit(0);
}
