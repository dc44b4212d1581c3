"""The one model-call layer: every request to a model goes through here.

request key -> response cache -> call engine (adaptive concurrency, rate buckets, retries,
budget) -> write-through storage, online or through the Batch API. Stages ask it for answers
and never talk to a client directly. Public API below; the submodules are its parts.
"""

from depsim_assets.models import cache
from depsim_assets.models.answers import Answers, BatchCalls, Codec, admit, answer_all
from depsim_assets.models.batch import (
    BatchError,
    BatchPending,
    BatchResult,
    BatchSettings,
    build_input,
    parse_results,
    result_from_line,
)
from depsim_assets.models.cache import CacheWriter, lookup, recall, remember, request_key, store
from depsim_assets.models.engine import (
    BUDGET_REACHED,
    ERROR,
    NOT_ATTEMPTED,
    OK,
    AdaptiveLimit,
    Budget,
    CallEngine,
    CallResult,
    Limits,
    Progress,
    RateBucket,
    progress_reporter,
)
from depsim_assets.models.errors import (
    CONTEXT_LENGTH_EXCEEDED,
    classify,
    error_text,
    is_context_length_error,
    is_field_refusal,
    retry_after_s,
)
from depsim_assets.models.tokens import CHARS_PER_TOKEN, TokenCounter, approx_tokens

__all__ = [
    "BUDGET_REACHED",
    "CHARS_PER_TOKEN",
    "CONTEXT_LENGTH_EXCEEDED",
    "ERROR",
    "NOT_ATTEMPTED",
    "OK",
    "AdaptiveLimit",
    "Answers",
    "BatchCalls",
    "BatchError",
    "BatchPending",
    "BatchResult",
    "BatchSettings",
    "Budget",
    "CacheWriter",
    "CallEngine",
    "CallResult",
    "Codec",
    "Limits",
    "Progress",
    "RateBucket",
    "TokenCounter",
    "admit",
    "answer_all",
    "approx_tokens",
    "build_input",
    "cache",
    "classify",
    "error_text",
    "is_context_length_error",
    "is_field_refusal",
    "lookup",
    "parse_results",
    "progress_reporter",
    "recall",
    "remember",
    "request_key",
    "result_from_line",
    "retry_after_s",
    "store",
]
