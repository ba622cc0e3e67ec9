"""Model registry: ``build(name, **kwargs)`` returns a fresh ``nn.Module``.

Add a model by decorating its constructor with ``@register("name")`` in a module imported here.
"""

from .registry import MODELS, build, register, names  # noqa: F401
from . import lenet  # noqa: F401  (registers lenet300, lenet5, lenet5_caffe)
from . import vgg  # noqa: F401  (registers vgg16_bn)
from . import resnet  # noqa: F401  (registers resnet: CIFAR ResNet of depth 6n+2 / 9n+2)
from . import vit  # noqa: F401  (registers vit_tiny: a small Vision Transformer)
