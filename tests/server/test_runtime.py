"""The runtime folder, where the admin token is written: only its user can enter it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.helpers import isolate_tether, make_certificate
from tether.cli.common import EXIT_USAGE
from tether.cli.main import cli
from tether.errors import ConfigError
from tether.server.runtime import (
    RuntimeRecord,
    local_server,
    private_runtime_dir,
    sharing_cores,
    trust_for,
    write_runtime_file,
)

RECORD = RuntimeRecord("http://127.0.0.1:1", "tth_x", os.getpid())


def test_a_folder_made_before_is_made_private(tmp_path: Path) -> None:
    folder = tmp_path / "tether"
    folder.mkdir(mode=0o755)  # as `mkdir -p` leaves it
    folder.chmod(0o755)
    path = write_runtime_file(folder, 1, RECORD)
    assert folder.stat().st_mode & 0o777 == 0o700
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_missing_folder_is_made_private(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "tether"
    private_runtime_dir(folder)
    assert folder.stat().st_mode & 0o777 == 0o700


def test_another_users_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "tether"
    folder.mkdir(mode=0o755)
    monkeypatch.setattr(os, "geteuid", lambda: folder.stat().st_uid + 1)
    with pytest.raises(ConfigError, match=r"belongs to another user .*TETHER_SERVER_RUNTIME_DIR"):
        private_runtime_dir(folder)
    assert folder.stat().st_mode & 0o777 == 0o755  # left as it was


def test_a_folder_that_stays_open_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "tether"
    folder.mkdir()
    folder.chmod(0o755)

    def refuse(self: Path, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(Path, "chmod", refuse)
    with pytest.raises(ConfigError, match=r"private \(0700\): Operation not permitted; run chmod"):
        private_runtime_dir(folder)


def test_serve_refuses_a_runtime_folder_that_is_a_file_before_loading_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_tether(monkeypatch, tmp_path)
    (tmp_path / "run").write_text("")
    monkeypatch.setenv("TETHER_ENGINE_MODEL_PATH", str(tmp_path / "no-model.gguf"))
    result = CliRunner().invoke(cli, ["serve", "--port", "0"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "runtime folder" in result.output and "TETHER_SERVER_RUNTIME_DIR" in result.output


def test_servers_whose_models_crowd_the_same_cores_are_found(tmp_path: Path) -> None:
    other = RuntimeRecord("http://127.0.0.1:2", "tth_y", os.getpid(), model_cores=[0, 1])
    write_runtime_file(tmp_path, 2, other)
    write_runtime_file(tmp_path, 3, RuntimeRecord("http://127.0.0.1:3", "tth_z", os.getpid()))
    me = os.getpid() + 1  # the server asking, not yet in the folder
    assert [r.url for r in sharing_cores(tmp_path, [0, 1], 2, me)] == ["http://127.0.0.1:2"]
    assert sharing_cores(tmp_path, [2, 3], 2, me) == []  # cores of its own (taskset -c 2,3)
    write_runtime_file(tmp_path, 2, RuntimeRecord(**{**other.__dict__, "model_threads": 1}))
    assert sharing_cores(tmp_path, [0, 1], 1, me) == []  # a thread each on two cores
    assert sharing_cores(tmp_path, [0, 1], 2, os.getpid()) == []  # itself


def test_a_command_means_the_server_of_its_own_data_home_before_a_newer_one(
    tmp_path: Path,
) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "gateway-home"
    ours = RuntimeRecord("http://127.0.0.1:1", "tth_a", os.getpid(), data_home=str(home))
    write_runtime_file(tmp_path, 1, ours)
    newer = RuntimeRecord("http://127.0.0.1:2", "tth_b", os.getpid(), data_home=str(elsewhere))
    os.utime(write_runtime_file(tmp_path, 2, newer), (4e9, 4e9))  # started after it
    assert local_server(tmp_path, home) == ours
    assert local_server(tmp_path, tmp_path / "none") == newer  # else the newest


def test_the_certificate_a_runtime_file_names_is_pinned_whatever_its_file_holds(
    tmp_path: Path,
) -> None:
    """A PEM with a comment in UTF-8 fell back to checking host names, which the address
    in the runtime file does not match for a certificate made for a Service's name."""
    cert, _ = make_certificate(tmp_path, host="tether.internal")
    cert.write_bytes("# Zertifikat für tether\n".encode() + cert.read_bytes())
    trusted = trust_for(RuntimeRecord("https://127.0.0.1:1", "tth_x", 1, tls_cert=str(cert)))
    assert not isinstance(trusted, bool) and not trusted.check_hostname
    assert len(trusted.get_ca_certs()) == 1
