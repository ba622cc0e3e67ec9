"""What each dataset is made of: file names, pinned checksums, mirrors, classes (pure data).

A spec says everything needed to find, download and verify one dataset's files, and nothing about
how to read them.  Three kinds:

* :class:`IdxDatasetSpec`: the four IDX files of MNIST and Fashion-MNIST, each raw or gzipped.
* :class:`PickleArchiveSpec`: an official CIFAR "python version" ``.tar.gz`` of pickled batches.
* :class:`ImageFolderSpec`: a ``.tar[.gz|.xz]`` of ``train/CLASS/IMAGE`` and ``test/CLASS/IMAGE``.

Every kind exposes ``file_choices`` (for each required file, the names accepted, preferred first)
and ``vendored_dir`` (a copy shipped with the package, or None), which is all that
:mod:`sparsehalo.data.paths` needs to locate the files.  This module imports nothing from the
package, so every other data module can depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Mapping

# Order matters: train images, train labels, test images, test labels.
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# Uncompressed bytes of each file of a 60,000 + 10,000 image, 28 x 28 IDX dataset (MNIST and
# Fashion-MNIST): a 16-byte header and one byte per pixel, an 8-byte header and one byte per label.
# Reading stops at these, so a small crafted gzip cannot inflate to gigabytes first.
IDX_SIZES = MappingProxyType({
    "train-images-idx3-ubyte": 16 + 60000 * 28 * 28,
    "train-labels-idx1-ubyte": 8 + 60000,
    "t10k-images-idx3-ubyte": 16 + 10000 * 28 * 28,
    "t10k-labels-idx1-ubyte": 8 + 10000,
})

# The MNIST copy shipped inside the package (searched last when no data directory is given).  It is
# part of the MNIST spec, so it lives here rather than in paths.py, which keeps both modules leaves.
VENDORED_DIR = Path(__file__).resolve().parent / "mnist"

# sha256 of the gzipped files shipped inside the package (the bytes as stored, not uncompressed).
VENDORED_GZ_SHA256 = {
    "t10k-images-idx3-ubyte.gz": "cfeddb84311ecf044fc6a5b0f6ee8a24d265d4e83e388400186eb114082f4209",
    "t10k-labels-idx1-ubyte.gz": "e41c74e484045d39b462a7790a4af51301bd9b0b24f0154798d713ec68c45920",
    "train-images-idx3-ubyte.gz": "db8f937d487057fb14a9f0fbe97f0bc8d311ab41b750d41e1ff37c43b9e55e19",
    "train-labels-idx1-ubyte.gz": "51fc562b6747b666fbf6e84ce29d43c3cb5f9c388c664d43b33f02095313405a",
}

# Normalization used by the paper (METHOD.md).  The std values are the ones common in CIFAR code
# bases, not the exact per-pixel std of the training set (about 0.247/0.243/0.262); they are kept
# as published so results stay comparable.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)

# Standard CIFAR-10 label order (as in batches.meta).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

CIFAR_MIRROR = "https://www.cs.toronto.edu/~kriz/"
CIFAR_MIRROR_ENV = "SPARSEHALO_CIFAR_MIRROR"


@dataclass(frozen=True)
class IdxDatasetSpec:
    """Everything needed to find, download and verify one four-file IDX dataset.

    Attributes:
        name: registry name, also the sub-directory name under a data root.
        sha256: file stem (no ``.gz``) -> sha256 of the uncompressed IDX bytes.
        default_mirror: base URL serving ``<stem>.gz``.
        mirror_env: environment variable that overrides the mirror.
        num_classes: labels must lie in ``[0, num_classes)``.
        vendored_dir: copy shipped with the package, searched last (None if there is none).
        files: the four file stems in train-images, train-labels, test-images, test-labels order.
        sizes: file stem -> uncompressed bytes; no file is inflated past its size.
    """

    name: str
    sha256: Mapping[str, str]
    default_mirror: str
    mirror_env: str
    num_classes: int = 10
    vendored_dir: Path | None = None
    files: tuple[str, ...] = field(default=IDX_FILES)
    sizes: Mapping[str, int] = field(default_factory=lambda: IDX_SIZES)

    @property
    def file_choices(self) -> tuple[tuple[str, ...], ...]:
        """Per file, the accepted names: raw preferred over ``.gz`` (compression is read from the bytes)."""
        return tuple((stem, f"{stem}.gz") for stem in self.files)


@dataclass(frozen=True)
class PickleArchiveSpec:
    """An official CIFAR "python version" archive.

    Attributes:
        name: registry name, also the sub-directory name under a data root.
        filename: archive file name.
        folder: directory inside the archive holding the pickles.
        train_members: pickles holding the training set, in order.
        test_members: pickles holding the test set.
        meta_member: pickle with the class names.
        label_key: key of the labels in each data pickle.
        names_key: key of the class names in the meta pickle.
        num_classes: labels must lie in ``[0, num_classes)``.
        sha256: sha256 of the archive file, checked on download.
        md5: md5 of the archive file as published on the dataset page, checked on download (or None).
        default_mirror: base URL serving ``filename``.
        mirror_env: environment variable that overrides the mirror.
    """

    # No copy of an archive ships with the package.
    vendored_dir: ClassVar[Path | None] = None

    name: str
    filename: str
    folder: str
    train_members: tuple[str, ...]
    test_members: tuple[str, ...]
    meta_member: str
    label_key: str
    names_key: str
    num_classes: int
    sha256: str
    md5: str | None = None
    default_mirror: str = CIFAR_MIRROR
    mirror_env: str = CIFAR_MIRROR_ENV

    @property
    def file_choices(self) -> tuple[tuple[str, ...], ...]:
        """The one archive file."""
        return ((self.filename,),)


@dataclass(frozen=True)
class ImageFolderSpec:
    """An archive of ``train/CLASS/IMAGE`` and ``test/CLASS/IMAGE`` files.

    Attributes:
        name: registry name, also the sub-directory name under a data root and the cache.
        filename: archive file name looked for.
        classes: class folder names; a folder's label is its position here.
        image_size: required ``(height, width)`` of every image.
        sha256: pinned sha256 of the archive, checked when a file named ``filename`` is loaded
            (None: not pinned).
    """

    vendored_dir: ClassVar[Path | None] = None

    name: str
    filename: str
    classes: tuple[str, ...]
    image_size: tuple[int, int] = (32, 32)
    sha256: str | None = None

    @property
    def file_choices(self) -> tuple[tuple[str, ...], ...]:
        """The one archive file."""
        return ((self.filename,),)


MNIST = IdxDatasetSpec(
    name="mnist",
    sha256={
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    default_mirror="https://ossci-datasets.s3.amazonaws.com/mnist/",
    mirror_env="SPARSEHALO_MNIST_MIRROR",
    vendored_dir=VENDORED_DIR,
)

FASHION_MNIST = IdxDatasetSpec(
    name="fashion-mnist",
    sha256={
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    default_mirror="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    mirror_env="SPARSEHALO_FASHION_MNIST_MIRROR",
)

CIFAR10 = PickleArchiveSpec(
    name="cifar10",
    filename="cifar-10-python.tar.gz",
    folder="cifar-10-batches-py",
    train_members=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_members=("test_batch",),
    meta_member="batches.meta",
    label_key="labels",
    names_key="label_names",
    num_classes=10,
    sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    md5="c58f30108f718f92721af3b95e74349a",
)

CIFAR100 = PickleArchiveSpec(
    name="cifar100",
    filename="cifar-100-python.tar.gz",
    folder="cifar-100-python",
    train_members=("train",),
    test_members=("test",),
    meta_member="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    num_classes=100,
    sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
)

CIFAR10_JPEG = ImageFolderSpec(
    name="cifar10-jpeg",
    filename="cifar10-jpeg.tar.xz",
    classes=CIFAR10_CLASSES,
    image_size=(32, 32),
    sha256="10981715978444902fb9408a65f9e1ea0f35e5bee3dfa3ddac1e70364f00d61d",
)

DownloadSpec = IdxDatasetSpec | PickleArchiveSpec
"""The kinds of spec :mod:`sparsehalo.data.download` can fetch."""
