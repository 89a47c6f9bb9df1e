"""What the feedback report needs to pseudonymise users: the platform's pseudonym key, as a resource."""

from dagster import ConfigurableResource

from guanaco_dagster.feedback.pseudonym_key import pseudonym_key


class PrivacyResource(ConfigurableResource):
    """The platform home (where the key is created on first use) and GUANACO_PSEUDONYM_KEY, if set."""

    home: str
    pseudonym_key: str | None = None

    def key(self) -> bytes:
        """The secret user pseudonyms are made with; the service uses the same one."""
        return pseudonym_key(self.home, self.pseudonym_key)
