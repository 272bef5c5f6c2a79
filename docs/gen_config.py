"""Print docs/configuration.md from the settings classes: `python docs/gen_config.py`."""

import importlib
import sys
from pathlib import Path

from pydantic.fields import PydanticUndefined

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CLASSES = [
    ("shared.config", "CommonSettings"),
    ("services.api.settings", "ApiSettings"),
    ("shared.student_settings", "StudentSettings"),
    ("services.executor.settings", "ExecutorSettings"),
    ("services.teacher.settings", "TeacherSettings"),
    ("services.trainer.config", "TrainerConfig"),
    ("services.scheduler.reconciler", "ReconcilerSettings"),
    ("services.retention.settings", "RetentionSettings"),
]


def _default(field) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()
    else:
        return "(required)"
    text = str(getattr(value, "value", value)).replace("\n", "\\n")
    return text if len(text) <= 40 else text[:37] + "…"


def main() -> None:
    print("# Configuration reference\n")
    print(
        "Every setting is an environment variable, validated when a process starts: an invalid"
        " value stops it with a message naming the variable. Generated from the settings classes"
        " by `python docs/gen_config.py > docs/configuration.md`."
    )
    for module, name in CLASSES:
        cls = getattr(importlib.import_module(module), name)
        prefix = cls.model_config.get("env_prefix", "")
        print(f"\n## {name} (`{prefix}*`)\n\n| variable | default | meaning |\n|---|---|---|")
        for fname, field in cls.model_fields.items():
            alias = field.validation_alias
            if alias is None:
                var = (prefix + fname).upper()
            else:
                var = alias if isinstance(alias, str) else alias.choices[0]
            desc = (field.description or "").replace("|", "/").replace("\n", " ")
            print(f"| `{var}` | `{_default(field)}` | {desc} |")


if __name__ == "__main__":
    main()
