"""The `_unknown_` offset of an export (`tinyear.host.offset`): chosen on the clips the choice rule names,
ties to the smaller offset, folded into the last layer exactly, refused where it cannot apply."""

from __future__ import annotations

import numpy as np
import pytest

from tinyear.device.errors import TinyearError

pytest.importorskip("torch")

LABELS = ["yes", "no", "_unknown_", "_silence_"]
U = LABELS.index("_unknown_")


def _logits(rows):
    return np.array(rows, dtype=np.float32)


def test_the_offset_that_scores_best_wins_and_ties_go_to_the_smaller_one():
    from tinyear.host.offset import choose_offset

    # Two other words the model calls "yes" by a margin of 1.1 and 2.1; a "yes" and a "no" it is sure of
    # (margins 3.3 and 4.5).
    z = _logits([[2.0, 0.0, 0.9, 0.0], [2.0, 0.0, -0.1, 0.0], [3.0, 0.0, -0.3, 0.0], [0.0, 4.5, 0.0, 0.0]])
    y = np.array([U, U, 0, 1])
    choice = choose_offset(z, y, LABELS, ["real"] * 4)
    assert choice.accuracy_before == 50.0 and choice.accuracy_after == 100.0
    assert choice.offset == 2.25  # the smallest offset of the grid that wins both (2.1 < 2.25 < 3.3)
    assert choice.scores[0.0] == 50.0 and choice.scores[1.25] == 75.0 and choice.scores[4.0] == 75.0
    assert choice.chosen_on == "the validation split"
    # Nothing beats no offset: it stays 0.
    assert choose_offset(z[2:], y[2:], LABELS, ["real"] * 2).offset == 0.0


def test_where_real_clips_are_filled_with_synthetic_ones_only_the_recorded_clips_choose():
    from tinyear.host.choice import RECORDED_MIN
    from tinyear.host.offset import choose_offset

    n = RECORDED_MIN
    # People: other words the model calls "yes" by 1.0 (an offset fixes them); synthetic other words it
    # already calls _unknown_, and synthetic "no" clips that any offset above 0.5 breaks.
    real = [[1.0, 0.0, 0.0, -5.0]] * n
    synthetic = [[0.0, 1.0, 0.5, -5.0]] * (3 * n)
    z, y = _logits(real + synthetic), np.array([U] * n + [1] * (3 * n))
    sources = ["real"] * n + ["synthetic"] * (3 * n)
    choice = choose_offset(z, y, LABELS, sources)
    assert choice.chosen_on == f"the validation split's {n:,} recorded clips"
    assert choice.offset == 1.25 and choice.accuracy_before == 0.0 and choice.accuracy_after == 100.0
    # Fewer people than the rule needs: the whole split chooses, and the synthetic clips keep it at 0.
    few = n - 1
    z2, y2 = _logits(real[:few] + synthetic), np.array([U] * few + [1] * (3 * n))
    choice2 = choose_offset(z2, y2, LABELS, ["real"] * few + ["synthetic"] * (3 * n))
    assert choice2.chosen_on == "the validation split" and choice2.offset == 0.0


def test_no_unknown_label_or_no_unknown_clips_leaves_it_at_zero():
    from tinyear.host.offset import choose_offset

    z = _logits([[1.0, 0.0, 0.0, 0.0]])
    assert choose_offset(z[:, [0, 1, 3]], np.array([0]), ["yes", "no", "_silence_"], ["real"]).offset == 0.0
    choice = choose_offset(z, np.array([0]), LABELS, ["real"])
    assert choice.offset == 0.0 and "no _unknown_ clips" in choice.chosen_on


def test_the_offset_is_folded_into_the_last_layer_exactly_and_the_original_is_left_alone():
    import torch

    from tinyear.host.offset import fold_offset
    from tinyear.host.students import DSCNN

    torch.manual_seed(0)
    model = DSCNN(len(LABELS), channels=8, blocks=1).eval()
    x = torch.randn(3, 98, 40)
    with torch.no_grad():
        before = model(x)
        moved = fold_offset(model, LABELS, 1.75)(x)
        again = model(x)
    expected = before.clone()
    expected[:, U] += 1.75
    torch.testing.assert_close(moved, expected)
    torch.testing.assert_close(again, before)
    assert fold_offset(model, LABELS, 0.0) is model


def test_a_model_it_cannot_apply_to_is_refused_in_one_line():
    import torch

    from tinyear.host.offset import fold_offset

    no_head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(10, len(LABELS), bias=False))
    with pytest.raises(TinyearError, match="--unknown-offset 0"):
        fold_offset(no_head, LABELS, 1.0)
    with pytest.raises(TinyearError, match="no _unknown_ label"):
        fold_offset(no_head, ["yes", "no"], 1.0)


@pytest.mark.parametrize("text, value", [("auto", None), ("0", 0.0), ("1.5", 1.5)])
def test_the_option_reads_auto_or_a_number(text, value):
    from tinyear.host.offset import parse_offset

    assert parse_offset(text) == value


@pytest.mark.parametrize("text", ["-1", "nan", "lots"])
def test_the_option_refuses_what_is_not_auto_or_a_number_from_zero(text):
    from tinyear.host.offset import parse_offset

    with pytest.raises(TinyearError, match="give auto or a number"):
        parse_offset(text)
