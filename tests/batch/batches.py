"""The batch jobs runbatch finds by name (it imports each app's batches module)."""

from tests.batch.tasks import BumpJob, FailingJob, LooseBumpJob  # noqa: F401
