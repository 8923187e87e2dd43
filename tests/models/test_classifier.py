import pytest
import torch

from lit_xai.models import ImageClassifier


@pytest.mark.parametrize("task,k", [("binary", 2), ("multiclass", 3), ("multilabel", 4)])
def test_steps_and_metrics_per_task(task, k):
    torch.manual_seed(0)
    model = ImageClassifier("tiny_resnet", num_classes=k, task=task, class_names=[f"c{i}" for i in range(k)])
    x = torch.rand(6, 3, 32, 32)
    if task == "multilabel":
        y = torch.tensor(
            [[1, 0, 1, 0], [0, 1, 0, float("nan")], [1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 1], [0, 1, 1, 0]],
            dtype=torch.float32,
        )
    else:
        y = torch.arange(6) % k
    loss = model.training_step({"image": x, "target": y}, 0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    logged = {}
    model.log = lambda name, value, **kw: logged.__setitem__(name, value)  # no trainer attached
    model.log_dict = lambda d, **kw: logged.update(d)
    model.validation_step((x, y), 0)
    model.on_validation_epoch_end()
    metric_keys = {key for key in logged if key != "val/loss"}
    if task == "binary":
        # one AUROC, one accuracy, one F1 (of the positive class); no per-class or "binary_" duplicates
        assert metric_keys == {"val/auroc", "val/acc", "val/f1"}
    else:
        per_class = {f"val/{m}/c{i}" for m in ("auroc", "f1") for i in range(k)}
        assert metric_keys == {"val/auroc", "val/acc", "val/f1"} | per_class


def test_binary_metrics_are_those_of_the_positive_class():
    from torchmetrics.functional.classification import binary_auroc, binary_f1_score

    torch.manual_seed(1)
    model = ImageClassifier("tiny_resnet", num_classes=2, task="binary", class_names=["benign", "melanoma"])
    model.eval()
    logged = {}
    model.log = lambda name, value, **kw: logged.__setitem__(name, value)
    model.log_dict = lambda d, **kw: logged.update(d)
    x, y = torch.rand(16, 3, 32, 32), torch.tensor([0, 1] * 8)
    with torch.no_grad():
        p1 = model.probabilities(model(x))[:, 1]
        model.validation_step((x, y), 0)
    model.on_validation_epoch_end()
    assert torch.isclose(logged["val/auroc"], binary_auroc(p1, y))
    assert torch.isclose(logged["val/f1"], binary_f1_score(p1, y))
    assert torch.isclose(logged["val/acc"], ((p1 > 0.5).long() == y).float().mean())


def test_multilabel_loss_ignores_nan_targets():
    model = ImageClassifier("tiny_resnet", num_classes=2, task="multilabel")
    logits = torch.tensor([[2.0, -1.0]])
    full = model.loss(logits, torch.tensor([[1.0, 0.0]]))
    masked = model.loss(logits, torch.tensor([[1.0, float("nan")]]))
    only_first = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, :1], torch.ones(1, 1))
    assert torch.isclose(masked, only_first) and not torch.isclose(full, masked)


def test_pos_weight_and_class_weights():
    model = ImageClassifier("tiny_resnet", num_classes=2, task="binary", pos_weight=4.0)
    assert model.class_weight.tolist() == [1.0, 4.0]
    with pytest.raises(ValueError, match="class_weights needs 3"):
        ImageClassifier("tiny_resnet", num_classes=3, task="multiclass", class_weights=[1.0, 2.0])


def test_bad_configuration_errors_list_choices():
    with pytest.raises(ValueError, match="choose one of: .*resnet50"):
        ImageClassifier("resnet5O")
    with pytest.raises(ValueError, match="choose one of: binary, multiclass, multilabel"):
        ImageClassifier("tiny_resnet", task="regression")
    with pytest.raises(ValueError, match="num_classes=2"):
        ImageClassifier("tiny_resnet", num_classes=3, task="binary")
    with pytest.raises(ValueError, match="class_names has 1"):
        ImageClassifier("tiny_resnet", num_classes=2, class_names=["a"])


def test_local_weights_are_loaded_and_mismatches_reported(tmp_path):
    src = ImageClassifier("tiny_resnet", num_classes=5, task="multiclass")
    path = tmp_path / "w.pt"
    torch.save(src.net.state_dict(), path)
    with pytest.warns(UserWarning, match="skipped 2 unmatched"):
        dst = ImageClassifier("tiny_resnet", num_classes=2, weights_path=str(path))
    assert torch.equal(dst.net.conv1.weight, src.net.conv1.weight)
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        ImageClassifier("tiny_resnet", weights_path=str(tmp_path / "missing.pt"))
