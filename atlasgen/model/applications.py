"""The keras.applications models atlasgen builds by name (`--model NAME`), each with its input convention.

Every model is built without its top, on an input of any size (`input_shape=(None, None, 3)`), with
ImageNet weights (`imagenet`, downloaded once by Keras into ~/.keras) or random ones (`random`: the
Keras initialisers after `keras.utils.set_random_seed(RANDOM_SEED)`, the same weights every time).
"""

from __future__ import annotations

from dataclasses import dataclass

from atlasgen.errors import AtlasgenError
from atlasgen.model import conventions
from atlasgen.model.conventions import InputConvention
from atlasgen.tf import keras

#: The seed of `--weights random`: the same random weights, so the same fingerprint, every time.
RANDOM_SEED = 0


@dataclass(frozen=True)
class Application:
    """One keras.applications model: its name in atlasgen, its constructor and its input convention."""

    name: str  # as --model takes it, and the atlas's model
    constructor: str  # keras.applications.<constructor>
    convention: InputConvention


APPLICATIONS = {a.name: a for a in (
    Application("vgg16", "VGG16", conventions.CAFFE),
    Application("vgg19", "VGG19", conventions.CAFFE),
    Application("resnet50", "ResNet50", conventions.CAFFE),
    Application("resnet50v2", "ResNet50V2", conventions.TF),
    Application("inception_v3", "InceptionV3", conventions.TF),
    Application("mobilenet_v2", "MobileNetV2", conventions.TF),
    Application("efficientnet_b0", "EfficientNetB0", conventions.IN_MODEL),
    Application("convnext_tiny", "ConvNeXtTiny", conventions.IN_MODEL),
    Application("densenet121", "DenseNet121", conventions.TORCH),
)}


def application(name: str) -> Application:
    """The application called `name`, or a one-line error listing the names there are."""
    if not isinstance(name, str) or not name.strip():
        raise AtlasgenError(f"--model is empty; give one of {', '.join(APPLICATIONS)}")
    if name not in APPLICATIONS:
        raise AtlasgenError(f"--model {name[:40]!r} is not a model atlasgen knows; give one of {', '.join(APPLICATIONS)}")
    return APPLICATIONS[name]


def build(app: Application, weights: str | None):
    """The model without its top on an input of any size: `weights` "imagenet", or None for random
    weights drawn after seeding Keras with RANDOM_SEED."""
    if weights is None:
        keras.utils.set_random_seed(RANDOM_SEED)
    return getattr(keras.applications, app.constructor)(weights=weights, include_top=False, input_shape=(None, None, 3))
