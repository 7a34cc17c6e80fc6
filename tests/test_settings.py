from __future__ import annotations

import errno
import io
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tether.errors import ConfigError
from tether.settings import (
    SECTIONS,
    declared_keys,
    env_name,
    load_settings,
    settings_reference,
)

DOCS = Path(__file__).parents[1] / "docs" / "settings.md"


def test_a_relative_path_in_tether_toml_is_beside_it_wherever_tether_runs(
    tmp_path: Path,
) -> None:
    """Run from a subfolder, the same file was found, yet its data.home = "tdata" opened
    an empty store in the subfolder: earlier evaluation runs seemed gone."""
    (tmp_path / "tether.toml").write_text(
        '[data]\nhome = "tdata"\n[evals]\ndatasets_dir = "../shared/datasets"\n'
        '[engine]\nmodel_path = "/models/m.gguf"\n[server]\ntoken_file = "~/token"\n'
    )
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    for here in (tmp_path, nested):
        settings = load_settings(cwd=here, environ={})
        assert settings.data.home == tmp_path / "tdata"
        assert settings.evals.datasets_dir == tmp_path / "../shared/datasets"
        assert settings.engine.model_path == Path("/models/m.gguf")
        assert settings.server.token_file == Path("~/token").expanduser()
    # A variable is read from the current folder, as a shell's paths are.
    from_env = load_settings(cwd=nested, environ={"TETHER_HOME": "here"})
    assert from_env.data.home == Path("here")


def test_precedence_default_toml_env_flag(tmp_path: Path) -> None:
    (tmp_path / "tether.toml").write_text("[server]\nport = 9000\nhost = '0.0.0.0'\n")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    settings = load_settings(
        {"engine.n_parallel": 3},
        cwd=nested,
        environ={"TETHER_SERVER_PORT": "9100", "TETHER_HOME": str(tmp_path / "d")},
    )
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == 9100
    assert settings.engine.n_parallel == 3
    assert settings.data.home == tmp_path / "d"
    sources = settings.sources
    assert sources["server.host"] == str(tmp_path / "tether.toml")
    assert sources["server.port"] == "env TETHER_SERVER_PORT"
    assert sources["engine.n_parallel"] == "command line"
    assert sources["engine.n_ctx"] == "default"
    assert sources["data.home"] == "env TETHER_HOME"


def test_an_empty_path_variable_leaves_the_default(tmp_path: Path) -> None:
    default = load_settings(cwd=tmp_path, environ={})
    for name in ("TETHER_HOME", "TETHER_DATA_HOME"):
        settings = load_settings(cwd=tmp_path, environ={name: ""})
        assert settings.data.home == default.data.home != Path(".")
        assert settings.sources["data.home"] == "default"


def test_list_from_environment(tmp_path: Path) -> None:
    settings = load_settings(
        cwd=tmp_path, environ={"TETHER_UPSTREAM_BASE_URLS": "http://a/v1, http://b/v1"}
    )
    assert settings.upstream.base_urls == ["http://a/v1", "http://b/v1"]
    with pytest.raises(ConfigError, match="http://a/v1/ is listed twice"):
        load_settings(
            cwd=tmp_path, environ={"TETHER_UPSTREAM_BASE_URLS": "http://a/v1,http://a/v1/"}
        )


def test_unknown_key_in_toml_is_named(tmp_path: Path) -> None:
    (tmp_path / "tether.toml").write_text("[engine]\nmodel_pth = 'x'\n")
    with pytest.raises(ConfigError, match=r"engine\.model_pth.*did you mean 'engine\.model_path'"):
        load_settings(cwd=tmp_path, environ={})
    (tmp_path / "tether.toml").write_text("[server]\nnothing_like_it = 1\n")
    with pytest.raises(ConfigError) as far:
        load_settings(cwd=tmp_path, environ={})
    assert "did you mean" not in far.value.message  # only a key close to a real one


def test_a_mistyped_variable_is_named_once_and_others_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {
        "TETHER_ENGINE_NCTX": "4096",  # a typo of TETHER_ENGINE_N_CTX
        "TETHER_ENGINE_CONTEXT": "4096",  # a section's prefix, no such key
        "TETHER_PORT": "tcp://10.0.0.7:8421",  # what Kubernetes adds for a service
        "TETHER_SERVICE_HOST": "10.0.0.7",  # and these, which look like server.host and .port
        "TETHER_SERVICE_PORT": "8421",
        "TETHER_PORT_8421_TCP_ADDR": "10.0.0.7",
        "TETHER_TOKEN": "t",  # the command line's own variable
        "TETHER_ENGINE_N_CTX": "2048",
    }
    with caplog.at_level("WARNING", logger="tether.settings"):
        settings = load_settings(cwd=tmp_path, environ=environ)
        load_settings(cwd=tmp_path, environ=environ)
    assert settings.engine.n_ctx == 2048
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2, warned
    assert warned[0].startswith("TETHER_ENGINE_CONTEXT is not a tether setting")
    assert warned[1].startswith("TETHER_ENGINE_NCTX is not a tether setting and is ignored")
    assert "did you mean TETHER_ENGINE_N_CTX?" in warned[1]


@pytest.mark.parametrize("name", ["TETHER_SERVICE_HOST", "TETHER_SERVICE_PORT"])
def test_a_service_variable_without_a_service_is_a_mistyped_setting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Kubernetes' TETHER_SERVICE_HOST and _PORT come with TETHER_PORT, the service's
    address; alone they are what they look like, TETHER_SERVER_HOST or _PORT mistyped."""
    import tether.settings as module

    monkeypatch.setattr(module, "_warned", set())
    with caplog.at_level("WARNING", logger="tether.settings"):
        load_settings(cwd=tmp_path, environ={name: "9000"})
    meant = name.replace("SERVICE", "SERVER")
    assert [r.getMessage().split("; ")[1] for r in caplog.records] == [
        f"did you mean {meant}? see `tether config` for the settings and their variables"
    ]


def test_bad_value_names_key_and_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.port = 'abc' \(env TETHER_SERVER_PORT\)"):
        load_settings(cwd=tmp_path, environ={"TETHER_SERVER_PORT": "abc"})


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ("[server]\nport = true\n", r"server\.port = True \(.*tether\.toml\): a number is needed"),
        ("[store]\ncall_timeout_s = false\n", r"store\.call_timeout_s = False"),
        ("port = 1\n", r"outside any \[section\]; it belongs under \[server\]"),
        (
            "[server]\ntoken = 'a' \ntoken_file = '/x'\n",
            r"invalid settings: \[server\]: set server\.token or server\.token_file, not both",
        ),
    ],
)
def test_a_mistyped_file_is_refused_in_its_own_words(tmp_path: Path, toml: str, says: str) -> None:
    (tmp_path / "tether.toml").write_text(toml)
    with pytest.raises(ConfigError, match=says):
        load_settings(cwd=tmp_path, environ={})


def test_a_boolean_setting_still_takes_true(tmp_path: Path) -> None:
    (tmp_path / "tether.toml").write_text("[compliance]\nstream_holdback = false\n")
    assert load_settings(cwd=tmp_path, environ={}).compliance.stream_holdback is False


def test_a_seed_beyond_32_bits_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"generation\.seed = '4294967296'"):
        load_settings(cwd=tmp_path, environ={"TETHER_GENERATION_SEED": str(2**32)})


@pytest.mark.parametrize(
    "url", ["127.0.0.1:8550/ingest", "http://[::1:8550/ingest", "http://h:99999/x", "ftp://h/x"]
)
def test_an_audit_webhook_that_is_not_an_http_url_is_refused_at_start(
    tmp_path: Path, url: str
) -> None:
    """The sender could never deliver to it (one such URL killed its thread), and the
    server would serve on while every record waited in the spool."""
    with pytest.raises(ConfigError, match=re.escape("is not an http(s) URL; give one such as")):
        load_settings(cwd=tmp_path, environ={"TETHER_AUDIT_WEBHOOK_URL": url})
    fine = {"TETHER_AUDIT_WEBHOOK_URL": "https://audit.example:8443/tether?k=1"}
    assert (
        load_settings(cwd=tmp_path, environ=fine).audit.webhook_url
        == fine["TETHER_AUDIT_WEBHOOK_URL"]
    )


@pytest.mark.parametrize("value", ["1e400", "inf", "nan"])
def test_a_number_that_is_not_finite_is_refused(tmp_path: Path, value: str) -> None:
    (tmp_path / "tether.toml").write_text(f'[usage.prices."m"]\ninput = {value}\noutput = 1\n')
    with pytest.raises(ConfigError, match=r"usage\.prices.*finite"):
        load_settings(cwd=tmp_path, environ={})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "tether.toml").write_text("")
    with pytest.raises(ConfigError, match=r"server\.shutdown_grace_s.*finite"):
        load_settings(cwd=elsewhere, environ={"TETHER_SERVER_SHUTDOWN_GRACE_S": value})


def test_a_link_to_a_missing_settings_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "tether.toml").symlink_to(tmp_path / "gone.toml")
    inside = tmp_path / "project"
    inside.mkdir()
    with pytest.raises(ConfigError, match=r"tether\.toml is a link to .*gone\.toml.*remove it"):
        load_settings(cwd=inside, environ={})


def test_more_threads_than_llama_cpp_runs_are_refused(tmp_path: Path) -> None:
    assert load_settings(cwd=tmp_path, environ={"TETHER_ENGINE_N_THREADS": "512"})
    with pytest.raises(ConfigError, match=r"engine\.n_threads = '513'.*512"):
        load_settings(cwd=tmp_path, environ={"TETHER_ENGINE_N_THREADS": "513"})


def test_broken_toml_is_reported(tmp_path: Path) -> None:
    (tmp_path / "tether.toml").write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cwd=tmp_path, environ={})


def test_a_toml_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    (tmp_path / "tether.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"tether\.toml is not UTF-8 text"):
        load_settings(cwd=tmp_path, environ={})


def test_every_key_has_a_description_and_env_name() -> None:
    reference = settings_reference()
    for key in declared_keys():
        section, name = key.split(".")
        description = SECTIONS[section].model_fields[name].description
        assert description and len(description) > 10, f"{key} has no description"
        row = next(line for line in reference.splitlines() if line.startswith(f"| `{key}` |"))
        assert env_name(key) in row and description in row


def test_settings_docs_are_generated_from_code() -> None:
    assert DOCS.read_text() == settings_reference(), (
        "run: tether config --reference > docs/settings.md"
    )


def test_cli_docs_are_generated_from_code() -> None:
    from tether.cli.reference import cli_reference

    expected = cli_reference()
    assert "## tether suggest" in expected and "--instruction" in expected
    # A group's commands too, with their options: what a reader looks them up for.
    assert "## tether usage report" in expected and "--ledger FILE" in expected
    assert "## tether token create" in expected and "--principal" in expected
    cli_docs = DOCS.with_name("cli.md")
    assert cli_docs.read_text() == expected, "run: python -m tether.cli.reference > docs/cli.md"


def test_defaults_bind_loopback_and_keep_tokens_out_of_the_data_directory(tmp_path: Path) -> None:
    settings = load_settings(cwd=tmp_path, environ={})
    assert settings.server.host == "127.0.0.1"
    assert settings.server.token is None  # a fresh admin token each start, in the runtime file
    assert settings.server.runtime_dir is None or not str(settings.server.runtime_dir).startswith(
        str(settings.data.home)
    )


def test_the_admin_token_can_come_from_a_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "admin-token"
    secret.write_text("tth_mounted-secret\n")
    settings = load_settings(cwd=tmp_path, environ={"TETHER_SERVER_TOKEN_FILE": str(secret)})
    assert settings.server.fixed_token() == "tth_mounted-secret"
    assert load_settings(cwd=tmp_path, environ={}).server.fixed_token() is None
    with pytest.raises(ConfigError, match=r"server\.token or server\.token_file, not both"):
        load_settings(
            cwd=tmp_path,
            environ={"TETHER_SERVER_TOKEN_FILE": str(secret), "TETHER_SERVER_TOKEN": "tth_x"},
        )
    secret.write_text("\n")
    with pytest.raises(ConfigError, match="must hold one token on one line"):
        settings.server.fixed_token()
    missing = load_settings(
        cwd=tmp_path, environ={"TETHER_SERVER_TOKEN_FILE": str(tmp_path / "nope")}
    )
    with pytest.raises(ConfigError, match=r"cannot be read.*mount the secret"):
        missing.server.fixed_token()


def test_an_admin_token_short_enough_to_guess_is_refused(tmp_path: Path) -> None:
    """`TETHER_SERVER_TOKEN=a` served, and `Bearer a` opened every route."""
    short = load_settings(cwd=tmp_path, environ={"TETHER_SERVER_TOKEN": "a" * 15})
    with pytest.raises(ConfigError, match="admin token of 15 characters, short enough") as refused:
        short.server.fixed_token()
    assert "a" * 15 not in refused.value.message and "openssl rand" in refused.value.message
    secret = tmp_path / "admin-token"
    secret.write_text("short\n")
    mounted = load_settings(cwd=tmp_path, environ={"TETHER_SERVER_TOKEN_FILE": str(secret)})
    with pytest.raises(ConfigError, match="of 5 characters"):
        mounted.server.fixed_token()
    enough = load_settings(cwd=tmp_path, environ={"TETHER_SERVER_TOKEN": "a" * 16})
    assert enough.server.fixed_token() == "a" * 16


@pytest.mark.parametrize("host", ["", "  "])
def test_an_empty_host_is_refused_not_read_as_every_interface(tmp_path: Path, host: str) -> None:
    with pytest.raises(ConfigError, match="would listen on every interface"):
        load_settings(cwd=tmp_path, environ={"TETHER_SERVER_HOST": host})


def test_a_token_with_blanks_is_refused_without_showing_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be one word") as refused:
        load_settings(cwd=tmp_path, environ={"TETHER_SERVER_TOKEN": " my token "})
    assert "my token" not in refused.value.message and "'***'" in refused.value.message


@pytest.mark.parametrize(
    ("environ", "secret"),
    [
        ({"TETHER_AUDIT_WEBHOOK_URL": "ftp://ann:s3cretpw@audit.example/x"}, "s3cretpw"),
        ({"TETHER_AUDIT_WEBHOOK_URL": "htps://hooks.example/services/T0/XXSECRET"}, "XXSECRET"),
        ({"TETHER_AUDIT_WEBHOOK_URL": "htps://hooks.example/x#tok=FRAGSECRET"}, "FRAGSECRET"),
        ({"TETHER_UPSTREAM_BASE_URLS": '["http://u:pw9@a:1", "http://u:pw9@a:1"]'}, "pw9"),
        ({"TETHER_UPSTREAM_BASE_URLS": '["http://a:1/?key=k3y", "http://a:1/?key=k3y"]'}, "k3y"),
    ],
)
def test_an_invalid_setting_never_shows_the_credentials_it_holds(
    tmp_path: Path, environ: dict[str, str], secret: str
) -> None:
    with pytest.raises(ConfigError, match="invalid settings") as refused:
        load_settings(cwd=tmp_path, environ=environ)
    assert secret not in refused.value.message


def test_a_path_from_the_home_folder_is_expanded(tmp_path: Path) -> None:
    (tmp_path / "tether.toml").write_text("[data]\nhome = '~/tether-data'\n")
    settings = load_settings(cwd=tmp_path, environ={"TETHER_TEMPLATES_DIR": "~/tpl"})
    assert settings.data.home == Path.home() / "tether-data"
    assert settings.templates.dir == Path.home() / "tpl"
    with pytest.raises(ConfigError, match="~nosuchuser names no home folder known here"):
        load_settings(cwd=tmp_path, environ={"TETHER_HOME": "~nosuchuser/data"})
    # An empty token is no token, as an empty path is no path: a fresh one at each start.
    assert load_settings(cwd=tmp_path, environ={"TETHER_SERVER_TOKEN": ""}).server.token is None


def test_a_key_of_the_wrong_type_is_not_shown_either(tmp_path: Path) -> None:
    (tmp_path / "tether.toml").write_text("[upstream]\napi_key = ['sk-live-s3cret']\n")
    with pytest.raises(ConfigError, match=re.escape("upstream.api_key = '***'")) as refused:
        load_settings(cwd=tmp_path, environ={})
    assert "s3cret" not in refused.value.message


def test_a_setting_named_without_its_section_is_pointed_to(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tether import settings as module

    module._warned.clear()
    load_settings(cwd=tmp_path, environ={"TETHER_N_CTX": "4096", "TETHER_ENABLED": "1"})
    assert "TETHER_N_CTX is not a tether setting" in caplog.text
    assert "did you mean TETHER_ENGINE_N_CTX?" in caplog.text
    assert "TETHER_ENABLED" not in caplog.text  # enabled in which section? none is guessed


def test_a_list_of_tables_in_the_environment_asks_for_a_json_array(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"TETHER_POLICY_RULES is not valid JSON .*a JSON array"):
        load_settings(cwd=tmp_path, environ={"TETHER_POLICY_RULES": "[{oops"})
    with pytest.raises(ConfigError, match=r"policy\.rules = \{"):  # one table, not split
        load_settings(cwd=tmp_path, environ={"TETHER_POLICY_RULES": '{"id": "x", "regex": "y"}'})


def test_two_variables_for_one_setting_must_agree(tmp_path: Path) -> None:
    both = {"TETHER_DATA_HOME": str(tmp_path / "a"), "TETHER_HOME": str(tmp_path / "b")}
    with pytest.raises(ConfigError, match="TETHER_DATA_HOME and TETHER_HOME are both set"):
        load_settings(cwd=tmp_path, environ=both)
    same = {**both, "TETHER_HOME": str(tmp_path / "a") + "/"}  # the same folder
    assert load_settings(cwd=tmp_path, environ=same).data.home == tmp_path / "a"


def test_a_config_file_that_cannot_open_for_want_of_files_names_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a low `ulimit -n` it said to check the file's permissions."""
    (tmp_path / "tether.toml").write_text("[server]\nport = 8421\n")
    real_open = io.open

    def no_file_left(file: Any, *rest: Any, **named: Any) -> Any:
        if str(file).endswith("tether.toml"):
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE), str(file))
        return real_open(file, *rest, **named)

    monkeypatch.setattr(io, "open", no_file_left)
    with pytest.raises(ConfigError, match=r"Too many open files\); .*ulimit -n") as refused:
        load_settings(cwd=tmp_path, environ={})
    assert "permissions" not in refused.value.message
