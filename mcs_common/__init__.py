"""What the service and the worker share, so that neither imports the other: settings, the job records
(SQLAlchemy models) and their database, the files of a job (local data dir or S3 bucket), logging setup,
and the broker configuration with the one task name the service sends and the worker runs."""
