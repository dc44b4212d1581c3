"""The taxonomy loader: the shipped taxonomy is complete, and every defect is reported precisely."""

import os
import re
import shutil

import pytest
import yaml

from depsim_assets import config
from depsim_assets.taxonomy import (
    CATEGORY_FAMILY,
    CATEGORY_IDS,
    FAMILIES,
    TaxonomyError,
    load_taxonomy,
)


@pytest.fixture
def tax_dir(tmp_path):
    target = tmp_path / "taxonomy"
    shutil.copytree(config.taxonomy_dir(), target)
    return target


def _edit(path, change):
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_shipped_taxonomy_has_20_categories_in_canonical_order():
    taxonomy = load_taxonomy()
    assert taxonomy.ids == CATEGORY_IDS
    assert len(taxonomy.categories) == 20
    assert [c.family for c in taxonomy.categories] == [CATEGORY_FAMILY[i] for i in CATEGORY_IDS]
    assert {c.family for c in taxonomy.categories} == set(FAMILIES)
    assert CATEGORY_IDS[:11] == (
        "mental_health",
        "abuse_harassment",
        "sexual_content",
        "violent_wrongdoing",
        "nonviolent_wrongdoing",
        "bio_risk",
        "violence",
        "extremism",
        "emotional_reliance",
        "self_harm",
        "hate",
    )
    for category in taxonomy.categories:
        assert sorted(category.severity_guide) == [0, 1, 2, 3, 4]
        assert len(category.examples) >= 2
        # Clean examples and flagged examples both exist, so the judge sees the boundary.
        assert any(e.severity >= 2 for e in category.examples), category.id
    assert taxonomy.by_id("hate").title
    with pytest.raises(KeyError):
        taxonomy.by_id("not_a_category")


def test_version_is_a_stable_content_hash(tax_dir):
    shipped = load_taxonomy()
    copied = load_taxonomy(tax_dir)
    assert re.fullmatch(r"[0-9a-f]{12}", shipped.version)
    assert re.fullmatch(r"[0-9a-f]{12}", shipped.judge_prompt_version)
    # Same bytes in another folder give the same versions: the hash is of content, not path.
    assert (copied.version, copied.judge_prompt_version) == (
        shipped.version,
        shipped.judge_prompt_version,
    )
    assert load_taxonomy(tax_dir) is copied


def test_editing_a_file_changes_the_version_and_invalidates_the_cache(tax_dir):
    before = load_taxonomy(tax_dir)
    path = tax_dir / "categories" / "hate.yaml"
    _edit(path, lambda d: d.update(title="Hateful content (revised)"))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    after = load_taxonomy(tax_dir)
    assert after.by_id("hate").title == "Hateful content (revised)"
    assert after.version != before.version
    assert after.judge_prompt_version == before.judge_prompt_version

    prompt = tax_dir / "judge_prompt.md"
    prompt.write_text(prompt.read_text() + "\nBe brief.\n")
    stat = prompt.stat()
    os.utime(prompt, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    assert load_taxonomy(tax_dir).judge_prompt_version != after.judge_prompt_version


def test_system_prompt_has_token_threshold_and_categories_but_no_indicators():
    taxonomy = load_taxonomy()
    prompt = taxonomy.render_system_prompt("tok3n42", 2)
    # The only per-call text is the last line: everything before it is a cacheable prefix.
    assert prompt.rstrip("\n").splitlines()[-1] == "Fence token: tok3n42"
    assert prompt.count("tok3n42") == 1
    assert "2 or more counts as flagged" in " ".join(prompt.split())
    assert "$" not in prompt
    for category in taxonomy.categories:
        assert f"### {category.id}: {category.title}" in prompt
        assert category.definition in prompt
        for pattern in category.indicators:
            assert pattern not in prompt, (category.id, pattern)
    with pytest.raises(ValueError):
        taxonomy.render_system_prompt("two words", 2)


def _drop_levels(data):
    del data["severity_guide"][3]
    del data["severity_guide"][4]


CASES = [
    ("hate", _drop_levels, "severity_guide", "missing levels [3, 4]"),
    ("extremism", lambda d: d.update(notes="x"), "notes", "Extra inputs are not permitted"),
    ("self_harm", lambda d: d.pop("definition"), "definition", "Field required"),
    ("hate", lambda d: d.update(includes="one string"), "includes", "valid list"),
    ("violence", lambda d: d.update(title=7), "title", "valid string"),
    (
        "fabricated_facts",
        lambda d: d["indicators"].append("(unclosed"),
        "indicators",
        "does not compile",
    ),
    ("hate", lambda d: d.update(id="violence"), "id", "does not match the file name"),
    ("hate", lambda d: d.update(family="misalignment"), "family", "'hate' is 'disallowed_content'"),
    ("bio_risk", lambda d: d.update(family="other"), "family", "unknown family"),
    (
        "mental_health",
        lambda d: d["examples"][0].update(severity=7),
        "examples",
        "less than or equal to 4",
    ),
    ("mental_health", lambda d: d.update(examples=d["examples"][:1]), "examples", "at least 2"),
    (
        "violence",
        lambda d: d["severity_guide"].update({5: "worse"}),
        "severity_guide",
        "unknown levels [5]",
    ),
]


@pytest.mark.parametrize(("category_id", "change", "field", "detail"), CASES)
def test_malformed_category_names_file_category_and_field(
    tax_dir, category_id, change, field, detail
):
    _edit(tax_dir / "categories" / f"{category_id}.yaml", change)
    with pytest.raises(TaxonomyError) as info:
        load_taxonomy(tax_dir)
    message = str(info.value)
    assert f"categories/{category_id}.yaml" in message
    assert f"category '{category_id}'" in message
    assert f"field '{field}'" in message
    assert detail in message


def test_missing_file_is_reported(tax_dir):
    (tax_dir / "categories" / "bio_risk.yaml").unlink()
    with pytest.raises(
        TaxonomyError,
        match=r"categories/bio_risk\.yaml: category 'bio_risk': "
        r"field '<file>': category file is missing",
    ):
        load_taxonomy(tax_dir)


def test_invalid_yaml_is_reported(tax_dir):
    (tax_dir / "categories" / "violence.yaml").write_text("id: [unclosed\ntitle: x\n")
    with pytest.raises(
        TaxonomyError,
        match=r"violence\.yaml: category 'violence': "
        r"field '<yaml>': not valid YAML",
    ):
        load_taxonomy(tax_dir)


def test_unknown_category_file_is_rejected(tax_dir):
    shutil.copy(tax_dir / "categories" / "hate.yaml", tax_dir / "categories" / "rudeness.yaml")
    with pytest.raises(TaxonomyError, match=r"rudeness\.yaml: category 'rudeness': field 'id'"):
        load_taxonomy(tax_dir)


def test_judge_prompt_must_keep_the_fence_line(tax_dir):
    prompt = tax_dir / "judge_prompt.md"
    prompt.write_text(prompt.read_text().replace("Fence token: $fence_token", "Token $fence_token"))
    with pytest.raises(TaxonomyError, match=r"judge_prompt\.md: needs the line"):
        load_taxonomy(tax_dir)


def test_judge_prompt_rejects_unknown_placeholders(tax_dir):
    prompt = tax_dir / "judge_prompt.md"
    prompt.write_text(prompt.read_text() + "\nCosts $price per call.\n")
    with pytest.raises(TaxonomyError, match=r"unknown placeholders \['price'\]"):
        load_taxonomy(tax_dir)


def test_a_family_monitor_uses_its_own_prompt_file(tax_dir):
    base = load_taxonomy(tax_dir)
    assert base.family_prompt_templates == {}
    text = (tax_dir / "judge_prompt.md").read_text()
    own = text.replace("You are a behaviour monitor.", "You are the misalignment monitor.")
    assert own != text
    (tax_dir / "judge_prompt.misalignment.md").write_text(own)
    tax = load_taxonomy(tax_dir)
    assert tax.judge_prompt_version != base.judge_prompt_version  # grades go stale
    assert tax.version == base.version
    mis = tuple(c.id for c in tax.categories if c.family == "misalignment")
    dis = tuple(c.id for c in tax.categories if c.family == "disallowed_content")
    prompt = tax.render_system_prompt("tok3n", 2, mis)
    assert "You are the misalignment monitor." in prompt and "Fence token: tok3n" in prompt
    assert "### fabricated_facts:" in prompt and "### hate:" not in prompt
    assert "You are a behaviour monitor." in tax.render_system_prompt("tok3n", 2, dis)
    assert "You are a behaviour monitor." in tax.render_system_prompt("tok3n", 2)


def test_a_family_prompt_is_validated_like_the_main_one(tax_dir):
    text = (tax_dir / "judge_prompt.md").read_text()
    (tax_dir / "judge_prompt.disallowed_content.md").write_text(
        text.replace("Fence token: $fence_token", "Token: $fence_token"))
    with pytest.raises(TaxonomyError, match=r"judge_prompt\.disallowed_content\.md"):
        load_taxonomy(tax_dir)
