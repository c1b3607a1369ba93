import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import Env, database_from_url


def test_malformed_integer_names_the_variable():
    with pytest.raises(ImproperlyConfigured, match="WORKERS='many'"):
        Env({"WORKERS": "many"}).get_int("WORKERS", 1)


def test_integer_below_its_minimum_is_refused():
    with pytest.raises(ImproperlyConfigured, match="below 1"):
        Env({"WORKERS": "0"}).get_int("WORKERS", 1, min_value=1)


def test_boolean_accepts_common_spellings_and_refuses_others():
    env = Env({"A": "yes", "B": "0", "C": "maybe"})
    assert env.get_bool("A", False) is True
    assert env.get_bool("B", True) is False
    with pytest.raises(ImproperlyConfigured, match="C='maybe' is not a boolean"):
        env.get_bool("C", False)


def test_missing_required_string_is_an_error():
    with pytest.raises(ImproperlyConfigured, match="SECRET is required"):
        Env({}).get_str("SECRET")


def test_url_with_wrong_scheme_is_refused():
    with pytest.raises(ImproperlyConfigured, match="scheme amqp"):
        Env({"BROKER": "http://rabbit:5672"}).get_url("BROKER", None, ("amqp",))


def test_choice_outside_the_allowed_set_is_refused():
    with pytest.raises(ImproperlyConfigured, match="must be one of celery, inprocess"):
        Env({"W": "threads"}).get_choice("W", "celery", ("celery", "inprocess"))


def test_float_parse_and_list_split():
    env = Env({"T": "2.5", "L": "a, b,,c"})
    assert env.get_float("T", 1.0) == 2.5
    assert env.get_list("L", []) == ["a", "b", "c"]
    with pytest.raises(ImproperlyConfigured):
        Env({"T": "x"}).get_float("T", 1.0)


def test_postgres_url_becomes_a_psycopg_database():
    db = database_from_url("postgres://u:p@db.example:6543/varclip")
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "varclip", "u", "p", "db.example", "6543",
    )  # fmt: skip


@pytest.mark.parametrize(
    "url, message",
    [
        ("mysql://h/db", "not supported"),
        ("postgres://h:5432/", "names no database"),
        ("postgres://h:port/db", "malformed port"),
    ],
)
def test_bad_database_urls_are_refused(url, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        database_from_url(url)
