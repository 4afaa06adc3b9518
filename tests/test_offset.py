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


def _flat(unknown: int, other: int) -> tuple[np.ndarray, np.ndarray]:
    """Clips the model cannot tell apart (all logits 0): `unknown` of them _unknown_, `other` "yes"."""
    return np.zeros((unknown + other, len(LABELS)), np.float32), np.array([U] * unknown + [0] * other)


def test_the_offset_is_the_maximum_likelihood_one_and_never_negative():
    from tinyear.host.offset import choose_offset

    # Half the clips are _unknown_: the likelihood is best where p(_unknown_) = 1/2, i.e. e^b / (e^b + 3)
    # = 1/2, b = ln 3 = 1.0986: the grid's 1.1.
    z, y = _flat(50, 50)
    choice = choose_offset(z, y, LABELS, ["real"] * 100)
    assert choice.offset == 1.1 and choice.chosen_on == "the validation split"
    assert choice.nll_after < choice.nll_before == pytest.approx(np.log(4), abs=1e-5)
    # One clip in ten: ln(3 * 0.1 / 0.9) < 0, so the offset stays 0 (it only ever moves toward _unknown_).
    assert choose_offset(*_flat(10, 90), LABELS, ["real"] * 100).offset == 0.0
    # Sure and right about a "yes" and an _unknown_ clip: the loss terms balance where e^(b-9) = 3 e^(-9-b),
    # b = ln(3) / 2 = 0.549; accuracy is 100% either way.
    sure = _logits([[9.0, 0.0, 0.0, 0.0], [0.0, 0.0, 9.0, 0.0]])
    choice = choose_offset(sure, np.array([0, U]), LABELS, ["real"] * 2)
    assert choice.offset == 0.55 and choice.accuracy_before == choice.accuracy_after == 100.0


def test_where_real_clips_are_filled_with_synthetic_ones_only_the_recorded_clips_choose():
    from tinyear.host.choice import RECORDED_MIN
    from tinyear.host.offset import choose_offset

    n = RECORDED_MIN
    # People: half _unknown_ (best offset ln 3); synthetic clips: "yes" alone (best offset 0).
    rz, ry = _flat(n, n)
    sz, sy = _flat(0, 20 * n)
    z, y = np.concatenate([rz, sz]), np.concatenate([ry, sy])
    choice = choose_offset(z, y, LABELS, ["real"] * (2 * n) + ["synthetic"] * (20 * n))
    assert choice.chosen_on == f"the validation split's {2 * n:,} recorded clips" and choice.offset == 1.1
    # Too few people for the rule: the whole split chooses, and its synthetic clips keep it at 0.
    few = n // 2 - 1
    rz, ry = _flat(few, few)
    z, y = np.concatenate([rz, sz]), np.concatenate([ry, sy])
    choice = choose_offset(z, y, LABELS, ["real"] * (2 * few) + ["synthetic"] * (20 * n))
    assert choice.chosen_on == "the validation split" and choice.offset == 0.0


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


def test_the_pipeline_report_names_an_offset_only_when_there_is_one():
    from tinyear.host.offset import OffsetChoice
    from tinyear.host.pipeline_report import offset_line

    assert offset_line({"unknown_offset": OffsetChoice(0.0, "none (the default)").record()}) == []
    assert offset_line({}) == []
    chosen = OffsetChoice(0.15, "the validation split's 513 recorded clips", 0.18689, 0.18675, 94.932, 95.127)
    (line,) = offset_line({"unknown_offset": chosen.record()})
    assert line.startswith("- `_unknown_` offset: 0.15 added to its logit") and "513 recorded clips" in line
    assert "log-loss 0.187 -> 0.187, accuracy 94.9% -> 95.1%" in line
    (given,) = offset_line({"unknown_offset": OffsetChoice(2.0, "given (--unknown-offset)").record()})
    assert given.endswith("(given (--unknown-offset)); the validation accuracies above include it.")


def test_a_backbone_run_is_exported_without_an_offset(tmp_path):
    """The offset folds into a log-mel student's last layer; a backbone run (its head file marks it) is
    refused in one line before anything is read."""
    from tinyear.host.backbone import HEAD_FILE
    from tinyear.host.export import ExportOptions, export_run

    run = tmp_path / "head-run"
    run.mkdir()
    (run / HEAD_FILE).write_bytes(b"")
    with pytest.raises(TinyearError, match="backbone run is exported without one"):
        export_run(run, tmp_path / "x.tinyear", ExportOptions(unknown_offset=1.5, progress=False))
    with pytest.raises(TinyearError, match="backbone run is exported without one"):
        export_run(run, tmp_path / "x.tinyear", ExportOptions(unknown_offset=None, progress=False))
    assert not (tmp_path / "x.tinyear").exists()


def test_the_record_says_how_an_offset_was_chosen_only_when_it_was():
    from tinyear.host.offset import OffsetChoice

    assert OffsetChoice(2.0, "given (--unknown-offset)").record()["by"] is None
    chosen = OffsetChoice(0.15, "the validation split's 513 recorded clips", 0.2, 0.19, 95.0, 95.2).record()
    assert chosen["by"] == "least negative log-likelihood" and chosen["offset"] == 0.15
