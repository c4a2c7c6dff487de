#include "server/metrics/metrics_endpoint.h"

#include <exception>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace embedding {
namespace {

absl::Status BadAddress(absl::string_view address, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(
      "--metrics_address=\"", address, "\" is not HOST:PORT: ", why));
}

}  // namespace

absl::Status ValidateMetricsAddress(absl::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) {
    return BadAddress(address, "no port");
  }
  const absl::string_view host = address.substr(0, colon);
  const absl::string_view port = address.substr(colon + 1);
  if (host.empty()) return BadAddress(address, "no host");
  for (const char c : host) {
    // Names and IPv4 addresses; the HTTP server takes no IPv6 literal.
    if (!absl::ascii_isalnum(c) && c != '.' && c != '-') {
      return BadAddress(address,
                        "the host must be an IPv4 address or a host name");
    }
  }
  int number = 0;
  if (port.empty() || !absl::c_all_of(port, absl::ascii_isdigit) ||
      !absl::SimpleAtoi(port, &number) || number > 65535) {
    return BadAddress(address, "the port must be a number in [0, 65535]");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    const std::string& address) {
  EMBEDDING_RETURN_IF_ERROR(ValidateMetricsAddress(address));
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    // One thread: a scrape is cheap, and Prometheus scrapes one at a time.
    exposer = std::make_unique<prometheus::Exposer>(address, 1);
  } catch (const std::exception&) {
    // The HTTP server (civetweb) says only that it could not bind.
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on --metrics_address=", address,
        " (not an address of this machine, or the port is taken)"));
  }
  const std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty()) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on --metrics_address=", address));
  }
  return std::unique_ptr<MetricsEndpoint>(
      new MetricsEndpoint(std::move(exposer), ports.front()));
}

void MetricsEndpoint::Register(
    std::shared_ptr<prometheus::Collectable> collectable) {
  exposer_->RegisterCollectable(collectable);
  collectables_.push_back(std::move(collectable));
}

}  // namespace embedding
