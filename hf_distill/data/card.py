"""`README.md` dataset cards for the datasets hf_distill writes: Hub metadata in the YAML header (with the run's
settings under one `hf_distill` key), and a body that says what the dataset is and how to use it."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData
from jinja2 import Template

__all__ = ["write_dataset_card"]

_TEMPLATE = Template(
    """---
{{ card_data }}
---

# {{ title }}

{{ summary }}

Made with hf_distill: `{{ function }}`.

## Provenance

| field | value |
|---|---|
{% for key, value in fields %}| {{ key }} | `{{ value }}` |
{% endfor %}
## Usage

```python
{{ usage }}
```
"""
)


def write_dataset_card(
    output_dir: str | os.PathLike,
    *,
    title: str,
    summary: str,
    function: str,
    settings: dict,
    usage: str,
    tags: list[str],
) -> DatasetCard:
    """Write `output_dir/README.md` and return it (parsed back, so the YAML is known to be valid).

    Args:
        title (`str`): the card's heading.
        summary (`str`): one paragraph on what the dataset holds.
        function (`str`): the hf_distill call that made it.
        settings (`dict`): the run's settings and statistics; stored under the `hf_distill` metadata key and shown
            as the provenance table.
        usage (`str`): a Python snippet.
        tags (`list[str]`): Hub tags besides `hf-distill` and `distillation`.
    """
    card_data = DatasetCardData(tags=["hf-distill", "distillation", *tags], hf_distill=settings)
    fields = [(key, value) for key, value in sorted(settings.items()) if not isinstance(value, dict)]
    text = _TEMPLATE.render(
        card_data=card_data.to_yaml(), title=title, summary=summary, function=function, fields=fields, usage=usage
    )
    path = Path(output_dir) / "README.md"
    path.write_text(text)
    return DatasetCard.load(path)
