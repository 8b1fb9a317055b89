"""Sends GenAI spans and log events to a running distillguard with the official OpenTelemetry
Python SDK exporters, configured the way docs/integrations.md tells users to (environment
variables), and checks from the service's metrics that every record arrived and was counted.

Usage: otel_sdk.py BASE_URL INGEST_TOKEN

Both encodings are sent: protobuf (opentelemetry-exporter-otlp-proto-http, the SDK's default)
and JSON (opentelemetry-exporter-otlp-json-http), each gzip-compressed. Per encoding, three end
users each make one chat call, traced as an HTTP server span (not a model call: counted, ignored)
around a GenAI client span, and logged as a `gen_ai.client.inference.operation.details` event
plus a per-message `gen_ai.user.message` event (content of the call: counted, ignored).
"""

import json
import os
import sys
import time
import urllib.request

BASE, TOKEN = sys.argv[1], sys.argv[2]
os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = BASE
os.environ["OTEL_EXPORTER_OTLP_HEADERS"] = f"Authorization=Bearer%20{TOKEN}"
os.environ["OTEL_EXPORTER_OTLP_COMPRESSION"] = "gzip"

from opentelemetry.sdk._logs import LoggerProvider  # noqa: E402
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402
from opentelemetry._logs import LogRecord  # noqa: E402

USERS = 3


class Checked:
    """Wraps an exporter and keeps the result of every export, so a refused batch fails the test."""

    def __init__(self, inner):
        self.inner = inner
        self.results = []

    def export(self, batch):
        result = self.inner.export(batch)
        self.results.append(result.name)
        return result

    def __getattr__(self, name):
        return getattr(self.inner, name)


def metric(series):
    with urllib.request.urlopen(f"{BASE}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
    return 0.0


def send(encoding, span_exporter, log_exporter):
    resource = Resource.create({"service.name": f"chat-app-{encoding}"})
    spans, logs = Checked(span_exporter), Checked(log_exporter)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(spans))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(logs))
    tracer = tracer_provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    logger = logger_provider.get_logger("opentelemetry.instrumentation.openai_v2")
    for i in range(USERS):
        user = f"{encoding}-user-{i}"
        messages = [{"role": "user", "parts": [{"type": "text", "content": f"Question {i} from {user}"}]}]
        call = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.response.id": f"chatcmpl-{user}",
            "gen_ai.request.temperature": 0.7,
            "gen_ai.usage.input_tokens": 40 + i,
            "gen_ai.usage.output_tokens": 900,
            "enduser.id": user,
        }
        with tracer.start_as_current_span("POST /chat", kind=SpanKind.SERVER, attributes={"http.request.method": "POST"}):
            with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes=call) as span:
                span.set_attribute("gen_ai.input.messages", json.dumps(messages))
                logger.emit(LogRecord(event_name="gen_ai.user.message", body={"content": messages[0]["parts"][0]["content"]}, attributes={"gen_ai.provider.name": "openai"}))
                logger.emit(LogRecord(event_name="gen_ai.client.inference.operation.details", attributes={**call, "gen_ai.response.id": f"log-{user}"}))
    tracer_provider.shutdown()
    logger_provider.shutdown()
    return spans.results, logs.results


def main():
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as ProtoLogs
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as ProtoSpans
    from opentelemetry.exporter.otlp.json.http._log_exporter import OTLPLogExporter as JsonLogs
    from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter as JsonSpans

    received = 'distillguard_events_received_total{source="otlp"}'
    accepted = 'distillguard_events_accepted_total{source="otlp"}'
    failures = []
    for encoding, spans, logs in [("protobuf", ProtoSpans(), ProtoLogs()), ("json", JsonSpans(), JsonLogs())]:
        before = (metric(received), metric(accepted))
        span_results, log_results = send(encoding, spans, logs)
        after = (metric(received), metric(accepted))
        got = (after[0] - before[0], after[1] - before[1])
        # Spans: 3 HTTP + 3 chat; logs: 3 message events + 3 call events. One event per chat call
        # from each signal (distinct response ids, so neither is a duplicate of the other).
        want = (4 * USERS, 2 * USERS)
        ok = got == want and span_results and log_results and set(span_results + log_results) == {"SUCCESS"}
        print(f"{encoding}: exports {span_results + log_results}, received/accepted {got}, expected {want}")
        if not ok:
            failures.append(encoding)
    if failures:
        print(f"FAILED: {failures}")
        sys.exit(1)
    print("otel_sdk: 2 passed, 0 failed")


if __name__ == "__main__":
    main()
