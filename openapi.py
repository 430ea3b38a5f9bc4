"""Write openapi.yaml: the contract generated from model.json (iris_predict/contract.py and each
protocol module's part), as YAML.

Usage: python openapi.py [MODEL_JSON [OUTPUT]]   (make openapi; defaults: model.json, openapi.yaml)
A development tool: PyYAML comes from requirements-dev.txt, and serving answers the same
document as JSON at GET /openapi.json. tests/test_openapi.py fails when the committed
openapi.yaml is not what this writes for the committed model.json.
"""

import json
import sys
from pathlib import Path

import yaml

from iris_predict import settings
from iris_predict.model import signature
from iris_predict.protocols import routes

ROOT = Path(__file__).resolve().parent
HEADER = ("# Generated from model.json by `make openapi` (openapi.py): edit\n"
          "# iris_predict/contract.py, not this file. GET /openapi.json serves the same\n"
          "# document for the served model.\n")


class _Dumper(yaml.SafeDumper):
    """Each schema written out where it is used: the generator shares objects, YAML need not."""

    def ignore_aliases(self, data) -> bool:
        return True


def render(model_json: Path) -> str:
    """openapi.yaml's text for the model that model_json describes, with the default limits."""
    found = signature.from_metadata(json.loads(model_json.read_text()))
    document = routes.contract(found, settings.MAX_BODY_BYTES, settings.MAX_BATCH_ROWS)
    return HEADER + yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                              width=100)


def main(argv: list) -> int:
    if len(argv) > 2 or any(arg.startswith("-") for arg in argv):
        print(__doc__.split("\n\n")[1].splitlines()[0], file=sys.stderr)
        return 2
    source = Path(argv[0]) if argv else ROOT / "model.json"
    target = Path(argv[1]) if len(argv) > 1 else ROOT / "openapi.yaml"
    target.write_text(render(source))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
