"""INT8 gates of the three networks at paper width, trained on a GPU (< 6 minutes on an H100/H200).

    bash benchmarks/int8_paper.sh OUT_DIR            # on a CUDA host
    bash benchmarks/int8_paper.sh OUT_DIR --dry-run  # tiny networks on the CPU, to check the script

For each network at paper width (4 x 240 x 240, 3 classes): train from scratch with AMP for a fixed
number of steps on realistic synthetic slices (``gpedge.data.samples``: head, tissue texture, lesions
whose contrast depends on the class), export it through ``gpedge.export`` with ``int8=True`` (the
product's INT8 graph: symmetric INT8, network input layer and GP head in FP32), calibrated on other
synthetic slices, and report the gate measured against the FP32 graph on held-out synthetic slices
(labels >= 99 %, mean mask Dice >= 0.95). The same slices also judge two variants, to show which
layers matter at paper width: every network layer quantized (input layer too) and uint8 activations.
Needs PyTorch with CUDA, onnx, onnxruntime (CPU) and SciPy; nothing is downloaded. Writes
``int8-paper.json`` into OUT_DIR and prints a table.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

PAPER = ("gp-unet", "gp-shuffle-unet", "gp-reconresnet")
CLASSES = ["Healthy", "LGG", "HGG"]
CHANNELS = ["t1", "t2", "t1ce", "flair"]
#: Seconds after which no further network is started (the skipped ones are reported).
TIME_BUDGET_S = 270


def slices(count: int, size: int, seed: int):
    """Synthetic slices in chunks of 64 (one seed each), so that the generator's pool is reused."""
    from gpedge.data.samples import synthetic_slices

    parts = [synthetic_slices(min(64, count - start), channels=4, size=size, num_classes=3, seed=seed * 1000 + start)
             for start in range(0, count, 64)]
    return (np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]),
            np.concatenate([p.masks for p in parts]))


def train(arch: str, options: dict, images: np.ndarray, labels: np.ndarray, steps: int, device: str) -> dict:
    """Adam with AMP and random flips for ``steps`` batches of 16; returns the model and the last losses."""
    import torch

    from gpedge.models import create_model
    from gpedge.preprocess import normalise_slice_max

    torch.manual_seed(1701)
    model = create_model(arch, in_channels=4, num_classes=3, **options).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-4)
    scaler = torch.amp.GradScaler(device, enabled=device == "cuda")
    x_all = torch.from_numpy(normalise_slice_max(images))
    y_all = torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(0)
    losses = []
    model.train()
    for _ in range(steps):
        index = torch.randint(len(x_all), (16,), generator=generator)
        x, y = x_all[index].to(device), y_all[index].to(device)
        if torch.rand(1, generator=generator) < 0.5:
            x = x.flip(-1)
        with torch.autocast(device, dtype=torch.float16, enabled=device == "cuda"):
            loss = torch.nn.functional.cross_entropy(model(x).logits.float(), y)
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()
        losses.append(float(loss.detach()))
    return {"model": model.eval().cpu(), "loss_first": float(np.mean(losses[:10])), "loss_last": float(np.mean(losses[-10:]))}


def held_out_accuracy(model, images: np.ndarray, labels: np.ndarray) -> float:
    import torch

    from gpedge.preprocess import normalise_slice_max

    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(normalise_slice_max(images[i : i + 8]))).logits for i in range(0, len(images), 8)])
    return float((logits.argmax(1).numpy() == labels).mean())


def variant_gate(package_dir: Path, calibration: Path, settings, gate_images: np.ndarray, offset: float,
                 fp32: dict, out: Path) -> dict:
    """Quantize the package's FP32 graph with ``settings`` into ``out`` and measure the gate figures on ``gate_images``."""
    import onnxruntime as ort

    from gpedge.export.int8 import quantize_int8
    from gpedge.export.parity import compare
    from gpedge.runtime.backends.base import rule_inputs

    quantize_int8(package_dir / "model.onnx", out, np.load(calibration), settings)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    parts = [dict(zip(names, session.run(names, {"image": gate_images[i : i + 8], **rule_inputs(offset, "paper")})))
             for i in range(0, len(gate_images), 8)]
    result = compare(fp32, {k: np.concatenate([p[k] for p in parts]) for k in names})
    return {k: result[k] for k in ("label_agreement", "mask_dice", "mask_slices")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for int8-paper.json")
    parser.add_argument("--dry-run", action="store_true", help="tiny networks (width 4, 32 px, 5 steps) on the CPU")
    parser.add_argument("--steps", type=int, default=300, help="training steps of batch 16 per network")
    args = parser.parse_args()
    started = time.perf_counter()
    import torch

    from gpedge.data.samples import synthetic_slices
    from gpedge.export import ExportOptions, export_package
    from gpedge.export.int8 import GATE_LABEL_AGREEMENT, GATE_MASK_DICE, Int8Settings
    from gpedge.export.parity import backend_outputs
    from gpedge.package import ModelPackage
    from gpedge.runs import RunConfig, save_weights
    from gpedge.runtime.backends.onnxruntime import OnnxRuntimeBackend

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cuda" and not args.dry_run:
        print("no CUDA GPU visible to PyTorch: run on a GPU host, or pass --dry-run", file=sys.stderr)
        return 2
    size, options, steps = (32, {"width": 4}, 5) if args.dry_run else (240, {}, args.steps)
    args.out.mkdir(parents=True, exist_ok=True)
    train_images, train_labels, _ = slices(64 if args.dry_run else 768, size, seed=11)
    test_images, test_labels, _ = slices(64, size, seed=12)
    gate_slices, calibration_slices = (16, 8) if args.dry_run else (64, 32)
    # the export's gate on an untrained-style run (no data set): synthetic slices of seed 1, held out from both sets above
    gate_images = synthetic_slices(gate_slices, channels=4, size=size, num_classes=3, seed=1).images
    report = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
              "size": size, "steps": steps, "networks": {}}
    with tempfile.TemporaryDirectory(prefix="gpedge-int8-paper-") as tmp:
        work = Path(tmp)
        calibration = work / "calibration.npy"
        np.save(calibration, slices(calibration_slices, size, seed=13)[0])
        for arch in PAPER:
            if time.perf_counter() - started > TIME_BUDGET_S:
                report["networks"][arch] = {"skipped": f"the {TIME_BUDGET_S} s budget was spent"}
                continue
            t0 = time.perf_counter()
            trained = train(arch, options, train_images, train_labels, steps, device)
            run = work / f"run-{arch}"
            RunConfig(arch=arch, model_options=trained["model"].config["options"], channels=CHANNELS, class_names=CLASSES,
                      image_size=size, no_tumour_class=0).save(run)
            save_weights(trained["model"], run)
            t1 = time.perf_counter()
            export = ExportOptions(max_batch=8, fp16=False, engine=False, parity_samples=2, int8=True, calibration=calibration,
                                   calibration_slices=calibration_slices, gate_slices=gate_slices, enforce_int8_gate=False,
                                   flip_average=False)
            package = export_package(run, work / f"pkg-{arch}", export)
            manifest = json.loads((package / "manifest.json").read_text())
            t2 = time.perf_counter()
            fp32 = backend_outputs(OnnxRuntimeBackend(ModelPackage.load(package), "cpu", precision="fp32"), gate_images, export.offset)
            variants = {
                label: variant_gate(package, calibration, settings, gate_images, export.offset, fp32, work / f"{arch}-{i}.onnx")
                for i, (label, settings) in enumerate((
                    ("every layer INT8 (input layer too)", replace(Int8Settings(), fp32_input_layer=False)),
                    ("uint8 activations", replace(Int8Settings(), activations="uint8")),
                ))
            }
            report["networks"][arch] = {
                "params": manifest["model"]["num_params"], "loss_first": trained["loss_first"], "loss_last": trained["loss_last"],
                "held_out_accuracy": held_out_accuracy(trained["model"], test_images, test_labels),
                "int8": {k: manifest["int8"][k] for k in ("quantized_nodes", "fp32_nodes", "activations", "calibration")},
                "gate": manifest["int8"]["gate"], "variants": variants,
                "seconds": {"train": t1 - t0, "export": t2 - t1, "variants": time.perf_counter() - t2},
            }
            print(json.dumps({arch: report["networks"][arch]["gate"]}), flush=True)
    report["seconds"] = time.perf_counter() - started
    (args.out / "int8-paper.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nINT8 gate (labels >= {GATE_LABEL_AGREEMENT:.0%}, mask Dice >= {GATE_MASK_DICE}) on {gate_slices} held-out slices, "
          f"{report['device']}, {steps} steps, {report['seconds']:.0f} s")
    print("| network | held-out acc | labels = | mask Dice (slices) | gate | every layer INT8: Dice | uint8 act.: Dice |")
    print("|---|---|---|---|---|---|---|")
    for arch, row in report["networks"].items():
        if "skipped" in row:
            print(f"| {arch} | {row['skipped']} | | | | | |")
            continue
        gate, var = row["gate"], row["variants"]
        print(f"| {arch} | {row['held_out_accuracy']:.1%} | {gate['label_agreement']:.1%} | {gate['mask_dice']:.4f} "
              f"({gate['mask_slices']}) | {'passed' if gate['passed'] else 'FAILED'} | "
              f"{var['every layer INT8 (input layer too)']['mask_dice']:.4f} | {var['uint8 activations']['mask_dice']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
