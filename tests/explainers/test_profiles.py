"""Explanation profiles: one place per family; timm canonizers conserve relevance; torchgeo needs no configuration."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from lit_xai.callbacks import Pictures
from lit_xai.explainers import LRP, GradCAM, find_profile, resolve_profile
from lit_xai.explainers.canonizers import TimmEfficientNetCanonizer, TimmResNetCanonizer
from lit_xai.explainers.profiles import ExplanationProfile
from lit_xai.models.architectures import build_architecture

timm = pytest.importorskip("timm")


def test_profiles_of_registry_and_torchvision_networks_and_prefixes():
    net = build_architecture("tiny_resnet_attention", num_classes=2)
    found = resolve_profile(nn.Sequential(nn.Identity(), net))
    assert found.prefix == "1" and found.full_name(found.gradcam_layer) == "1.layer4"
    assert found.profile.attention_layer == "attention"
    assert resolve_profile(torchvision.models.vgg11()).profile.family == "vgg"
    assert resolve_profile(torchvision.models.resnet18()).profile.default_composite == "epsilon_gamma_box"
    assert resolve_profile(timm.create_model("resnet18", pretrained=False)).profile.family == "timm_resnet"
    assert resolve_profile(timm.create_model("efficientnet_b0", pretrained=False)).gradcam_layer == "bn2"
    with pytest.raises(ValueError, match="register_profile"):
        resolve_profile(nn.Sequential(nn.Conv2d(3, 4, 3)))


def test_silu_efficientnets_default_to_gamma_and_keep_alpha_beta_by_name():
    # torchvision's own (SiLU) EfficientNets: epsilon_gamma_box (issue 35 item 2); the registry's ReLU variants
    # declare their profile and keep epsilon_alpha2_beta1, which any EfficientNet still gets by name
    for build in (torchvision.models.efficientnet_b0, torchvision.models.efficientnet_v2_s):
        found = resolve_profile(build())
        assert (found.profile.family, found.profile.default_composite) == ("efficientnet", "epsilon_gamma_box")
    for name in ("tiny_efficientnet_relu", "efficientnet_b0_relu"):
        assert resolve_profile(build_architecture(name, 2)).profile.default_composite == "epsilon_alpha2_beta1"
    net = torchvision.models.efficientnet_b0(num_classes=3).eval()
    x = torch.randn(1, 3, 32, 32)
    assert LRP().composite_for(net) == "epsilon_gamma_box"
    assert LRP(composite="epsilon_alpha2_beta1")(net, x, 0).shape == (1, 32, 32)


def test_a_network_can_declare_its_own_profile():
    class Mine(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
            self.explanation_profile = ExplanationProfile("mine", gradcam_layer="body")

        def forward(self, x):
            return self.head(self.body(x))

    x = torch.rand(2, 3, 16, 16)
    assert GradCAM()(Mine(), x, torch.tensor([0, 1])).shape == (2, 16, 16)
    assert LRP()(Mine(), x, torch.tensor([0, 1])).shape == (2, 16, 16)  # canonizers: the profile's (none)


def _conservation_ready(model: nn.Module) -> nn.Module:
    """Biases zeroed and BN turned into positive scaling, so LRP-epsilon/ZPlus must conserve the logit exactly."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.zero_()
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.zero_()
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.zero_()
    return model.double().eval()


def _ratio(model: nn.Module, canonizers: list | None) -> float:
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    target = torch.tensor([0, 1])
    lrp = LRP("epsilon_plus_flat", canonizers=canonizers, composite_kwargs={"epsilon": 1e-12, "stabilizer": 1e-12})
    relevance = lrp.relevance(model, x, target)
    with torch.no_grad():
        logits = model(x)[torch.arange(2), target]
    return float((relevance.flatten(1).sum(1) / logits).mean())


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_timm_resnet_canonizer_conserves_relevance(name):
    torch.manual_seed(0)  # timm's init draws from the global RNG: earlier tests must not decide the model
    model = _conservation_ready(timm.create_model(name, pretrained=False, num_classes=3))
    from zennit.torchvision import ResNetCanonizer

    # zennit's torchvision canonizer misses timm's in-place residual: relevance doubles at every block
    assert _ratio(model, [ResNetCanonizer()]) > 100
    # explained in float64 (the model's dtype): conserved but for the epsilon = stabilizer = 1e-12 terms and float64
    # rounding over ~1e6-term reductions (measured 2e-11 to 6e-11 over three inits); float32 would give ~1e-5
    assert _ratio(model, [TimmResNetCanonizer()]) == pytest.approx(1.0, abs=1e-9)  # float64 model and input
    assert _ratio(model, None) == pytest.approx(1.0, abs=1e-9)  # the same canonizer is picked; float64


def test_timm_efficientnet_canonizer_conserves_relevance():
    # seeded: how much relevance the epsilon/ZPlus/Flat rule set loses depends on the random init (an unlucky init
    # loses 3e-3 with zennit's own hooks), so the global RNG state left by earlier tests must not decide the outcome
    torch.manual_seed(0)
    model = _conservation_ready(timm.create_model("efficientnet_b0", pretrained=False, num_classes=3))
    with torch.no_grad():
        model.classifier.weight.mul_(100.0)  # random-init logits are ~1e-4: keep them well above float64 noise
    before = [type(m).forward for m in model.modules()]
    ratio = _ratio(model, None)  # profile: TimmEfficientNetCanonizer + epsilon rule on depthwise convolutions
    assert ratio == pytest.approx(1.0, abs=1e-4)
    assert [type(m).forward for m in model.modules()] == before
    assert not any("forward" in vars(m) or hasattr(m, "canonizer_sum") for m in model.modules())  # reverted
    assert _ratio(model, [TimmEfficientNetCanonizer()]) < 0.99  # without the depthwise epsilon rule: ZPlus loses some


def test_torchgeo_classification_task_trains_with_an_unconfigured_monitor(tmp_path):
    trainers = pytest.importorskip("torchgeo.trainers")
    from lightning.pytorch import Trainer
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.data import DataLoader, Dataset

    from lit_xai.callbacks import ExplanationMonitor

    class Tiles(Dataset):  # torchgeo-style dict items: image + label
        def __len__(self):
            return 16

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return {"image": torch.rand(3, 32, 32, generator=g), "label": torch.tensor(i % 2)}

    task = trainers.ClassificationTask(model="resnet18", weights=None, in_channels=3, num_classes=2)
    mon = ExplanationMonitor(probes=4, verbose=False, pictures=Pictures(tile=32))  # no layer, no canonizer argument
    trainer = Trainer(
        max_epochs=1,
        accelerator="cpu",
        callbacks=[mon],
        default_root_dir=str(tmp_path),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_train_batches=2,
        limit_val_batches=2,
    )
    loader = DataLoader(Tiles(), batch_size=8)
    trainer.fit(task, train_dataloaders=loader, val_dataloaders=loader)
    assert [h["epoch"] for h in mon.history] == [-1, 0]
    assert find_profile(task).prefix == "model" and find_profile(task).profile.family == "timm_resnet"
    files = sorted(tmp_path.rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(files[0].parent), size_guidance={"images": 0})
    acc.Reload()
    assert {"XAI/lrp/true", "XAI/gradcam/true", "XAI/crp/concepts"} <= set(acc.Tags()["images"])
