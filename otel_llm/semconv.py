"""Every telemetry name otel-llm emits, in one place.

GenAI names follow the OpenTelemetry semantic conventions v1.41.0, the last
release that carried them; ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``
switches to the names merged changes renamed since (``LATEST_NAMES``). Names outside ``gen_ai.*`` (cost, gateway) are our
own and live under ``llm.*`` so they can never collide with a future
convention.
"""

import os
from collections.abc import Mapping

SEMCONV_VERSION = "1.41.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
INSTRUMENTATION_SCOPE = "otel_llm"

# Operations (gen_ai.operation.name values).
OP_CHAT = "chat"
OP_TEXT_COMPLETION = "text_completion"
OP_EMBEDDINGS = "embeddings"
OP_GENERATE_CONTENT = "generate_content"

# Providers (gen_ai.provider.name values).
PROVIDER_OPENAI = "openai"
PROVIDER_AZURE_OPENAI = "azure.ai.openai"
PROVIDER_ANTHROPIC = "anthropic"
PROVIDER_GCP_GEMINI = "gcp.gemini"
PROVIDER_GCP_VERTEX_AI = "gcp.vertex_ai"
PROVIDER_AWS_BEDROCK = "aws.bedrock"

# Span and metric attributes.
OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_TOP_P = "gen_ai.request.top_p"
REQUEST_TOP_K = "gen_ai.request.top_k"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_FREQUENCY_PENALTY = "gen_ai.request.frequency_penalty"
REQUEST_PRESENCE_PENALTY = "gen_ai.request.presence_penalty"
REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
REQUEST_SEED = "gen_ai.request.seed"
REQUEST_CHOICE_COUNT = "gen_ai.request.choice.count"
REQUEST_STREAM = "gen_ai.request.stream"
REQUEST_ENCODING_FORMATS = "gen_ai.request.encoding_formats"
OUTPUT_TYPE = "gen_ai.output.type"
CONVERSATION_ID = "gen_ai.conversation.id"
RESPONSE_ID = "gen_ai.response.id"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
TOKEN_TYPE = "gen_ai.token.type"
TOKEN_TYPE_INPUT = "input"
TOKEN_TYPE_OUTPUT = "output"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_DEFINITIONS = "gen_ai.tool.definitions"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
OPENAI_API_TYPE = "openai.api.type"
OPENAI_REQUEST_SERVICE_TIER = "openai.request.service_tier"
OPENAI_RESPONSE_SERVICE_TIER = "openai.response.service_tier"
OPENAI_RESPONSE_SYSTEM_FINGERPRINT = "openai.response.system_fingerprint"

# The conventions after v1.41.0 (open-telemetry/semantic-conventions-genai, no release yet): names a
# merged change renamed, v1.41.0 name -> latest name. Only merged changes, never open proposals.
# - cache_creation -> cache_write: semantic-conventions-genai#440 (merged; the official Python
#   packages emit the new name, opentelemetry-python-genai#613).
LATEST_NAMES = {
    USAGE_CACHE_CREATION_INPUT_TOKENS: "gen_ai.usage.cache_write.input_tokens",
}
# The official packages' switch: OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental (comma-separated
# with other domains' values) makes otel-llm emit the latest names too, so a fleet mixing ours and theirs
# sees one name. Unset: v1.41.0.
ENV_SEMCONV_STABILITY_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
OPT_IN_GEN_AI_LATEST = "gen_ai_latest_experimental"


def latest_opted_in(environ: Mapping[str, str] | None = None) -> bool:
    raw = (os.environ if environ is None else environ).get(ENV_SEMCONV_STABILITY_OPT_IN, "")
    return OPT_IN_GEN_AI_LATEST in {part.strip().lower() for part in raw.split(",")}


def attribute_names(latest: bool) -> dict[str, str]:
    """v1.41.0 name -> the name to emit: itself, or with ``latest`` the renamed one."""
    return dict(LATEST_NAMES) if latest else {name: name for name in LATEST_NAMES}


# Our own span attributes.
COST_USD = "llm.cost.usd"
CONTENT_TRUNCATED = "llm.content.truncated"
# The caller stopped the call before it ended (task cancelled, stream closed or left early):
# not a failure, so no error.type and no ERROR status; the span carries this instead.
CALL_CANCELLED = "llm.call.cancelled"

# Event carrying opt-in message content.
EVENT_INFERENCE_DETAILS = "gen_ai.client.inference.operation.details"

# Metrics: (name, unit, description).
METRIC_OPERATION_DURATION = (
    "gen_ai.client.operation.duration",
    "s",
    "GenAI operation duration.",
)
METRIC_TOKEN_USAGE = (
    "gen_ai.client.token.usage",
    "{token}",
    "Number of input and output tokens used.",
)
METRIC_TIME_TO_FIRST_CHUNK = (
    "gen_ai.client.operation.time_to_first_chunk",
    "s",
    "Time from issuing the request to receiving the first chunk of a streamed response.",
)
METRIC_TIME_PER_OUTPUT_CHUNK = (
    "gen_ai.client.operation.time_per_output_chunk",
    "s",
    "Time between consecutive chunks of a streamed response, one record per chunk after the first.",
)
METRIC_COST = (
    "llm.client.cost",
    "{USD}",
    "Cost of LLM calls in US dollars, from the price table (calls to unpriced models add nothing).",
)

METRIC_LOGS_DROPPED = (
    "otel_llm.logs.dropped",
    "{log_record}",
    "Python log records that were not exported, by error.type (queue_full, export_failed, ...).",
)

METRIC_SPANS_DROPPED = (
    "otel_llm.spans.dropped",
    "{span}",
    "Spans that never reached the collector, by error.type (queue_full, export_failed, ...).",
)

# Advised explicit bucket boundaries.
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)

# Attributes that are allowed on metrics (low cardinality); everything else stays on spans.
METRIC_ATTRIBUTES = frozenset(
    {OPERATION_NAME, PROVIDER_NAME, REQUEST_MODEL, RESPONSE_MODEL, SERVER_ADDRESS, SERVER_PORT}
)

# Environment variables.
ENV_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_PRICES_FILE = "OTEL_LLM_PRICES_FILE"
ENV_PROVIDERS = "OTEL_LLM_PROVIDERS"
ENV_STREAM_USAGE = "OTEL_LLM_OPENAI_STREAM_USAGE"
ENV_CONTENT_REDACT = "OTEL_LLM_CONTENT_REDACT"
ENV_CONTENT_REDACT_REGEX = "OTEL_LLM_CONTENT_REDACT_REGEX"
ENV_CONTENT_MAX_LENGTH = "OTEL_LLM_CONTENT_MAX_LENGTH"
ENV_METRIC_MAX_VALUES = "OTEL_LLM_METRIC_MAX_VALUES"
ENV_FOREIGN_SPANS = "OTEL_LLM_FOREIGN_SPANS"  # "false": other instrumentations' GenAI spans are not priced

# --- Server side (otel_llm.server): services that serve an OpenAI- or Anthropic-compatible API ---
# The conventions' model-server metrics (semantic-conventions-genai, docs/gen-ai/gen-ai-metrics.md).
METRIC_SERVER_REQUEST_DURATION = (
    "gen_ai.server.request.duration",
    "s",
    "Generative AI server request duration such as time-to-last byte or last output token.",
)
METRIC_SERVER_TIME_TO_FIRST_TOKEN = (
    "gen_ai.server.time_to_first_token",
    "s",
    "Time to generate first token for successful responses.",
)
METRIC_SERVER_TIME_PER_OUTPUT_TOKEN = (
    "gen_ai.server.time_per_output_token",
    "s",
    "Time per output token generated after the first token for successful responses.",
)
SERVER_DURATION_BUCKETS = DURATION_BUCKETS
SERVER_TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)
SERVER_TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
# The conventions define no server-side token metric: ours, shaped like gen_ai.client.token.usage.
METRIC_SERVER_TOKEN_USAGE = (
    "llm.server.token.usage",
    "{token}",
    "Input and output tokens of the requests served, by gen_ai.token.type, as the response's usage reports them.",
)
METRIC_SERVER_ACTIVE_REQUESTS = (
    "llm.server.active_requests",
    "{request}",
    "LLM API requests being served (request received, response not finished).",
)
METRIC_SERVER_ACTIVE_STREAMS = (
    "llm.server.active_streams",
    "{stream}",
    "Streamed (SSE) LLM API responses being sent.",
)
METRIC_SERVER_STREAMS = (
    "llm.server.streams",
    "{stream}",
    "Finished streamed responses by llm.stream.outcome (completed, cancelled, failed).",
)
METRIC_SERVER_COST = (
    "llm.server.cost",
    "{USD}",
    "Cost of the requests served in US dollars, from the price table (unpriced models add nothing).",
)
HTTP_ROUTE = "http.route"
STREAM_OUTCOME = "llm.stream.outcome"
SERVER_STREAM_OUTCOMES = ("completed", "cancelled", "failed")
# A request the client abandoned (disconnect, cancelled task) before the response ended: not an error.
SERVER_REQUEST_CANCELLED = "llm.server.request.cancelled"
ENV_SERVER_INSTRUMENTATION = "OTEL_LLM_SERVER_INSTRUMENTATION"
ENV_SERVER_PREFIXES = "OTEL_LLM_SERVER_PREFIXES"
HTTP_REQUEST_METHOD = "http.request.method"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
