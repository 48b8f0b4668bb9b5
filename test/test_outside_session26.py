"""Session #26: the cases left open by session #25's reviews, each against what the user asked for."""

import pytest


def test_resume_with_another_init_from_is_refused_and_keeps_the_run(tmp_path):
    """``hd-train --resume --init-from X`` asks for two starts at once: a resume takes last.pt's
    weights, so X was recorded in the run's config and never used (session #25's note). Now it is
    refused in one line and the run's files are left as they were; giving the checkpoint the run
    was fine-tuned from again (what --resume over the run's own config does) still resumes."""
    pytest.importorskip("torch")
    from test_hd_model_train import _cfg

    from gsmap_hd.errors import CheckpointError
    from gsmap_hd.train import train

    base = tmp_path / "base"
    train(_cfg(steps=2, eval_every=0), base, progress=False)
    other = tmp_path / "other"
    train(_cfg(steps=2, eval_every=0, seed=3), other, progress=False)
    run = tmp_path / "run"
    train(_cfg(steps=2, eval_every=0, init_from=str(base / "model.pt")), run, progress=False)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(CheckpointError, match="init-from") as exc:
        train(
            _cfg(steps=4, eval_every=0, init_from=str(other / "model.pt")), run, resume=True, progress=False
        )
    assert "\n" not in str(exc.value)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    out = train(
        _cfg(steps=4, eval_every=0, init_from=str(base / "model.pt")), run, resume=True, progress=False
    )
    assert out["step"] == 4
