"""lit_xai: PyTorch Lightning training with explanation callbacks.

Subpackages:
    models       LightningModule ``ImageClassifier`` and the architecture registry.
    datamodules  DataModules (synthetic shortcut data, ISIC, COVID, CheXpert).
    explainers   Pure LRP / CRP / Grad-CAM: ``(model, images, targets) -> heatmaps``.
    metrics      Pure explanation metrics (drift, faithfulness, robustness).
    artifacts    Pure shortcut-artifact detectors and reliance measures.
    callbacks    Thin Lightning callbacks composing the above.
"""

__version__ = "0.1.0"
