"""The command line makes OpenMP threads sleep while they wait (shared-CPU throughput)."""

from motionmae.cli import main


def test_cli_sets_passive_openmp_wait_unless_the_user_chose(monkeypatch, tmp_path):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    main(["report", str(tmp_path / "no-such-run")])
    import os

    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    main(["report", str(tmp_path / "no-such-run")])
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
