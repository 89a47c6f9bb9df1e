"""The Guanaco store as a Dagster resource."""

from functools import cache

from dagster import ConfigurableResource

from guanaco_dagster.store.database import Store


@cache
def _migrated_store(url: str) -> Store:
    # Migrate once per process: cheap after the first time, and every process may be the first.
    return Store(url).migrate()


class StoreResource(ConfigurableResource):
    """Where submissions, conversations and feedback live (SQLite or PostgreSQL)."""

    database_url: str

    @property
    def store(self) -> Store:
        return _migrated_store(self.database_url)
