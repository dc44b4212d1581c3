"""Which conversations may be sampled at all.

The sample is uniform over *eligible* conversations: users who opted out of model-improvement
use are never sampled, multimodal conversations are out because only text is de-identified
and replayed, and sources or models named in the config (test traffic, say) are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from depsim_assets.messages import TEXT_PART_TYPES
from depsim_assets.traffic.logs import LogRecord

OPTED_OUT = "opted_out"
MULTIMODAL = "multimodal"
EXCLUDED_SOURCE = "excluded_source"
EXCLUDED_MODEL = "excluded_model"
EXCLUDED_METADATA = "excluded_metadata"

INELIGIBLE_REASONS = (OPTED_OUT, MULTIMODAL, EXCLUDED_SOURCE, EXCLUDED_MODEL, EXCLUDED_METADATA)


@dataclass(frozen=True)
class EligibilityConfig:
    """What makes a well-formed conversation ineligible beyond opt-out and multimodality.

    ``exclude_metadata`` maps a key of the record's ``metadata`` object to the values that
    exclude it (compared as text: ``{"tier": ["enterprise"]}``, ``{"eval": ["true"]}``).
    """

    exclude_sources: tuple[str, ...] = ("internal_test",)
    exclude_models: tuple[str, ...] = ()
    exclude_metadata: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def metadata_text(value: Any) -> str | None:
    """A metadata value as compared by exclusions and strata (None stays None)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def is_multimodal(messages: list[dict[str, Any]]) -> bool:
    """Whether any message carries a non-text part (image, audio, file...) or an audio reply."""
    for msg in messages:
        if msg.get("audio") is not None:
            return True
        content = msg.get("content")
        if isinstance(content, list) and any(
            part.get("type") not in TEXT_PART_TYPES for part in content
        ):
            return True
    return False


def ineligible_reason(record: LogRecord, config: EligibilityConfig | None = None) -> str | None:
    """The first reason ``record`` may not be sampled, or None when it is eligible.

    Reasons are checked in the order of :data:`INELIGIBLE_REASONS`, opt-out first, so a
    record counts once, under the reason that matters most.
    """
    config = config or EligibilityConfig()
    if record.opted_out:
        return OPTED_OUT
    if is_multimodal(record.messages):
        return MULTIMODAL
    if record.source in config.exclude_sources:
        return EXCLUDED_SOURCE
    if record.model in config.exclude_models:
        return EXCLUDED_MODEL
    if config.exclude_metadata and record.metadata:
        for key, values in config.exclude_metadata.items():
            if metadata_text(record.metadata.get(key)) in values:
                return EXCLUDED_METADATA
    return None
