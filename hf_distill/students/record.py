"""What `init_student` writes beside the student: `student_init.json` (its provenance) and a model card whose
`base_model` is the teacher."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData
from torch import nn

from .._version import __version__
from ..publish.provenance.sources import model_record

__all__ = ["INIT_PROVENANCE_FILE", "init_card", "save_initialised_student"]

INIT_PROVENANCE_FILE = "student_init.json"
#: The Hub's relation for a model whose weights were derived from `base_model` and changed (its other values,
#: adapter, merge and quantized, do not describe a layer-pruned copy).
BASE_MODEL_RELATION = "finetune"


def save_initialised_student(student: nn.Module, tokenizer, output_dir, *, teacher, teacher_model: nn.Module) -> Path:
    """Write the student, its tokenizer, `student_init.json` and `README.md` into `output_dir`."""
    folder = Path(output_dir)
    student.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    source = teacher if isinstance(teacher, (str, os.PathLike)) else teacher_model
    record = model_record("teacher", source)
    record.details = {**record.details, **_gguf_details(teacher_model)}
    init = student.config.student_init
    provenance = {
        **init,
        "teacher_record": record.to_dict(),
        "num_parameters": sum(p.numel() for p in student.parameters()),
        "teacher_num_parameters": sum(p.numel() for p in teacher_model.parameters()),
        "hf_distill_version": __version__,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (folder / INIT_PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    init_card(provenance, record.repo_id, record.license).save(folder / "README.md")
    return folder


def _gguf_details(model: nn.Module) -> dict[str, Any]:
    source = getattr(model, "gguf_source", None)
    return {"gguf": source.to_dict()} if source is not None else {}


def init_card(provenance: dict[str, Any], teacher_repo_id: str | None, license_id: str | None) -> ModelCard:
    """The card of an initialised (not yet trained) student."""
    data = ModelCardData(
        license=license_id, library_name="transformers", pipeline_tag="text-generation",
        tags=["hf-distill", "student-init", "layer-pruned"],
    )
    if teacher_repo_id:
        data.base_model, data.base_model_relation = teacher_repo_id, BASE_MODEL_RELATION
    layer_map = provenance["layer_map"]
    gguf = provenance["teacher_record"]["details"].get("gguf")
    weights = f" (dequantised from the GGUF file `{gguf['file_name']}`, {gguf['file_type']})" if gguf else ""
    body = (
        "# Student initialised from its teacher\n\n"
        f"Not trained yet: a {len(layer_map)}-layer copy of `{provenance['teacher']}`{weights} "
        f"({provenance['teacher_num_layers']} layers), made with `hf_distill.students.init_student` "
        f"(strategy `{provenance['strategy']}`). Embeddings, final norm and output head are the teacher's; student "
        "layer *i* starts as teacher layer `layer_map[i]`:\n\n"
        f"`layer_map = {layer_map}`\n\n"
        f"{provenance['num_parameters']:,} parameters (the teacher has {provenance['teacher_num_parameters']:,}). "
        "Distil the teacher into it (`DistillationTrainer(model=<this folder>, teacher_model=...)`) before use: "
        "dropping layers breaks the computation the remaining ones were trained for.\n"
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
