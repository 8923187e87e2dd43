"""Explanation profiles: the one place that knows what an architecture family needs to be explained.

A profile names the canonizers, the Grad-CAM layer, the candidate concept (CRP) layers, the default LRP composite
and, for attention networks, the attention module of a network. It is found in this order:

1. a module inside the model carrying an ``explanation_profile`` attribute (every network built from
   :mod:`lit_xai.models` gets its registry entry's profile this way, and any user network can declare one);
2. the first module matching a registered family (:func:`register_profile`): torchvision ResNet, VGG, DenseNet and
   EfficientNet, timm ResNet and EfficientNet (recognised without importing timm).

Layer names of a profile are relative to the module that matched, so ``"layer4"`` resolves to ``"model.layer4"`` in
a LightningModule holding the network as ``model`` (torchgeo's ``ClassificationTask``).

Example:
    >>> from torchvision.models import resnet18
    >>> found = resolve_profile(resnet18())
    >>> found.profile.family, found.gradcam_layer, found.concept_layer
    ('resnet', 'layer4', 'layer3')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn
from torchvision.models import VGG, DenseNet, EfficientNet, ResNet
from zennit.rules import Epsilon, Pass
from zennit.torchvision import ResNetCanonizer, VGGCanonizer

from . import canonizers as ours
from . import transformer_canonizers as modern

__all__ = [
    "DENSENET_PROFILE",
    "EFFICIENTNET_PROFILE",
    "FAMILY_PROFILES",
    "PROFILE_ATTR",
    "RESNET_PROFILE",
    "TIMM_EFFICIENTNET_PROFILE",
    "TIMM_RESNET_PROFILE",
    "VGG_PROFILE",
    "Canonizers",
    "ExplanationProfile",
    "ResolvedProfile",
    "find_profile",
    "register_profile",
    "resolve_profile",
]

#: attribute holding an :class:`ExplanationProfile` on a network (set by ``lit_xai.models.build_architecture``)
PROFILE_ATTR = "explanation_profile"


def _none(*args: Any) -> list:
    return []


class Canonizers:
    """A picklable factory of fresh canonizers (a profile field; a lambda there would make every model that holds
    the profile, e.g. ``ImageClassifier``, unpicklable for ``torch.save(model)`` and ``ddp_spawn``).

    Example:
        >>> [type(c).__name__ for c in Canonizers(ResNetCanonizer)()]
        ['ResNetCanonizer']
    """

    def __init__(self, *classes: type) -> None:
        self.classes = classes

    def __call__(self) -> list:
        return [cls() for cls in self.classes]

    def __repr__(self) -> str:
        return f"Canonizers({', '.join(c.__name__ for c in self.classes)})"


@dataclass(frozen=True)
class ExplanationProfile:
    """What explainers need to know about one architecture family.

    Attributes:
        family: family name (``"resnet"``, ``"timm_resnet"``, ...), shown in captions and errors.
        canonizers: factory returning *fresh* zennit canonizers (they hold state: never share them).
        gradcam_layer: Grad-CAM target layer, relative to the profiled module (``""``: none known).
        concept_layers: candidate CRP layers, most useful first.
        default_composite: LRP composite that works best for the family (see ``benchmarks/checkerboard.py``).
        attention_layer: channel-attention module keeping ``last_weights`` (attention networks only).
        layer_map: ``layer_map(epsilon, zero_params)`` -> extra zennit ``(module type, rule)`` pairs prepended to
            every composite's layer map (``epsilon``, ``zero_params``: the composite's, which rules here follow).
        no_concepts: why concept explanations (CRP) do not apply to the family (``""``: they do); CRP then raises
            :class:`~lit_xai.explainers.base.ExplainerNotApplicable` with this reason.
        constants: names (suffixes) of parameters that enter the network like biases (a ViT's class token and
            position embedding): the conservation guard's bias-free re-check removes them too.
    """

    family: str
    canonizers: Callable[[], list] = _none
    gradcam_layer: str = ""
    concept_layers: tuple[str, ...] = ()
    default_composite: str = "epsilon_plus_flat"
    attention_layer: str = ""
    layer_map: Callable[..., list] = _none
    no_concepts: str = ""
    constants: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResolvedProfile:
    """A profile found in a model, with the name prefix of the profiled module (``""`` for the model itself)."""

    profile: ExplanationProfile
    prefix: str = ""

    def full_name(self, name: str) -> str:
        """``name`` (relative to the profiled module) as a name in the whole model."""
        return f"{self.prefix}.{name}" if self.prefix and name else (name or self.prefix)

    @property
    def gradcam_layer(self) -> str:
        return self.profile.gradcam_layer

    @property
    def concept_layer(self) -> str:
        return self.profile.concept_layers[0] if self.profile.concept_layers else ""


@dataclass(frozen=True)
class _FamilyEntry:
    name: str
    match: Callable[[nn.Module], bool]
    profile: ExplanationProfile = field(compare=False)
    specialise: Callable[[nn.Module, ExplanationProfile], ExplanationProfile] | None = field(
        default=None, compare=False
    )


#: registered families, tried in order (first match wins)
FAMILY_PROFILES: list[_FamilyEntry] = []


def register_profile(
    match: Callable[[nn.Module], bool],
    profile: ExplanationProfile,
    specialise: Callable[[nn.Module, ExplanationProfile], ExplanationProfile] | None = None,
) -> ExplanationProfile:
    """Register ``profile`` for modules where ``match(module)`` is true; a family name may be registered once.

    ``specialise(module, profile)``, when given, returns the profile for one matched module (layer names that
    depend on the instance, e.g. the last convolution of a plain CNN).

    Example:
        >>> class MyNet(nn.Module): ...
        >>> p = register_profile(lambda m: isinstance(m, MyNet), ExplanationProfile("mynet", gradcam_layer="body"))
        >>> resolve_profile(nn.Sequential(MyNet())).full_name(p.gradcam_layer)
        '0.body'
        >>> _ = FAMILY_PROFILES.pop()  # keep the doctest free of side effects
    """
    if any(entry.name == profile.family for entry in FAMILY_PROFILES):
        raise ValueError(f"a profile for family {profile.family!r} is already registered")
    FAMILY_PROFILES.append(_FamilyEntry(profile.family, match, profile, specialise))
    return profile


def _timm(module: nn.Module, module_prefix: str, class_name: str) -> bool:
    # by module path and class name (also used for MONAI): the optional package is never imported here
    cls = type(module)
    return cls.__module__.startswith(module_prefix) and cls.__name__ == class_name


def _torchvision(module: nn.Module, submodule: str, class_name: str) -> bool:
    return _timm(module, f"torchvision.models.{submodule}", class_name)


#: leaf layers of a "plain" network: each has a conservative rule (or needs none) under every composite
_PLAIN = (
    nn.Conv2d,
    nn.Linear,
    nn.ReLU,
    nn.LeakyReLU,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.dropout._DropoutNd,
    nn.Flatten,
    nn.Identity,
)


def _plain_layers(module: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The leaves of a plain conv/linear/ReLU/pooling network with at least one conv and one linear layer, else
    ``None`` (any normalisation, attention or unknown layer disqualifies it)."""
    leaves = [(n, m) for n, m in module.named_modules() if not list(m.children())]
    if not leaves or not all(isinstance(m, _PLAIN) for _, m in leaves):
        return None
    kinds = {type(m) for _, m in leaves}
    return leaves if nn.Conv2d in kinds and nn.Linear in kinds else None


def _plain_profile(module: nn.Module, profile: ExplanationProfile) -> ExplanationProfile:
    convs = [name for name, m in _plain_layers(module) or [] if isinstance(m, nn.Conv2d)]
    # Grad-CAM on the last convolution; concepts at the last two (a plain network has no skip: graph cuts)
    return replace(profile, gradcam_layer=convs[-1], concept_layers=tuple(reversed(convs[-2:])))


def _depthwise_epsilon(epsilon: float = 1e-6, zero_params: Any = None) -> list:
    # ZPlus on a one-input-channel (depthwise) filter drops the relevance of negative contributions
    return [(ours.DepthwiseConv2d, Epsilon(epsilon=epsilon, zero_params=zero_params))]


#: torchvision ResNets (and the registry's ``resnet18``/``resnet50``). Concept layers are block outputs, which are graph
#: cuts (CRP is complete there): ``layer4.0`` is the first block of the last stage, as fine as ``layer4`` spatially but
#: one block earlier
RESNET_PROFILE = ExplanationProfile(
    "resnet",
    Canonizers(ResNetCanonizer),
    "layer4",
    ("layer3", "layer4.0", "layer4"),
    # the strided 7x7 stem + strided 3x3 convs leave a checkerboard in EpsilonPlusFlat maps (stride-frequency peak
    # contrast 33 on ResNet50); EpsilonGammaBox cuts it to 9.5 and stays conservative (benchmarks/checkerboard.py)
    default_composite="epsilon_gamma_box",
)
#: torchvision VGGs; ``features`` is the last feature map whatever the depth (registry entries name finer layers)
VGG_PROFILE = ExplanationProfile("vgg", Canonizers(VGGCanonizer), "features", ("features",))
#: torchvision DenseNets: functional final ReLU/pool and pre-activation batch norms (see ``canonizers.py``)
DENSENET_PROFILE = ExplanationProfile(
    "densenet", Canonizers(ours.DenseNetCanonizer), "features", ("features.denseblock3", "features.denseblock4")
)
#: torchvision EfficientNet V1/V2 (ReLU, SiLU; squeeze-excitation gates signal-only, SiLU under the identity rule); the
#: SiLU networks matched by family default to ``epsilon_gamma_box`` instead (:func:`_efficientnet`)
EFFICIENTNET_PROFILE = ExplanationProfile(
    "efficientnet",
    Canonizers(ours.EfficientNetCanonizer),
    "features",
    ("features.6", "features.5"),
    # ZPlus/Gamma on the strided (depthwise) convolutions leave a strong stride-2/4 grid in the heatmaps
    # (benchmarks/checkerboard.py); alpha-beta does not. Depthwise convolutions get the epsilon rule: alpha-beta on
    # a one-input-channel filter doubles the relevance of every output whose contributions share one sign (sum R /
    # logit 1.06-1.2 per MBConv block measured on EfficientNetV2), ZPlus drops it
    default_composite="epsilon_alpha2_beta1",
    layer_map=_depthwise_epsilon,
)
TIMM_RESNET_PROFILE = ExplanationProfile(
    "timm_resnet",
    Canonizers(ours.TimmResNetCanonizer),
    "layer4",
    ("layer3", "layer4"),
    default_composite="epsilon_gamma_box",
)
TIMM_EFFICIENTNET_PROFILE = ExplanationProfile(
    "timm_efficientnet",
    Canonizers(ours.TimmEfficientNetCanonizer),
    "bn2",
    ("blocks.5", "blocks.6"),
    layer_map=_depthwise_epsilon,
)

register_profile(lambda m: isinstance(m, ResNet), RESNET_PROFILE)
register_profile(lambda m: isinstance(m, VGG), VGG_PROFILE)
register_profile(lambda m: isinstance(m, DenseNet), DENSENET_PROFILE)
register_profile(lambda m: isinstance(m, EfficientNet), EFFICIENTNET_PROFILE, lambda m, p: _efficientnet(m, p))
register_profile(lambda m: _timm(m, "timm.models.resnet", "ResNet"), TIMM_RESNET_PROFILE)
register_profile(lambda m: _timm(m, "timm.models.efficientnet", "EfficientNet"), TIMM_EFFICIENTNET_PROFILE)


def _all_conv_epsilon(epsilon: float = 1e-6, zero_params: Any = None) -> list:
    # transformers: the patch embedding is a linear map of pixel patches; ZPlus/Flat there would make blocky maps
    return [(nn.Conv2d, Epsilon(epsilon=epsilon, zero_params=zero_params)), (ours.ElementwiseActivation, Pass())]


def _depthwise_epsilon_activations(epsilon: float = 1e-6, zero_params: Any = None) -> list:
    return [*_depthwise_epsilon(epsilon, zero_params), (ours.ElementwiseActivation, Pass())]


#: torchvision ConvNeXt: stages are features.1/3/5/7 (stem and downsampling layers in between)
CONVNEXT_PROFILE = ExplanationProfile(
    "convnext",
    Canonizers(modern.ConvNeXtCanonizer),
    "features",
    ("features.5", "features.7"),
    default_composite="epsilon_plus",
    layer_map=_depthwise_epsilon_activations,
)
TIMM_CONVNEXT_PROFILE = ExplanationProfile(
    "timm_convnext",
    Canonizers(modern.ConvNeXtCanonizer),
    "stages",
    ("stages.2", "stages.3"),
    default_composite="epsilon_plus",
    layer_map=_depthwise_epsilon_activations,
)
_VIT_NO_CONCEPTS = (
    "CRP explains the channels of a convolutional layer; a Vision Transformer's tokens mix all positions, so a "
    "channel mask there is not a spatial concept. Use LRP and Grad-CAM for ViTs"
)
#: torchvision ViT: Grad-CAM on the last encoder block's tokens (reshaped to the patch grid)
VIT_PROFILE = ExplanationProfile(
    "vit",
    Canonizers(modern.ViTCanonizer),
    "encoder.layers",
    default_composite="epsilon_plus",
    layer_map=_all_conv_epsilon,
    no_concepts=_VIT_NO_CONCEPTS,
    constants=("class_token", "pos_embedding"),
)
TIMM_VIT_PROFILE = ExplanationProfile(
    "timm_vit",
    Canonizers(modern.ViTCanonizer),
    "blocks",
    default_composite="epsilon_plus",
    layer_map=_all_conv_epsilon,
    no_concepts=_VIT_NO_CONCEPTS,
    constants=("cls_token", "reg_token", "pos_embed"),
)
MOBILENET_V3_PROFILE = ExplanationProfile(
    "mobilenet_v3",
    Canonizers(modern.MobileNetV3Canonizer),
    "features",
    default_composite="epsilon_plus",
    layer_map=_depthwise_epsilon_activations,
)
MONAI_DENSENET_PROFILE = ExplanationProfile(
    "monai_densenet",
    Canonizers(ours.MonaiDenseNetCanonizer),
    "features",
    ("features.denseblock4", "features.transition3"),
)
#: any conv/linear/activation/pooling network without normalisation layers (layers found per network)
PLAIN_CNN_PROFILE = ExplanationProfile("plain_cnn", _none)


def _efficientnet(module: nn.Module, profile: ExplanationProfile) -> ExplanationProfile:
    """torchvision's own EfficientNets (SiLU) get ``epsilon_gamma_box``; the registry's ReLU variants declare
    :data:`EFFICIENTNET_PROFILE` themselves and keep ``epsilon_alpha2_beta1``.

    Every convolution of a SiLU EfficientNet sees inputs with negative entries (the image, SiLU outputs, the linear
    block outputs), where alpha-beta costs at least 4.5x a gradient per convolution and zennit's hooks 10x
    (EfficientNetV2-S: 10.8x a gradient at 128 px). The generalised Gamma rule needs 2x there (``_fast_rules``), and on
    EfficientNetV2-S (random init, calibrated batch norm, 128 px) it has the lower lattice index (0.08 vs alpha-beta's
    0.20; white noise 0.14), no grid (stride-frequency peak contrast 2.2 vs 1.7), median sum R / logit 0.33 vs 0.26
    and the same AOPC (benchmarks/lattice.py --arch efficientnet_v2_s). ``epsilon_alpha2_beta1`` stays selectable.
    """
    profile = _last_stages(module, profile)
    if any(isinstance(m, nn.SiLU) for m in module.modules()):
        profile = replace(profile, default_composite="epsilon_gamma_box")
    return profile


def _last_stages(module: nn.Module, profile: ExplanationProfile) -> ExplanationProfile:
    n = len(module.features)
    return replace(profile, concept_layers=(f"features.{n - 3}", f"features.{n - 2}"))


register_profile(lambda m: _torchvision(m, "convnext", "ConvNeXt"), CONVNEXT_PROFILE)
register_profile(lambda m: _timm(m, "timm.models.convnext", "ConvNeXt"), TIMM_CONVNEXT_PROFILE)
register_profile(lambda m: _torchvision(m, "vision_transformer", "VisionTransformer"), VIT_PROFILE)
register_profile(lambda m: _timm(m, "timm.models.vision_transformer", "VisionTransformer"), TIMM_VIT_PROFILE)
register_profile(lambda m: _torchvision(m, "mobilenetv3", "MobileNetV3"), MOBILENET_V3_PROFILE, _last_stages)
register_profile(
    lambda m: any(_timm(m, "monai.networks.nets.densenet", f"DenseNet{v}") for v in ("", "121", "169", "201", "264")),
    MONAI_DENSENET_PROFILE,
)
register_profile(lambda m: _plain_layers(m) is not None, PLAIN_CNN_PROFILE, lambda m, p: _plain_profile(m, p))


def find_profile(model: nn.Module) -> ResolvedProfile | None:
    """The profile of ``model`` (declared attribute first, then registered families), or ``None``."""
    modules = list(model.named_modules())
    for name, module in modules:
        profile = getattr(module, PROFILE_ATTR, None)
        if isinstance(profile, ExplanationProfile):
            return ResolvedProfile(profile, name)
    for name, module in modules:
        for entry in FAMILY_PROFILES:
            if entry.match(module):
                profile = entry.specialise(module, entry.profile) if entry.specialise else entry.profile
                return ResolvedProfile(profile, name)
    return None


def resolve_profile(model: nn.Module, needed: str = "canonizers") -> ResolvedProfile:
    """Like :func:`find_profile` but raises a ``ValueError`` that says what to pass instead.

    Args:
        model: the network (or a module holding it).
        needed: what the caller wanted from the profile (named in the error): ``"canonizers"``, ``"layer"``, ...
    """
    found = find_profile(model)
    if found is None:
        families = ", ".join(entry.name for entry in FAMILY_PROFILES)
        raise ValueError(
            f"cannot infer the {needed} of {type(model).__name__}: it is not built from lit_xai's registry, has no "
            f"`{PROFILE_ATTR}`, and contains no known family ({families}). Pass the layers explicitly "
            "(layer='<module name>'), or register a profile with lit_xai.explainers.profiles.register_profile. "
            "For LRP, canonizers=[] explains the network as it is (no batch-norm merge, no residual or gate "
            "rewrite): right only when every layer has an LRP rule; a normalisation layer other than BatchNorm, "
            "attention or a functional residual sum then breaks conservation, and the conservation guard flags "
            "those maps"
        )
    return found
