"""pytest-alembic's standard checks, on SQLite and on PostgreSQL (see conftest)."""

from pytest_alembic.tests import (  # noqa: F401 - collected as tests here
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
