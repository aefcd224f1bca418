"""The buffer self-check of 1-D patch dynamics (issue 11 item 4): ``patch_dynamics.buffer: auto`` and the
warning on an explicit width whose estimate is still moving.

The media are the quick workflow's (eps = 1e-4, dx = 1e-6, 4 substeps; a ladder walk costs ~0.03 s): the
paper's a(y) = 1.1 + sin(2 pi y) and a 4x stiffer one, 4.4 + 4 sin(2 pi y) (a* = 1.83, contrast 8.4 / 0.4),
on which the paper's H = 8e-3 is 64 % off.
"""

from __future__ import annotations

import subprocess
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cgflow import open_run
from cgflow.engine import fingerprint
from cgflow.methods import build_stages
from cgflow.methods.eqfree.patch_dynamics import (
    BufferWarning,
    PatchDynamics,
    buffer_ladder,
    check_buffer,
    select_buffer,
)
from cgflow.methods.eqfree.trajectories import PatchTrajectories
from cgflow.micro.heterodiffusion import Coefficient
from cgflow.spec import SpecError, load_spec

from ..conftest import cgflow_cmd

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
QUICK = dict(eps=1e-4, micro_dx=1e-6, substeps=4)
PAPER_MEDIUM = Coefficient(mean=1.1, amplitude=1.0)
STIFF_MEDIUM = Coefficient(mean=4.4, amplitude=4.0)
WIDE = 0.06  # far beyond the diffusion length sqrt(a* dt) ~ 1e-3 of either medium

SPEC_1D = """\
name: buffer-test
method: eqfree
seed: 4
stages: [trajectories]
micro: {{model: heterodiffusion, coefficient: {{mean: 1.1, amplitude: 1.0}}, eps: 1.0e-4, dx: 1.0e-6}}
patch_dynamics: {{nodes: 11, tooth: 1.0e-4, {buffer}burst: 1.0e-6, substeps: 4, macro_dt: 1.0e-3}}
trajectories: {{train: 1, test: 1, modes: 5, t_end: 2.0e-3, sample_every: 1.0e-3}}
rollout: {{times: [1.0e-3, 2.0e-3]}}
"""


def _estimate(pd: PatchDynamics, H: float) -> np.ndarray:
    return replace(pd, buffer=H).time_derivative(pd.x**2)[0][1:-1]


def _buffer_warnings(record) -> list:
    return [w for w in record if issubclass(w.category, BufferWarning)]


def test_ladder_is_admissible():
    ladder = buffer_ladder(1e-4, 1e-6, 11)
    assert ladder[0] == pytest.approx(2e-4)
    assert all(b > a for a, b in zip(ladder, ladder[1:])) and ladder[-1] < 0.1
    for w in ladder:  # every rung builds a scheme (even multiple of dx, tooth < H < spacing)
        k = w / 1e-6
        assert abs(k - round(k)) < 1e-6 and round(k) % 2 == 0
    ratios = np.array(ladder[1:]) / np.array(ladder[:-1])
    assert np.all(np.abs(ratios - 1.5) < 0.01)


def test_auto_picks_a_wider_buffer_for_a_stiffer_medium_and_meets_the_tolerance():
    chosen = {}
    for name, coef in (("paper", PAPER_MEDIUM), ("stiff", STIFF_MEDIUM)):
        pd = PatchDynamics(coefficient=coef, **QUICK)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            check = select_buffer(pd, 1e-3)
        assert not _buffer_warnings(record)
        assert check.mode == "auto" and check.buffer in check.ladder and check.error < 1e-3
        assert check.ladder == buffer_ladder(pd.tooth, pd.micro_dx, pd.macro_nodes)[: len(check.ladder)]
        assert len(check.ladder_change) == len(check.ladder) - 1 and check.ladder_change[-1] == check.error
        # the chosen width's estimate is within the tolerance of a much wider buffer's
        F, F_wide = _estimate(pd, check.buffer), _estimate(pd, WIDE)
        assert np.max(np.abs(F / F_wide - 1)) < 1e-3
        # ... and the rung below it was not (it is the narrowest that passes)
        if len(check.ladder) >= 3:
            assert check.ladder_change[-2] >= 1e-3
        chosen[name] = check.buffer
    assert chosen["stiff"] > chosen["paper"]
    assert chosen["paper"] == pytest.approx(0.011566)  # the quick workflow's medium needs more than the paper's 8e-3


def test_explicit_too_small_width_warns_and_records_the_estimate():
    pd = PatchDynamics(coefficient=STIFF_MEDIUM, buffer=8e-3, **QUICK)
    with pytest.warns(BufferWarning, match=r"patch_dynamics.buffer = 0.008: .* changes by"):
        check = check_buffer(pd, 1e-3)
    assert check.mode == "explicit" and check.buffer == 8e-3 and check.compared_with == pytest.approx(0.012)
    # the estimate is the measured change to 1.5 H, and it is close to the true bias against a wide buffer
    bias = np.max(np.abs(_estimate(pd, 8e-3) / _estimate(pd, WIDE) - 1))
    assert check.error > 0.1 and check.error == pytest.approx(bias, rel=0.1)
    assert not check.within_tolerance and check.attrs()["buffer_within_tolerance"] == 0


def test_explicit_adequate_width_does_not_warn():
    pd = PatchDynamics(coefficient=PAPER_MEDIUM, buffer=1.2e-2, **QUICK)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        check = check_buffer(pd, 1e-3)
    assert not _buffer_warnings(record)
    assert check.error < 1e-3 and check.within_tolerance


def test_spec_default_is_auto_and_the_stage_records_the_choice(tmp_path):
    quick = load_spec(WORKFLOWS / "eqfree-1d-quick.yaml")
    assert quick["patch_dynamics.buffer"] == "auto"
    (tmp_path / "spec.yaml").write_text(SPEC_1D.format(buffer=""))  # no buffer key at all
    spec = load_spec(tmp_path / "spec.yaml")
    assert spec["patch_dynamics.buffer"] == "auto" and spec["patch_dynamics.buffer_tolerance"] == 1e-3
    stage = build_stages(spec)[0]
    assert isinstance(stage, PatchTrajectories)
    assert stage.buffer == pytest.approx(0.011566) and stage.scheme.buffer == stage.buffer
    attrs = stage.template().attrs
    assert attrs["buffer_mode"] == "auto" and attrs["buffer"] == stage.buffer
    assert attrs["buffer_error_estimate"] < 1e-3 and len(attrs["buffer_error_estimate_per_node"]) == 9
    assert attrs["buffer_ladder"][-1] == pytest.approx(attrs["buffer_compared_with"])


def test_paper_workflow_keeps_its_explicit_buffer_and_fingerprint():
    spec = load_spec(WORKFLOWS / "eqfree-1d-paper.yaml")
    assert spec["patch_dynamics.buffer"] == 8e-3
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        stage = build_stages(spec)[0]
    assert not _buffer_warnings(record)  # 2.4e-4 from 8e-3 to 1.2e-2 in the paper's medium
    assert stage.buffer == 8e-3 and stage.buffer_check.mode == "explicit" and stage.buffer_check.error < 1e-3
    # the check is a diagnostic: the stage's identity (what its results depend on) is unchanged by it
    assert replace(stage, buffer_check=None) == stage
    assert fingerprint(replace(stage, buffer_check=None, buffer_tolerance=0.5)) == fingerprint(stage)
    assert fingerprint(replace(stage, buffer=1.2e-2)) != fingerprint(stage)


@pytest.mark.parametrize(
    "override, key, expected",
    [
        ("patch_dynamics.buffer_tolerance=0", "patch_dynamics.buffer_tolerance", "expected a number > 0"),
        ("patch_dynamics.buffer_tolerance=-1e-3", "patch_dynamics.buffer_tolerance", "expected a number > 0"),
        ("patch_dynamics.buffer=wide", "patch_dynamics.buffer", "must be auto or a number > 0"),
        ("patch_dynamics.buffer=-8e-3", "patch_dynamics.buffer", "must be auto or a number > 0"),
        ("patch_dynamics.tooth=0.06", "patch_dynamics.buffer", "auto needs room for a buffer"),
    ],
)
def test_bad_buffer_input_is_a_spec_error(override, key, expected):
    with pytest.raises(SpecError) as info:
        load_spec(WORKFLOWS / "eqfree-1d-quick.yaml", [override])
    assert f": {key}: " in str(info.value) and expected in str(info.value), str(info.value)


def test_bad_buffer_tolerance_exits_2_and_writes_nothing(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC_1D.format(buffer="buffer: auto, buffer_tolerance: 0, "))
    store = tmp_path / "out.zarr"
    before = set(tmp_path.iterdir())
    proc = subprocess.run(cgflow_cmd("run", str(spec), "--store", str(store)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"{spec}: patch_dynamics.buffer_tolerance: " in proc.stderr
    assert set(tmp_path.iterdir()) == before and not store.exists()


@pytest.mark.parametrize("buffer, warns", [("", False), ("buffer: 8.0e-3, ", True)])
def test_stored_trajectories_carry_the_buffer_check(tmp_path, buffer, warns):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_1D.format(buffer=buffer))
    store = tmp_path / "run.zarr"
    proc = subprocess.run(cgflow_cmd("run", str(spec), "--store", str(store), "--serial", "--no-progress"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert ("BufferWarning" in proc.stderr) == warns, proc.stderr
    attrs = open_run(store)["trajectories"].attrs
    assert attrs["buffer_mode"] == ("explicit" if warns else "auto")
    assert (attrs["buffer_error_estimate"] > 1e-3) == warns and attrs["buffer_within_tolerance"] == (0 if warns else 1)
    assert attrs["buffer"] == pytest.approx(8e-3 if warns else 0.011566)
    assert len(attrs["buffer_ladder"]) == len(attrs["buffer_ladder_change"]) + 1


def test_buffer_keys_belong_to_patch_dynamics_only():
    """The gap-tooth (2-D) workflow has no buffer to choose: the keys are unknown there, named in the error."""
    with pytest.raises(SpecError) as info:
        load_spec(WORKFLOWS / "gaptooth-2d-paper.yaml", ["patch_dynamics={buffer: auto, buffer_tolerance: 1.0e-3}"])
    assert "patch_dynamics: unknown key" in str(info.value), str(info.value)
