"""Pure helpers: bench report matching, variant points, sensitivity extraction, SVG plots, tar member checks."""

from __future__ import annotations

import tarfile

from edgecompress.package import metrics as met
from edgecompress.package import svgplot
from edgecompress.package.manifest import portable
from edgecompress.package.tarball import check_members


def _report(*paths):
    return {"models": [{"path": p, "latency_ms": {"p90": float(i + 1)}, "accuracy": 0.9 - i / 10}
                       for i, p in enumerate(paths)]}


def test_bench_entry_matching():
    rep = _report("/a/fp32.onnx", "/b/int8.onnx")
    assert met.bench_entry(rep, "/b/int8.onnx")[0]["latency_ms"]["p90"] == 2.0
    assert met.bench_entry(rep, "elsewhere/int8.onnx")[0]["latency_ms"]["p90"] == 2.0  # unique file name
    assert met.bench_entry(_report("/a/model.onnx", "/b/model.onnx"), "/c/model.onnx")[0] is None  # ambiguous
    assert met.bench_entry(rep, "/c/other.onnx")[0] is None
    assert met.bench_entry(_report("/x/only.onnx"), "/c/other.onnx")[0] is not None  # the only entry


def test_variant_points_take_metrics_and_bench():
    lineage = [
        {"stage": "export", "path": "stages/3-export/fp32.onnx", "metrics": {"size_bytes": 2_000_000}},
        {"stage": "quantize", "path": "stages/5-quantize/int8.onnx",
         "metrics": {"size_mb": 0.5, "fidelity": {"metric": "top1", "against": "labels", "fp32": 0.95, "int8": 0.94}}},
    ]
    rel = {"label": "release", "size_mb": 0.5, "p90_ms": 2.0, "accuracy": 0.94, "kind": "release"}
    pts = met.variant_points(lineage, _report("/o/fp32.onnx", "/o/int8.onnx"), rel, None)
    assert [p["label"] for p in pts] == ["1. export", "2. quantize", "release"]
    assert pts[0]["size_mb"] == 2.0 and pts[0]["p90_ms"] == 1.0
    assert pts[0]["accuracy"] == 0.95  # from the quantize fidelity of its input (not bench's subset accuracy)
    assert pts[1]["accuracy"] == 0.94 and pts[1]["p90_ms"] == 2.0


def test_find_sensitivity_formats():
    assert met.find_sensitivity([{"metrics": {"sensitivity": {"a": 0.1, "b": 0.3}}}]) == [("b", 0.3), ("a", 0.1)]
    ranked = [{"name": "conv1", "op_type": "Conv", "sqnr_db": 30.0, "loss_db": 4.5},
              {"name": "fc", "op_type": "Gemm", "sqnr_db": 40.0, "loss_db": 0.5}]
    assert met.find_sensitivity([{"metrics": {"layer_sensitivity": ranked}}]) == [("conv1", 4.5), ("fc", 0.5)]
    assert met.find_sensitivity([{"metrics": {"size_mb": 1}}]) == []


def test_portable_strips_absolute_paths():
    assert portable({"a": "/tmp/x/y.npz", "b": ["rel/p.onnx", "~/z"], "c": 1.5, "d": float("nan")}) == \
        {"a": "y.npz", "b": ["rel/p.onnx", "z"], "c": 1.5, "d": None}


def test_svg_plots_are_deterministic_and_well_formed():
    import xml.etree.ElementTree as ET

    pts = [(1.0, 0.9, "a", False), (1.001, 0.9001, "b", False), (0.5, 0.8, "c<&>", True)]
    svgs = [svgplot.scatter(pts, title="t", xlabel="x", ylabel="y"),
            svgplot.cdf([0.1, 0.2, 0.3, 0.25], title="t", xlabel="ms", marks={"p50": 0.22}),
            svgplot.cdf_from_percentiles({"min": 1.0, "p50": 2.0, "p90": 3.0, "max": 4.0}, title="t", xlabel="ms"),
            svgplot.hbars([("x", 3.0), ("y", 1.0)], title="t", xlabel="n"),
            svgplot.placeholder("t", "nothing")]
    for s in svgs:
        ET.fromstring(s)  # parses as XML
    assert svgs[0] == svgplot.scatter(pts, title="t", xlabel="x", ylabel="y")
    assert "a = b" in svgs[0]  # points at the same spot share a label


def test_check_members_flags_every_problem():
    def m(name, kind=tarfile.REGTYPE, link=""):
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname = kind, link
        return ti

    failures, safe, top = check_members([m("r", tarfile.DIRTYPE), m("r/ok.txt"), m("r/../x"), m("/abs"),
                                         m("r/s", tarfile.SYMTYPE, "/etc"), m("r/ok.txt"), m("other/y")])
    text = " | ".join(failures)
    assert "'..'" in text and "absolute path" in text and "symlink" in text and "more than once" in text
    assert "one top folder" in text
    assert [s.name for s in safe] == ["r/ok.txt", "other/y"]
