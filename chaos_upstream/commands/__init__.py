"""The work of each `chaos-upstream` command, one module each: `serve`, `check`, `matrix`,
`scenarios` (validate, list, schema) and `install_proxies`. cli.py parses the command line and calls
the command's function with the parsed arguments; each returns the exit status, and raises
ConfigError for bad usage or configuration, which cli.py prints.
"""

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
"""Success; a check found a failing verdict (or a worker ended on its own); bad usage or configuration."""
