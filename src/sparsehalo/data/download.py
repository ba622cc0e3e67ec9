"""Download datasets with checksum verification before anything is saved.

Each file goes to a temporary name in the destination directory, its checksum is checked (the
uncompressed sha256 of an IDX file; the sha256 and published md5 of a CIFAR archive), and only then
is it renamed into place (an atomic rename on one file system).  A failed or corrupt download
therefore never leaves a partial file behind and never replaces a good one.

Downloads work on specs and import only the leaf modules (specs, paths, checksums); no loader
imports this module.  By dataset name: :func:`sparsehalo.data.download_dataset`, and
``load_dataset(..., download=True)`` fetches missing files here before loading them.
"""

from __future__ import annotations

import http.client
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from ..errors import DataError
from .checksums import corrupt_message, hash_file, is_gzip, sha256_uncompressed
from .paths import cache_root
from .specs import DownloadSpec, IdxDatasetSpec, PickleArchiveSpec

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0


def mirror_for(spec: DownloadSpec, base_url: str | None = None) -> str:
    """Base URL to fetch from: ``base_url``, else ``$<spec.mirror_env>``, else the default mirror."""
    url = base_url or os.environ.get(spec.mirror_env, "").strip() or spec.default_mirror
    return url.rstrip("/") + "/"


def _is_valid(path: Path, expected: str, max_bytes: int | None = None) -> bool:
    try:
        return sha256_uncompressed(path, max_bytes) == expected
    except DataError:  # unreadable or broken gzip counts as "not valid", to be replaced
        return False


def fetch_verified(url: str, directory: Path, label: str, timeout: float, accept: Callable[[Path], Path]) -> Path:
    """Download ``url`` to a temporary file in ``directory``, check it, then rename it into place.

    Args:
        url: what to fetch.
        directory: destination directory (the temporary file is made there so the rename is atomic).
        label: file name stem used in the temporary file's name.
        timeout: seconds allowed for connecting and for each read.
        accept: ``accept(tmp_path) -> final_path``; raises DataError when the download is bad.

    Returns:
        The final path.  On any failure nothing is left in ``directory``.

    Raises:
        DataError: network/HTTP error (naming the URL) or whatever ``accept`` raises.
    """
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{label}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    shutil.copyfileobj(response, out, 1 << 20)
            except urllib.error.HTTPError as exc:
                raise DataError(f"download failed: {url}: HTTP {exc.code} {exc.reason}") from None
            except urllib.error.URLError as exc:
                raise DataError(f"download failed: {url}: {exc.reason}") from None
            except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, short reads
                raise DataError(f"download failed: {url}: {exc or type(exc).__name__}") from None
        final = accept(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a data cache should be readable like any download
        os.replace(tmp, final)
        return final
    finally:
        tmp.unlink(missing_ok=True)


def _fetch(url: str, directory: Path, stem: str, expected: str, dataset: str, timeout: float, max_bytes: int | None = None) -> Path:
    def accept(tmp: Path) -> Path:
        try:
            actual = sha256_uncompressed(tmp, max_bytes)
        except DataError as exc:
            why = "too large" if "more than" in str(exc) else "not valid gzip or IDX data"
            raise DataError(f"download failed: {url}: {why}; nothing was saved") from None
        if actual != expected:
            raise DataError(corrupt_message(url, actual, expected, dataset) + "; nothing was saved")
        # Name by content so a mirror serving raw bytes still yields a correctly named file.
        return directory / (f"{stem}.gz" if is_gzip(tmp) else stem)

    return fetch_verified(url, directory, stem, timeout, accept)


def _destination(spec: DownloadSpec, dest_dir: str | os.PathLike | None) -> Path:
    """``<dest_dir or cache root>/<spec.name>``, created."""
    root = Path(dest_dir).expanduser() if dest_dir is not None else cache_root()
    directory = root / spec.name
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create download directory {directory}: {exc.strerror or exc}") from None
    return directory


def download_spec(
    spec: IdxDatasetSpec,
    dest_dir: str | os.PathLike | None = None,
    base_url: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Download ``spec``'s four files into ``<dest_dir or cache root>/<spec.name>``; see :func:`download_files`."""
    directory = _destination(spec, dest_dir)
    mirror = mirror_for(spec, base_url)
    for stem in spec.files:
        expected = spec.sha256[stem]
        present = [p for p in (directory / stem, directory / f"{stem}.gz") if p.is_file()]
        bad = [p for p in present if not _is_valid(p, expected, spec.sizes.get(stem))]
        if len(bad) < len(present):
            logger.info("%s: %s already present and valid", spec.name, stem)
            # Drop a broken twin so the loader (which prefers raw files) cannot pick it up.
            for p in bad:
                p.unlink(missing_ok=True)
            continue
        url = f"{mirror}{stem}.gz"
        logger.info("%s: downloading %s", spec.name, url)
        final = _fetch(url, directory, stem, expected, spec.name, timeout, spec.sizes.get(stem))
        for p in bad:
            if p != final:
                p.unlink(missing_ok=True)
    return directory


def _archive_mismatch(path: Path | str, spec: PickleArchiveSpec) -> str | None:
    """Why the archive at ``path`` fails its pinned checksums, or None when it passes."""
    algos = ("sha256", "md5") if spec.md5 else ("sha256",)
    digests = hash_file(path, *algos)
    for algo in algos:
        expected = getattr(spec, algo)
        if digests[algo] != expected:
            return f"{algo} is {digests[algo][:12]}..., expected {expected[:12]}..."
    return None


def download_archive(
    spec: PickleArchiveSpec,
    dest_dir: str | os.PathLike | None = None,
    base_url: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Download ``spec``'s archive into ``<dest_dir or cache root>/<spec.name>``; see :func:`download_files`.

    A file already there with the right checksums is kept; a corrupt one is replaced only once a
    good download has been verified.
    """
    directory = _destination(spec, dest_dir)
    final = directory / spec.filename
    if final.is_file():
        try:
            problem = _archive_mismatch(final, spec)
        except DataError as exc:  # unreadable counts as "not valid", to be replaced
            problem = str(exc)
        if problem is None:
            logger.info("%s: %s already present and valid", spec.name, final)
            return directory
        logger.info("%s: replacing %s (%s)", spec.name, final, problem)
    url = f"{mirror_for(spec, base_url)}{spec.filename}"

    def accept(tmp: Path) -> Path:
        problem = _archive_mismatch(tmp, spec)
        if problem is not None:
            raise DataError(
                f"{url} is corrupt: {problem}; nothing was saved (retry, or set {spec.mirror_env} to another mirror)"
            )
        return final

    logger.info("%s: downloading %s", spec.name, url)
    fetch_verified(url, directory, spec.filename, timeout, accept)
    return directory


def download_files(
    spec: DownloadSpec,
    dest_dir: str | os.PathLike | None = None,
    base_url: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Download the files of ``spec``, verifying each file before it is saved.

    Files already present with the right checksum are not fetched again.  (By dataset name:
    :func:`sparsehalo.data.download_dataset`.)

    Args:
        spec: four IDX files (:class:`~sparsehalo.data.specs.IdxDatasetSpec`) or one official CIFAR
            python archive (:class:`~sparsehalo.data.specs.PickleArchiveSpec`).
        dest_dir: data root; files go to ``dest_dir/<name>`` (the layout ``load_dataset(data_dir=...)``
            searches).  None means the cache, ``$XDG_CACHE_HOME/sparsehalo/<name>`` or
            ``~/.cache/sparsehalo/<name>``.
        base_url: mirror serving the files (``<file>.gz`` for IDX, the archive for CIFAR); defaults to
            ``$<spec.mirror_env>`` (``SPARSEHALO_MNIST_MIRROR``, ``SPARSEHALO_FASHION_MNIST_MIRROR``,
            ``SPARSEHALO_CIFAR_MIRROR``), then the public mirror.
        timeout: seconds allowed for connecting and for each read.

    Returns:
        The directory holding the files.

    Raises:
        DataError: network or HTTP error (naming the URL), or a checksum mismatch.
        TypeError: ``spec`` is not a kind that can be downloaded.
    """
    if isinstance(spec, IdxDatasetSpec):
        return download_spec(spec, dest_dir, base_url, timeout=timeout)
    if isinstance(spec, PickleArchiveSpec):
        return download_archive(spec, dest_dir, base_url, timeout=timeout)
    raise TypeError(f"cannot download a {type(spec).__name__}")
