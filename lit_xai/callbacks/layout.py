"""TensorBoard's CUSTOM SCALARS layout for the shortcut evidence: charts that cannot mislead.

Each causal test of each watched (artifact, class) is one ``Margin`` chart. TensorBoard draws a Margin chart without
smoothing (the smoothing slider only acts on ``Multiline`` charts), as a line with a shaded band, and the chart holds
three series:

* the sham-corrected effect with its confidence interval (``<test>_effect``, ``<test>_effect_lower``,
  ``<test>_effect_upper``);
* the decision threshold, the alert rule's ``min_effect`` (``threshold``: a flat line, band of zero width): an alert
  needs the lower bound above it;
* the alert marker (``alert``: at the epoch an alert fired for the pair a spike up to the threshold line, 0 at every
  other measured epoch; its height stays inside the chart's range, so TensorBoard's outlier clipping, on by default,
  neither cuts it off nor squeezes the interval band).

TensorBoard colours a chart's series by run, so they are told apart by their symbols: the effect's squares, the
threshold's diamonds and the marker's triangles, in that order (the titles say so).

The x axis is the step of every lit_xai output, the number of completed epochs (0 = the untrained model); chart
titles say so, since TensorBoard's axis itself only says "step".

Example:
    >>> layout = shortcut_layout("XAI_shortcut", [("ring", "melanoma")], ["insertion"], threshold=0.15)
    >>> chart = layout.category[0].chart[0]
    >>> [(s.value.split("/")[-1], s.lower.split("/")[-1]) for s in chart.margin.series]
    [('insertion_effect', 'insertion_effect_lower'), ('threshold', 'threshold'), ('alert', 'alert')]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.plugins.custom_scalar import layout_pb2

__all__ = ["AXIS", "LAYOUT_TAG", "evidence_tags", "layout_summary", "shortcut_layout", "write_layout"]

#: the tag TensorBoard's custom scalars plugin reads the layout from
LAYOUT_TAG = "custom_scalars__config__"
#: how every lit_xai chart names its x axis
AXIS = "x: epochs done"


def evidence_tags(prefix: str, test: str) -> tuple[str, str, str]:
    """The (value, lower, upper) scalar tags of one causal test (``"insertion"`` or ``"removal"``) under ``prefix``
    (``<group>/<artifact>/<class>``).

    >>> evidence_tags("XAI_shortcut/ring/melanoma", "removal")[1]
    'XAI_shortcut/ring/melanoma/removal_effect_lower'
    """
    value = f"{prefix}/{test}_effect"
    return value, f"{value}_lower", f"{value}_upper"


def shortcut_layout(
    group: str,
    pairs: Sequence[tuple[str, str]],
    tests: Union[Sequence[str], Mapping[str, Sequence[str]]] = ("insertion", "removal"),
    threshold: float = 0.15,
    confidence: float = 0.95,
    roi: bool = False,
    title: str = "shortcut evidence",
) -> layout_pb2.Layout:
    """The layout: one Margin chart per (artifact, class) and test, with the threshold and alert series in it.

    Args:
        group: the scalar group (``ShortcutMonitor.scalar_group``, e.g. ``"XAI_shortcut"``).
        pairs: the watched ``(artifact, class name)`` pairs.
        tests: the causal tests measured (``"insertion"``; ``"removal"`` for artifacts with a remover), for every
            pair or per artifact (``{artifact: tests}``).
        threshold: the alert rule's ``min_effect`` (named in the titles).
        confidence: the intervals' level (named in the titles).
        roi: add a chart of the relevance outside the region of interest (``<group>/roi/<class>/outside_share``).
        title: the category's title.
    """
    charts = []
    level = f"{100 * confidence:.0f} % CI"
    for artifact, cls in pairs:
        prefix = f"{group}/{artifact}/{cls}"
        for test in tests.get(artifact, ()) if isinstance(tests, Mapping) else tests:
            value, lower, upper = evidence_tags(prefix, test)
            edit = "inserting" if test == "insertion" else "removing"
            series = [
                layout_pb2.MarginChartContent.Series(value=value, lower=lower, upper=upper),
                layout_pb2.MarginChartContent.Series(
                    value=f"{group}/threshold", lower=f"{group}/threshold", upper=f"{group}/threshold"
                ),
                layout_pb2.MarginChartContent.Series(
                    value=f"{prefix}/alert", lower=f"{prefix}/alert", upper=f"{prefix}/alert"
                ),
            ]
            charts.append(
                layout_pb2.Chart(
                    title=f"{artifact} → '{cls}': ■ effect of {edit} it on P({cls}) beyond a sham edit, {level} band; "
                    f"◆ threshold {threshold:g}; ▲ spike = the epoch it fired; {AXIS}",
                    margin=layout_pb2.MarginChartContent(series=series),
                )
            )
    if roi:
        charts.append(
            layout_pb2.Chart(
                title=f"relevance outside ROI (share per class; {AXIS})",
                multiline=layout_pb2.MultilineChartContent(tag=[rf"^{group}/roi/.*/outside_share$"]),
            )
        )
    return layout_pb2.Layout(category=[layout_pb2.Category(title=title, chart=charts)])


def layout_summary(layout: layout_pb2.Layout) -> Summary:
    """The layout as the summary TensorBoard's custom scalars plugin reads (what ``add_custom_scalars`` writes)."""
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="custom_scalars"))
    tensor = TensorProto(dtype="DT_STRING", string_val=[layout.SerializeToString()], tensor_shape=TensorShapeProto())
    return Summary(value=[Summary.Value(tag=LAYOUT_TAG, tensor=tensor, metadata=metadata)])


def write_layout(experiment: Any, layout: layout_pb2.Layout) -> bool:
    """Write ``layout`` through a (torch) ``SummaryWriter``; False when ``experiment`` is no such writer."""
    writer = getattr(experiment, "_get_file_writer", None)
    if writer is None:
        return False
    writer().add_summary(layout_summary(layout))
    return True
