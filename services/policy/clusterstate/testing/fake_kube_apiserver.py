#!/usr/bin/python3
"""A fake Kubernetes API server for the cluster-state source tests.

It speaks the real list/watch protocol over HTTPS for Pods, Namespaces and
NetworkPolicies:
  GET /api/v1/pods, /api/v1/namespaces, /apis/networking.k8s.io/v1/networkpolicies
    list:  {"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":..,"continue":..},"items":[..]}
           (items without kind/apiVersion, as the API server writes them), paged with limit/continue;
    watch: ?watch=1&resourceVersion=N&allowWatchBookmarks=true&timeoutSeconds=T -> a chunked
           stream of newline-delimited {"type":ADDED|MODIFIED|DELETED|BOOKMARK|ERROR,"object":..}
           events after N; a resourceVersion older than the last compaction gets the API's
           410 "too old resource version" (as an ERROR event, or as HTTP 410 in http410 mode).
  Bearer token or client certificate authentication (401 with a Status object otherwise).

The test drives it through /fake/* (no authentication):
  POST /fake/upsert            body: an object          -> ADDED/MODIFIED event, returns the stored object
  POST /fake/delete            body: {kind,namespace,name} -> DELETED event
  POST /fake/compact           forget the history (older resourceVersions now get 410)
  POST /fake/expire_watches    compact, and send every open watch an ERROR 410 event
  POST /fake/close_watches     end every open watch normally
  POST /fake/bookmark          send every open watch (that asked for them) a BOOKMARK
  POST /fake/outage            body: {"on": bool} -> API requests get 503 and watches end while on
  POST /fake/fail              body: {"status":500,"count":2,"resource":"pods"} -> next API requests fail
                               body: {"clear": true} -> no more failures
  POST /fake/token             body: {"token": ".."} -> the accepted token
  POST /fake/mode              body: {"http410": bool}
  GET  /fake/requests          every API request served: method, path, query, status, time
  GET  /fake/state             {"resourceVersion": N, "watches": open watch count}

Started by testing/fake_kube_apiserver.cc with --cert/--key (a self-signed certificate the test
made), --client-ca (a self-signed client certificate it accepts), --port-file (where the ephemeral port is written) and --instance (a test-unique name, so
the process is recognisable and is killed by the test that started it). It exits by itself if
its parent dies.
"""

import argparse
import base64
import ctypes
import http.server
import json
import os
import select
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

RESOURCES = {
    "/api/v1/pods": ("pods", "Pod", "v1", True),
    "/api/v1/namespaces": ("namespaces", "Namespace", "v1", False),
    "/apis/networking.k8s.io/v1/networkpolicies": ("networkpolicies", "NetworkPolicy", "networking.k8s.io/v1", True),
}
BY_KIND = {kind: (resource, api_version, namespaced) for _, (resource, kind, api_version, namespaced) in RESOURCES.items()}


def status_object(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class Watcher:
    def __init__(self, resource, bookmarks):
        self.resource = resource
        self.bookmarks = bookmarks
        self.queue = []  # ("event", type, object) | ("error410",) | ("close",)


class State:
    def __init__(self, token):
        self.lock = threading.Condition()
        self.token = token
        self.rv = 1000
        self.compacted_rv = 0
        self.objects = {"pods": {}, "namespaces": {}, "networkpolicies": {}}
        self.history = []  # (rv, resource, type, object)
        self.watchers = []
        self.outage = False
        self.failures = []  # [status, count, resource or None]
        self.http410 = False
        self.requests = []
        self.snapshots = {}

    def next_rv(self):
        self.rv += 1
        return self.rv

    def publish(self, resource, event_type, obj):
        rv = int(obj["metadata"]["resourceVersion"])
        self.history.append((rv, resource, event_type, obj))
        for w in self.watchers:
            if w.resource == resource:
                w.queue.append(("event", event_type, obj))
        self.lock.notify_all()

    def upsert(self, obj):
        kind = obj.get("kind")
        if kind not in BY_KIND:
            raise ValueError("unknown kind %r" % kind)
        resource, api_version, namespaced = BY_KIND[kind]
        obj = json.loads(json.dumps(obj))
        obj["apiVersion"] = api_version
        meta = obj.setdefault("metadata", {})
        if namespaced:
            meta.setdefault("namespace", "default")
        key = (meta.get("namespace", ""), meta["name"])
        existing = self.objects[resource].get(key)
        meta["uid"] = existing["metadata"]["uid"] if existing else str(uuid.uuid4())
        meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        meta["resourceVersion"] = str(self.next_rv())
        self.objects[resource][key] = obj
        self.publish(resource, "MODIFIED" if existing else "ADDED", obj)
        return obj

    def delete(self, kind, namespace, name):
        resource, _, namespaced = BY_KIND[kind]
        key = (namespace if namespaced else "", name)
        obj = self.objects[resource].pop(key, None)
        if obj is None:
            return None
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = str(self.next_rv())
        self.publish(resource, "DELETED", obj)
        return obj

    def compact(self):
        self.compacted_rv = self.rv
        self.history = []


STATE = None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the test prints what matters
        pass

    # -- helpers -------------------------------------------------------------
    def send_json(self, code, obj, reason=None):
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(code, reason)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null") if length else None

    def record(self, path, query, status):
        with STATE.lock:
            STATE.requests.append({"method": self.command, "path": path, "query": query,
                                   "status": status, "time": time.time()})

    def client_gone(self):
        # A watching client sends nothing after its request: anything readable
        # (a TLS close_notify or the TCP FIN) means it went away.
        readable, _, _ = select.select([self.connection], [], [], 0)
        return bool(readable)

    def write_chunk(self, obj):
        data = (json.dumps(obj) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # -- control ---------------------------------------------------------------
    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        body = self.read_body()
        with STATE.lock:
            if url.path == "/fake/upsert":
                return self.send_json(200, STATE.upsert(body))
            if url.path == "/fake/delete":
                obj = STATE.delete(body["kind"], body.get("namespace", ""), body["name"])
                return self.send_json(200 if obj else 404, obj or {})
            if url.path == "/fake/compact":
                STATE.compact()
            elif url.path == "/fake/expire_watches":
                STATE.compact()
                for w in STATE.watchers:
                    w.queue.append(("error410",))
            elif url.path == "/fake/close_watches":
                for w in STATE.watchers:
                    w.queue.append(("close",))
            elif url.path == "/fake/bookmark":
                for w in STATE.watchers:
                    if w.bookmarks:
                        w.queue.append(("bookmark", STATE.rv))
            elif url.path == "/fake/outage":
                STATE.outage = bool(body["on"])
                if STATE.outage:
                    for w in STATE.watchers:
                        w.queue.append(("close",))
            elif url.path == "/fake/fail":
                if body.get("clear"):
                    STATE.failures = []
                else:
                    STATE.failures.append([int(body["status"]), int(body.get("count", 1)), body.get("resource")])
            elif url.path == "/fake/token":
                STATE.token = body["token"]
            elif url.path == "/fake/mode":
                STATE.http410 = bool(body.get("http410", False))
            else:
                return self.send_json(404, {"error": "no such control endpoint " + url.path})
            STATE.lock.notify_all()
            return self.send_json(200, {"resourceVersion": STATE.rv})

    # -- the API ---------------------------------------------------------------
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/fake/requests":
            with STATE.lock:
                return self.send_json(200, STATE.requests)
        if url.path == "/fake/state":
            with STATE.lock:
                return self.send_json(200, {"resourceVersion": STATE.rv, "watches": len(STATE.watchers)})
        if url.path not in RESOURCES:
            self.record(url.path, query, 404)
            return self.send_json(404, status_object(404, "NotFound", "the server could not find the requested resource"))
        resource, kind, api_version, _ = RESOURCES[url.path]

        with STATE.lock:
            auth = self.headers.get("Authorization", "")
            # A client certificate signed by --client-ca authenticates too.
            has_client_cert = bool(self.connection.getpeercert())
            if auth != "Bearer " + STATE.token and not has_client_cert:
                self.record(url.path, query, 401)
                return self.send_json(401, status_object(401, "Unauthorized", "Unauthorized"))
            if STATE.outage:
                self.record(url.path, query, 503)
                return self.send_json(503, status_object(503, "ServiceUnavailable", "the server is shutting down"))
            for failure in STATE.failures:
                status, count, only = failure
                if count > 0 and (only is None or only == resource):
                    failure[1] -= 1
                    self.record(url.path, query, status)
                    return self.send_json(status, status_object(status, "InternalError",
                                                                "Internal error occurred: injected by the test"))

        if query.get("watch") in ("1", "true"):
            return self.watch(url.path, query, resource, kind, api_version)
        return self.list(url.path, query, resource, kind, api_version)

    def list(self, path, query, resource, kind, api_version):
        with STATE.lock:
            limit = int(query.get("limit") or 0)
            token = query.get("continue")
            if token:
                snapshot_id, start = json.loads(base64.b64decode(token))
                snapshot = STATE.snapshots.get(snapshot_id)
                if snapshot is None:
                    self.record(path, query, 410)
                    return self.send_json(410, status_object(410, "Expired", "the provided continue parameter is too old"))
                rv, items = snapshot
            else:
                rv = STATE.rv
                items = [STATE.objects[resource][k] for k in sorted(STATE.objects[resource])]
                start = 0
                snapshot_id = str(uuid.uuid4())
                STATE.snapshots[snapshot_id] = (rv, items)
            page = items[start:start + limit] if limit else items[start:]
            metadata = {"resourceVersion": str(rv)}
            if limit and start + limit < len(items):
                metadata["continue"] = base64.b64encode(json.dumps([snapshot_id, start + limit]).encode()).decode()
                metadata["remainingItemCount"] = len(items) - start - limit
            out_items = []
            for item in page:
                item = dict(item)
                item.pop("kind", None)
                item.pop("apiVersion", None)
                out_items.append(item)
            self.record(path, query, 200)
        self.send_json(200, {"kind": kind + "List", "apiVersion": api_version, "metadata": metadata, "items": out_items})

    def watch(self, path, query, resource, kind, api_version):
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        timeout = float(query.get("timeoutSeconds") or 1800)
        with STATE.lock:
            since = query.get("resourceVersion")
            watcher = Watcher(resource, bookmarks)
            if since in (None, "", "0"):
                for key in sorted(STATE.objects[resource]):
                    watcher.queue.append(("event", "ADDED", STATE.objects[resource][key]))
            elif int(since) < STATE.compacted_rv:
                expired = status_object(410, "Expired", "too old resource version: %s (%d)" % (since, STATE.compacted_rv))
                if STATE.http410:
                    self.record(path, query, 410)
                    return self.send_json(410, expired)
                watcher.queue.append(("error410",))
            else:
                for rv, res, event_type, obj in STATE.history:
                    if res == resource and rv > int(since):
                        watcher.queue.append(("event", event_type, obj))
            STATE.watchers.append(watcher)
            self.record(path, query, 200)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        deadline = time.time() + timeout
        try:
            while True:
                with STATE.lock:
                    while not watcher.queue and time.time() < deadline and not self.client_gone():
                        STATE.lock.wait(0.1)
                    items, watcher.queue = watcher.queue, []
                if not items:
                    break  # timeoutSeconds elapsed or the client left: end the watch
                done = False
                for item in items:
                    if item[0] == "event":
                        obj = dict(item[2])
                        obj["kind"] = kind
                        obj["apiVersion"] = api_version
                        self.write_chunk({"type": item[1], "object": obj})
                    elif item[0] == "bookmark":
                        self.write_chunk({"type": "BOOKMARK", "object": {
                            "kind": kind, "apiVersion": api_version,
                            "metadata": {"resourceVersion": str(item[1])}}})
                    elif item[0] == "error410":
                        self.write_chunk({"type": "ERROR", "object": status_object(
                            410, "Expired", "too old resource version: %s (%d)" % (since, STATE.compacted_rv))})
                        done = True
                        break
                    elif item[0] == "close":
                        done = True
                        break
                if done:
                    break
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass
        finally:
            with STATE.lock:
                STATE.watchers.remove(watcher)
            self.close_connection = True


def exit_with_parent(parent):
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.5)


def main():
    global STATE
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--client-ca", help="CA of the client certificates accepted instead of the token")
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--instance", required=True, help="test-unique name of this process")
    args = parser.parse_args()

    # The instance name as the process name too (ps/top show it; 15 bytes max).
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(15, args.instance.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except OSError:
        pass
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()

    STATE = State(args.token)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(args.client_ca)
    # Handshakes in the handler threads, so one slow client cannot stall accept().
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    port = server.server_address[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.rename(tmp, args.port_file)
    server.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    sys.exit(main())
