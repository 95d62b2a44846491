"""The checks the Hub makes on a model card's YAML block (`/api/validate-yaml`, and on every commit of README.md)."""

from __future__ import annotations

import re
from typing import Any

import yaml

# What the Hub's metadata validation accepts (subset of huggingface.js `licenses` / `pipelines`).
LICENSES = frozenset(  # a word list reads better than 80 quoted items
    "apache-2.0 mit openrail openrail++ bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 "  # noqa: SIM905
    "bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc "
    "cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 "
    "cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 "
    "cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 "
    "eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c "
    "ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr "
    "deepfloyd-if-license fair-noncommercial-research-license llama2 llama3 llama3.1 llama3.2 llama3.3 llama4 "
    "gemma unknown other".split()
)
PIPELINE_TAGS = frozenset(
    "text-classification token-classification table-question-answering question-answering text2text-generation "  # noqa: SIM905
    "zero-shot-classification translation summarization feature-extraction text-generation fill-mask "
    "sentence-similarity text-to-speech text-to-audio automatic-speech-recognition audio-to-audio "
    "audio-classification voice-activity-detection depth-estimation image-classification object-detection "
    "image-segmentation text-to-image image-to-text image-to-image image-to-video unconditional-image-generation "
    "video-classification reinforcement-learning robotics tabular-classification tabular-regression "
    "tabular-to-text table-to-text multiple-choice text-ranking text-retrieval time-series-forecasting "
    "text-to-video image-text-to-text visual-question-answering document-question-answering "
    "zero-shot-image-classification graph-ml mask-generation zero-shot-object-detection text-to-3d image-to-3d "
    "image-feature-extraction video-text-to-text keypoint-detection visual-document-retrieval any-to-any other".split()
)
YAML_BLOCK = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")
MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def front_matter(content: str) -> tuple[Any, list[str]]:
    match = YAML_BLOCK.search(content)
    if match is None:
        return None, []
    try:
        return yaml.safe_load(match.group(2)), []
    except yaml.YAMLError as err:
        return None, [f"YAML parse error: {' '.join(str(err).split())}"]


def _is_str_list(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _validate_model_index(model_index: Any) -> list[str]:
    errors: list[str] = []

    def need(obj: Any, key: str, where: str, kind: type | tuple = str) -> Any:
        if not isinstance(obj, dict) or key not in obj:
            errors.append(f'"{where}.{key}" is required')
            return None
        if not isinstance(obj[key], kind):
            errors.append(f'"{where}.{key}" must be of type {getattr(kind, "__name__", kind)}')
            return None
        return obj[key]

    if not isinstance(model_index, list) or not model_index:
        return ['"model-index" must be a non-empty array']
    for i, entry in enumerate(model_index):
        where = f"model-index[{i}]"
        need(entry, "name", where)
        results = need(entry, "results", where, list) or []
        for j, result in enumerate(results):
            rwhere = f"{where}.results[{j}]"
            task = need(result, "task", rwhere, dict)
            if task is not None:
                need(task, "type", f"{rwhere}.task")
            dataset = need(result, "dataset", rwhere, dict)
            if dataset is not None:
                need(dataset, "type", f"{rwhere}.dataset")
                need(dataset, "name", f"{rwhere}.dataset")
                for optional in ("config", "split", "revision"):
                    if optional in dataset and not isinstance(dataset[optional], str):
                        errors.append(f'"{rwhere}.dataset.{optional}" must be of type string')
            metrics = need(result, "metrics", rwhere, list)
            if metrics == []:
                errors.append(f'"{rwhere}.metrics" must contain at least 1 item')
            for k, metric in enumerate(metrics or []):
                need(metric, "type", f"{rwhere}.metrics[{k}]")
                if isinstance(metric, dict) and "value" not in metric:
                    errors.append(f'"{rwhere}.metrics[{k}].value" is required')
                if isinstance(metric, dict) and "verified" in metric and not isinstance(metric["verified"], bool):
                    errors.append(f'"{rwhere}.metrics[{k}].verified" must be of type boolean')
    return errors


def validate_metadata(content: str, repo_type: str = "model") -> tuple[list[str], list[str]]:
    """The checks the Hub's `/api/validate-yaml` makes on a card's YAML block: (errors, warnings)."""
    metadata, errors = front_matter(content)
    if errors:
        return errors, []
    if metadata is None:
        return [], ["empty or missing yaml metadata in repo card"]
    if not isinstance(metadata, dict):
        return ["metadata must be a YAML mapping"], []
    if "license" in metadata and (not isinstance(metadata["license"], str) or metadata["license"] not in LICENSES):
        errors.append(f'"license" must be one of the Hub licenses, got {metadata["license"]!r}')
    for key in ("tags", "datasets", "metrics", "language"):
        if key in metadata and not _is_str_list(metadata[key]):
            errors.append(f'"{key}" must be a string or an array of strings')
    if "library_name" in metadata and not isinstance(metadata["library_name"], str):
        errors.append('"library_name" must be a string')
    if repo_type == "model":
        if "pipeline_tag" in metadata and metadata["pipeline_tag"] not in PIPELINE_TAGS:
            errors.append(f'"pipeline_tag" is not a known pipeline: {metadata["pipeline_tag"]!r}')
        if "base_model" in metadata:
            base = metadata["base_model"]
            names = [base] if isinstance(base, str) else base if _is_str_list(base) else None
            if names is None:
                errors.append('"base_model" must be a string or an array of strings')
            for name in names or []:
                if not MODEL_ID.match(name):
                    errors.append(f'"base_model" is not a valid model id: {name!r}')
        if "model-index" in metadata:
            errors.extend(_validate_model_index(metadata["model-index"]))
    return errors, []
