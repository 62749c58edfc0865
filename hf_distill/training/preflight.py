"""What `DistillationTrainer` checks before it loads any model: the training data, and that the student, the teacher
and `peft_config` fit together. Every problem found here would otherwise surface after minutes of loading, or as
one of transformers' or PEFT's messages that do not mention distillation.
"""

from __future__ import annotations

import json
import logging
import os

from torch import nn

from ..errors import HfDistillError
from ..formats.checks import EmptyCompletions, check_training_data
from ..heads import is_quantized

logger = logging.getLogger(__name__)

__all__ = ["ModelSetupError", "check_before_loading"]


class ModelSetupError(HfDistillError, ValueError):
    """The student, the teacher and `peft_config` do not fit together; the message lists every problem and its fix."""


def check_before_loading(
    model, teacher_model, args, *, train_dataset, eval_dataset=None, peft_config=None, formatting_func=None
) -> dict[str, EmptyCompletions]:
    """Check the datasets (rows, format, empty completions), then the models; raise before anything is loaded.

    Returns:
        `{dataset_name: EmptyCompletions}` for the datasets whose completions could be counted.
    """
    datasets = {"train": train_dataset}
    if isinstance(eval_dataset, dict):
        datasets.update(eval_dataset)
    elif eval_dataset is not None:
        datasets["eval"] = eval_dataset
    skip = (args.dataset_kwargs or {}).get("skip_prepare_dataset", False)  # the rows are the user's, as given
    empty = {}
    for name, dataset in datasets.items():
        if dataset is not None and not skip:
            found = check_training_data(dataset, dataset_name=name, dataset_text_field=args.dataset_text_field,
                                        formatting_func=formatting_func)
            if found is not None:
                empty[name] = found
    problems = [*_teacher_is_student(model, teacher_model), *_peft_problems(model, teacher_model, args, peft_config)]
    if peft_config is None and (how := _quantized_student(model, args)):
        problems.append(
            f"The student is quantized ({how}) and no `peft_config` is given: quantized weights cannot be trained. "
            "Pass `peft_config=LoraConfig(...)` (CLI --use_peft) to train LoRA adapters on the quantized student "
            "(QLoRA), or load the student unquantized. An 8-bit/4-bit teacher goes in `teacher_model_init_kwargs` "
            "(--teacher_model_init_kwargs), not `model_init_kwargs`."
        )
    if problems:
        raise ModelSetupError("Cannot distil:\n" + "\n".join(f"- {problem}" for problem in problems))
    return empty


def _teacher_is_student(model, teacher_model) -> list[str]:
    if not (isinstance(model, nn.Module) and isinstance(teacher_model, nn.Module)):
        return []
    if model is teacher_model:
        return ["`teacher_model` is the student itself: freezing the teacher would freeze the student. Load the "
                "teacher separately (`AutoModelForCausalLM.from_pretrained(...)`, or `copy.deepcopy(student)`)."]
    student_params = {id(p) for p in model.parameters()}
    shared = [name for name, p in teacher_model.named_parameters() if id(p) in student_params]
    if shared:
        return [f"The teacher shares {len(shared)} parameter tensors with the student (e.g. {shared[0]!r}): "
                "freezing the teacher would freeze them in the student too. Give the teacher its own weights "
                "(`copy.deepcopy(model)` or load it again)."]
    return []


def _quantized_student(model, args) -> str | None:
    """How the student is (or will be loaded) 8-bit/4-bit without trainable adapters, or None."""
    if isinstance(model, nn.Module):
        if hasattr(model, "peft_config") or getattr(model, "_hf_peft_config_loaded", False):
            return None  # a PeftModel, or a model with adapters loaded: the adapters train
        if is_quantized(model):
            return "it was loaded 8-bit/4-bit"
        return None
    config = (args.model_init_kwargs or {}).get("quantization_config")
    if config is not None and _quantizes(config):
        return f"`model_init_kwargs['quantization_config']` is {type(config).__name__}"
    stored = _stored_config(model).get("quantization_config")
    if stored and _quantizes(stored):
        return f"its checkpoint is quantized ({stored.get('quant_method', 'unknown method')})"
    return None


def _quantizes(config) -> bool:
    """A `quantization_config` (object or dict) that really quantizes: bitsandbytes ones may set neither flag."""
    values = config if isinstance(config, dict) else vars(config)
    method = values.get("quant_method", "bitsandbytes")
    method = str(getattr(method, "value", method)).lower()  # an enum on config objects, a string in dicts
    if "bitsandbytes" not in method:
        return True  # GPTQ, AWQ, ...: weights stored quantized
    return bool(values.get("load_in_8bit") or values.get("load_in_4bit") or values.get("_load_in_8bit")
                or values.get("_load_in_4bit"))


def _stored_config(model) -> dict:
    path = os.path.join(str(model), "config.json") if isinstance(model, (str, os.PathLike)) else ""
    if not path or not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _peft_problems(model, teacher_model, args, peft_config) -> list[str]:
    if peft_config is None:
        return []
    if isinstance(model, nn.Module) and hasattr(model, "peft_config"):
        return ["The student is already a PeftModel and `peft_config` is given too. `peft_config` applies to the "
                "student only (a teacher is never trained): drop it to train the student's adapters, or merge them "
                "first (`model = model.merge_and_unload()`) to train new ones."]
    targets = getattr(peft_config, "target_modules", None)
    if targets is None or isinstance(targets, str):
        return []  # PEFT's defaults, "all-linear" or a regex: resolved by PEFT against the student
    student_modules = _named_modules(model, args)
    if student_modules is None or any(_matches(peft_config, name) for name in student_modules):
        return []
    # Linear layers (GPT-2's are `Conv1D`): what LoRA usually targets, by their short names.
    leaves = sorted({name.rsplit(".", 1)[-1] for name, module in student_modules.items()
                     if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"})
    hint = ""
    teacher_names = dict(teacher_model.named_modules()) if isinstance(teacher_model, nn.Module) else {}
    if any(_matches(peft_config, name) for name in teacher_names):
        hint = " They name modules of the teacher: `peft_config` trains the student only (a teacher is never trained)."
    return [f"`peft_config.target_modules` {sorted(targets)} match no module of the student.{hint} Name the "
            f"student's modules ({', '.join(leaves[:12]) or 'see `model.named_modules()`'}) or use "
            "`target_modules='all-linear'` (CLI --lora_target_modules all-linear)."]


def _matches(peft_config, name: str) -> bool:
    from peft.tuners.tuners_utils import check_target_module_exists

    return bool(name) and bool(check_target_module_exists(peft_config, name))


def _named_modules(model, args) -> dict[str, nn.Module] | None:
    """The student's modules by name: from the model, or from its config on the meta device (no weights loaded)."""
    if isinstance(model, nn.Module):
        return dict(model.named_modules())
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(str(model), trust_remote_code=args.trust_remote_code)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=args.trust_remote_code)
    except Exception as error:  # an unreachable or unusual checkpoint: PEFT checks the names after loading
        logger.debug("Could not list the student's modules before loading it: %s", error)
        return None
    return dict(skeleton.named_modules())
