"""Colours and order of any source names (MUSDB18's four, MoisesDB's, or one never seen)."""

from musicsep import TARGETS, targets_of
from musicsep.evaluate import ordered_targets
from musicsep.report.common import EXTRA_COLOURS, SOURCE_COLOURS, source_colours


def test_every_source_name_has_a_colour_and_a_set_distinct_ones():
    assert SOURCE_COLOURS["vocals"] == "#d62728" and SOURCE_COLOURS["drums"] == "#1f77b4"
    assert SOURCE_COLOURS["wind"] in EXTRA_COLOURS and SOURCE_COLOURS["wind"] == SOURCE_COLOURS["wind"]
    names = ["vocals", "drums", "bass", "guitar", "piano", "other", "wind", "bowed_strings", "percussion"]
    colours = source_colours(names)
    assert list(colours) == names and len(set(colours.values())) == len(names)
    assert {n: colours[n] for n in ("vocals", "drums", "bass", "other")} == \
        {n: SOURCE_COLOURS[n] for n in ("vocals", "drums", "bass", "other")}


def test_targets_in_the_tables_order():
    assert ordered_targets(targets_of(("drums", "bass", "other", "vocals"))) == list(TARGETS)
    assert ordered_targets(targets_of(("vocals", "drums", "bass", "guitar", "piano", "other"))) == \
        ["vocals", "drums", "bass", "other", "guitar", "piano", "accompaniment"]
    assert ordered_targets(["piano", "bass", "guitar"]) == ["bass", "piano", "guitar"]
