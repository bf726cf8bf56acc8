"""The `strm-spark` command line (`main`) and the packaged jobs' entry points (`entrypoints`)."""
