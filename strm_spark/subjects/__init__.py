"""Privacy requests on a job's outputs: list data subjects and their key links (`listing`), an
access export (`export`), forget and purge-expired (`erasure`), each recorded in `audit`. All act
on one job config's key group (`keys.group_id`) and its outputs."""

from strm_spark.subjects.erasure import forget
from strm_spark.subjects.export import ExportResult, export_subject
from strm_spark.subjects.listing import KeyLinkInfo, SubjectPage, key_links, list_subjects
from strm_spark.subjects.report import ErasureReport
from strm_spark.subjects.retention import purge_expired

__all__ = [
    "ErasureReport",
    "ExportResult",
    "KeyLinkInfo",
    "SubjectPage",
    "export_subject",
    "forget",
    "key_links",
    "list_subjects",
    "purge_expired",
]
