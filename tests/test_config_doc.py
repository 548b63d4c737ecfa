"""docs/config.md stays true to app/repos/config.py: every key documented, every default right."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from app.repos.config import DEFAULT_CONFIG, RepoConfig, parse_repo_config

DOC = Path(__file__).resolve().parent.parent / "docs" / "config.md"
_KEY_HEADING = re.compile(r"^### `(?P<key>[a-z_]+\.[a-z_]+)`\s*$", re.MULTILINE)
_INLINE_DEFAULT = re.compile(r"^- \*\*Default:\*\* `(?P<value>[^`]*)`\s*$", re.MULTILINE)
_BLOCK_DEFAULT = re.compile(r"^- \*\*Default:\*\*\s*\n\s*\n```yaml\n(?P<value>.*?)\n```", re.MULTILINE | re.DOTALL)


def schema_keys() -> dict[str, tuple[type[BaseModel], str]]:
    """Every `section.key` of the schema, with its section model and field name."""
    keys = {}
    for section, field in RepoConfig.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for name in model.model_fields:
            keys[f"{section}.{name}"] = (model, name)
    return keys


def doc_sections() -> dict[str, str]:
    """`section.key` → the text of its section in docs/config.md."""
    text = DOC.read_text()
    matches = list(_KEY_HEADING.finditer(text))
    sections = {}
    for match in matches:
        next_heading = re.compile(r"^##", re.MULTILINE).search(text, match.end())
        sections[match["key"]] = text[match.end():next_heading.start() if next_heading else len(text)]
    return sections


def documented_default(section_text: str) -> Any:
    match = _INLINE_DEFAULT.search(section_text) or _BLOCK_DEFAULT.search(section_text)
    assert match, "no '- **Default:**' line"
    return yaml.safe_load(match["value"])


def test_every_schema_key_is_documented_and_nothing_else() -> None:
    """A new key needs a section in docs/config.md; a removed key must leave it."""
    documented, schema = set(doc_sections()), set(schema_keys())
    assert sorted(schema - documented) == [], "undocumented keys"
    assert sorted(documented - schema) == [], "documented keys that do not exist"


@pytest.mark.parametrize("key", sorted(schema_keys()))
def test_documented_default_matches_the_schema(key: str) -> None:
    """The default written in the docs, read through the schema, equals the schema's default."""
    model, name = schema_keys()[key]
    section = doc_sections().get(key)
    assert section is not None, f"{key} is not documented"
    assert re.search(r"^- \*\*Type:\*\* \S", section, re.MULTILINE), f"{key} has no type"
    prose = section.split("\n\n", 1)[-1].strip()
    assert prose, f"{key} has no description"
    value = documented_default(section)
    parsed = getattr(model.model_validate({name: value}), name)
    assert parsed == model.model_fields[name].default, f"{key}: docs say {value!r}"


def test_the_complete_example_is_exactly_the_defaults() -> None:
    """The 'complete file' block sets every key, to its default."""
    text = DOC.read_text()
    block = re.search(r"## The complete file with every default\n\n```yaml\n(?P<yaml>.*?)\n```", text, re.DOTALL)
    assert block
    data = yaml.safe_load(block["yaml"])
    assert {f"{s}.{k}" for s, keys in data.items() for k in keys} == set(schema_keys())
    assert parse_repo_config(block["yaml"]) == DEFAULT_CONFIG
