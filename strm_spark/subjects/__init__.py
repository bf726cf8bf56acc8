"""Privacy requests on a job's outputs: list data subjects, their key links, an access export,
forget (crypto-shredding) and purge-expired, each recorded in the audit table."""

from strm_spark.subjects.erasure import (
    export_subject,
    forget,
    key_links,
    list_subjects,
    purge_expired,
)

__all__ = ["export_subject", "forget", "key_links", "list_subjects", "purge_expired"]
