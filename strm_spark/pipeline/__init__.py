"""The batch job as one staged pipeline: read -> validate -> keys -> encrypt -> derive -> write,
one module per stage, composed by `run.run_job`, with a summary of what the run did."""


def run_job(spark, config, **kwargs):
    from strm_spark.pipeline.run import run_job as run

    return run(spark, config, **kwargs)
