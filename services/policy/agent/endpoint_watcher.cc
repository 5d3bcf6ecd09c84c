#include "services/policy/agent/endpoint_watcher.h"

namespace ebpfcni::policy {

EndpointWatcher::EndpointWatcher(std::shared_ptr<grpc::Channel> channel, Callbacks callbacks)
    : StreamFollower("endpoint watch"),
      stub_(datapath::v1::DatapathService::NewStub(std::move(channel))),
      callbacks_(std::move(callbacks)) {}

grpc::Status EndpointWatcher::FollowOnce(grpc::ClientContext& context, bool* progressed) {
  auto reader = stub_->WatchEndpoints(&context, datapath::v1::WatchEndpointsRequest());
  std::vector<datapath::v1::Endpoint> snapshot;
  datapath::v1::WatchEndpointsResponse event;
  while (reader->Read(&event)) {
    switch (event.change()) {
      case datapath::v1::ENDPOINT_CHANGE_SNAPSHOT:
        snapshot.push_back(event.endpoint());
        break;
      case datapath::v1::ENDPOINT_CHANGE_SNAPSHOT_DONE:
        *progressed = true;
        callbacks_.on_snapshot(std::move(snapshot));
        snapshot.clear();
        break;
      case datapath::v1::ENDPOINT_CHANGE_CREATED:
      case datapath::v1::ENDPOINT_CHANGE_UPDATED:
        callbacks_.on_upsert(event.endpoint());
        break;
      case datapath::v1::ENDPOINT_CHANGE_DELETED:
        callbacks_.on_delete(event.endpoint().key());
        break;
      default:
        break;
    }
  }
  return reader->Finish();
}

}  // namespace ebpfcni::policy
