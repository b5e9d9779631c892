"""How an RGB image in [0, 1] becomes a model's input: the preprocessing each model was trained with.

The keras.applications models expect one of these (keras/src/applications/*.py, `preprocess_input`
and `imagenet_utils.preprocess_input`):
- caffe (VGG16, VGG19, ResNet50): RGB to BGR, x255, minus the ImageNet mean [103.939, 116.779, 123.68];
- tf (ResNet50V2, InceptionV3, MobileNetV2): x255 / 127.5 - 1, that is x2 - 1, RGB;
- torch (DenseNet121): RGB in [0, 1] minus [0.485, 0.456, 0.406], divided by [0.229, 0.224, 0.225];
- in the model (EfficientNetB0: Rescaling 1/255 and Normalization; ConvNeXt-Tiny: Normalization by the
  ImageNet mean and std x255): RGB x255, the model normalises itself.
"""

from __future__ import annotations

from dataclasses import dataclass

# Caffe-style inputs: BGR in 0..255 minus the training mean.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputConvention:
    """How an RGB image in [0, 1] becomes the model's input: order the channels, scale, subtract
    the mean, divide by the standard deviation. `preprocessing` names the convention (caffe, tf,
    torch, in-model) where it is a keras.applications one."""

    channel_order: str  # "RGB" or "BGR"
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    preprocessing: str | None = None

    def describe(self) -> str:
        text = f"{self.channel_order} x{self.scale:g} minus mean {list(self.mean)}"
        if self.std != (1.0, 1.0, 1.0):
            text += f" divided by std {list(self.std)}"
        return text


#: The named conventions, and what each means in words (the atlas shows it).
CAFFE = InputConvention("BGR", 255.0, IMAGENET_MEAN_BGR, preprocessing="caffe")
TF = InputConvention("RGB", 2.0, (1.0, 1.0, 1.0), preprocessing="tf")
TORCH = InputConvention("RGB", 1.0, TORCH_MEAN_RGB, TORCH_STD_RGB, preprocessing="torch")
IN_MODEL = InputConvention("RGB", 255.0, (0.0, 0.0, 0.0), preprocessing="in-model")
PIXELS = InputConvention("RGB", 1.0, (0.0, 0.0, 0.0))

MEANINGS = {
    "caffe": "caffe: RGB to BGR, x255, minus the ImageNet mean (keras preprocess_input mode 'caffe')",
    "tf": "tf: pixels scaled to [-1, 1] (keras preprocess_input mode 'tf')",
    "torch": "torch: RGB in [0, 1] minus the ImageNet mean, divided by its std (keras preprocess_input mode 'torch')",
    "in-model": "in the model: RGB in 0..255, the model rescales and normalises itself",
}


def meaning(convention: InputConvention) -> str | None:
    """The convention's name and what it means, for atlas.json and the pages; None for a bare one."""
    return MEANINGS.get(convention.preprocessing or "")
