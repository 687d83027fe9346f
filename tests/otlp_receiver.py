"""A real OTLP receiver for the tests: oteltest's gRPC and HTTP sinks, every
request written as one JSON line ({"signal", "protocol", "body"}) to the file
named on the command line. Prints "ready" once both sinks listen."""

import json
import logging
import sys
import threading
import time

from google.protobuf.json_format import MessageToDict
from oteltest.sink import GrpcSink, HttpSink
from oteltest.sink.handler import RequestHandler


class Recorder(RequestHandler):
    def __init__(self, out, protocol):
        self.out = out
        self.protocol = protocol
        self.lock = threading.Lock()

    def write(self, signal, request):
        line = json.dumps({"signal": signal, "protocol": self.protocol, "body": MessageToDict(request)})
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()

    def handle_logs(self, request, headers):
        self.write("logs", request)

    def handle_metrics(self, request, headers):
        self.write("metrics", request)

    def handle_trace(self, request, headers):
        self.write("traces", request)


def main():
    grpc_port, http_port, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    logger = logging.getLogger("otlp-receiver")
    out = open(path, "a", encoding="utf-8")
    grpc_sink = GrpcSink(Recorder(out, "grpc"), logger, port=grpc_port)
    http_sink = HttpSink(Recorder(out, "http"), logger, port=http_port)
    grpc_sink.start()
    http_sink.start()
    time.sleep(0.3)
    print("ready", flush=True)
    grpc_sink.wait_for_termination()


if __name__ == "__main__":
    main()
