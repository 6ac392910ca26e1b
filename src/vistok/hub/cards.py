"""Model cards rendered from the family templates in ``vistok/model_cards/``."""

from __future__ import annotations

import string
from importlib import resources

import yaml


def render_model_card(template: str, *, metadata: dict, **fields: str) -> str:
    """Fill ``model_cards/<template>.md`` (``$name`` placeholders) and prepend YAML front matter."""
    path = resources.files("vistok") / "model_cards" / f"{template}.md"
    if not path.is_file():
        raise ValueError(f"no model card template {template!r} in vistok/model_cards/")
    body = string.Template(path.read_text()).substitute(**fields)
    front = yaml.safe_dump({k: v for k, v in metadata.items() if v is not None}, sort_keys=False).strip()
    return f"---\n{front}\n---\n\n{body.strip()}\n"


def metrics_table(metrics: list[dict]) -> str:
    """Markdown table of published numbers: [{"metric", "value", "setting", "source"}]."""
    if not metrics:
        return "No published numbers for this checkpoint."
    rows = ["| Metric | Value | Setting | Source |", "|---|---|---|---|"]
    rows += [f"| {m['metric']} | {m['value']} | {m.get('setting', '')} | {m['source']} |" for m in metrics]
    return "\n".join(rows)
