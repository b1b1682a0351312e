"""``Predictor``: load a model package once, predict on arrays, files, volumes and patient folders."""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence

import numpy as np

from gpedge.cpus import physical_cores
from gpedge.errors import GpedgeError, InferenceError, InputError
from gpedge.graph.contract import MaskRule, parse_mask_rule
from gpedge.package import ModelPackage
from gpedge.preprocess import fit_image
from gpedge.runtime import ood
from gpedge.runtime.backends import Backend, create_backend
from gpedge.runtime.io import DEFAULT_MAX_PIXELS, Scan, load_input
from gpedge.runtime.maps import to_input_resolution
from gpedge.runtime.results import Result, Source

log = logging.getLogger(__name__)

#: Channel shown in overlays, in order of preference (else the first channel).
DISPLAY_CHANNELS = ("flair", "t1ce", "t2", "t1")


class Predictor:
    """Runs a gpedge model package on scans and returns one :class:`Result` per image or slice.

    ``model``: package folder, a bundled model's name (:data:`gpedge.package.BUNDLED`) or loaded
    :class:`~gpedge.package.ModelPackage` (``None``: the bundled default model). ``backend``: ``auto``,
    ``onnxruntime``, ``tensorrt`` or ``torch``, or an open :class:`~gpedge.runtime.backends.Backend`
    (then ``model`` is its package).
    ``device``: ``None`` (backend's choice), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. ``mask_rule``
    and ``offset``: the mask rule (a name of :data:`gpedge.graph.contract.MASK_RULES`, optionally
    a host-side step of :data:`gpedge.graph.contract.POST_STEPS`) and its parameter, overriding the package's (fed to the graph's ``mask_rule`` and
    ``offset`` inputs). ``batch_size``: slices per model call (capped at the package's
    ``max_batch``). ``threads``: CPU threads of the backend (default: the physical cores; ONNX
    Runtime and torch on the CPU) and of the out-of-distribution statistics. ``max_pixels``: the
    largest input accepted, in pixels per channel over all its slices, read from the header before
    decoding (``None``: :data:`gpedge.runtime.io.DEFAULT_MAX_PIXELS`, 512^3). ``precision``: ``auto``, ``fp32``,
    ``fp16`` or ``int8`` (see :func:`gpedge.runtime.backends.create_backend`; ``auto`` runs a
    packaged INT8 graph on the CPU); every :class:`Result` states the one used.

    Masks follow one rule at every resolution: the graph thresholds the rule's map at the
    model's resolution, :func:`gpedge.runtime.maps.to_input_resolution` maps the result to the
    input's (and applies the rule's host-side step, ``+clean``, ``+guided``, ...). Blank images are
    refused; slices far from the training data are flagged (:mod:`gpedge.runtime.ood`) and get no diagnosis:
    their mask is empty. ``predict`` may be called from several threads at once. Use as a context manager or
    call ``close()`` to release device memory.
    """

    def __init__(
        self,
        model: str | os.PathLike | ModelPackage | None = None,
        backend: str | Backend = "auto",
        device: str | int | None = None,
        offset: float | None = None,
        batch_size: int = 8,
        threads: int | None = None,
        max_pixels: int | None = None,
        precision: str = "auto",
        mask_rule: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise GpedgeError(f"batch_size must be at least 1, got {batch_size}")
        if threads is not None and threads < 1:
            raise GpedgeError(f"threads must be at least 1, got {threads}")
        if max_pixels is not None and max_pixels < 1:
            raise GpedgeError(f"max_pixels must be at least 1, got {max_pixels}")
        self.max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
        self._offset = None if offset is None else float(offset)
        self._mask_rule = None if mask_rule is None else parse_mask_rule(mask_rule).name
        if isinstance(backend, Backend):
            if model is not None and model is not backend.package:
                raise GpedgeError("pass either model or an open backend (whose package is used), not both")
            if precision != "auto":
                raise GpedgeError("an open backend has its precision already; pass precision when opening it")
            self.package = backend.package
        else:
            self.package = model if isinstance(model, ModelPackage) else ModelPackage.load(
                "default" if model is None else model
            )
        parse_mask_rule(self.mask_rule).check_offset(self.offset)
        self.ood = _ood_check(self.package, threads or physical_cores())
        self._backend: Backend | None = backend if isinstance(backend, Backend) else create_backend(
            backend, self.package, device, threads=threads, precision=precision
        )
        self.classes = self.package.classes
        self.channels = self.package.channels
        self.image_size = self.package.image_size
        self.no_tumour_class = self.package.no_tumour_class
        self.batch_size = min(batch_size, self._backend.max_batch)
        self.backend_name = self._backend.name
        self.provider = self._backend.provider
        self.precision = self._backend.precision

    @property
    def offset(self) -> float:
        """The mask rule's parameter: the constructor's, else the package manifest's (as ``gpedge evaluate`` tunes
        it) when :attr:`mask_rule` thresholds as the package's rule does (absolute or relative), else the rule's default."""
        if self._offset is not None:
            return self._offset
        return self.package.offset_for(self.mask_rule)

    @property
    def mask_rule(self) -> str:
        """The mask rule of predictions: the constructor's, else the package manifest's (as ``gpedge evaluate --mask-rules`` tunes it)."""
        return self.package.mask_rule if self._mask_rule is None else self._mask_rule

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            raise GpedgeError("this Predictor was closed; create a new one")
        return self._backend

    @property
    def backend_description(self) -> str:
        return self.backend.description

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the backend's sessions and device memory, and the out-of-distribution check's threads."""
        self.ood.close()
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    # -- public API ------------------------------------------------------------------------
    def read_scan(self, item: object, name: str = "array") -> Scan:
        """Read one input (array, path, patient folder, {contrast: path}, DICOM study) for this model, timing it.

        Raises :class:`~gpedge.errors.InputError` when it cannot be read, exceeds ``max_pixels``,
        does not fit the model or is blank (a single image; blank slices of a stack are flagged).
        """
        start = time.perf_counter()
        scan = load_input(item, self.channels, name=name, max_pixels=self.max_pixels)
        where = str(scan.path) if scan.path else scan.name
        blank = [ood.blank_reason(image) for image in scan.images]
        if all(blank):
            what = "every slice is blank" if scan.is_volume and len(blank) > 1 else blank[0]
            raise InputError(f"{where}: {what}; there is nothing to classify")
        scan.load_ms = (time.perf_counter() - start) * 1e3
        return scan

    def warmup(self, iterations: int = 2) -> None:
        """Run the model a few times on a synthetic batch of ``batch_size`` slices (and of one), so that
        the first scan does not pay for lazy initialisation (memory arenas, kernels, CUDA context)."""
        height, width = self.image_size
        rng = np.random.default_rng(0)
        for n in dict.fromkeys((1, self.batch_size)):
            batch = rng.uniform(0.0, 1000.0, size=(n, len(self.channels), height, width)).astype(np.float32)
            for _ in range(iterations):
                self.backend.run(batch, self.offset, self.mask_rule)

    def predict(
        self, x: object, offset: float | None = None, on_error: Callable[[GpedgeError], None] | None = None,
        mask_rule: str | None = None,
    ) -> list[Result]:
        """Predict on an array ((H, W), (C, H, W) or (N, C, H, W)), a path (image, DICOM, NIfTI,
        BraTS patient folder), a {contrast: path} mapping, or a list of these.

        Returns one :class:`Result` per image, frame or slice, in input order. ``offset`` and
        ``mask_rule`` override :attr:`offset` and :attr:`mask_rule` for this call (a rule without an
        offset gets the package's offset when it thresholds as the package's rule does, else its
        default). ``on_error``: when given, an input that cannot be read or run is passed to it (a
        :class:`~gpedge.errors.GpedgeError` naming the input) and skipped, and the other inputs are
        still predicted; otherwise the first problem is raised.
        """
        if on_error is None:
            scans = [self.read_scan(item, name) for item, name in _named(x)]
            return [r for group in self.predict_scans(scans, offset, mask_rule) for r in group]
        results: list[Result] = []
        for item, name in _named(x):
            try:
                results.extend(self.predict_scans([self.read_scan(item, name)], offset, mask_rule)[0])
            except GpedgeError as exc:
                on_error(exc)
        return results

    def predict_scans(self, scans: Sequence[Scan], offset: float | None = None,
                      mask_rule: str | None = None) -> list[list[Result]]:
        """Predict on already read scans; slices of all scans share batches. One list per scan."""
        rule = parse_mask_rule(self.mask_rule if mask_rule is None else mask_rule)
        if offset is None:
            offset = self.offset if mask_rule is None or rule.name == self.mask_rule else self.package.offset_for(rule.name)
        return self._predict(scans, rule.check_offset(offset), [rule])[0]

    def predict_rules(self, x: object, offset: float, mask_rules: Sequence[str]) -> dict[str, list[Result]]:
        """``predict(x, offset=offset, mask_rule=rule)`` for every rule of ``mask_rules``, by rule name.

        The model runs once per rule the graph computes (:attr:`~gpedge.graph.contract.MaskRule.base`):
        rules that differ only in their host-side step, such as ``contrast``, ``contrast+peak`` and
        ``contrast+guided``, share one run. Inputs as for :meth:`predict`; the first problem is raised.
        """
        rules = [parse_mask_rule(name) for name in dict.fromkeys(mask_rules)]
        if not rules:
            raise GpedgeError("predict_rules needs at least one mask rule")
        for rule in rules:
            offset = rule.check_offset(offset)
        scans = [self.read_scan(item, name) for item, name in _named(x)]
        results: dict[str, list[Result]] = {}
        for base in dict.fromkeys(rule.base for rule in rules):
            group = [rule for rule in rules if rule.base == base]
            for rule, per_scan in zip(group, self._predict(scans, offset, group)):
                results[rule.name] = [r for scan_results in per_scan for r in scan_results]
        return {rule.name: results[rule.name] for rule in rules}

    # -- internals ---------------------------------------------------------------------------
    def _predict(self, scans: Sequence[Scan], offset: float, rules: Sequence[MaskRule]) -> list[list[list[Result]]]:
        """Results by rule, then scan, then slice; ``rules`` share the graph's rule (one run per batch)."""
        index = [(s, i) for s, scan in enumerate(scans) for i in range(scan.images.shape[0])]
        results: list[list[list[Result]]] = [[[] for _ in scans] for _ in rules]
        for start in range(0, len(index), self.batch_size):
            chunk = index[start : start + self.batch_size]
            for per_rule, chunk_results in zip(results, self._predict_chunk(scans, chunk, offset, rules)):
                for (s, _), result in zip(chunk, chunk_results):
                    per_rule[s].append(result)
        return results

    def _predict_chunk(self, scans: Sequence[Scan], chunk: list[tuple[int, int]], offset: float,
                       rules: Sequence[MaskRule]) -> list[list[Result]]:
        t0 = time.perf_counter()
        batch = np.stack([fit_image(scans[s].images[i], self.image_size, scans[s].pixel_aspect) for s, i in chunk])
        values = self.ood.features(batch)
        t1 = time.perf_counter()
        outputs = self._run(batch, offset, rules[0].name, {_where(scans[s]) for s, _ in chunk})
        t2 = time.perf_counter()
        reasons = [self.ood.reasons(row_values, scans[s].images[i]) for row_values, (s, i) in zip(values, chunk)]
        t3 = time.perf_counter()
        per_rule = []
        n = len(chunk)
        for rule in rules:
            t4 = time.perf_counter()
            results = [self._postprocess(scans[s], i, outputs, row, rule.post, reasons[row])
                       for row, (s, i) in enumerate(chunk)]
            t5 = time.perf_counter()
            for result, (s, _) in zip(results, chunk):
                result.speed.update(
                    load=scans[s].load_ms / scans[s].images.shape[0],
                    preprocess=(t1 - t0) * 1e3 / n,
                    inference=(t2 - t1) * 1e3 / n,
                    postprocess=(t3 - t2 + t5 - t4) * 1e3 / n,
                )
            per_rule.append(results)
        return per_rule

    def _run(self, batch: np.ndarray, offset: float, rule: str, where: set[str]) -> dict[str, np.ndarray]:
        """The backend's outputs; its failures become an :class:`InferenceError` naming the inputs."""
        try:
            return self.backend.run(batch, offset, rule)
        except GpedgeError:
            raise
        except Exception as exc:  # ONNX Runtime, TensorRT and torch raise their own types
            text = str(exc).strip().splitlines()
            raise InferenceError(
                f"{', '.join(sorted(where))}: the {self.backend_name} backend failed on this input "
                f"({type(exc).__name__}: {text[0][:300] if text else 'no details'})"
            ) from exc

    def _postprocess(self, scan: Scan, i: int, outputs: dict[str, np.ndarray], row: int, post: str,
                     ood_reasons: tuple[str, ...]) -> Result:
        """One slice's Result; a slice flagged out of distribution gets no diagnosis, hence an empty mask."""
        k = int(outputs["label"][row])
        threshold = float(outputs["threshold"][row])
        heatmaps, mask = to_input_resolution(
            outputs["heatmaps"][row], outputs["score"][row], threshold, outputs["mask"][row], scan.images.shape[-2:], post,
            scan.images[i], self.channels, scan.pixel_aspect,
        )
        probs = np.asarray(outputs["probs"][row], dtype=np.float64)
        return Result(
            label=self.classes[k],
            class_index=k,
            probabilities={name: float(p) for name, p in zip(self.classes, probs)},
            heatmap=heatmaps[k],
            heatmaps=heatmaps,
            mask=np.zeros_like(mask) if ood_reasons else mask,
            threshold=threshold,
            precision=self.precision,
            source=Source(str(scan.path) if scan.path else None, scan.slices[i] if scan.slices else None, scan.name),
            speed={},
            image=scan.images[i, self._display_channel(scan)],
            is_tumour=k != self.no_tumour_class,
            ood_reasons=ood_reasons,
            provider=self.provider,
        )

    def _display_channel(self, scan: Scan) -> int:
        names = scan.channels or self.channels
        for preferred in DISPLAY_CHANNELS:
            if preferred in names:
                return names.index(preferred)
        return 0


def _named(x: object) -> list[tuple[object, str]]:
    """The inputs of one ``predict`` call with the names their arrays are reported by."""
    items = list(x) if isinstance(x, (list, tuple)) else [x]
    return list(zip(items, [f"array{i}" for i in range(len(items))] if len(items) > 1 else ["array"]))


def _ood_check(package: ModelPackage, threads: int) -> ood.OutOfDistribution:
    return ood.OutOfDistribution(package.manifest.get("input_statistics"), str(package.root / "manifest.json"), threads)


def _where(scan: Scan) -> str:
    return str(scan.path) if scan.path else scan.name
