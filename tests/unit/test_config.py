"""Settings: env plus Vault-rendered secret files, validated once, errors naming variables never values.

Every test passes ``SECRETS_DIR`` pointing at a tmp folder, so whatever sits in /vault/secrets on the
machine running the tests never matters.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from alga_worker.config import (
    DEFAULT_PEPPER_VARIABLE,
    OTEL_VARIABLES,
    TEMPORAL_VARIABLES,
    VARIABLES,
    ConfigError,
    EmailProvider,
    SecretsPrecedence,
    Settings,
    database_conninfo,
    describe_variable,
    load_client_settings,
    load_settings,
    merged_environment,
    read_secret_files,
    variable_names,
)

PEPPER = "pepper-for-tests-0123456789"


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "secrets"
    folder.mkdir()
    return folder


@pytest.fixture
def base_env(secrets_dir: Path) -> dict[str, str]:
    """The smallest environment that loads: a database host and a pepper."""
    return {"SECRETS_DIR": str(secrets_dir), "DB_HOST": "db.internal", "ALGA_AUTH_KEY": PEPPER}


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _config_error(env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    return info.value


# ---------------------------------------------------------------- defaults and parsing


def test_minimal_environment_loads_with_documented_defaults(base_env: dict[str, str]) -> None:
    settings = load_settings(base_env)

    assert isinstance(settings, Settings)
    assert settings.task_queue == "tenant-workflows"
    assert settings.db_host == "db.internal"
    assert settings.db_port == 5432
    assert settings.db_name == "server"
    assert settings.db_user_admin == "postgres"
    assert settings.db_pool_min == 1
    assert settings.db_pool_max == 10
    assert settings.password_pepper.get_secret_value() == PEPPER
    assert settings.password_pepper_variable == DEFAULT_PEPPER_VARIABLE == "ALGA_AUTH_KEY"
    assert (settings.salt_bytes, settings.iterations, settings.key_length, settings.algorithm) == (
        12, 10_000, 64, "sha512")
    assert settings.email_provider is EmailProvider.OUTBOX
    assert settings.smtp_starttls is True
    assert settings.enable_health_check is True
    assert settings.health_check_port == 8080
    assert settings.metrics_port == 9464
    assert settings.log_level == "info"
    assert settings.log_format == "json"
    assert settings.graceful_shutdown_timeout.total_seconds() == 30
    assert settings.secrets_precedence is SecretsPrecedence.FILES
    assert settings.temporal_address == "localhost:7233"
    assert settings.temporal_namespace == "default"


def test_every_declared_default_is_accepted_by_the_settings_model() -> None:
    for var in VARIABLES:
        assert var.field in Settings.model_fields, var.name
    fields = [v.field for v in VARIABLES]
    assert len(fields) == len(set(fields))
    names = [v.name for v in (*VARIABLES, *TEMPORAL_VARIABLES)]
    assert len(names) == len(set(names))


def test_values_are_parsed_into_types(base_env: dict[str, str]) -> None:
    settings = load_settings({
        **base_env,
        "DB_PORT": "6543",
        "DB_POOL_MIN": "2",
        "DB_POOL_MAX": "4",
        "SMTP_STARTTLS": "false",
        "ENABLE_HEALTH_CHECK": "0",
        "GRACEFUL_SHUTDOWN_TIMEOUT": "12.5",
        "LOG_LEVEL": "DEBUG",
        "EMAIL_PROVIDER": "OUTBOX",
        "ALGORITHM": "sha256",
        "TEMPORAL_TASK_QUEUE": "other-queue",
    })
    assert settings.db_port == 6543
    assert (settings.db_pool_min, settings.db_pool_max) == (2, 4)
    assert settings.smtp_starttls is False
    assert settings.enable_health_check is False
    assert settings.graceful_shutdown_timeout.total_seconds() == 12.5
    assert settings.log_level == "debug"
    assert settings.email_provider is EmailProvider.OUTBOX
    assert settings.algorithm == "sha256"
    assert settings.task_queue == "other-queue"


def test_empty_value_counts_as_unset(base_env: dict[str, str]) -> None:
    settings = load_settings({**base_env, "DB_PORT": "", "LOG_LEVEL": ""})
    assert settings.db_port == 5432
    assert settings.log_level == "info"


def test_settings_are_immutable(base_env: dict[str, str]) -> None:
    settings = load_settings(base_env)
    with pytest.raises(ValueError):
        settings.db_port = 1  # type: ignore[misc]


def test_repr_of_settings_hides_secrets(base_env: dict[str, str]) -> None:
    settings = load_settings({**base_env, "DB_PASSWORD_ADMIN": "db-password-sentinel"})
    text = repr(settings) + str(settings)
    assert PEPPER not in text
    assert "db-password-sentinel" not in text


# ---------------------------------------------------------------- errors


def test_missing_pepper_stops_startup_naming_the_variable(secrets_dir: Path) -> None:
    err = _config_error({"SECRETS_DIR": str(secrets_dir), "DB_HOST": "db"})
    assert err.variables == ["ALGA_AUTH_KEY"]
    assert "ALGA_AUTH_KEY" in str(err)
    assert "required" in str(err)


def test_empty_pepper_counts_as_missing(base_env: dict[str, str]) -> None:
    err = _config_error({**base_env, "ALGA_AUTH_KEY": ""})
    assert "ALGA_AUTH_KEY" in err.variables


def test_all_problems_are_reported_at_once(secrets_dir: Path) -> None:
    err = _config_error({
        "SECRETS_DIR": str(secrets_dir),
        "DB_PORT": "not-a-port",
        "ALGORITHM": "md5",
        "LOG_LEVEL": "loud",
        "APPLICATION_URL": "not a url",
        "EMAIL_FROM_ADDRESS": "nobody",
        "ENABLE_HEALTH_CHECK": "perhaps",
        "SECRETS_PRECEDENCE": "whichever",
    })
    assert set(err.variables) == {"DB_HOST", "ALGA_AUTH_KEY", "DB_PORT", "ALGORITHM", "LOG_LEVEL",
                                  "APPLICATION_URL", "EMAIL_FROM_ADDRESS", "ENABLE_HEALTH_CHECK",
                                  "SECRETS_PRECEDENCE"}
    message = str(err)
    for name in err.variables:
        assert f"  {name}: " in message
    assert [name for name, _ in err.problems] == err.variables


@pytest.mark.parametrize(("name", "value"), [
    ("DB_PORT", "0"),
    ("DB_PORT", "70000"),
    ("DB_POOL_MAX", "201"),
    ("SALT_BYTES", "4"),
    ("ITERATIONS", "10"),
    ("KEY_LENGTH", "8"),
    ("HEALTH_CHECK_PORT", "-1"),
    ("METRICS_PORT", "65536"),
    ("MAX_CONCURRENT_WORKFLOWS", "1"),
    ("WORKFLOW_TASK_POLLERS", "1"),
    ("LOG_FORMAT", "xml"),
    ("NMSTORE_BASE_URL", "nm-store:3000/no-scheme"),
    ("EMAIL_PROVIDER", "mock"),
])
def test_out_of_range_values_name_their_variable(base_env: dict[str, str], name: str, value: str) -> None:
    err = _config_error({**base_env, name: value})
    assert err.variables == [name]


def test_secret_values_never_appear_in_config_errors(secrets_dir: Path) -> None:
    sentinels = {
        "ALGA_AUTH_KEY": "SENTINEL-pepper-7f3a9c",
        "DB_PASSWORD_ADMIN": "SENTINEL-dbpass-51be2d",
        "INTERNAL_API_SHARED_SECRET": "SENTINEL-internal-88aa01",
        "DATABASE_URL": "postgresql://u:SENTINEL-url-pass-c0ffee@h/db",
        "SMTP_PASSWORD": "SENTINEL-smtp-11dd22",
    }
    env = {
        "SECRETS_DIR": str(secrets_dir),
        **sentinels,
        "DB_PORT": "SENTINEL-port-value",
        "EMAIL_PROVIDER": "resend",
        "DB_POOL_MIN": "50",
        "DB_POOL_MAX": "5",
        "SALT_BYTES": "SENTINEL-salt",
    }
    err = _config_error(env)
    assert {"DB_PORT", "RESEND_API_KEY", "DB_POOL_MIN", "SALT_BYTES"} <= set(err.variables)
    rendered = "\n".join([str(err), repr(err), repr(err.problems), " ".join(map(str, err.args))])
    assert "SENTINEL" not in rendered


def test_secret_file_values_never_appear_in_parse_errors(secrets_dir: Path, base_env: dict[str, str]) -> None:
    _write(secrets_dir, "db", 'export DB_PASSWORD_ADMIN="SENTINEL-unterminated\n')
    err = _config_error(base_env)
    assert err.variables == ["db:1"]
    assert "SENTINEL" not in str(err)

    _write(secrets_dir, "db", "export DB_PASSWORD_ADMIN=SENTINEL-a SENTINEL-b\n")
    err = _config_error(base_env)
    assert err.variables == ["db:1"]
    assert "SENTINEL" not in str(err)


# ---------------------------------------------------------------- cross-checks


def test_db_host_required_without_database_url(secrets_dir: Path) -> None:
    err = _config_error({"SECRETS_DIR": str(secrets_dir), "ALGA_AUTH_KEY": PEPPER})
    assert err.variables == ["DB_HOST"]
    assert "DATABASE_URL" in str(err)


def test_database_url_alone_is_enough(secrets_dir: Path) -> None:
    url = "postgresql://worker:pw@db.example:5433/alga"
    settings = load_settings({"SECRETS_DIR": str(secrets_dir), "ALGA_AUTH_KEY": PEPPER, "DATABASE_URL": url})
    assert settings.admin_conninfo() == url
    assert url in settings.secret_values()


def test_resend_provider_requires_api_key(base_env: dict[str, str]) -> None:
    err = _config_error({**base_env, "EMAIL_PROVIDER": "resend"})
    assert err.variables == ["RESEND_API_KEY"]
    assert "EMAIL_PROVIDER=resend" in str(err)

    settings = load_settings({**base_env, "EMAIL_PROVIDER": "Resend", "RESEND_API_KEY": "re_test_key"})
    assert settings.email_provider is EmailProvider.RESEND
    assert settings.resend_api_key is not None
    assert settings.resend_api_key.get_secret_value() == "re_test_key"


def test_smtp_provider_requires_host(base_env: dict[str, str]) -> None:
    err = _config_error({**base_env, "EMAIL_PROVIDER": "smtp"})
    assert err.variables == ["SMTP_HOST"]

    settings = load_settings({**base_env, "EMAIL_PROVIDER": "smtp", "SMTP_HOST": "mail.example"})
    assert settings.email_provider is EmailProvider.SMTP
    assert settings.smtp_port == 587


def test_pool_min_must_not_exceed_pool_max(base_env: dict[str, str]) -> None:
    err = _config_error({**base_env, "DB_POOL_MIN": "11"})
    assert err.variables == ["DB_POOL_MIN"]
    assert "DB_POOL_MAX" in str(err)

    settings = load_settings({**base_env, "DB_POOL_MIN": "10", "DB_POOL_MAX": "10"})
    assert settings.db_pool_min == settings.db_pool_max == 10


def test_unparseable_pool_sizes_are_reported_once_each(base_env: dict[str, str]) -> None:
    err = _config_error({**base_env, "DB_POOL_MIN": "x", "DB_POOL_MAX": "y"})
    assert sorted(err.variables) == ["DB_POOL_MAX", "DB_POOL_MIN"]


# ---------------------------------------------------------------- pepper variable


def test_pepper_read_from_configured_variable(base_env: dict[str, str]) -> None:
    env = {**base_env, "PASSWORD_PEPPER_VARIABLE": "NEXTAUTH_SECRET", "NEXTAUTH_SECRET": "nextauth-pepper"}
    settings = load_settings(env)
    assert settings.password_pepper.get_secret_value() == "nextauth-pepper"
    assert settings.password_pepper_variable == "NEXTAUTH_SECRET"
    assert "nextauth-pepper" in settings.secret_values()


def test_missing_configured_pepper_names_that_variable(base_env: dict[str, str]) -> None:
    # ALGA_AUTH_KEY is set, but the deployment says the pepper lives in NEXTAUTH_SECRET.
    err = _config_error({**base_env, "PASSWORD_PEPPER_VARIABLE": "NEXTAUTH_SECRET"})
    assert err.variables == ["NEXTAUTH_SECRET"]
    assert "ALGA_AUTH_KEY" not in str(err)


def test_pepper_variable_and_pepper_from_secret_files(secrets_dir: Path) -> None:
    _write(secrets_dir, "shared", 'export NEXTAUTH_SECRET="file-pepper"\n')
    settings = load_settings({
        "SECRETS_DIR": str(secrets_dir),
        "DB_HOST": "db",
        "PASSWORD_PEPPER_VARIABLE": "NEXTAUTH_SECRET",
    })
    assert settings.password_pepper.get_secret_value() == "file-pepper"


def test_empty_pepper_variable_name_falls_back_to_alga_auth_key(base_env: dict[str, str]) -> None:
    """An empty value means unset for every variable; PASSWORD_PEPPER_VARIABLE must not be the exception.

    (A chart rendering ``PASSWORD_PEPPER_VARIABLE: ""`` must read the pepper from ALGA_AUTH_KEY, and the
    settings must report the variable they actually read.)
    """
    settings = load_settings({**base_env, "PASSWORD_PEPPER_VARIABLE": ""})
    assert settings.password_pepper.get_secret_value() == PEPPER
    assert settings.password_pepper_variable == "ALGA_AUTH_KEY"


def test_variable_names_use_the_configured_pepper_name(secrets_dir: Path) -> None:
    default = variable_names()
    assert "ALGA_AUTH_KEY" in default
    assert default == [v.name for v in (*VARIABLES, *TEMPORAL_VARIABLES, *OTEL_VARIABLES)]

    custom = variable_names({"SECRETS_DIR": str(secrets_dir), "PASSWORD_PEPPER_VARIABLE": "NEXTAUTH_SECRET"})
    assert "NEXTAUTH_SECRET" in custom
    assert "ALGA_AUTH_KEY" not in custom
    assert custom.index("NEXTAUTH_SECRET") == default.index("ALGA_AUTH_KEY")
    assert "TEMPORAL_ADDRESS" in custom


def test_describe_variable() -> None:
    pepper = describe_variable("ALGA_AUTH_KEY")
    assert pepper is not None
    assert pepper.secret is True
    assert pepper.default is None
    assert describe_variable("NOT_A_VARIABLE") is None


# ---------------------------------------------------------------- secret files


def test_vault_file_format(secrets_dir: Path) -> None:
    _write(secrets_dir, "worker", "\n".join([
        "# rendered by vault agent",
        "",
        'export DB_PASSWORD_ADMIN="p a s s"',
        "export SINGLE='it'\\''s $HOME \"quoted\" #not-a-comment'",
        "PLAIN=value-without-export",
        'export WITH_COMMENT="kept"   # trailing comment',
        'export DOLLAR="a$b`c`"',
        "export EMPTY=",
        '   export INDENTED="yes"   ',
    ]) + "\n")
    values = read_secret_files(secrets_dir)
    assert values == {
        "DB_PASSWORD_ADMIN": "p a s s",
        "SINGLE": "it's $HOME \"quoted\" #not-a-comment",
        "PLAIN": "value-without-export",
        "WITH_COMMENT": "kept",
        "DOLLAR": "a$b`c`",
        "EMPTY": "",
        "INDENTED": "yes",
    }


def test_unquoted_hash_inside_a_word_is_part_of_the_value(secrets_dir: Path) -> None:
    """As in the shell, ``#`` starts a comment only at the start of a word: ``A=p#ss`` is ``p#ss``.

    Truncating it silently would turn a pepper like ``abc#def`` into ``abc`` and lock every admin out.
    """
    _write(secrets_dir, "worker", "export ALGA_AUTH_KEY=abc#def\n")
    assert read_secret_files(secrets_dir) == {"ALGA_AUTH_KEY": "abc#def"}


def test_later_files_win_and_hidden_files_and_folders_are_ignored(secrets_dir: Path) -> None:
    _write(secrets_dir, "10-shared", 'export A="first"\nexport B="only-in-first"\n')
    _write(secrets_dir, "20-worker", 'export A="second"\n')
    _write(secrets_dir, ".hidden", 'export A="hidden"\nthis is not parsed\n')
    (secrets_dir / "subdir").mkdir()
    _write(secrets_dir / "subdir", "zz", 'export A="nested"\n')
    assert read_secret_files(secrets_dir) == {"A": "second", "B": "only-in-first"}


def test_missing_secrets_dir_is_empty(tmp_path: Path) -> None:
    assert read_secret_files(tmp_path / "does-not-exist") == {}


@pytest.mark.parametrize(("line", "reason"), [
    ('export A="unterminated', "unparseable"),
    ("export A=1 B=2", "expected"),
    ("just-words", "expected"),
    ("export", "expected"),
    ('export 1BAD="x"', "invalid variable name"),
    ('export BAD-NAME="x"', "invalid variable name"),
])
def test_bad_lines_name_file_and_line(secrets_dir: Path, line: str, reason: str) -> None:
    _write(secrets_dir, "worker", f'# header\nexport OK="fine"\n{line}\n')
    with pytest.raises(ConfigError) as info:
        read_secret_files(secrets_dir)
    assert info.value.variables == ["worker:3"]
    assert reason in str(info.value)


def test_secret_files_win_over_env_by_default(secrets_dir: Path) -> None:
    _write(secrets_dir, "worker", 'export ALGA_AUTH_KEY="from-file"\nexport DB_HOST="file-db"\n')
    env = {"SECRETS_DIR": str(secrets_dir), "ALGA_AUTH_KEY": "from-env", "LOG_LEVEL": "debug"}
    merged = merged_environment(env)
    assert merged["ALGA_AUTH_KEY"] == "from-file"
    assert merged["DB_HOST"] == "file-db"
    assert merged["LOG_LEVEL"] == "debug"

    settings = load_settings(env)
    assert settings.password_pepper.get_secret_value() == "from-file"
    assert settings.secrets_precedence is SecretsPrecedence.FILES


def test_env_wins_with_precedence_env(secrets_dir: Path) -> None:
    _write(secrets_dir, "worker", 'export ALGA_AUTH_KEY="from-file"\nexport DB_HOST="file-db"\n')
    env = {"SECRETS_DIR": str(secrets_dir), "ALGA_AUTH_KEY": "from-env", "SECRETS_PRECEDENCE": "env"}
    merged = merged_environment(env)
    assert merged["ALGA_AUTH_KEY"] == "from-env"
    assert merged["DB_HOST"] == "file-db"  # only in a file: still used

    settings = load_settings(env)
    assert settings.password_pepper.get_secret_value() == "from-env"
    assert settings.db_host == "file-db"
    assert settings.secrets_precedence is SecretsPrecedence.ENV


def test_merged_environment_does_not_modify_its_input(secrets_dir: Path) -> None:
    _write(secrets_dir, "worker", 'export A="file"\n')
    env = {"SECRETS_DIR": str(secrets_dir), "A": "env"}
    merged_environment(env)
    assert env == {"SECRETS_DIR": str(secrets_dir), "A": "env"}


def test_unparseable_secret_file_stops_load_settings(secrets_dir: Path, base_env: dict[str, str]) -> None:
    _write(secrets_dir, "broken", 'export ALGA_AUTH_KEY="oops\n')
    assert _config_error(base_env).variables == ["broken:1"]


# ---------------------------------------------------------------- temporal (envconfig)


def test_temporal_settings_from_a_secret_file_reach_temporal_connect(secrets_dir: Path) -> None:
    _write(secrets_dir, "temporal", "\n".join([
        'export TEMPORAL_ADDRESS="acme.a1b2c.tmprl.cloud:7233"',
        'export TEMPORAL_NAMESPACE="acme.a1b2c"',
        'export TEMPORAL_API_KEY="temporal-api-key-sentinel"',
    ]) + "\n")
    settings = load_settings({"SECRETS_DIR": str(secrets_dir), "DB_HOST": "db", "ALGA_AUTH_KEY": PEPPER})
    connect = settings.temporal_connect
    assert connect["target_host"] == "acme.a1b2c.tmprl.cloud:7233"
    assert connect["namespace"] == "acme.a1b2c"
    assert connect["api_key"] == "temporal-api-key-sentinel"
    assert connect.get("tls")  # an API key turns TLS on
    assert settings.temporal_address == "acme.a1b2c.tmprl.cloud:7233"
    assert settings.temporal_namespace == "acme.a1b2c"
    assert "temporal-api-key-sentinel" in settings.secret_values()
    assert "temporal-api-key-sentinel" not in repr(settings)


def test_temporal_env_overrides_defaults(base_env: dict[str, str]) -> None:
    settings = load_settings({**base_env, "TEMPORAL_ADDRESS": "temporal:7233", "TEMPORAL_NAMESPACE": "alga"})
    assert settings.temporal_connect["target_host"] == "temporal:7233"
    assert settings.temporal_connect["namespace"] == "alga"
    assert "api_key" not in settings.temporal_connect


def test_unreadable_temporal_tls_files_are_a_config_error(base_env: dict[str, str], tmp_path: Path) -> None:
    err = _config_error({
        **base_env,
        "TEMPORAL_TLS_CLIENT_CERT_PATH": str(tmp_path / "missing-cert.pem"),
        "TEMPORAL_TLS_CLIENT_KEY_PATH": str(tmp_path / "missing-key.pem"),
    })
    assert err.variables == ["TEMPORAL_*"]
    assert "missing-cert" not in str(err)


def test_load_client_settings_needs_no_database_or_pepper(secrets_dir: Path) -> None:
    _write(secrets_dir, "temporal", 'export TEMPORAL_ADDRESS="t.example:7233"\nexport TEMPORAL_API_KEY="k-1"\n')
    client = load_client_settings({"SECRETS_DIR": str(secrets_dir), "TEMPORAL_NAMESPACE": "ns1"})
    assert client.task_queue == "tenant-workflows"
    assert client.temporal_connect["target_host"] == "t.example:7233"
    assert client.temporal_connect["namespace"] == "ns1"
    assert client.temporal_connect["api_key"] == "k-1"

    other = load_client_settings({"SECRETS_DIR": str(secrets_dir), "TEMPORAL_TASK_QUEUE": "q2"})
    assert other.task_queue == "q2"


# ---------------------------------------------------------------- connection strings


def test_admin_conninfo_url_encodes_credentials(base_env: dict[str, str]) -> None:
    password = "p@ss:w/rd%?#&= x"
    settings = load_settings({**base_env, "DB_USER_ADMIN": "ad min@x", "DB_PASSWORD_ADMIN": password,
                              "DB_NAME_SERVER": "alga/db", "DB_PORT": "6432"})
    url = settings.admin_conninfo()
    assert password not in url
    parsed = conninfo_to_dict(url)
    assert parsed == {"user": "ad min@x", "password": password, "host": "db.internal", "port": "6432",
                      "dbname": "alga/db"}


def test_admin_conninfo_without_password(base_env: dict[str, str]) -> None:
    parsed = conninfo_to_dict(load_settings(base_env).admin_conninfo())
    assert "password" not in parsed
    assert parsed["user"] == "postgres"


def test_admin_conninfo_unix_socket_host(base_env: dict[str, str]) -> None:
    settings = load_settings({**base_env, "DB_HOST": "/var/run/postgresql", "DB_PASSWORD_ADMIN": "s:e/c"})
    parsed = conninfo_to_dict(settings.admin_conninfo())
    assert parsed["host"] == "/var/run/postgresql"
    assert parsed["port"] == "5432"
    assert parsed["dbname"] == "server"
    assert parsed["password"] == "s:e/c"


def test_server_conninfo(base_env: dict[str, str]) -> None:
    assert load_settings(base_env).server_conninfo() is None
    settings = load_settings({**base_env, "DB_USER_SERVER": "app_user", "DB_PASSWORD_SERVER": "app@pw"})
    parsed = conninfo_to_dict(settings.server_conninfo() or "")
    assert parsed["user"] == "app_user"
    assert parsed["password"] == "app@pw"
    assert parsed["host"] == "db.internal"


def test_secret_values_lists_every_configured_secret(base_env: dict[str, str]) -> None:
    settings = load_settings({
        **base_env,
        "DB_PASSWORD_ADMIN": "s-admin",
        "DB_PASSWORD_SERVER": "s-server",
        "INTERNAL_API_SHARED_SECRET": "s-internal",
        "RESEND_API_KEY": "s-resend",
        "SMTP_PASSWORD": "s-smtp",
        "TEMPORAL_API_KEY": "s-temporal",
    })
    assert set(settings.secret_values()) == {PEPPER, "s-admin", "s-server", "s-internal", "s-resend", "s-smtp",
                                             "s-temporal"}
    assert "db.internal" not in settings.secret_values()


def test_every_secret_variable_is_a_secret_field() -> None:
    for var in VARIABLES:
        annotation = str(Settings.model_fields[var.field].annotation)
        assert ("SecretStr" in annotation) == var.secret, var.name
    assert Settings.model_fields["password_pepper"].annotation is SecretStr


def test_database_conninfo_needs_no_pepper(secrets_dir: Path) -> None:
    url = database_conninfo({"SECRETS_DIR": str(secrets_dir), "DB_HOST": "h", "DB_PASSWORD_ADMIN": "a b"})
    assert conninfo_to_dict(url) == {"user": "postgres", "password": "a b", "host": "h", "port": "5432",
                                     "dbname": "server"}

    _write(secrets_dir, "db", 'export DATABASE_URL="postgresql://x@y/z"\n')
    assert database_conninfo({"SECRETS_DIR": str(secrets_dir)}) == "postgresql://x@y/z"


def test_database_conninfo_errors_name_the_variable(secrets_dir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        database_conninfo({"SECRETS_DIR": str(secrets_dir)})
    assert info.value.variables == ["DB_HOST"]

    with pytest.raises(ConfigError) as info:
        database_conninfo({"SECRETS_DIR": str(secrets_dir), "DB_HOST": "h", "DB_PORT": "SENTINEL-port"})
    assert info.value.variables == ["DB_PORT"]
    assert "SENTINEL" not in str(info.value)


def test_outbox_dir_defaults_to_the_system_temp_dir(base_env: dict[str, str]) -> None:
    import tempfile

    settings = load_settings(base_env)
    assert settings.email_outbox_dir == Path(tempfile.gettempdir()) / "alga-worker-outbox"
