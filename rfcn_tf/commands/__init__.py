"""The ``rfcn-tf`` subcommands: each module is ``add_arguments(parser)`` + ``run(args)``,
glue between the command line and the library."""
