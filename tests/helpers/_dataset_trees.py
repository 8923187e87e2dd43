"""Builders of tiny fixture trees in the real on-disk layouts (``/work/shared/reference/datasets.md``).

Every builder writes into a temp folder and returns the folder a user would pass as ``root``. The CSVs use the
real headers and the awkward cases: doubled folders, lower-case duplicates, ``_downsampled`` ids, blank
``lesion_id``/sex, ``unknown`` sex, float ages, a duplicate pair, ``-1.0`` and blank CheXpert labels, lateral views,
``Viral Pneumonia`` with a space, ``non_COVID (1).png``, ``infection masks``, masks at another size, a portrait
JPEG, a JPEG with an EXIF orientation, grayscale and 16-bit PNGs.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

ISIC2019_HEADER = ["image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
ISIC2019_META_HEADER = ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"]
ISIC2020_V2_HEADER = [
    "image_name",
    "patient_id",
    "lesion_id",
    "sex",
    "age_approx",
    "anatom_site_general_challenge",
    "diagnosis",
    "benign_malignant",
    "target",
]
ISIC2020_HEADER = [c for c in ISIC2020_V2_HEADER if c != "lesion_id"]
HAM_HEADER = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset"]
CHEXPERT_HEADER = [
    "Path",
    "Sex",
    "Age",
    "Frontal/Lateral",
    "AP/PA",
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def skin_image(seed: int, size: tuple[int, int] = (40, 30), lesion: bool = True) -> np.ndarray:
    """uint8 (H, W, 3) skin-coloured photo with a dark blob; ``size`` is (width, height) like PIL."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.float32)
    img[...] = np.array([215, 160, 130], np.float32) + rng.normal(0, 6, 3)
    if lesion:
        cy, cx = h / 2 + rng.uniform(-3, 3), w / 2 + rng.uniform(-3, 3)
        blob = ((yy - cy) / (0.25 * h)) ** 2 + ((xx - cx) / (0.25 * w)) ** 2 < 1
        img[blob] = np.array([110, 70, 50]) + rng.normal(0, 8, 3)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_jpeg(path: Path, seed: int, size: tuple[int, int] = (40, 30), exif_orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(skin_image(seed, size))
    if exif_orientation is None:
        im.save(path, quality=90)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        im.save(path, quality=90, exif=exif)
    return path


def xray(seed: int, size: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (size, size) X-ray-like image and its bool lung mask (two dark ellipses)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    lungs = ((yy - 0.5) / 0.32) ** 2 + ((xx - 0.3) / 0.14) ** 2 < 1
    lungs |= ((yy - 0.5) / 0.32) ** 2 + ((xx - 0.7) / 0.14) ** 2 < 1
    img = 150 + 60 * yy - 90 * lungs + rng.normal(0, 5, (size, size))
    return np.clip(img, 0, 255).astype(np.uint8), lungs


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def write_mask(path: Path, mask: np.ndarray, size: int | None = None, rgb: bool = False) -> Path:
    im = Image.fromarray((mask * 255).astype(np.uint8))
    if size is not None:
        im = im.resize((size, size), Image.Resampling.NEAREST)
    if rgb:
        im = im.convert("RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


# ------------------------------------------------------------------------------------------------------ ISIC 2019
def isic2019(tmp: Path, n: int = 24, metadata: bool = True) -> Path:
    """``ISIC_2019/``: doubled ``ISIC_2019_Training_Input``, one-hot GT floats, metadata with blank lesion ids.

    Labels cycle MEL, NV, BCC, NV; images ``2k`` and ``2k+1`` share a lesion (except the blank-lesion ones).
    Image 3 is ``_downsampled``, image 5 portrait, image 6 has an EXIF orientation.
    """
    root = tmp / "ISIC_2019"
    images = root / "ISIC_2019_Training_Input" / "ISIC_2019_Training_Input"
    gt, meta = [], []
    for i in range(n):
        image_id = f"ISIC_{i:07d}" + ("_downsampled" if i == 3 else "")
        label = ("MEL", "NV", "BCC", "NV")[i % 4]
        size = (30, 40) if i == 5 else (40, 30)
        write_jpeg(images / f"{image_id}.jpg", seed=i, size=size, exif_orientation=6 if i == 6 else None)
        gt.append([image_id] + [("1.0" if c == label else "0.0") for c in ISIC2019_HEADER[1:]])
        lesion = "" if i in (3, 7) else f"BCN_{i // 2:07d}"
        meta.append([image_id, "" if i == 3 else 55, "anterior torso", lesion, "" if i == 4 else "female"])
    write_csv(root / "ISIC_2019_Training_GroundTruth.csv", ISIC2019_HEADER, gt)
    if metadata:
        write_csv(root / "ISIC_2019_Training_Metadata.csv", ISIC2019_META_HEADER, meta)
    return root


# ------------------------------------------------------------------------------------------------------ ISIC 2020
def isic2020(tmp: Path, kaggle: bool = False, n: int = 20) -> Path:
    """Official (``ISIC_2020_Training_JPEG/train`` + GT v2 + duplicates) or Kaggle (``train.csv`` + ``jpeg/train``).

    Patients have 2 images each; every 4th patient's images are melanoma. Image 1 duplicates image 0.
    """
    root = tmp / ("siim-isic-melanoma-classification" if kaggle else "ISIC_2020")
    folder = root / ("jpeg/train" if kaggle else "ISIC_2020_Training_JPEG/train")
    rows = []
    for i in range(n):
        name = f"ISIC_{1000000 + i}"
        patient = f"IP_{i // 2:07d}"
        target = int((i // 2) % 4 == 0)
        write_jpeg(folder / f"{name}.jpg", seed=100 + i)
        age = "45.0" if kaggle else "45"
        sex = "" if i == 2 else "male"
        diag = "melanoma" if target else "unknown"
        bm = "malignant" if target else "benign"
        row = [name, patient, f"IL_{i:07d}", sex, age, "torso" if i != 3 else "", diag, bm, target]
        rows.append(row if not kaggle else [v for k, v in zip(ISIC2020_V2_HEADER, row) if k != "lesion_id"])
    if kaggle:
        write_csv(root / "train.csv", ISIC2020_HEADER, rows)
        write_csv(root / "test.csv", ISIC2020_HEADER[:5], [["ISIC_9999999", "IP_9", "male", "50.0", "torso"]])
    else:
        write_csv(root / "ISIC_2020_Training_GroundTruth_v2.csv", ISIC2020_V2_HEADER, rows)
        write_csv(
            root / "ISIC_2020_Training_Duplicates.csv", ["image_name_1", "image_name_2"], [[rows[0][0], rows[1][0]]]
        )
    return root


# -------------------------------------------------------------------------------------------------------- HAM10000
def ham10000(tmp: Path, n: int = 70) -> Path:
    """``HAM10000/``: metadata (8 columns), part_1 + part_2 and a lower-case duplicate of part_1."""
    root = tmp / "HAM10000"
    dxs = ("nv", "mel", "bkl", "bcc", "akiec", "vasc", "df")
    rows = []
    for i in range(n):
        image_id = f"ISIC_{24306 + i:07d}"
        part = "HAM10000_images_part_1" if i < n // 2 else "HAM10000_images_part_2"
        write_jpeg(root / part / f"{image_id}.jpg", seed=200 + i)
        if i < n // 2:
            write_jpeg(root / part.lower() / f"{image_id}.jpg", seed=200 + i)
        sex = "unknown" if i == 0 else "male"
        rows.append([f"HAM_{i // 2:07d}", image_id, dxs[(i // 2) % 7], "histo", "80.0", sex, "scalp", "vidir_modern"])
    write_csv(root / "HAM10000_metadata.csv", HAM_HEADER, rows)
    return root


# ------------------------------------------------------------------------------------------------ melanoma folders
def melanoma_folder(tmp: Path, nested: bool = True, per_class: int = 6) -> Path:
    root = tmp / "melanoma_kaggle"
    base = root / "melanoma_cancer_dataset" if nested else root
    k = 0
    for split in ("train", "test"):
        for cls in ("benign", "malignant"):
            for _ in range(per_class if split == "train" else 2):
                write_jpeg(base / split / cls / f"melanoma_{k}.jpg", seed=300 + k)
                k += 1
    return root


def image_folder(tmp: Path, classes: tuple[str, ...] = ("cat", "dog", "owl"), per_class: int = 5) -> Path:
    root = tmp / "my_images"
    for c, cls in enumerate(classes):
        for i in range(per_class):
            ext = (".jpg", ".png", ".bmp", ".jpeg", ".tif")[i % 5]
            path = root / cls / f"{cls}_{i}{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(skin_image(400 + 10 * c + i)).save(path)
    return root


# ---------------------------------------------------------------------------------------------------- COVID-QU-Ex
QUEX_NAMES = {"COVID-19": "covid_{}.png", "Non-COVID": "non_COVID ({}).png", "Normal": "Normal ({}).png"}


def covid_quex(tmp: Path, per_class: dict[str, int] | None = None) -> Path:
    """``COVID-QU-Ex dataset/`` with both doubled subset folders; image 1 of Normal/Train is 16-bit."""
    per_class = per_class or {"Train": 4, "Val": 2, "Test": 2}
    root = tmp / "COVID-QU-Ex dataset"
    k = 0
    for subset, extra in (("Lung Segmentation Data", False), ("Infection Segmentation Data", True)):
        base = root / subset / subset
        for split, count in per_class.items():
            for cls, pattern in QUEX_NAMES.items():
                for j in range(1, count + 1):
                    img, lungs = xray(500 + k)
                    k += 1
                    name = pattern.format(j)
                    if split == "Train" and cls == "Normal" and j == 1:
                        write_png(base / split / cls / "images" / name, img.astype(np.uint16) * 257)
                    else:
                        write_png(base / split / cls / "images" / name, img)
                    write_mask(base / split / cls / "lung masks" / name, lungs)
                    if extra:
                        write_mask(base / split / cls / "infection masks" / name, np.zeros_like(lungs))
    return root


def covid_radiography(tmp: Path, per_class: int = 5) -> Path:
    """``COVID-19_Radiography_Dataset/`` v4/v5: 40 px images with 32 px RGB masks; one RGB image."""
    root = tmp / "COVID-19_Radiography_Dataset"
    k = 0
    for cls in ("COVID", "Normal", "Lung_Opacity", "Viral Pneumonia"):
        for j in range(1, per_class + 1):
            img, lungs = xray(600 + k)
            k += 1
            pixels = np.repeat(img[:, :, None], 3, axis=2) if (cls == "COVID" and j == 1) else img
            write_png(root / cls / "images" / f"{cls}-{j}.png", pixels)
            write_mask(root / cls / "masks" / f"{cls}-{j}.png", lungs, size=32, rgb=True)
    return root


# -------------------------------------------------------------------------------------------------------- CheXpert
def chexpert(tmp: Path, prefix: bool = True, patients: int = 24, csv_prefix: bool = True) -> Path:
    """``CheXpert-v1.0-small/`` (or the Kaggle copy without the folder when ``prefix`` is False)."""
    root = tmp / ("CheXpert-v1.0-small" if prefix else "chexpert")
    rows: dict[str, list[list[object]]] = {"train": [], "valid": []}
    for p in range(patients + 4):
        split = "train" if p < patients else "valid"
        patient = f"patient{p + 1:05d}"
        for view in ("view1_frontal", "view2_lateral") if p % 3 == 0 else ("view1_frontal",):
            rel = f"{split}/{patient}/study1/{view}.jpg"
            img, _ = xray(700 + p)
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path, quality=90)  # grayscale JPEG like the real files
            labels = [""] * 14
            rng = np.random.default_rng(p)
            for k in range(14):
                labels[k] = ("1.0", "0.0", "-1.0", "")[int(rng.integers(4))] if split == "train" else "0.0"
            # every competition task has positives in train and valid
            for k in (2, 5, 6, 8, 10):
                if p % 2 == 0:
                    labels[k] = "1.0"
            front = "Frontal" if "frontal" in view else "Lateral"
            rows[split].append(
                [
                    f"CheXpert-v1.0-small/{rel}" if csv_prefix else rel,
                    "Female",
                    68,
                    front,
                    "AP" if front == "Frontal" else "",
                    *labels,
                ]
            )
    write_csv(root / "train.csv", CHEXPERT_HEADER, rows["train"])
    write_csv(root / "valid.csv", CHEXPERT_HEADER, rows["valid"])
    return root
