"""Every telemetry name otel-llm emits, in one place.

GenAI names follow the OpenTelemetry semantic conventions v1.41.0, the last
release that carried them. Names outside ``gen_ai.*`` (cost, gateway) are our
own and live under ``llm.*`` so they can never collide with a future
convention.
"""

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
