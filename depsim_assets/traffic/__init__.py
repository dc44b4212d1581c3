"""Traffic stage: production log -> sampled, de-identified conversations and fixed prefixes."""

from depsim_assets.traffic.deid import DEID_VERSION, PII_TYPES, Deidentifier, hash_user, luhn_valid
from depsim_assets.traffic.eligibility import (
    INELIGIBLE_REASONS,
    EligibilityConfig,
    ineligible_reason,
    is_multimodal,
)
from depsim_assets.traffic.ingest import FORMATS, IngestResult, UnreadableFile, ingest_files
from depsim_assets.traffic.logs import (
    DEFAULT_MAX_LINE_BYTES,
    REJECT_REASONS,
    LogRecord,
    Rejected,
    iter_log,
)
from depsim_assets.traffic.pipeline import (
    DUPLICATE_ID,
    SamplingResult,
    allocate,
    prefix_rows_from_sampled,
    run_sampling,
)
from depsim_assets.traffic.residue import Hit, scan_messages, scan_rows
from depsim_assets.traffic.sample import Sampler, sample_items, sample_key
from depsim_assets.traffic.strip import canonical_json, prefix_hash, split_final_turn

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "FORMATS",
    "Hit",
    "IngestResult",
    "UnreadableFile",
    "allocate",
    "ingest_files",
    "scan_messages",
    "scan_rows",
    "DEID_VERSION",
    "DUPLICATE_ID",
    "INELIGIBLE_REASONS",
    "PII_TYPES",
    "REJECT_REASONS",
    "Deidentifier",
    "EligibilityConfig",
    "LogRecord",
    "Rejected",
    "Sampler",
    "SamplingResult",
    "canonical_json",
    "hash_user",
    "ineligible_reason",
    "is_multimodal",
    "iter_log",
    "luhn_valid",
    "prefix_hash",
    "prefix_rows_from_sampled",
    "run_sampling",
    "sample_items",
    "sample_key",
    "split_final_turn",
]
