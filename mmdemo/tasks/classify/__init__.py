"""Classify tasks: image + text (+ audio) through a trained fusion head or zero-shot,
and training heads on a user's own data (CSV or zip) or on a generated task.

Pure functions over typed handles: inputs are paths, arrays or PIL images; outputs are
dataclasses holding plain lists of ``{label, score}``. Nothing here imports gradio or
torch. The submodules, by job: :mod:`.datasets` (CSV, zip, generated), :mod:`.features`
(the feature cache), :mod:`.training` (runs and the background :class:`TrainingJob`), :mod:`.reports`,
:mod:`.heads` (head files and the encoder check), :mod:`.apply` (classify, zero-shot).
"""

from mmdemo.tasks.classify.apply import (AUDIO_TEMPLATE, DEFAULT_TEMPLATE, MODALITIES, Classification, Inputs,
                                         ZeroShotResult, classify, describe_head, read_inputs,
                                         zero_shot)
from mmdemo.tasks.classify.datasets import (GENERATED_TASKS, MAX_AUDIO_SECONDS, MAX_CLASSES, MAX_IMAGE_PIXELS,
                                            MAX_LABEL_CHARS, MAX_ROWS, MAX_TEXT_CHARS, MAX_ZIP_BYTES, Dataset,
                                            LabeledExample, generated_dataset, load_dataset_upload, rate_of,
                                            read_csv_dataset)
from mmdemo.tasks.classify.features import FEATURE_BATCH, FeatureCache, dataset_features
from mmdemo.tasks.classify.heads import (check_encoders, check_save_name, head_name, import_head,
                                         register_saved_heads, resolve_head, save_trained_head, write_head)
from mmdemo.tasks.classify.reports import LeaderRow, TrainReport
from mmdemo.tasks.classify.training import (DEFAULT_EPOCHS, DEFAULT_PATIENCE, HEAD_KINDS, MAX_PATIENCE, TrainingJob,
                                            TrainingJobs,
                                            check_training_options, train_on_dataset)
from mmdemo.head_kinds import AT_CHANCE_MARGIN
from mmdemo.toyworld.examples import generated_examples

__all__ = [
    "LabeledExample", "Dataset", "Classification", "ZeroShotResult", "TrainReport", "LeaderRow", "Inputs",
    "read_csv_dataset", "load_dataset_upload", "rate_of", "generated_dataset", "dataset_features", "FeatureCache",
    "check_training_options", "train_on_dataset", "TrainingJob", "TrainingJobs", "write_head", "save_trained_head",
    "import_head", "register_saved_heads", "resolve_head", "check_encoders", "read_inputs",
    "classify", "describe_head", "AT_CHANCE_MARGIN", "zero_shot", "head_name", "check_save_name", "generated_examples",
    "GENERATED_TASKS", "HEAD_KINDS", "DEFAULT_EPOCHS", "DEFAULT_TEMPLATE", "AUDIO_TEMPLATE", "MODALITIES",
    "FEATURE_BATCH", "MAX_ROWS", "MAX_CLASSES", "MAX_LABEL_CHARS", "MAX_TEXT_CHARS", "MAX_ZIP_BYTES",
    "MAX_AUDIO_SECONDS", "MAX_IMAGE_PIXELS",
]
