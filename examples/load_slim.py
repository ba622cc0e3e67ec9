"""Rebuild and run a slimmed network with plain PyTorch: no sparsehalo import.

    python examples/load_slim.py RUN/export/model.slim.pt [--save outputs.pt]

Reads ``model.slim.json`` next to the weights (format ``sparsehalo-slim-1``): the ``torch.nn`` layers with
their new widths, and the forward pass as an ordered list of nodes; loads the plain state dict and runs
the model on a seeded random batch of 4 (``--save`` writes its outputs).
"""

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FUNCTIONS = {"relu": F.relu, "max_pool2d": F.max_pool2d, "avg_pool2d": F.avg_pool2d, "tanh": torch.tanh,
             "adaptive_avg_pool2d": F.adaptive_avg_pool2d, "add": torch.add, "mul": torch.mul, "flatten": torch.flatten}
LAYERS = {"Conv1d", "Conv2d", "Conv3d", "Linear", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "ReLU", "Tanh", "Identity",
          "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Dropout", "Flatten"}  # never a class named by the file otherwise


class SlimNet(nn.Module):
    def __init__(self, desc: dict):
        super().__init__()
        if desc.get("graph") is None:
            raise SystemExit(f"not portable: {desc.get('graph_note')}; build your own class with the widths in 'modules'")
        self._nodes = desc["graph"]
        for name, spec in desc["modules"].items():
            *path, leaf = name.split(".")
            parent = self
            for part in path:  # plain containers, so the state dict keys are the original model's
                if part not in parent._modules:
                    parent.add_module(part, nn.Module())
                parent = parent._modules[part]
            kind, kwargs = spec["type"], {k: v for k, v in spec.items() if k != "type"}
            if kind not in LAYERS:
                raise SystemExit(f"unknown layer type {kind!r}")
            parent.add_module(leaf, getattr(nn, kind)(**kwargs))

    def forward(self, x):
        env = {}
        value = lambda a: env[a["node"]] if isinstance(a, dict) else [value(v) for v in a] if isinstance(a, list) else a  # noqa: E731
        for node in self._nodes:
            args, kwargs = value(node.get("args", [])), {k: value(v) for k, v in node.get("kwargs", {}).items()}
            op = node["op"]
            if op == "input":
                env[node["name"]] = x
            elif op == "output":
                return args[0]
            elif op == "module":
                env[node["name"]] = self.get_submodule(node["target"])(*args, **kwargs)
            else:
                env[node["name"]] = FUNCTIONS[op](*args, **kwargs)


def load(weights: str | Path) -> tuple[nn.Module, dict]:
    weights = Path(weights)
    desc = json.loads(weights.with_name(weights.name.removesuffix(".pt") + ".json").read_text())
    model = SlimNet(desc)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    return model.eval(), desc


if __name__ == "__main__":
    model, desc = load(sys.argv[1])
    x = torch.randn(4, *desc["input_shape"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x)
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters; outputs {tuple(y.shape)}; argmax {y.argmax(1).tolist()}")
    if "--save" in sys.argv:
        torch.save(y, sys.argv[sys.argv.index("--save") + 1])
