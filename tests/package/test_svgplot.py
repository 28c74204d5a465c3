"""The report's Pareto front: the variants nothing beats on both size/latency and accuracy."""

from __future__ import annotations

from edgecompress.package.svgplot import pareto_front, scatter


def test_pareto_front_keeps_only_undominated_points():
    pts = [(1.84, 0.992, "teacher", False), (0.30, 0.991, "export", False), (0.21, 0.990, "prune", False),
           (0.078, 0.988, "release", True), (0.25, 0.985, "worse", False), (0.078, 0.980, "tie-size", False)]
    assert [p[2] for p in pareto_front(pts)] == ["release", "prune", "export", "teacher"]
    svg = scatter(pts, title="t", xlabel="x", ylabel="y", front=True)
    assert svg.count("<polyline") == 2 and "Pareto front" in svg
    assert "Pareto front" not in scatter(pts, title="t", xlabel="x", ylabel="y")
